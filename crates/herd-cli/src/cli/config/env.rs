//! The worker environment a config file gives: an `[env]` table or an `env = ["NAME=value"]`
//! list, bounded by what `execve` could ever take, each variable once.

use std::ffi::OsString;

use clap::Arg;
use toml::de::DeValue;

use super::{check_value, one_arg, scalar, shown, ENV_KEY};

/// The most bytes a program's arguments and environment may take here whatever its stack
/// limit: herd-sys's `exec_limits` at the largest stack (Linux: 6 MiB, three quarters of
/// `_STK_LIM`; elsewhere `ARG_MAX`). Windows bounds no total; 6 MiB there as well.
fn exec_bytes_max() -> usize {
    #[cfg(unix)]
    let most = herd_sys::spawn::exec_limits(Some(u64::MAX)).total;
    #[cfg(not(unix))]
    let most = 6 << 20;
    most
}

/// Why an `[env]` (`value`) could never reach a worker, if it holds more than
/// [`exec_bytes_max`] (its strings, counted as `execve` counts them: each `NAME=value` with its
/// NUL and a pointer), checked before each variable is: a file of millions of them (16 MiB, the
/// most herd reads) held herd's loop for seconds during `herd upgrade --reload-config` before
/// `execve`'s limit refused it. One within it is checked exactly later, as the command line's.
fn env_too_large(value: &DeValue) -> Option<String> {
    let size = |v: &DeValue| match v {
        DeValue::String(s) => s.len(),
        _ => 32, // a number or a boolean, written out; other types are refused later
    };
    // Each as NAME=value (its bytes) and where it is in the file.
    let strings: Vec<(String, usize, usize)> = match value {
        DeValue::Table(table) => (table.iter())
            .map(|(k, v)| {
                let bytes = k.get_ref().len() + 1 + size(v.get_ref());
                (k.get_ref().to_string(), bytes, k.span().start)
            })
            .collect(),
        DeValue::Array(items) => (items.iter())
            .map(|v| {
                let name = v.get_ref().as_str().and_then(|s| s.split_once('='));
                let name = name.map_or("", |(name, _)| name).to_string();
                (name, size(v.get_ref()), v.span().start)
            })
            .collect(),
        _ => return None,
    };
    let pointer = std::mem::size_of::<usize>();
    let bytes: usize = strings.iter().map(|(_, b, _)| b + 1 + pointer).sum();
    let most = exec_bytes_max();
    if bytes <= most {
        return None;
    }
    let (name, largest, _) =
        (strings.iter()).max_by_key(|(_, b, at)| (*b, std::cmp::Reverse(*at)))?;
    Some(format!(
        "its {} variables take {bytes} bytes (each NAME=value with its NUL and a pointer), over \
         the most any system allows for a program's arguments and environment (ARG_MAX at its \
         largest, {most} bytes here); the largest: the workers' variable \
         {}=... (from env) is {largest} bytes: pass large values in a file instead",
        strings.len(),
        shown(name)
    ))
}

/// `[env]`: `KEY = "VALUE"` pairs (or an array of `"KEY=VALUE"`), as `--env=KEY=VALUE`; or
/// why not, and where. `keys`: herd's keys, refused as variables of an `[env]` table, which
/// takes every key after it (none for `env = { ... }` or `env.NAME = ...`, which say what
/// they mean).
pub(super) fn env_args(
    value: &DeValue,
    arg: &Arg,
    keys: &[String],
) -> Result<Vec<OsString>, (Option<usize>, String)> {
    if let Some(why) = env_too_large(value) {
        return Err((None, why));
    }
    let table = match value {
        DeValue::Table(table) => table,
        DeValue::Array(items) => {
            let mut names = std::collections::HashSet::new();
            return items
                .iter()
                .map(|v| {
                    let at = |message: String| (Some(v.span().start), message);
                    let pair = one_arg(ENV_KEY, v.get_ref(), arg).map_err(at)?;
                    let name = (v.get_ref().as_str())
                        .and_then(|s| s.split_once('='))
                        .map_or("", |(name, _)| name);
                    if !names.insert(one_variable(name)) {
                        return Err(at(given_twice(name)));
                    }
                    Ok(pair)
                })
                .collect();
        }
        other => {
            return Err((
                None,
                format!(
                    "{} is not an environment; write an [env] table of KEY = \"VALUE\"",
                    super::a_kind(other)
                ),
            ))
        }
    };
    super::in_written_order(table)
        .into_iter()
        .map(|(key, value)| {
            let at = |message: String| (Some(key.span().start), message);
            let name = key.get_ref();
            if name.contains('=') {
                return Err(at(format!(
                    "'{name}' cannot be a variable's name: it has a '='"
                )));
            }
            // TOML puts every key after `[env]` in it: `workers = 4` there would silently be
            // a variable. A variable of that name can still be given inline.
            if keys.iter().any(|key| key == name) {
                return Err(at(format!(
                    "{name} is a key of herd's, not a variable: every key after [env] belongs \
                     to it, so move {name} above [env] (for a variable of that name, write the \
                     table inline: env = {{ {name} = \"...\", ... }})"
                )));
            }
            let value = scalar(ENV_KEY, value.get_ref(), false).map_err(|_| {
                at(format!(
                    "{name}: the value must be a string, a number or a boolean"
                ))
            })?;
            let pair = format!("{name}={value}");
            check_value(&pair, arg).map_err(at)?;
            Ok(format!("--{ENV_KEY}={pair}").into())
        })
        .collect()
}

/// Why a variable `name` the file's `env` list gives twice is refused: which of the two values
/// the workers would get is not what its reader sees at a glance (the command line's `--env`
/// is another matter: its last value wins, as with `env` or `docker run -e`).
fn given_twice(name: &str) -> String {
    format!(
        "the workers' variable {} is given twice: keep one of the two values",
        shown(name)
    )
}

/// The variable `name` stands for: on Windows, where `Path` and `PATH` are one, its upper case.
fn one_variable(name: &str) -> String {
    match cfg!(windows) {
        true => name.to_uppercase(),
        false => name.to_string(),
    }
}
