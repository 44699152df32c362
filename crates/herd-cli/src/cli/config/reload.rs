//! `herd upgrade --reload-config`: the config file read again, with the same command line,
//! and compared with what herd runs. What only a new socket (or a new herd) could change is
//! refused, by name and with the reason; the rest reaches the next generation.

use std::ffi::OsString;

use clap::{CommandFactory, FromArgMatches};

use super::merge::{env_key, env_name, limit_key, limit_name, parse_with, Merged, RLIMIT_KEY};
use super::{ConfigFile, ENV_KEY};
use crate::cli::{Cli, Command, RunArgs, Workers};
use crate::worker_env::Compat;

/// What herd was started with, to read its config file again.
#[derive(Debug)]
pub struct Reloader {
    /// herd's command line, program name first.
    argv: Vec<OsString>,
    /// What the command line and the file say for the workers that run now.
    last: Cli,
    /// The file's contents the workers run now.
    text: String,
    /// What the last [`Reloader::reread`] read, until [`Reloader::settle`].
    pending: Option<(Cli, String)>,
    /// The file the last [`Reloader::reread`] read, for placing errors about what it says.
    read: Option<Read>,
}

/// A config file as a [`Reloader::reread`] read it: its name, contents, and the keys herd's
/// command line gives (which errors are not placed in the file for).
#[derive(Debug)]
struct Read {
    file: String,
    text: String,
    overridden: Vec<String>,
}

/// The config file read again.
#[derive(Debug)]
pub struct Reread {
    /// `herd run`'s options as they are now.
    pub args: RunArgs,
    /// `--workers`, if the file changed it (a `herd scale` since then stays otherwise).
    pub workers: Option<Workers>,
    /// The keys the file changed that herd's command line gives: its values stay.
    pub overridden: Vec<String>,
}

