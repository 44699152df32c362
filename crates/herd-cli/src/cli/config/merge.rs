//! The file's arguments merged into the command line's, then parsed by clap as one command
//! line. An option given on the command line overrides the file's (a repeatable one replaces
//! the file's list); `--env` adds to the file's `[env]` (the command line wins for a variable
//! both set); a resource limit the command line sets (`--nofile`, `--rlimit NAME=...`) replaces
//! the file's setting of that limit under either key, and the file's other limits stay; a
//! COMMAND after `--` replaces the file's `command`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};

use super::{ConfigFile, COMMAND_KEY, ENV_KEY};
use crate::cli::{Cli, Command, RunArgs};

/// A command line with its config file applied.
#[derive(Debug)]
pub struct Merged {
    /// What it asks for.
    pub cli: Cli,
    /// What clap matched, for the checks that need to know what was given.
    pub matches: ArgMatches,
    /// The config file's contents, if there is one.
    pub text: Option<String>,
    /// The file's keys that the command line gives, which win, with the file's arguments
    /// for each; a part of a key the command line overrides is named apart (`env.NAME`,
    /// `rlimit.NAME`) with its own argument.
    pub overridden: Vec<(String, Vec<OsString>)>,
}

impl Merged {
    /// A command line as clap parsed it, its config file not applied yet.
    pub fn of(cli: Cli, matches: ArgMatches) -> Merged {
        Merged {
            cli,
            matches,
            text: None,
            overridden: Vec::new(),
        }
    }
}

/// `herd run`'s command line `argv` (program name first), parsed, with its `--config` file
/// applied: a one-line error (naming the file, and the line and key where there is one) if
/// the two do not make a valid `herd run`.
pub fn parse(argv: &[OsString]) -> Result<Merged, String> {
    parse_with(argv, None)
}

/// [`parse`], with `text` as the config file's contents if given (what a re-exec's workers
/// run) rather than what the file holds now.
pub fn parse_with(argv: &[OsString], text: Option<&str>) -> Result<Merged, String> {
    let matches = Cli::command()
        .try_get_matches_from(argv)
        .map_err(|e| crate::exit::usage_error(&e, &argv[1.min(argv.len())..]))?;
    let cli = Cli::from_arg_matches(&matches).map_err(|e| crate::exit::one_line(&e.to_string()))?;
    let parsed = Merged::of(cli, matches);
    apply_with(parsed, argv, text)
}

/// `parsed` (from `argv`, program name first) with its `--config` file applied, if it is a
/// `herd run` with one; else `parsed` as it is.
pub fn apply(parsed: Merged, argv: &[OsString]) -> Result<Merged, String> {
    apply_with(parsed, argv, None)
}

/// [`apply`], with `text` as the file's contents if given (what a re-exec's workers run)
/// rather than what the file holds now.
pub fn apply_with(parsed: Merged, argv: &[OsString], text: Option<&str>) -> Result<Merged, String> {
    let path = match &parsed.cli.command {
        Command::Run(args) => match &args.config {
            Some(path) => path.clone(),
            None => return Ok(parsed),
        },
        _ => return Ok(parsed),
    };
    let text = match text {
        Some(text) => text.to_string(),
        None => ConfigFile::read_text(&path)?,
    };
    let file = ConfigFile::parse(&path.display().to_string(), &text)?;
    let run = parsed.matches.subcommand_matches("run");
    let given = |id: &str| {
        [Some(&parsed.matches), run]
            .into_iter()
            .flatten()
            .filter(|m| m.try_contains_id(id).unwrap_or(false))
            .any(|m| m.value_source(id) == Some(ValueSource::CommandLine))
    };
    let limits = match &parsed.cli.command {
        Command::Run(args) => limits_given(args),
        _ => Vec::new(),
    };
    let merged = merge(argv, &file, given, &limits);
    let env_given: Vec<OsString> = run
        .filter(|m| m.value_source("env") == Some(ValueSource::CommandLine))
        .and_then(|m| m.get_many::<(OsString, OsString)>("env"))
        .map_or_else(Vec::new, |pairs| {
            pairs.map(|(name, _)| name.clone()).collect()
        });
    let overridden = overridden(&file, given, &env_given, &limits);
    let matches = Cli::command()
        .try_get_matches_from(&merged)
        .map_err(|e| format!("{}: {}", file.name, crate::exit::one_line(&e.to_string())))?;
    let mut cli = Cli::from_arg_matches(&matches)
        .map_err(|e| format!("{}: {}", file.name, crate::exit::one_line(&e.to_string())))?;
    if let Command::Run(args) = &mut cli.command {
        complete(args, &file.name)?;
        // Remembered for `herd upgrade --reload-config`, wherever herd's directory is then.
        args.config = Some(absolute(&path));
    }
    Ok(Merged {
        cli,
        matches,
        text: Some(text),
        overridden,
    })
}

