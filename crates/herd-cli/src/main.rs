//! `herd`: bind listening sockets once, run N worker processes that share them, supervise them.
//! The binary is thin: it parses the command line, sets up logging, and hands over to the
//! library (`herd_cli`), which has one module per concept. The command line is the same on
//! every platform; on Windows, what is not built there yet is refused, and `herd run` is
//! `windows.rs`: the same supervisor, set up with what Windows has; the client commands are
//! `ctl`'s.
// Every unsafe call lives in herd-sys, behind a safe API.
#![forbid(unsafe_code)]

use herd_cli::{cli, exit, logging};
#[cfg(unix)]
use herd_cli::{control, ctl, run, spec};

use std::process::ExitCode;

use clap::{ArgMatches, CommandFactory, FromArgMatches};

#[cfg(windows)]
mod windows;

fn main() -> ExitCode {
    let code = run_command();
    // What is still queued for stderr gets a bounded time to be written: herd never hangs
    // on a stderr nobody reads.
    logging::flush();
    code
}

#[cfg(unix)]
fn run_command() -> ExitCode {
    // `herd run`: a signal sent before the handlers are in place (while herd reads its config
    // file, say) waits for them (the start lets it through) instead of being lost (as PID 1)
    // or ending herd. The other commands get their inherited mask back once parsed.
    let held = match herd_cli::supervisor::hold_signals_early() {
        Ok(held) => held,
        Err(e) => {
            logging::line(&format!("herd: error: cannot block signals: {e}"));
            return ExitCode::from(exit::FAILURE);
        }
    };
    // Before anything opens a file: fds 0-2 exist, and nothing herd inherited can leak into a
    // worker.
    if let Err(e) =
        herd_sys::fd::ensure_std_fds_open().and_then(|()| herd_sys::fd::cloexec_all_above_stdio())
    {
        logging::line(&format!(
            "herd: error: cannot prepare file descriptors: {e}"
        ));
        return ExitCode::from(exit::FAILURE);
    }
    if herd_sys::fd::stdout_closed_at_start() {
        herd_cli::ctl::stdout_was_closed();
    } else if herd_sys::fd::stdout_read_only() {
        herd_cli::ctl::stdout_is_read_only();
    }
    // `herd reexec` checks a new binary by running it in its hidden check mode first.
    if let Some(code) = herd_cli::supervisor::reexec_check::answer_if_asked() {
        return ExitCode::from(code);
    }
    // Sockets passed by systemd are claimed now, before herd opens any fd of its own.
    spec::claim_passed_sockets();
    // After a re-exec, the previous image's state: its config file is the one the workers
    // run, not what is on disk now.
    let restored = match run::restored_state() {
        Ok(restored) => restored,
        Err(failure) => return ended(Err(failure)),
    };
    let in_force = restored.as_ref().and_then(run::config_in_force);
    let (cli, _, config_text, overridden) = match parse_command_line(in_force) {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    let config = ConfigKeys::of(&cli, config_text.as_deref(), overridden);
    if !matches!(cli.command, cli::Command::Run(_)) {
        if let Err(e) = held.release() {
            logging::line(&format!("herd: error: cannot unblock signals: {e}"));
            return ExitCode::from(exit::FAILURE);
        }
    }
    logging::init(cli.log_level, cli.log_format);
    // Whom the clients trust to serve the control socket besides root and their own user.
    let owner = match cli.control_owner {
        Some(owner) => Ok(Some(owner)),
        None => herd::trust::owner_from_env().map_err(|e| exit::Failure::Usage(e.to_string())),
    };
    let result = owner.and_then(|owner| match cli.command {
        cli::Command::Check(args) => check(&args),
        cli::Command::Run(args) => {
            let started = run::Started {
                restored,
                config_text,
            };
            run::run(*args, cli.control.as_deref(), &cli.name, owner, started)
                .map_err(|failure| config.locate(failure))
        }
        client => control::path::check_name(&cli.name)
            .map_err(exit::Failure::Usage)
            .and_then(|()| {
                let uid = herd_sys::process::effective_uid();
                let (path, private_dir) =
                    control::path::resolve(cli.control.as_deref(), &cli.name, uid);
                // Absolute, as `herd run` makes it: `herd attach` hands it on in HERD_CONTROL
                // to a command that may change directory.
                let path = control::path::absolute(&path);
                ctl::run(client, &path, private_dir, owner)
            }),
    });
    ended(result)
}

#[cfg(windows)]
fn run_command() -> ExitCode {
    let (cli, matches, config_text, overridden) = match parse_command_line(None) {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    let config = ConfigKeys::of(&cli, config_text.as_deref(), overridden);
    logging::init(cli.log_level, cli.log_format);
    let result = cli::unavailable::on_windows(cli, &matches)
        .map_err(exit::Failure::Usage)
        .and_then(|cli| match cli.command {
            cli::Command::Check(args) => check(&args),
            cli::Command::Run(args) => windows::run(
                *args,
                cli.control.as_deref(),
                &cli.name,
                config_text.as_deref(),
            )
            .map_err(|failure| config.locate(failure)),
            client => herd_cli::ctl::run(client, cli.control.as_deref(), &cli.name),
        });
    ended(result)
}

/// `herd check`: the file's verdict on stdout (a full one is an error, not a panic).
fn check(args: &cli::CheckArgs) -> Result<(), exit::Failure> {
    herd_cli::ctl::print(&format!("{}\n", herd_cli::check::check(args)?))
}

/// The command line with its `--config` file applied (whose contents are `in_force` if
/// given, after a re-exec), and what was given; or, after `--help`, `--version` or a usage
/// error (told in one line), how herd exits. With the file's contents as read: what the first
/// workers run, the baseline of `herd upgrade --reload-config`.
fn parse_command_line(
    in_force: Option<&str>,
) -> Result<(cli::Cli, ArgMatches, Option<String>, Vec<String>), ExitCode> {
    let argv: Vec<_> = std::env::args_os().collect();
    let parsed = cli::Cli::command()
        .try_get_matches_from(&argv)
        .and_then(|matches| cli::Cli::from_arg_matches(&matches).map(|cli| (cli, matches)));
    match parsed {
        Ok((cli, matches)) => {
            let parsed = cli::config::Merged::of(cli, matches);
            match cli::config::apply_with(parsed, &argv, in_force) {
                Ok(merged) => {
                    let overridden = merged.overridden.into_iter().map(|(key, _)| key).collect();
                    Ok((merged.cli, merged.matches, merged.text, overridden))
                }
                Err(why) => {
                    error_line(&why);
                    Err(ExitCode::from(exit::USAGE))
                }
            }
        }
        Err(e) if !e.use_stderr() => {
            // --help and --version: their output is all they do, so a stdout that cannot
            // take it is an error, whether closed (`1>&-`), full (`> /dev/full`) or a pipe
            // whose reader is gone (EPIPE: the text is one write, far below a pipe's buffer,
            // so that reader read none of it; `herd --help | head -1` is not one). One write:
            // clap's own print writes a piece at a time (60 writes for `run --help`), and
            // `| head -1` left after the first, failing the rest with EPIPE.
            let text = e.render().to_string();
            match herd_cli::ctl::stdout_open().and_then(|()| {
                let mut out = std::io::stdout().lock();
                std::io::Write::write_all(&mut out, text.as_bytes())
                    .and_then(|()| std::io::Write::flush(&mut out))
            }) {
                Err(why) => {
                    logging::line(&format!("herd: error: cannot write to stdout: {why}"));
                    Err(ExitCode::from(exit::FAILURE))
                }
                Ok(()) => Err(ExitCode::from(exit::OK)),
            }
        }
        Err(e) => {
            let args: Vec<_> = std::env::args_os().skip(1).collect();
            error_line(&exit::usage_error(&e, &args));
            Err(ExitCode::from(exit::USAGE))
        }
    }
}

/// `herd run`'s config file, read again to place its errors: its keys, and those the command
/// line overrides.
struct ConfigKeys {
    file: Option<cli::config::ConfigFile>,
    overridden: Vec<String>,
}

impl ConfigKeys {
    /// The keys of the config file of `cli`, a `herd run` (`text`: its contents as read).
    fn of(cli: &cli::Cli, text: Option<&str>, overridden: Vec<String>) -> ConfigKeys {
        let name = match &cli.command {
            cli::Command::Run(args) => args.config.as_ref().map(|p| p.display().to_string()),
            _ => None,
        };
        let file = name
            .zip(text)
            .and_then(|(name, text)| cli::config::ConfigFile::parse(&name, text).ok());
        ConfigKeys { file, overridden }
    }

    /// A usage error about an option the file gives, placed in the file
    /// ([`ConfigFile::locate`](cli::config::ConfigFile::locate)).
    fn locate(&self, failure: exit::Failure) -> exit::Failure {
        match (failure, &self.file) {
            (exit::Failure::Usage(why), Some(file)) if !why.starts_with(&file.name) => {
                exit::Failure::Usage(file.locate(&why, &self.overridden).unwrap_or(why))
            }
            (failure, _) => failure,
        }
    }
}

/// herd's exit status, after its error in one line if it failed.
fn ended(result: Result<(), exit::Failure>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::from(exit::OK),
        Err(failure @ exit::Failure::Degraded(_)) => {
            logging::line(&format!(
                "herd: {}",
                herd_cli::text::escape(&failure.to_string())
            ));
            failure.exit_code()
        }
        Err(failure) => {
            error_line(&failure.to_string());
            failure.exit_code()
        }
    }
}

/// `herd: error: WHY` on one line, with the control characters of `why` escaped: it may quote
/// what the user wrote (a config file's key or value, a path), which can hold a newline or a
/// terminal's escape sequence.
fn error_line(why: &str) {
    logging::line(&format!("herd: error: {}", herd_cli::text::escape(why)));
}
