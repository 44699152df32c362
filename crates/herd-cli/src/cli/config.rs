//! `herd run --config FILE`: `herd run`'s options from a TOML file. Keys are the long option
//! names (`workers = 4`, `bind = ["http=:8080"]`, `grace = "30s"`, `clear-env = true`), the
//! worker command is `command = [...]` and its environment an `[env]` table.
//!
//! The file is turned into command-line arguments, which go through clap's own parsers and
//! checks: one source of truth. Each value is first checked alone, so that its error names the
//! file, the line and the key (`herd.toml:7: workers: ...`). Options given on the command line
//! override the file's ([`merge`]).

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::Path;

use clap::{Arg, ArgAction, CommandFactory};
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::Cli;

mod env;
mod file;
mod merge;
mod place;
mod reload;
mod writers;

pub use merge::{apply, apply_with, merge, parse, parse_with, Merged};
pub use reload::{fixed_changes, Reloader, Reread};
pub use writers::others_could_write;

/// The key of the worker command.
pub const COMMAND_KEY: &str = "command";
/// The key of the workers' environment, a table (or an array of `KEY=VALUE`).
pub const ENV_KEY: &str = "env";

/// A config file, read and checked key by key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFile {
    /// The file as the user named it, for messages.
    pub name: String,
    /// Its keys, in the order they appear.
    pub entries: Vec<Entry>,
}

/// One key of the file, as `herd run` arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key: a long option name, `command` or `env`.
    pub key: String,
    /// Its line in the file (from 1).
    pub line: usize,
    /// The arguments it stands for (`--workers=4`); for `command`, the command's words.
    pub args: Vec<OsString>,
    /// The line of each of `args`: an array's element's, an `[env]` variable's (else the
    /// key's).
    pub lines: Vec<usize>,
}

impl ConfigFile {
    /// The contents of the file at `path`: a regular file of at most 16 MiB.
    pub fn read_text(path: &Path) -> Result<String, String> {
        file::read(path)
    }

    /// Checks `text`, the contents of the file `name`: every key is an option of `herd run`
    /// and every value one its option takes.
    pub fn parse(name: &str, text: &str) -> Result<ConfigFile, String> {
        let line_of = LineIndex::new(text);
        let line_of = |offset| line_of.line(offset);
        let table = DeTable::parse(text).map_err(|e| {
            let line = e.span().map_or(1, |span| line_of(span.start));
            // toml says no more than "duplicate key": which one, and what to do.
            let twice = (e.message() == "duplicate key")
                .then(|| e.span().and_then(|span| text.get(span)))
                .flatten();
            match twice {
                Some(key) => format!(
                    "{name}:{line}: {} is given twice: keep one of the two",
                    shown(&one_line(key.trim()))
                ),
                None => format!("{name}:{line}: {}", one_line(e.message())),
            }
        })?;
        let keys = in_written_order(table.get_ref());
        let command = Cli::command();
        let options = run_options(&command);
        let mut entries = Vec::new();
        for (key, value) in keys {
            let line = line_of(key.span().start);
            let at = |(offset, message): (Option<usize>, String)| {
                let line = offset.map_or(line, line_of);
                format!("{name}:{line}: {}: {message}", shown(key.get_ref()))
            };
            no_nul(value).map_err(at)?;
            let header = (text.get(..key.span().start))
                .and_then(|before| before.rsplit('\n').next())
                .is_some_and(|line| {
                    let line =
                        line.trim_start_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
                    line.starts_with('[')
                });
            let args = entry_args(key.get_ref(), value, &options, header).map_err(at)?;
            let lines = match place::value_offsets(value.get_ref()) {
                offsets if offsets.len() == args.len() => {
                    offsets.into_iter().map(line_of).collect()
                }
                _ => vec![line; args.len()],
            };
            entries.push(Entry {
                key: key.get_ref().to_string(),
                line,
                args,
                lines,
            });
        }
        Ok(ConfigFile {
            name: name.to_string(),
            entries,
        })
    }

    /// The entry for `key`, if the file has it.
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key == key)
    }
}

/// The options a file may set: `herd run`'s and the global ones, by long name (without
/// `--config` itself, `--help` and `--version`).
pub fn run_options(command: &clap::Command) -> Vec<Arg> {
    let run = command.find_subcommand("run").into_iter();
    let globals = command.get_arguments();
    run.flat_map(|run| run.get_arguments())
        .chain(globals)
        .filter(|arg| {
            let long = arg.get_long().unwrap_or_default();
            !long.is_empty() && !["config", "help", "version"].contains(&long)
        })
        .cloned()
        .collect()
}

/// The keys a file may have: the options' long names, `command` and `env`.
pub fn keys(options: &[Arg]) -> Vec<String> {
    let mut keys: Vec<String> = options
        .iter()
        .filter_map(|arg| arg.get_long().map(str::to_string))
        .collect();
    keys.push(COMMAND_KEY.to_string());
    keys.sort();
    keys.dedup();
    keys
}