/// What cannot change without new sockets or a new herd: the key and a reader of its value.
type Fixed = (&'static str, fn(&Cli) -> String);

/// The settings a reload cannot change, with why.
pub(super) const FIXED: &[(&str, &[Fixed])] = &[
    (
        "which needs new sockets: restart herd, or start a new herd with --takeover",
        &[
            ("bind", |c| {
                // As read, not as written: `tcp://127.0.0.1:0` is `127.0.0.1:0`.
                let read = |r: &RunArgs| -> Vec<String> {
                    let spec = |b: &crate::spec::BindSpec| {
                        // `unix:dir/./a.sock` is `unix:dir/a.sock`.
                        let address = match &b.address {
                            crate::spec::Address::UnixPath(path) => {
                                crate::spec::Address::UnixPath(path.components().collect())
                            }
                            other => other.clone(),
                        };
                        format!("{:?}", (&b.name, address, &b.options))
                    };
                    r.binds.iter().map(spec).collect()
                };
                format!("{:?}", run(c).map(read))
            }),
            ("shm", |c| format!("{:?}", run(c).map(|r| &r.shm))),
            ("balance", |c| format!("{:?}", run(c).map(|r| r.balance))),
            ("fdstore", |c| format!("{:?}", run(c).map(|r| r.fdstore))),
            ("metrics", |c| format!("{:?}", run(c).map(|r| &r.metrics))),
            ("health", |c| format!("{:?}", run(c).map(|r| &r.health))),
            ("takeover", |c| format!("{:?}", run(c).map(|r| &r.takeover))),
        ],
    ),
    (
        "which herd's control socket was set up with: restart herd, or start a new herd \
         with --takeover",
        &[
            ("name", |c| c.name.clone()),
            ("control", |c| {
                // `dir/./c.sock` is `dir/c.sock`.
                let path = |p: &std::path::PathBuf| p.components().collect::<std::path::PathBuf>();
                format!("{:?}", c.control.as_ref().map(path))
            }),
            ("control-owner", |c| format!("{:?}", c.control_owner)),
            ("control-allow-uid", |c| {
                format!("{:?}", run(c).map(|r| &r.control_allow_uid))
            }),
            ("control-allow-gid", |c| {
                format!("{:?}", run(c).map(|r| &r.control_allow_gid))
            }),
            ("control-allow-user", |c| {
                format!("{:?}", run(c).map(|r| &r.control_allow_user))
            }),
        ],
    ),
    (
        "which herd's own log, and its readers of the workers' output, were set up with: \
         restart herd to change it",
        &[
            ("log-level", |c| format!("{:?}", c.log_level)),
            ("log-format", |c| format!("{:?}", c.log_format)),
            ("worker-output", |c| {
                format!("{:?}", run(c).map(|r| r.worker_output))
            }),
        ],
    ),
    (
        "which herd's health probes and stops go by: restart herd to change it",
        &[
            ("ready-min", |c| {
                format!("{:?}", run(c).map(|r| r.ready_min))
            }),
            ("drain-delay", |c| {
                format!("{:?}", run(c).map(|r| r.drain_delay))
            }),
        ],
    ),
    (
        "which herd checked against its own priority and privileges at start-up: restart \
         herd to change it",
        &[("starting-nice", |c| {
            format!("{:?}", run(c).map(|r| r.starting_nice))
        })],
    ),
    (
        "whose acknowledgement socket (EINHORN_SOCK_PATH) herd binds, or not, as it starts: \
         restart herd, or start a new herd with --takeover",
        &[("compat \"einhorn\"", |c| {
            format!("{:?}", run(c).map(|r| r.compat.contains(&Compat::Einhorn)))
        })],
    ),
    (
        "whose notify socket was made for the workers' user (theirs, when they run as \
         another): restart herd to change it",
        &[("user", |c| format!("{:?}", run(c).map(|r| r.user.clone())))],
    ),
];

impl Reloader {
    /// Reads herd's command line `argv` (program name first) and its config file, whose
    /// contents are `text` if given (what a re-exec's workers run), else read now: the
    /// baseline of later reloads.
    pub fn new(argv: Vec<OsString>, text: Option<&str>) -> Result<Reloader, String> {
        let merged = read(&argv, text)?;
        Ok(Reloader {
            argv,
            last: merged.cli,
            text: merged.text.unwrap_or_default(),
            pending: None,
            read: None,
        })
    }

    /// The config file herd was started with.
    pub fn file(&self) -> Option<&std::path::Path> {
        run(&self.last).and_then(|r| r.config.as_deref())
    }

    /// The config file's contents that the workers run, for a re-exec to keep.
    pub fn in_force(&self) -> &str {
        &self.text
    }

    /// Reads the config file again: what `herd run` would run now, or why it cannot be
    /// applied (the file cannot be read or is invalid, sets a variable herd sets, or changes
    /// what needs new sockets), as one line. It becomes the baseline once [`Reloader::settle`]d.
    pub fn reread(&mut self) -> Result<Reread, String> {
        self.pending = None;
        self.read = None;
        // A file someone else could have written names a command herd would run as its user:
        // judged before it is read, so that none of it is read.
        let started_with = self.file().map(std::path::Path::to_path_buf);
        if let Some(path) = &started_with {
            if let Some(why) = super::others_could_write(path) {
                let file = path.display();
                return Err(format!("{file}: cannot reload: {why}; nothing was changed"));
            }
            // A running herd reads the path it started with: `--config` cannot be given again.
            if let Err(e) = std::fs::metadata(path) {
                let at = std::env::current_dir().map_or(path.clone(), |cwd| cwd.join(path));
                let why = match e.kind() {
                    std::io::ErrorKind::NotFound => "no such file",
                    std::io::ErrorKind::PermissionDenied => "permission denied",
                    _ => "",
                };
                if !why.is_empty() {
                    return Err(format!(
                        "{}: cannot reload: {why}; a running herd reads the file it started \
                         with: put it back there (readable by herd's user), then reload again; \
                         nothing was changed",
                        at.display()
                    ));
                }
            }
        }
        let merged = read(&self.argv, None)?;
        let file = match run(&merged.cli).and_then(|r| r.config.as_ref()) {
            Some(path) => path.display().to_string(),
            None => return Err("herd was not started with --config: no file to re-read".into()),
        };
        self.read = Some(Read {
            file: file.clone(),
            text: merged.text.clone().unwrap_or_default(),
            overridden: merged
                .overridden
                .iter()
                .map(|(key, _)| key.clone())
                .collect(),
        });
        // What the file says wrong is said first (`compat = ["einhorn", "einhorn"]` is given
        // twice, whatever it changes).
        if let Some(args) = run(&merged.cli) {
            crate::worker_env::check_env(args).map_err(|why| self.place(why))?;
        }
        let changed = fixed_changes(&self.last, &merged.cli);
        if !changed.is_empty() {
            return Err(format!(
                "{file}: cannot reload: {}; nothing was changed",
                changed.join("; ")
            ));
        }
        let workers_before = run(&self.last).and_then(|r| r.workers);
        let Some(args) = run(&merged.cli).cloned() else {
            return Err(format!("{file}: not a herd run"));
        };
        let workers = args.workers.filter(|w| Some(*w) != workers_before);
        let overridden = self.changed(&merged.overridden);
        self.pending = Some((merged.cli, merged.text.unwrap_or_default()));
        Ok(Reread {
            args,
            workers,
            overridden,
        })
    }

    /// The keys of `overridden` (the file's keys the command line gives, with the file's
    /// arguments now) whose value the file changed since the workers' file: a change the
    /// command line keeps from being applied.
    fn changed(&self, overridden: &[(String, Vec<OsString>)]) -> Vec<String> {
        if overridden.is_empty() {
            return Vec::new();
        }
        let before = ConfigFile::parse("", &self.text).ok();
        let was = |key: &str| -> Option<Vec<OsString>> {
            let before = before.as_ref()?;
            if let Some(entry) = before.get(key) {
                return Some(entry.args.clone());
            }
            // A limit of `rlimit`, `rlimit.NAME`: its argument in the file's `rlimit` then.
            let limit = (before.get(RLIMIT_KEY).into_iter())
                .flat_map(|e| e.args.iter())
                .find(|arg| limit_name(arg).is_some_and(|n| limit_key(&n) == key));
            if let Some(arg) = limit {
                return Some(vec![arg.clone()]);
            }
            // A variable of `env`, `env.NAME`: its argument in the file's `env` then.
            let env = before.get(ENV_KEY)?;
            let arg =
                (env.args.iter()).find(|arg| env_name(arg).is_some_and(|n| env_key(&n) == key));
            Some(vec![arg?.clone()])
        };
        (overridden.iter())
            .filter(|(key, args)| !was(key).is_some_and(|was| same_value(key, &was, args)))
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// `why`, an error about what the last [`Reloader::reread`] read (a worker command that
    /// cannot start, a variable herd sets), placed in the file as `herd run` places it
    /// (`FILE:LINE: KEY: why`), or at least naming the file.
    pub fn place(&self, why: String) -> String {
        let Some(read) = &self.read else {
            return why;
        };
        (ConfigFile::parse(&read.file, &read.text).ok())
            .and_then(|file| file.locate(&why, &read.overridden))
            .unwrap_or_else(|| format!("{}: {why}", read.file))
    }

    /// What the last [`Reloader::reread`] read is what the workers run, if `applied`; else it
    /// is forgotten.
    pub fn settle(&mut self, applied: bool) {
        if let (Some((cli, text)), true) = (self.pending.take(), applied) {
            self.last = cli;
            self.text = text;
        }
    }
}

/// Whether the file's arguments `a` and `b` for `key` say the same: what the option's parser
/// makes of them, not their text (`grace = "3s"` and `grace = "3000ms"` are one value). The
/// words of `command` are compared as they are; arguments that do not parse alone, as text.
fn same_value(key: &str, a: &[OsString], b: &[OsString]) -> bool {
    if a == b {
        return true;
    }
    if key == super::COMMAND_KEY {
        return false;
    }
    // `herd run --config FILE` with this key's arguments alone: the file, never read here,
    // stands for what else `herd run` requires.
    let parsed = |args: &[OsString]| {
        let argv = ["herd", "run", "--config", "herd.toml"].map(OsString::from);
        let argv = argv.into_iter().chain(args.iter().cloned());
        let matches = Cli::command().try_get_matches_from(argv).ok()?;
        Some(format!("{:?}", Cli::from_arg_matches(&matches).ok()?))
    };
    parsed(a).is_some_and(|a| Some(a) == parsed(b))
}

/// The command line and its file (`text`, if given), parsed and checked for what the
/// platform refuses.
fn read(argv: &[OsString], text: Option<&str>) -> Result<Merged, String> {
    platform::refuse_unavailable(parse_with(argv, text)?)
}

/// What changed between `old` and `new` that a reload cannot change, as "KEY changed, why".
pub fn fixed_changes(old: &Cli, new: &Cli) -> Vec<String> {
    let mut changes = Vec::new();
    for (why, keys) in FIXED {
        let changed: Vec<&str> = keys
            .iter()
            .filter(|(_, value)| value(old) != value(new))
            .map(|(key, _)| *key)
            .collect();
        if !changed.is_empty() {
            changes.push(format!("{} changed, {why}", changed.join(", ")));
        }
    }
    changes
}

fn run(cli: &Cli) -> Option<&RunArgs> {
    match &cli.command {
        Command::Run(args) => Some(args),
        _ => None,
    }
}

/// What a platform refuses in a command line.
#[cfg(unix)]
mod platform {
    use super::Merged;

    /// Unix takes every option.
    pub fn refuse_unavailable(merged: Merged) -> Result<Merged, String> {
        Ok(merged)
    }
}

/// What a platform refuses in a command line.
#[cfg(windows)]
mod platform {
    use super::Merged;

    /// What Windows refuses (see [`crate::cli::unavailable`]), in one line.
    pub fn refuse_unavailable(merged: Merged) -> Result<Merged, String> {
        let cli = crate::cli::unavailable::on_windows(merged.cli, &merged.matches)?;
        Ok(Merged { cli, ..merged })
    }
}
