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

/// Refuses an `--env` (or `[env]`) variable of `args` that herd sets for each worker itself
/// ([`SET_BY_HERD`], and those of the `--compat` conventions on), naming it and what to do
/// instead (on Windows, whose variable names ignore case, in any case); and a `--compat`
/// convention given twice.
pub fn check_env(args: &RunArgs) -> Result<(), String> {
    let compat = &args.compat;
    if let Some(twice) = (1..compat.len()).find(|&i| compat[..i].contains(&compat[i])) {
        return Err(format!(
            "--compat {} is given twice: give it once",
            compat::name(compat[twice])
        ));
    }
    let set_by_herd = |name: &str| {
        let name = match cfg!(windows) {
            true => name.to_ascii_uppercase(),
            false => name.to_string(),
        };
        SET_BY_HERD.contains(&name.as_str()) || compat::sets(&args.compat, &name)
    };
    let Some((name, _)) = (args.env.iter()).find(|(name, _)| set_by_herd(&name.to_string_lossy()))
    else {
        return Ok(());
    };
    let name = name.to_string_lossy();
    let instead = match name.to_ascii_uppercase().as_str() {
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

    /// `herd run ARGS -- true`'s options.
    fn run_args(args: &[&str]) -> RunArgs {
        use clap::Parser;
        let argv = ["herd", "run", "-b", "127.0.0.1:0"]
            .iter()
            .chain(args)
            .chain(&["--", "true"]);
        match crate::cli::Cli::try_parse_from(argv).unwrap().command {
            crate::cli::Command::Run(run) => *run,
            _ => unreachable!(),
        }
    }

    /// A worker given a `NOTIFY_SOCKET` of its own never reached herd: killed as not ready
    /// in time, again and again. A `--compat` convention's variables are herd's while it is on.
    #[test]
    fn a_variable_herd_sets_for_each_worker_is_refused() {
        let check = |args: &[&str]| check_env(&run_args(args));
        assert_eq!(
            check(&["--env", "A=1", "--env", "NOTIFY_SOCKET_X=2"]),
            Ok(())
        );
        for name in [
            "NOTIFY_SOCKET",
            "LISTEN_FDS",
            "HERD_CONTROL",
            "HERD_WORKER",
            "WATCHDOG_USEC",
        ] {
            let why = check(&["--env", "A=1", "--env", &format!("{name}=x")]).unwrap_err();
            let said = format!("--env {name}: herd sets {name} for each worker");
            assert!(why.starts_with(&said), "{why}");
        }
        let why = check(&["--env", "WATCHDOG_USEC=5"]).unwrap_err();
        assert!(why.ends_with("set --watchdog DURATION instead"), "{why}");
        for name in [
            "EINHORN_FDS",
            "EINHORN_FD_0",
            "EINHORN_FD_12",
            "EINHORN_SOCK_PATH",
        ] {
            let env = format!("{name}=3");
            assert_eq!(check(&["--env", &env]), Ok(()), "{name} without --compat");
            assert!(
                check(&["--compat", "einhorn", "--env", &env]).is_err(),
                "{name}"
            );
        }
        assert_eq!(
            check(&["--compat", "einhorn", "--env", "EINHORN_FD_X=1"]),
            Ok(())
        );
        let port = ["--env", "SERVER_STARTER_PORT=80=3"];
        assert_eq!(check(&port), Ok(()));
        assert!(check(&[&["--compat", "server-starter"][..], &port].concat()).is_err());
        // Windows' names ignore case.
        let lower = check(&["--env", "notify_socket=x"]);
        assert_eq!(lower.is_err(), cfg!(windows), "{lower:?}");
    }

    /// `--compat einhorn --compat einhorn` (or `compat = ["einhorn", "einhorn"]`) passed.
    #[test]
    fn a_convention_given_twice_is_refused() {
        let check = |args: &[&str]| check_env(&run_args(args));
        let two = ["--compat", "einhorn", "--compat", "server-starter"];
        assert_eq!(check(&two), Ok(()));
        let why = check(&[&two[..], &["--compat", "einhorn"]].concat()).unwrap_err();
        assert_eq!(why, "--compat einhorn is given twice: give it once");
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