/// The keys of `file` that the command line gives (`given`, by argument id), with the file's
/// arguments for each: `command` for a COMMAND after `--`, and for `env` (to which the
/// command line's `--env` adds) each variable the command line's `--env` also sets
/// (`env_given`, by name), as `env.NAME` with the file's `--env=NAME=value`; and the file's
/// settings of the resource limits the command line sets (`limits`): `nofile`, or
/// `rlimit.NAME` with the file's `--rlimit=NAME=...`.
fn overridden(
    file: &ConfigFile,
    given: impl Fn(&str) -> bool,
    env_given: &[OsString],
    limits: &[String],
) -> Vec<(String, Vec<OsString>)> {
    let ids = option_ids();
    let mut keys = Vec::new();
    for e in &file.entries {
        match e.key.as_str() {
            ENV_KEY => keys.extend(
                (e.args.iter())
                    .filter_map(|arg| Some((env_name(arg)?, arg)))
                    .filter(|(name, _)| env_given.iter().any(|given| given == name))
                    .map(|(name, arg)| (env_key(&name), vec![arg.clone()])),
            ),
            COMMAND_KEY if given("command") => keys.push((e.key.clone(), e.args.clone())),
            COMMAND_KEY => {}
            key if key != RLIMIT_KEY && ids(key).is_some_and(|id| given(&id)) => {
                keys.push((e.key.clone(), e.args.clone()));
            }
            _ => keys.extend(
                (e.args.iter())
                    .filter_map(|arg| Some((limit_name(arg)?, arg)))
                    .filter(|(name, _)| limits.contains(name))
                    .map(|(name, arg)| match e.key.as_str() {
                        RLIMIT_KEY => (limit_key(&name), vec![arg.clone()]),
                        _ => (e.key.clone(), vec![arg.clone()]),
                    }),
            ),
        }
    }
    keys
}

/// The resource limits the command line's `args` set, by name: `nofile` for `--nofile` and
/// NAME for `--rlimit NAME=...`.
fn limits_given(args: &RunArgs) -> Vec<String> {
    let mut names: Vec<String> = args.rlimit.iter().map(|r| r.name().to_string()).collect();
    if args.nofile.is_some() {
        names.push(NOFILE.to_string());
    }
    names
}

/// The resource `--nofile` limits, by the name `--rlimit` gives it.
const NOFILE: &str = "nofile";
/// The key of the file's `--rlimit` settings.
pub(super) const RLIMIT_KEY: &str = "rlimit";

/// The resource limit a file's argument sets: `nofile` for `--nofile=N`, NAME for
/// `--rlimit=NAME=...`.
pub(super) fn limit_name(arg: &OsString) -> Option<String> {
    let text = arg.to_str()?;
    match text.strip_prefix("--rlimit=") {
        Some(limit) => limit.split('=').next().map(str::to_string),
        None => text.starts_with("--nofile=").then(|| NOFILE.to_string()),
    }
}

/// How the file's `rlimit` setting of `name` is named when the command line overrides it
/// alone: `rlimit.NAME`.
pub(super) fn limit_key(name: &str) -> String {
    format!("{RLIMIT_KEY}.{name}")
}

