//! What the Windows `herd` cannot do yet. The command line is the same on every platform (one
//! [`Cli`], one `--help`); on Windows, [`on_windows`] refuses, each with a one-line reason,
//! the subcommands, options and values that exist only on Unix for now. The client commands
//! (`status`, `scale`, `upgrade`, `stop`, `signal`, `logs`, `top`) talk to a herd's control pipe. Anything not listed
//! as available here is refused, so an option added later is refused on Windows until it is
//! made to work there. Pure, so that it is tested on every platform.

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory};

use std::ffi::OsString;

use super::{Cli, Command, RunArgs};
use crate::spec::{Address, Balance};
use crate::template::ArgTemplate;

/// The options of `herd run` that work on Windows, by argument id.
const RUN_AVAILABLE: &[&str] = &[
    "binds",
    "config",
    "takeover",
    "workers",
    "balance",
    "chdir",
    "env",
    "clear_env",
    "grace",
    "max_surge",
    "max_starting",
    "min_ready",
    "max_memory",
    "max_lifetime",
    "ready",
    "ready_timeout",
    "watchdog",
    "shm",
    "metrics",
    "health",
    "ready_min",
    "drain_delay",
    "starting_nice",
    "control_allow_user",
    "worker_output",
    "command",
];

/// The global options that work on Windows, by argument id.
const GLOBAL_AVAILABLE: &[&str] = &["log_level", "log_format", "name", "control"];

/// The subcommands that work on Windows besides `run`: requests to a herd's control pipe.
const CLIENT_AVAILABLE: &[&str] = &[
    "status", "scale", "upgrade", "stop", "signal", "logs", "top",
];

/// What `cli` (parsed into `matches`) asks for, if it asks only for what herd can do on
/// Windows (with `herd run`'s command read as Windows runs it); else the first thing it cannot
/// do, and why, as one line.
pub fn on_windows(cli: Cli, matches: &ArgMatches) -> Result<Cli, String> {
    let command = Cli::command();
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        if given(matches, id) && !GLOBAL_AVAILABLE.contains(&id) {
            return Err(refused(arg, option_reason(id)));
        }
    }
    let name = matches.subcommand_name().unwrap_or_default();
    if let Command::Signal(_) = &cli.command {
        let given = matches
            .subcommand_matches(name)
            .and_then(|m| m.get_raw("signal"));
        let text = given.into_iter().flatten().next().unwrap_or_default();
        windows_signal(&text.to_string_lossy())?;
    }
    let args = match &cli.command {
        Command::Run(args) => args,
        // COMMAND is started as a worker is: no templates.
        Command::Attach(args) => {
            let command = literal_command(&args.command)?;
            let mut cli = cli;
            if let Command::Attach(args) = &mut cli.command {
                args.command = command;
            }
            return Ok(cli);
        }
        // Checks the file's `herd run` as Windows runs it.
        Command::Check(_) => return Ok(cli),
        _ if CLIENT_AVAILABLE.contains(&name) => return Ok(cli),
        _ => {
            return Err(format!(
                "'herd {name}' is not available on Windows: {}",
                subcommand_reason(name)
            ))
        }
    };
    let run_options = command
        .find_subcommand(name)
        .into_iter()
        .flat_map(|run| run.get_arguments());
    if let Some(run) = matches.subcommand_matches(name) {
        for arg in run_options {
            let id = arg.get_id().as_str();
            if given(run, id) && !RUN_AVAILABLE.contains(&id) {
                return Err(refused(arg, option_reason(id)));
            }
        }
    }
    run_values(args)?;
    let command = literal_command(&args.command)?;
    let mut cli = cli;
    if let Command::Run(args) = &mut cli.command {
        args.command = command;
    }
    Ok(cli)
}

/// What `herd signal SIGNAL` means on Windows, as the protocol names it: what Unix users type
/// for a stop (`stop`, `TERM`, `INT`, `15`, `2`) is `TERM` or `INT` (a stop request), and
/// for a kill (`KILL`, `9`) `KILL` (`TerminateProcess`); in any case, `TERM`, `INT` and
/// `KILL` also with `SIG`. Windows has no other signals: anything else is refused, saying what it accepts.
pub fn windows_signal(text: &str) -> Result<&'static str, String> {
    let upper = text.to_ascii_uppercase();
    // `stop` is herd's word (SIGSTOP pauses a process on Unix), numbers go without SIG.
    let name = match upper.strip_prefix("SIG") {
        Some(name) if !matches!(name, "STOP" | "9" | "15" | "2") => name,
        Some(_) => "",
        None => &upper,
    };
    match name {
        "STOP" | "TERM" | "15" => Ok("TERM"),
        "INT" | "2" => Ok("INT"),
        "KILL" | "9" => Ok("KILL"),
        _ => Err(format!(
            "signal '{text}' has no meaning on Windows, which has no signals: send stop, TERM \
             (15) or INT (2) for a stop request, as herd stop sends, or KILL (9) for \
             TerminateProcess"
        )),
    }
}

