//! The client commands: `herd status`, `scale`, `upgrade`, `stop`, `signal` and `reexec` send
//! one request to a running herd's control socket (on Windows its pipe) and print the answer;
//! `attach` runs a command with the herd's sockets. What a command sends and prints is the same
//! on every platform ([`ask`]); how the herd is reached is each platform's (`run`).

mod logs;
mod status;
mod table;
mod top;
#[cfg(unix)]
mod unix;
#[cfg(windows)]
mod windows;

use std::io::Write;
use std::time::Duration;

use anyhow::anyhow;
use serde::de::DeserializeOwned;

use crate::cli::{self, ScaleTarget};
use crate::control::answer::Vacancy;
use crate::control::client::{Client, ClientError};
use crate::control::protocol::{Command, ErrorCode};
use crate::control::results::{ReexecResult, ScaleResult, SignalResult, StopResult, UpgradeResult};
use crate::exit::Failure;
use crate::text::escape;

#[cfg(unix)]
pub use unix::{fetch, request, request_with_peer, run};
#[cfg(unix)]
use unix::{in_foreground, stdout_gone, wire_signal};
#[cfg(windows)]
pub use windows::{fetch, request, run, takeover_source, TakeoverSource};
#[cfg(windows)]
use windows::{in_foreground, stdout_gone, wire_signal};

/// How long a quick command (status, scale, signal) waits for its answer.
pub(crate) const QUICK: Duration = Duration::from_secs(30);

/// Opens a new connection to the herd.
type Connect<'a> = &'a dyn Fn() -> Result<Client, ClientError>;

/// A signal as the control protocol names it, and as `herd signal` reports it sent.
pub(crate) struct WireSignal {
    /// What the request says.
    pub wire: String,
    /// What the report says.
    pub shown: String,
}

/// Runs one of the commands that only talk to herd (not `run`, not `attach`), connecting with
/// `connect`.
fn ask(command: cli::Command, connect: Connect<'_>) -> Result<(), Failure> {
    let quick = Some(QUICK);
    // A herd that stops once it got the request carries it out when it resumes: the command
    // waits for it (within its timeout), rather than report a failure for what succeeds.
    // `herd top` owns the terminal, where a line would land in its screen: it does not wait.
    let impatient = connect;
    let patient = || impatient().map(Client::patient);
    let connect: Connect<'_> = &patient;
    match command {
        cli::Command::Run(_) | cli::Command::Attach(_) | cli::Command::Check(_) => {
            Err(Failure::Runtime(anyhow!(
                "herd run and herd attach are not requests to a running herd"
            )))
        }
        cli::Command::Status(args) => status::show(&args, connect),
        cli::Command::Top => top::run(impatient),
        cli::Command::Scale(args) => scale(args.target, connect),
        cli::Command::Upgrade(args) => {
            let command = Command::Upgrade {
                // Rounded up: 1ns is no zero (which herd refuses as not positive).
                timeout_ms: Some(args.timeout.as_nanos().div_ceil(1_000_000) as u64),
                reload_config: args.reload_config,
            };
            let result: UpgradeResult = call(connect, command, None)?;
            let generation = result.generation;
            let reloaded = if args.reload_config {
                " with the config file read again"
            } else {
                ""
            };
            if !result.overridden.is_empty() {
                crate::logging::line(&format!(
                    "herd upgrade: note: the config file changes {}, which herd's command line \
                     gives: the command line's values stay",
                    escape(&result.overridden.join(", "))
                ));
            }
            report(&format!(
                "upgraded{reloaded}: every worker now runs generation {generation}\n"
            ))
        }
        cli::Command::Stop(args) => {
            let grace_ms = args.grace.map(|g| g.as_millis() as u64);
            let command = Command::Stop {
                grace_ms,
                fast: args.fast,
                takeover: false,
            };
            let answer = connect().and_then(|mut client| client.call(command, None));
            stop_reported(answer, || after_close(connect, GONE_BOUND))?;
            report("stopped\n")
        }
        cli::Command::Reexec => {
            let result: ReexecResult = call(connect, Command::Reexec, quick)?;
            report(&format!(
                "re-executed: herd {} runs as pid {}\n",
                escape(&result.version),
                result.pid
            ))
        }
        cli::Command::Logs(args) => logs::show(&args, connect),
        cli::Command::Signal(args) => {
            let WireSignal { wire, shown } = wire_signal(&args)?;
            let command = Command::Signal {
                signal: wire,
                slot: args.worker,
            };
            let result: SignalResult = call(connect, command, quick)?;
            let whom = match result.signalled {
                0 => "no worker: none is starting or ready".to_string(),
                1 => "1 worker".to_string(),
                n => format!("{n} workers"),
            };
            report(&format!("sent {shown} to {whom}\n"))
        }
    }
}

