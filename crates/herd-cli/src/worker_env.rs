//! The variables herd adds to its workers' environment: how to reach herd (`NOTIFY_SOCKET`,
//! `HERD_CONTROL`), `WATCHDOG_USEC` with `--watchdog`, other supervisors' conventions with
//! `--compat` ([`compat`]), then `--env`, the last of each name winning. The same on every platform, and linear in the number of variables (a config file
//! may give tens of thousands).

use std::collections::HashMap;
use std::ffi::OsString;

use crate::cli::RunArgs;
mod compat;
#[cfg(unix)]
pub mod stop_signal;

pub use compat::{compat_env, parse_compat, Compat, Passed};

/// The variables for workers of `args`, with `notify` and `control` the paths or pipe names
/// of herd's notify and control channels, and `passed` what `--compat`'s conventions describe.
pub fn worker_env(
    args: &RunArgs,
    notify: OsString,
    control: OsString,
    passed: &Passed,
) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = vec![
        ("NOTIFY_SOCKET".into(), notify),
        ("HERD_CONTROL".into(), control),
    ];
    if let Some(watchdog) = args.watchdog {
        env.push((
            "WATCHDOG_USEC".into(),
            watchdog.as_micros().to_string().into(),
        ));
    }
    env.extend(compat_env(&args.compat, passed, std::process::id()));
    env.extend(args.env.iter().cloned());
    last_of_each(env)
}

/// The variables herd sets for each worker itself: how it finds its sockets, herd and its
/// stop request, and who it is. `--env` of one would cut the worker off from herd (a
/// `NOTIFY_SOCKET` of its own, and its `READY=1` never comes), or lie to it.
const SET_BY_HERD: &[&str] = &[
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "LISTEN_PIDFDID",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "HERD_CONTROL",
    "HERD_WORKER",
    "HERD_GENERATION",
    "HERD_STOP_SIGNAL",
    "HERD_STOP_EVENT",
    "HERD_SOCKETS",
    "HERD_SHM",
    "HERD_FORK_SERVER",
];

/// Refuses an `--env` (or `[env]`) variable herd sets for each worker itself
/// ([`SET_BY_HERD`]), naming it and what to do instead.
pub fn check_env(env: &[(OsString, OsString)]) -> Result<(), String> {
    let Some((name, _)) = env
        .iter()
        .find(|(name, _)| SET_BY_HERD.iter().any(|set| name == set))
    else {
        return Ok(());
    };
    let name = name.to_string_lossy();
    let instead = match name.as_ref() {
        "WATCHDOG_USEC" | "WATCHDOG_PID" => "set --watchdog DURATION instead",
        "NOTIFY_SOCKET" => {
            "a worker's READY=1 goes to herd's, and herd tells systemd when its workers are \
             ready"
        }
        _ => "drop it",
    };
    Err(format!(
        "--env {name}: herd sets {name} for each worker itself (README: What every \
         worker gets); {instead}"
    ))
}

/// `env` with only the last entry of each name, in the order of those last entries.
fn last_of_each(env: Vec<(OsString, OsString)>) -> Vec<(OsString, OsString)> {
    let last: HashMap<&OsString, usize> =
        env.iter().enumerate().map(|(i, (k, _))| (k, i)).collect();
    let keep: Vec<bool> = (0..env.len())
        .map(|i| last.get(&env[i].0) == Some(&i))
        .collect();
    env.into_iter()
        .zip(keep)
        .filter_map(|(entry, keep)| keep.then_some(entry))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs.iter().map(|(k, v)| (k.into(), v.into())).collect()
    }

    /// A worker given a `NOTIFY_SOCKET` of its own never reached herd: killed as not ready
    /// in time, again and again.
    #[test]
    fn a_variable_herd_sets_for_each_worker_is_refused() {
        assert_eq!(
            check_env(&env(&[("A", "1"), ("NOTIFY_SOCKET_X", "2")])),
            Ok(())
        );
        for name in [
            "NOTIFY_SOCKET",
            "LISTEN_FDS",
            "HERD_CONTROL",
            "HERD_WORKER",
            "WATCHDOG_USEC",
        ] {
            let why = check_env(&env(&[("A", "1"), (name, "x")])).unwrap_err();
            assert!(
                why.starts_with(&format!("--env {name}: herd sets {name} for each worker")),
                "{why}"
            );
        }
        let why = check_env(&env(&[("WATCHDOG_USEC", "5")])).unwrap_err();
        assert!(why.ends_with("set --watchdog DURATION instead"), "{why}");
    }

    #[test]
    fn the_last_of_each_name_wins_in_the_order_of_the_last_ones() {
        let got = last_of_each(env(&[("A", "1"), ("B", "1"), ("A", "2"), ("C", "1")]));
        assert_eq!(got, env(&[("B", "1"), ("A", "2"), ("C", "1")]));
    }

    #[test]
    fn many_variables_take_linear_time() {
        let many: Vec<_> = (0..200_000)
            .map(|i| (OsString::from(format!("K{i}")), OsString::from("v")))
            .collect();
        let started = std::time::Instant::now();
        assert_eq!(last_of_each(many).len(), 200_000);
        // Quadratic was minutes; linear is milliseconds (a generous bound for a busy machine).
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
    }
}
