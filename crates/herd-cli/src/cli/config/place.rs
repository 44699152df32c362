//! Where in a config file an error about the merged options goes: the line of the key it is
//! about, or of the one value of that key it names (an array's element, an `[env]` variable).

use std::ffi::OsString;

use toml::de::DeValue;

use super::{merge, ConfigFile, Entry, COMMAND_KEY, ENV_KEY};

impl ConfigFile {
    /// `why`, an error about the options once merged (`--ready-min 3: the pool has at most 2
    /// workers`), placed in the file (`herd.toml:4: ready-min: ...`) when the option it is
    /// about, the `--KEY` it starts with (not one it quotes further on, which may be any
    /// text), or the worker command (`about_command`), is one the file gives and the
    /// command line does not override (`overridden`); at the line of the value it names
    /// (`--bind 'SPEC'`, `--env NAME`), when that is an array's element or an `[env]`
    /// variable on a line of its own.
    pub fn locate(&self, why: &str, overridden: &[String]) -> Option<String> {
        let key: String = match why.strip_prefix("--") {
            Some(after) => (after.chars())
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect(),
            None if about_command(why) => COMMAND_KEY.to_string(),
            None => return None,
        };
        // The command line's `--env` overrides the file's variables one by one (`env.NAME`):
        // an error about one may be about either.
        let given = |o: &String| *o == key || (key == ENV_KEY && o.starts_with("env."));
        let entry = self.get(&key).filter(|_| !overridden.iter().any(given))?;
        // An error about one limit (`--rlimit memlock=...: ...`) is the file's only if the
        // file sets that limit and the command line does not (`rlimit.NAME`).
        if key == merge::RLIMIT_KEY {
            let name = why.split_whitespace().nth(1)?.split('=').next()?;
            let sets = |arg: &OsString| merge::limit_name(arg).is_some_and(|n| n == name);
            if !entry.args.iter().any(sets) || overridden.contains(&merge::limit_key(name)) {
                return None;
            }
        }
        let line = value_line(entry, &key, why).unwrap_or(entry.line);
        Some(format!("{}:{line}: {key}: {why}", self.name))
    }
}

/// Whether an error is about the worker command: its program (`command 'app' does not
/// exist`, its interpreter, `cannot execute`) or one of its arguments (`argument 1: no socket
/// is named ...`).
fn about_command(why: &str) -> bool {
    let starts = [
        "command '",
        "cannot use command '",
        "cannot execute",
        "the interpreter '",
        "argument ",
    ];
    starts.iter().any(|start| why.starts_with(start))
}

/// The line of the argument of `entry` (key `key`) that the error `why` names right after
/// `--KEY `: its value (`--bind 'SPEC': ...`, `--rlimit nofile=9: ...`) or a variable's name
/// (`--env NAME: ...`).
fn value_line(entry: &Entry, key: &str, why: &str) -> Option<usize> {
    let after = why.strip_prefix(&format!("--{key} "))?;
    let named = match after.strip_prefix('\'') {
        Some(quoted) => quoted.split('\'').next()?,
        None => after.split_whitespace().next()?.trim_end_matches(':'),
    };
    let value = |arg: &OsString| {
        Some(
            arg.to_str()?
                .strip_prefix(&format!("--{key}="))?
                .to_string(),
        )
    };
    let names = |arg: &OsString| {
        value(arg).is_some_and(|v| {
            v == named || (key == ENV_KEY && v.split_once('=').is_some_and(|(n, _)| n == named))
        })
    };
    // The last: of a variable the file gives twice, the value the workers get.
    let at = entry.args.iter().rposition(names)?;
    entry.lines.get(at).copied()
}

/// Where each argument of a key's `value` is in the file: an array's elements, a table's keys
/// (in the order they are written, as [`env::env_args`] takes them), else none.
pub(super) fn value_offsets(value: &DeValue) -> Vec<usize> {
    match value {
        DeValue::Array(items) => items.iter().map(|v| v.span().start).collect(),
        DeValue::Table(table) => (super::in_written_order(table).into_iter())
            .map(|(k, _)| k.span().start)
            .collect(),
        _ => Vec::new(),
    }
}
