//! `herd check --config FILE`: reads a config file as `herd run --config FILE` would, and runs
//! every check `herd run` makes before it binds a socket, without binding one or starting a
//! worker.

use std::ffi::OsString;
use std::path::Path;

use crate::cli::config;
use crate::cli::{CheckArgs, Command, RunArgs, Workers};
use crate::exit::Failure;

/// Checks the file `args` names; what was checked, as one line, if it is valid.
pub fn check(args: &CheckArgs) -> Result<String, Failure> {
    let argv: Vec<OsString> = vec![
        "herd".into(),
        "run".into(),
        "--config".into(),
        args.config.clone().into(),
    ];
    let merged = config::parse(&argv).map_err(Failure::Usage)?;
    let file = args.config.display().to_string();
    let keys =
        (merged.text.as_deref()).and_then(|text| config::ConfigFile::parse(&file, text).ok());
    let in_file = |why: String| {
        Failure::Usage(if why.starts_with(&file) {
            why
        } else {
            (keys.as_ref().and_then(|keys| keys.locate(&why, &[])))
                .unwrap_or_else(|| format!("{file}: {why}"))
        })
    };
    #[cfg(windows)]
    let merged = config::Merged {
        cli: crate::cli::unavailable::on_windows(merged.cli, &merged.matches).map_err(in_file)?,
        ..merged
    };
    let (name, control) = (merged.cli.name.clone(), merged.cli.control.clone());
    let Command::Run(run) = merged.cli.command else {
        return Err(Failure::Usage(format!("{file}: not a herd run")));
    };
    platform_checks(&run, control.as_deref(), &name).map_err(|e| match e {
        Failure::Usage(why) => in_file(why),
        other => other,
    })?;
    let rereading = match config::others_could_write(&args.config) {
        Some(why) => format!("; herd upgrade --reload-config would refuse to read it again: {why}"),
        None => String::new(),
    };
    // One line, whatever the file's name and contents hold (escapes, newlines).
    let line = format!(
        "{file}: ok: {}{}{rereading}",
        summary(&run),
        outside_systemd(&run)
    );
    Ok(crate::text::escape(&line).into_owned())
}

/// What `herd run` would refuse here only because this is no systemd service, said after
/// the summary (`herd check` is run in a shell or CI to check a file a service runs):
/// `--fdstore`, which needs its `NOTIFY_SOCKET`.
#[cfg(unix)]
fn outside_systemd(run: &RunArgs) -> String {
    let notify = std::env::var_os("NOTIFY_SOCKET").is_some_and(|s| !s.is_empty());
    match crate::fdstore::setting(None, run.fdstore, notify) {
        Err(why) => format!("; here herd run would refuse it: {why}"),
        Ok(_) => String::new(),
    }
}

/// Nothing on Windows, which has no systemd (its `--fdstore` is refused as unavailable).
#[cfg(windows)]
fn outside_systemd(_run: &RunArgs) -> String {
    String::new()
}

/// What `herd run` checks before it binds anything, on Unix.
#[cfg(unix)]
fn platform_checks(run: &RunArgs, control: Option<&Path>, name: &str) -> Result<(), Failure> {
    crate::run::check(run, control, name)
}

/// What `herd run` checks before it binds anything, on Windows.
#[cfg(windows)]
fn platform_checks(run: &RunArgs, _control: Option<&Path>, name: &str) -> Result<(), Failure> {
    crate::control::name::check_name(name).map_err(Failure::Usage)?;
    crate::spec::check_names(&run.binds, &run.shm).map_err(Failure::Usage)?;
    crate::worker_env::check_env(run).map_err(Failure::Usage)?;
    crate::endpoints::check_addresses(run)
}

/// What the file sets up, in a few words: its sockets, workers and command.
fn summary(run: &RunArgs) -> String {
    let binds: Vec<&str> = run.binds.iter().map(|b| b.text.as_str()).collect();
    let sockets = match binds.len() {
        0 => "the sockets of the herd it takes over".to_string(),
        1 => format!("1 socket ({})", binds[0]),
        n => format!("{n} sockets ({})", binds.join(", ")),
    };
    let workers = workers(run.workers);
    let command: Vec<String> = run
        .command
        .iter()
        .map(|w| w.to_string_lossy().into_owned())
        .collect();
    format!(
        "{sockets}, {workers}, command: {}; nothing was bound or started",
        command.join(" ")
    )
}

/// The pool `workers` asks for, in a few words.
fn workers(workers: Option<Workers>) -> String {
    match workers {
        Some(Workers::Fixed(1)) => "1 worker".to_string(),
        Some(Workers::Fixed(n)) => format!("{n} workers"),
        Some(Workers::Auto(min, max)) => format!("{min}..{max} workers"),
        None => "one worker per CPU".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_is_said_in_good_english() {
        assert_eq!(workers(Some(Workers::Fixed(1))), "1 worker");
        assert_eq!(workers(Some(Workers::Fixed(4))), "4 workers");
        assert_eq!(workers(Some(Workers::Auto(1, 4))), "1..4 workers");
        assert_eq!(workers(None), "one worker per CPU");
    }
}