/// Whether the user gave argument `id` (on the command line or in the environment), rather
/// than clap filling in its default.
fn given(matches: &ArgMatches, id: &str) -> bool {
    matches!(
        matches.value_source(id),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    )
}

fn refused(arg: &clap::Arg, why: &str) -> String {
    let name = match arg.get_long() {
        Some(long) => format!("--{long}"),
        None => arg.get_id().to_string(),
    };
    format!("{name} is not available on Windows: {why}")
}

/// Why an option is Unix-only (for now), by argument id.
fn option_reason(id: &str) -> &'static str {
    match id {
        "control_owner" => {
            "the control pipe's server is known by its security descriptor on Windows, not by \
             a uid"
        }
        "control_allow_uid" | "control_allow_gid" => {
            "uids and gids are Unix's; give --control-allow-user an account name or a SID"
        }
        "stop_signal" => {
            "Windows has no signals: a worker is asked to stop with Ctrl-C to its process \
             group, then ended with TerminateProcess after --grace"
        }
        "user" | "group" => "workers run as herd's own user on Windows",
        "umask" => "Windows has no umask",
        "compat" => {
            "einhorn's and Server::Starter's variables name inherited fds, which Windows \
             workers do not have: they take their sockets from the hand-off on stdin"
        }
        "fdstore" => "the fd store is systemd's, and Windows has no systemd",
        "nofile" | "rlimit" => "Windows has no setrlimit resource limits",
        "fork_server" => {
            "Windows has no fork: a process cannot copy itself with what it has loaded, so \
             each worker starts the command anew"
        }
        _ => "not built on Windows yet",
    }
}

/// Why a subcommand is Unix-only (for now).
fn subcommand_reason(name: &str) -> &'static str {
    match name {
        "reexec" => {
            "Windows has no exec, so a process cannot replace its own program; start the new \
             binary as `herd run --takeover NAME ...`, which takes the sockets over"
        }
        _ => "not built on Windows yet",
    }
}

/// The values of `herd run`'s available options that Windows cannot do (yet).
fn run_values(args: &RunArgs) -> Result<(), String> {
    if args.balance == Balance::Reuseport {
        return Err(
            "--balance reuseport is not available on Windows: Windows has no \
                    SO_REUSEPORT balancing; every worker shares one socket (shared)"
                .to_string(),
        );
    }
    if args.max_memory.map(|m| m.kind) == Some(super::MemoryKind::Pss) {
        return Err(
            "--max-memory pss= is not available on Windows: Windows has no proportional set \
             size; give --max-memory SIZE, which limits the working set"
                .to_string(),
        );
    }
    for bind in &args.binds {
        let why = match &bind.address {
            Address::Tcp(_) | Address::Udp(_) => None,
            Address::UnixPath(_) | Address::UnixAbstract(_) => {
                Some("Unix sockets are Unix-only; use HOST:PORT or udp://HOST:PORT")
            }
            Address::SystemdAll | Address::SystemdNamed(_) => {
                Some("systemd's sockets are Unix-only; use HOST:PORT or udp://HOST:PORT")
            }
        };
        let why = why.or_else(|| {
            bind.options.stdin.then_some(
                "stdin: a worker's stdin carries herd's socket hand-off on Windows (the \
                 herd::share format), so it cannot be the socket itself",
            )
        });
        if let Some(why) = why {
            return Err(format!(
                "--bind '{}' is not available on Windows: {why}",
                bind.text
            ));
        }
    }
    Ok(())
}

/// The worker command as workers get it, read as on Unix: literal braces (`{{`, `}}`)
/// unescaped, a bad template refused with Unix's message, and a real template refused.
fn literal_command(command: &[OsString]) -> Result<Vec<OsString>, String> {
    let literal = |(position, arg): (usize, &OsString)| {
        ArgTemplate::literal(arg, position)?.ok_or_else(|| {
            format!(
                "'{}': templates in COMMAND ({{fd:NAME}}, {{worker}}, {{generation}}) are not \
                 available on Windows yet; a worker reads its slot from HERD_WORKER",
                arg.to_string_lossy()
            )
        })
    };
    command.iter().enumerate().map(literal).collect()
}

#[cfg(test)]
mod tests;