/// Sends one request on a new connection and returns its result.
fn call<R: DeserializeOwned>(
    connect: Connect<'_>,
    command: Command,
    timeout: Option<Duration>,
) -> Result<R, Failure> {
    connect()
        .and_then(|mut client| client.call(command, timeout))
        .map_err(failure)
}

/// Whether `herd stop` may say that herd stopped. herd answers a stop once every worker is
/// gone, but when two clients stop it at once it may exit before answering the second: one
/// that sent its request and then saw herd close the connection without an answer reports the
/// stop too, once `after` finds that herd exited (its socket removed, as herd does on its way
/// out). A herd killed meanwhile (SIGKILL, a crash) leaves its socket, and what its workers
/// left may still serve: that is no stop to report. A client that found no herd at all says
/// so.
fn stop_reported(
    answer: Result<StopResult, ClientError>,
    after: impl FnOnce() -> AfterClose,
) -> Result<(), Failure> {
    match answer {
        Ok(_) => Ok(()),
        Err(ClientError::Closed { path }) => match after() {
            AfterClose::Exited => Ok(()),
            AfterClose::Vanished => Err(Failure::Runtime(anyhow!(
                "herd at {} ended before it confirmed the stop (killed or crashed: its control \
                 socket is left, and nobody listens on it); processes its workers started may \
                 still run and hold its ports: look for what listens on them ('ss -ltnp', \
                 'lsof -iTCP -sTCP:LISTEN')",
                path.display()
            ))),
            AfterClose::Answers => Err(failure(ClientError::Closed { path })),
        },
        Err(e) => Err(failure(e)),
    }
}

/// What is at herd's path once it closed a stop's connection without answering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AfterClose {
    /// Nothing: herd exited and removed its socket (or, on Windows, its pipe is gone).
    Exited,
    /// Its socket, which nobody listens on: herd was killed, or crashed.
    Vanished,
    /// Something still answers, or cannot be told.
    Answers,
}

/// How long a herd that closed a stop's connection without answering may take to exit.
const GONE_BOUND: Duration = Duration::from_secs(5);

/// How long a socket nobody listens on may stay before it counts as left by a killed herd:
/// an exiting herd closes its socket, then removes it.
const LEFT_BOUND: Duration = Duration::from_secs(2);