/// Whether a file's argument (`--nofile=N`, `--rlimit=NAME=...`) sets one of `limits`.
fn sets_limit_given(arg: &OsString, limits: &[String]) -> bool {
    limit_name(arg).is_some_and(|name| limits.contains(&name))
}

/// The variable a file's `env` argument (`--env=NAME=value`) sets.
pub(super) fn env_name(arg: &OsString) -> Option<OsString> {
    let pair = arg.to_str()?.strip_prefix(&format!("--{ENV_KEY}="))?;
    Some(pair.split_once('=').map_or(pair, |(name, _)| name).into())
}

/// How an overridden variable `name` of the file's `env` is named: `env.NAME`, as TOML would
/// write its key.
pub(super) fn env_key(name: &OsString) -> String {
    format!("{ENV_KEY}.{}", name.to_string_lossy())
}

/// The argument id of each option a file may set, by its key.
fn option_ids() -> impl Fn(&str) -> Option<String> {
    let command = Cli::command();
    let ids: Vec<(String, String)> = (super::run_options(&command).iter())
        .filter_map(|a| Some((a.get_long()?.to_string(), a.get_id().to_string())))
        .collect();
    move |key| {
        ids.iter()
            .find(|(long, _)| long == key)
            .map(|(_, id)| id.clone())
    }
}

/// `argv` with the file's arguments after `run`: each key the command line does not give
/// (`given`, by argument id), every `env`, each `rlimit`, but for the resource `limits` the
/// command line sets, and the file's command if the command line has none.
pub fn merge(
    argv: &[OsString],
    file: &ConfigFile,
    given: impl Fn(&str) -> bool,
    limits: &[String],
) -> Vec<OsString> {
    let id_of = option_ids();
    let from_file = file
        .entries
        .iter()
        .filter(|e| e.key != COMMAND_KEY)
        .filter(|e| {
            [ENV_KEY, RLIMIT_KEY].contains(&e.key.as_str())
                || !id_of(&e.key).is_some_and(|id| given(&id))
        })
        .flat_map(|e| e.args.iter())
        .filter(|arg| !sets_limit_given(arg, limits))
        .cloned();
    let at = subcommand_index(argv).map_or(argv.len(), |i| i + 1);
    let mut merged: Vec<OsString> = argv[..at].to_vec();
    merged.extend(from_file);
    merged.extend(argv[at..].iter().cloned());
    if let (false, Some(entry)) = (given("command"), file.get(COMMAND_KEY)) {
        if merged.last().is_none_or(|last| last != "--") {
            merged.push("--".into());
        }
        merged.extend(entry.args.iter().cloned());
    }
    merged
}

/// What neither the file nor the command line gave, and `herd run` needs.
fn complete(args: &crate::cli::RunArgs, file: &str) -> Result<(), String> {
    if args.command.is_empty() {
        return Err(format!(
            "{file}: no worker command: set command = [\"PROGRAM\", \"ARG\", ...] in the file \
             or give it after --"
        ));
    }
    if args.binds.is_empty() && args.takeover.is_none() {
        return Err(format!(
            "{file}: no socket to share: set bind = [\"[NAME=]ADDRESS\", ...] in the file or \
             give --bind (or --takeover)"
        ));
    }
    Ok(())
}

/// The index in `argv` (program name first) of the subcommand: the first word that is not a
/// global option or its value.
fn subcommand_index(argv: &[OsString]) -> Option<usize> {
    let command = Cli::command();
    let takes_value: Vec<String> = command
        .get_arguments()
        .filter(|a| a.get_action().takes_values())
        .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
        .collect();
    let mut i = 1;
    while i < argv.len() {
        let word = argv[i].to_string_lossy();
        if word == "--" {
            return None;
        }
        if takes_value.iter().any(|t| *t == word) {
            i += 2;
            continue;
        }
        if !word.starts_with('-') {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// `path` from herd's directory now.
fn absolute(path: &Path) -> PathBuf {
    std::env::current_dir().map_or_else(|_| path.to_path_buf(), |dir| dir.join(path))
}