/// The arguments one key stands for, each value checked by its option's own parser; or why
/// not (and where, if not at the key). `header`: the key is a table's header (`[env]`), which
/// takes every key after it.
fn entry_args(
    key: &str,
    value: &Spanned<DeValue>,
    options: &[Arg],
    header: bool,
) -> Result<Vec<OsString>, (Option<usize>, String)> {
    if key == ENV_KEY {
        if let Some(arg) = options.iter().find(|a| a.get_long() == Some(key)) {
            let herd_keys = if header { keys(options) } else { Vec::new() };
            return env::env_args(value.get_ref(), arg, &herd_keys);
        }
    }
    value_args(key, value, options)
}

/// [`entry_args`] for every key but `env`.
fn value_args(
    key: &str,
    value: &Spanned<DeValue>,
    options: &[Arg],
) -> Result<Vec<OsString>, (Option<usize>, String)> {
    let at_key = |message| (None, message);
    if key == COMMAND_KEY {
        return command_words(value.get_ref()).map_err(at_key);
    }
    let Some(arg) = options.iter().find(|a| a.get_long() == Some(key)) else {
        return Err(at_key(unknown_key(key, options)));
    };
    let value = value.get_ref();
    if matches!(arg.get_action(), ArgAction::SetTrue) {
        return match value {
            DeValue::Boolean(true) => Ok(vec![format!("--{key}").into()]),
            DeValue::Boolean(false) => Ok(Vec::new()),
            other => Err(at_key(format!(
                "{} is not a flag's value; write {key} = true or {key} = false",
                a_kind(other)
            ))),
        };
    }
    let values: Vec<&Spanned<DeValue>> = match value {
        DeValue::Array(items) if repeatable(arg) => items.iter().collect(),
        DeValue::Array(_) => {
            return Err(at_key("takes one value, not an array".to_string()));
        }
        _ => return one_arg(key, value, arg).map(|a| vec![a]).map_err(at_key),
    };
    // An element's error at its own line, in an array written over several.
    values
        .into_iter()
        .map(|v| one_arg(key, v.get_ref(), arg).map_err(|m| (Some(v.span().start), m)))
        .collect()
}

/// `--KEY=VALUE` for one value, checked by the option's parser.
fn one_arg(key: &str, value: &DeValue, arg: &Arg) -> Result<OsString, String> {
    let text = scalar(key, value, repeatable(arg))?;
    check_value(&text, arg)?;
    Ok(format!("--{key}={text}").into())
}

/// Whether an option may be given more than once (it takes an array in the file).
fn repeatable(arg: &Arg) -> bool {
    matches!(arg.get_action(), ArgAction::Append)
}

/// A string, number or boolean as the command line would write it.
fn scalar(key: &str, value: &DeValue, repeatable: bool) -> Result<String, String> {
    match value {
        DeValue::String(s) => Ok(s.to_string()),
        // 0o027 is an octal umask: its digits, as the option reads them.
        DeValue::Integer(n) if n.radix() == 8 && key == "umask" => Ok(n.as_str().to_string()),
        // 0x1f would become 31, read as the octal 031: not what was written.
        DeValue::Integer(n) if n.radix() != 10 && key == "umask" => Err(format!(
            "a umask is octal: write umask = \"027\" or umask = 0o027, not base {}",
            n.radix()
        )),
        DeValue::Integer(n) => i128::from_str_radix(n.as_str(), n.radix())
            .map(|n| n.to_string())
            .map_err(|_| format!("'{}' is not a number", n.as_str())),
        DeValue::Float(f) => Ok(f.as_str().to_string()),
        DeValue::Boolean(b) => Ok(b.to_string()),
        other => Err(format!(
            "{} is not a value of --{key}; write a string{}",
            a_kind(other),
            if repeatable {
                " or an array of strings"
            } else {
                ""
            }
        )),
    }
}

/// Runs `text` through the value parser `arg` has on the command line.
fn check_value(text: &str, arg: &Arg) -> Result<(), String> {
    // The option alone, without its relations to others, which the whole command line checks.
    let alone = Arg::new("value")
        .value_parser(arg.get_value_parser().clone())
        .required(true)
        .allow_hyphen_values(true);
    let command = clap::Command::new("herd").no_binary_name(true).arg(alone);
    // After `--`, a value that looks like an option (`--help`, `--`) is a value all the same.
    match command.try_get_matches_from(["--", text]) {
        Ok(_) => Ok(()),
        Err(e) => Err(match std::error::Error::source(&e) {
            Some(why) => why.to_string(),
            None => {
                let values: Vec<String> = arg
                    .get_possible_values()
                    .iter()
                    .map(|v| v.get_name().to_string())
                    .collect();
                if values.is_empty() {
                    // Only an empty value fails without a reason (clap: a value is required).
                    "the value is empty: give one, or remove the key".to_string()
                } else {
                    format!("'{text}' is not one of: {}", values.join(", "))
                }
            }
        }),
    }
}