/// What answers at herd's path within `bound` (see [`AfterClose`]): a herd that is exiting is
/// given that long to close its socket or pipe.
fn after_close(connect: Connect<'_>, bound: Duration) -> AfterClose {
    let start = std::time::Instant::now();
    let mut unheard_since = None;
    loop {
        let now = std::time::Instant::now();
        match connect() {
            Err(ClientError::NotRunning { why, .. }) if why != Vacancy::NobodyListening => {
                return AfterClose::Exited;
            }
            Err(ClientError::NotRunning { .. }) => {
                let since = *unheard_since.get_or_insert(now);
                if now.duration_since(since) >= LEFT_BOUND.min(bound) {
                    return AfterClose::Vanished;
                }
            }
            _ => unheard_since = None,
        }
        if now.duration_since(start) >= bound {
            return AfterClose::Answers;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `herd scale`.
fn scale(target: ScaleTarget, connect: Connect<'_>) -> Result<(), Failure> {
    let (workers, delta, min, max) = match target {
        ScaleTarget::Set(n) => (Some(n), None, None, None),
        ScaleTarget::Delta(d) => (None, Some(d), None, None),
        ScaleTarget::Bounds(min, max) => (None, None, Some(min), Some(max)),
    };
    let command = Command::Scale {
        workers,
        delta,
        min,
        max,
    };
    let result: ScaleResult = call(connect, command, Some(QUICK))?;
    match (min, max) {
        (Some(min), Some(max)) => report(&format!(
            "autoscaling between {} and {} workers (now {})\n",
            result.min.unwrap_or(min),
            result.max.unwrap_or(max),
            result.workers
        )),
        _ => report(&format!(
            "scaled from {} to {} {}\n",
            result.previous,
            result.workers,
            crate::text::workers(result.workers)
        )),
    }
}

/// Why herd's stdout cannot be written, if it cannot: closed when herd started (`1>&-`: fd 1 is
/// then `/dev/null`), or open for reading only (`1</dev/null`: writes fail with `EBADF`, which
/// Rust's `Stdout` takes for success). What herd prints would be lost without a word.
static STDOUT_UNWRITABLE: std::sync::OnceLock<&str> = std::sync::OnceLock::new();

/// herd started with its stdout closed: what it is asked to print fails ([`stdout_open`]).
pub fn stdout_was_closed() {
    let _ = STDOUT_UNWRITABLE.set("it was closed when herd started (1>&-)");
}

/// herd started with its stdout open for reading only: what it is asked to print fails.
pub fn stdout_is_read_only() {
    let _ = STDOUT_UNWRITABLE.set("it is open for reading only (1<FILE)");
}

/// Fails if herd's stdout cannot be written, as a write to it would have.
pub fn stdout_open() -> std::io::Result<()> {
    match STDOUT_UNWRITABLE.get() {
        Some(why) => Err(std::io::Error::other(*why)),
        None => Ok(()),
    }
}

/// What a view that polls herd (`herd top`, `herd status --watch`) says while herd (`pid`) is
/// paused and cannot answer: it is not gone, `kill -CONT` resumes it, and `waiter` waits.
fn paused_note(pid: u32, waiter: &str) -> String {
    format!(
        "herd (pid {pid}) is paused (SIGSTOP, Ctrl-Z or a debugger) and cannot answer: \
         'kill -CONT {pid}' resumes it; {waiter} waits for it"
    )
}

/// Whether `TERM` names a terminal that takes no escapes (`dumb`: Emacs' shell buffers, some
/// CI consoles), where a screen drawn with cursor moves and colours would be garbage.
fn dumb_terminal() -> bool {
    std::env::var_os("TERM").is_some_and(|term| term == "dumb")
}

/// Writes `text` to stdout. A reader that went away (`herd status | head -1`) ends the
/// command quietly, as if everything had been read; any other failure (`> /dev/full`, a
/// stdout closed from the start) is an error.
pub fn print(text: &str) -> Result<(), Failure> {
    print_to_reader(text).map(|_| ())
}

/// As [`print`], and whether stdout's reader is still there: `false` once it went away, when
/// a command that prints again and again (`herd status --watch | head -1`) is to end.
pub fn print_to_reader(text: &str) -> Result<bool, Failure> {
    write_stdout(text).map_err(|e| Failure::Runtime(anyhow!("cannot write to stdout: {e}")))
}

/// As [`print`], for what a command that changes something did: the error says it was done
/// all the same (`scaled from 2 to 3 workers, but cannot write that to stdout: ...`), so that
/// nobody asks again (a second `herd scale +1`) for what has taken effect.
fn report(text: &str) -> Result<(), Failure> {
    match write_stdout(text) {
        Ok(_) => Ok(()),
        Err(e) => Err(Failure::Runtime(anyhow!(
            "{}, but cannot write that to stdout: {e}",
            text.trim_end()
        ))),
    }
}

/// Writes `text` to stdout; `Ok(false)` once its reader went away.
fn write_stdout(text: &str) -> std::io::Result<bool> {
    let mut out = std::io::stdout().lock();
    let written = stdout_open()
        .and_then(|()| out.write_all(text.as_bytes()))
        .and_then(|()| out.flush());
    match written {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e),
    }
}

/// A client error as the `herd` commands report it.
fn failure(error: ClientError) -> Failure {
    let error = match error {
        ClientError::PathTooLong { .. } => return Failure::Usage(error.to_string()),
        ClientError::Refused { error, .. } => error,
        other => return Failure::Runtime(anyhow!(other)),
    };
    let code = error.code;
    // The message is herd's, but may quote a worker (or be anyone's at the path): no control
    // characters reach the terminal, and the line stays short enough to be written.
    let message = crate::control::answer::shown(&error.message);
    let line = match code {
        ErrorCode::UpgradeFailed => {
            format!("upgrade failed, the old workers keep serving ({code}): {message}")
        }
        // The message says that herd is stopping; for a re-exec check, which binary, why, and
        // that herd keeps running.
        ErrorCode::Stopping | ErrorCode::ReexecCheckFailed | ErrorCode::ConfigInvalid => {
            format!("{message} ({code})")
        }
        _ => format!("herd refused ({code}): {message}"),
    };
    Failure::Runtime(anyhow!(line))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::protocol::ErrorBody;

    fn refused(code: ErrorCode, message: &str) -> String {
        let error = ClientError::Refused {
            path: "/h.sock".into(),
            error: ErrorBody {
                code,
                message: message.into(),
            },
        };
        match failure(error) {
            Failure::Runtime(e) => e.to_string(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_stop_answered_by_a_closed_connection_is_reported() {
        let path = std::path::PathBuf::from("/h.sock");
        let closed = || Err(ClientError::Closed { path: path.clone() });
        assert!(stop_reported(Ok(StopResult { stopped: true }), || AfterClose::Answers).is_ok());
        assert!(stop_reported(closed(), || AfterClose::Exited).is_ok());
        let none = ClientError::NotRunning {
            path: path.clone(),
            why: crate::control::answer::Vacancy::NoSocket,
            herd: None,
        };
        assert!(matches!(
            stop_reported(Err(none), || AfterClose::Exited),
            Err(Failure::Runtime(_))
        ));
    }

    /// A herd killed while it stopped (SIGKILL) closed the connection and left its socket:
    /// `herd stop` said "stopped" and exited 0 while a process its worker left still held the
    /// port.
    #[test]
    fn a_stop_whose_herd_was_killed_meanwhile_is_an_error() {
        let path = std::path::PathBuf::from("/h.sock");
        let closed = Err(ClientError::Closed { path });
        let Err(Failure::Runtime(why)) = stop_reported(closed, || AfterClose::Vanished) else {
            panic!("reported as stopped")
        };
        assert!(
            why.to_string()
                .contains("ended before it confirmed the stop"),
            "{why}"
        );
        let left = |why| {
            move || {
                Err(ClientError::NotRunning {
                    path: "/h.sock".into(),
                    why,
                    herd: None,
                })
            }
        };
        let stale = left(Vacancy::NobodyListening);
        assert_eq!(after_close(&stale, Duration::ZERO), AfterClose::Vanished);
        let removed = left(Vacancy::NoSocket);
        assert_eq!(after_close(&removed, Duration::ZERO), AfterClose::Exited);
    }

    #[test]
    fn a_stop_whose_connection_closed_while_herd_still_answers_is_an_error() {
        let path = std::path::PathBuf::from("/h.sock");
        let closed = Err(ClientError::Closed { path });
        assert!(matches!(
            stop_reported(closed, || AfterClose::Answers),
            Err(Failure::Runtime(_))
        ));
    }

    #[test]
    fn a_herd_whose_socket_is_removed_has_exited() {
        let vacant = || {
            Err(ClientError::NotRunning {
                path: "/h.sock".into(),
                why: crate::control::answer::Vacancy::NoSocket,
                herd: None,
            })
        };
        assert_eq!(after_close(&vacant, Duration::ZERO), AfterClose::Exited);
        let denied = || {
            Err(ClientError::PermissionDenied {
                path: "/h.sock".into(),
                directory: false,
            })
        };
        assert_eq!(after_close(&denied, Duration::ZERO), AfterClose::Answers);
    }

    #[test]
    fn refusals_are_worded_by_their_code() {
        assert_eq!(
            refused(ErrorCode::Stopping, "herd is stopping"),
            "herd is stopping (stopping)"
        );
        assert_eq!(
            refused(ErrorCode::UpgradeFailed, "worker 3 exited"),
            "upgrade failed, the old workers keep serving (upgrade_failed): worker 3 exited"
        );
        assert_eq!(
            refused(ErrorCode::Busy, "later\x1b[2J"),
            "herd refused (busy): later\\x1b[2J"
        );
        let long = ClientError::PathTooLong {
            path: "/x".repeat(100).into(),
        };
        assert!(matches!(failure(long), Failure::Usage(_)));
    }
}