/// Refuses a NUL (`\u0000`) in any string or key of `value`, and says where: no option, word of
/// a command, variable or path can hold one (the kernel takes them as C strings), so the file
/// would pass `herd check` and fail `herd run`, or an upgrade, later.
fn no_nul(value: &Spanned<DeValue>) -> Result<(), (Option<usize>, String)> {
    let refused = || {
        Err((
            Some(value.span().start),
            "a string cannot contain a NUL byte (\\u0000); remove it".to_string(),
        ))
    };
    match value.get_ref() {
        DeValue::String(s) if s.contains('\0') => refused(),
        DeValue::Array(items) => items.iter().try_for_each(no_nul),
        DeValue::Table(table) => table.iter().try_for_each(|(key, value)| {
            if key.get_ref().contains('\0') {
                return Err((
                    Some(key.span().start),
                    "a key cannot contain a NUL byte (\\u0000); remove it".to_string(),
                ));
            }
            no_nul(value)
        }),
        _ => Ok(()),
    }
}

/// `command = ["python3", "app.py"]`: the program and its arguments.
fn command_words(value: &DeValue) -> Result<Vec<OsString>, String> {
    let hint = "write the program and its arguments as an array of strings, e.g. \
                command = [\"python3\", \"app.py\"]";
    let items = match value {
        DeValue::Array(items) if items.first().is_some_and(is_empty_word) => {
            return Err(format!("the program's name is empty; {hint}"))
        }
        DeValue::Array(items) if !items.is_empty() => items,
        DeValue::Array(_) => return Err(format!("the command is empty; {hint}")),
        other => return Err(format!("{} is not a command; {hint}", a_kind(other))),
    };
    items
        .iter()
        .map(|item| match item.get_ref() {
            DeValue::String(s) => Ok(OsString::from(s.as_ref())),
            other => Err(format!(
                "{} is not a word of a command; {hint}",
                a_kind(other)
            )),
        })
        .collect()
}

/// Whether `item` is the empty string.
fn is_empty_word(item: &Spanned<DeValue>) -> bool {
    matches!(item.get_ref(), DeValue::String(s) if s.is_empty())
}

/// Why `key` is not one: the nearest key, if one is near.
fn unknown_key(key: &str, options: &[Arg]) -> String {
    // Options of herd run all the same: "unknown" would send the user looking for a typo.
    if ["config", "help", "version"].contains(&key) {
        return format!("--{key} goes on the command line only, not in a config file; remove it");
    }
    let keys = keys(options);
    let length = key.chars().count();
    let near = |k: &str| (k.len() / 3).max(2);
    let nearest = keys
        .iter()
        // The distance is at least the difference in length: a long key (a whole file of one)
        // is compared with none, which would take its length times each key's.
        .filter(|k| length.abs_diff(k.chars().count()) <= near(k))
        .map(|k| (distance(key, k), k))
        .filter(|(d, k)| *d <= near(k))
        .min_by_key(|(d, _)| *d);
    let mut message = "unknown key".to_string();
    match nearest {
        Some((_, k)) => {
            let _ = write!(message, "; did you mean '{k}'?");
        }
        None => message.push_str(
            "; the keys are herd run's long options (see examples/herd.toml), command and env",
        ),
    }
    message
}

/// The longest key a message quotes whole, in characters.
const SHOWN_KEY: usize = 64;

/// `key` as a message quotes it: its first [`SHOWN_KEY`] characters, then how long it is.
fn shown(key: &str) -> std::borrow::Cow<'_, str> {
    match key.char_indices().nth(SHOWN_KEY) {
        None => key.into(),
        Some((end, _)) => {
            format!("'{}...' ({} characters)", &key[..end], key.chars().count()).into()
        }
    }
}

/// The edit distance between `a` and `b` (Levenshtein), for suggestions.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substituted = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substituted.min(previous + 1).min(row[j] + 1);
        }
    }
    row[b.len()]
}

/// The line (from 1) of byte `offset` in `text`.
/// A table's keys and values in the order the file writes them (its map keeps another), as
/// everything that numbers them by line takes them.
fn in_written_order<'t, 'i>(
    table: &'t DeTable<'i>,
) -> Vec<(
    &'t Spanned<toml::de::DeString<'i>>,
    &'t Spanned<DeValue<'i>>,
)> {
    let mut pairs: Vec<_> = table.iter().collect();
    pairs.sort_by_key(|(key, _)| key.span().start);
    pairs
}

/// Where a text's lines start, to tell the line of an offset in it without counting from the
/// start each time (a file of thousands of keys would take quadratic time).
struct LineIndex {
    /// The offset of each `\n`, in order.
    newlines: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> LineIndex {
        let newlines = (text.bytes().enumerate())
            .filter(|&(_, b)| b == b'\n')
            .map(|(i, _)| i)
            .collect();
        LineIndex { newlines }
    }

    /// The line (from 1) of the byte at `offset`.
    fn line(&self, offset: usize) -> usize {
        self.newlines.partition_point(|&newline| newline < offset) + 1
    }
}

/// A parser message on one line.
fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The kind of a TOML value, with its article: "an integer", "a string".
pub(super) fn a_kind(value: &DeValue<'_>) -> String {
    let kind = value.type_str();
    let article = if kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {kind}")
}

#[cfg(test)]
mod tests;
