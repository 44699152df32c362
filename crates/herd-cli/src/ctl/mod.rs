//! The client commands: `herd status`, `scale`, `upgrade`, `stop` and `signal` send one
//! request to a running herd's control socket and print the answer.

mod table;

use std::io::Write;
use std::os::unix::io::OwnedFd;
use std::path::Path;
use std::time::Duration;

use anyhow::anyhow;
use serde::de::DeserializeOwned;

use crate::cli::{self, ScaleTarget};
use crate::command::{resolve_program, ArgTemplate};
use crate::control::client::{Client, ClientError};
use crate::control::protocol::{Command, ErrorCode};
use crate::control::results::{
    ReexecResult, ScaleResult, SignalResult, SocketInfo, Status, StopResult, UpgradeResult,
};
use crate::exit::Failure;
use crate::logging::LogEvent;
use crate::text::escape;

/// How long a quick command (status, scale, signal) waits for its answer.
pub(crate) const QUICK: Duration = Duration::from_secs(30);

/// Runs one client command against the herd at `control`; `private_dir` says that `control`
/// is the default path, whose directory must be the caller's own (as `herd run` requires);
/// `owner` is the uid the server may run as besides root and the caller ([`herd::trust`]).
pub fn run(
    command: cli::Command,
    control: &Path,
    private_dir: bool,
    owner: Option<u32>,
) -> Result<(), Failure> {
    if private_dir {
        check_dir(control)?;
    }
    let quick = Some(QUICK);
    match command {
        cli::Command::Run(_) => unreachable!("herd run is not a client command"),
        cli::Command::Status(args) if args.json => {
            // As herd sent it: fields this client does not know are shown too.
            let status: serde_json::Value = request(control, Command::Status, quick, owner)?;
            let json = serde_json::to_string_pretty(&status).unwrap_or_default();
            print(&format!("{json}\n"))
        }
        cli::Command::Status(_) => {
            let status: Status = request(control, Command::Status, quick, owner)?;
            print(&table::render(&status))
        }
        cli::Command::Scale(args) => scale(args.target, control, owner),
        cli::Command::Upgrade(args) => {
            let timeout_ms = Some(args.timeout.as_millis() as u64);
            let result: UpgradeResult =
                request(control, Command::Upgrade { timeout_ms }, None, owner)?;
            let generation = result.generation;
            print(&format!(
                "upgraded: every worker now runs generation {generation}\n"
            ))
        }
        cli::Command::Stop(args) => {
            let grace_ms = args.grace.map(|g| g.as_millis() as u64);
            let command = Command::Stop {
                grace_ms,
                fast: args.fast,
                takeover: false,
            };
            let _: StopResult = request(control, command, None, owner)?;
            print("stopped\n")
        }
        cli::Command::Attach(args) => attach(args, control, owner),
        cli::Command::Reexec => {
            let result: ReexecResult = request(control, Command::Reexec, quick, owner)?;
            print(&format!(
                "re-executed: herd {} runs as pid {}\n",
                escape(&result.version),
                result.pid
            ))
        }
        cli::Command::Signal(args) => {
            let signal = args.signal.number().to_string();
            let command = Command::Signal {
                signal,
                slot: args.worker,
            };
            let result: SignalResult = request(control, command, quick, owner)?;
            print(&format!(
                "sent {} to {} worker(s)\n",
                args.signal, result.signalled
            ))
        }
    }
}

/// `herd scale`.
fn scale(target: ScaleTarget, control: &Path, owner: Option<u32>) -> Result<(), Failure> {
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
    let result: ScaleResult = request(control, command, Some(QUICK), owner)?;
    match (min, max) {
        (Some(min), Some(max)) => print(&format!(
            "autoscaling between {} and {} workers (now {})\n",
            result.min.unwrap_or(min),
            result.max.unwrap_or(max),
            result.workers
        )),
        _ => print(&format!(
            "scaled from {} to {} workers\n",
            result.previous, result.workers
        )),
    }
}

/// Writes `text` to stdout. A reader that went away (`herd status | head -1`) ends the
/// command quietly, as if everything had been read; any other failure (`> /dev/full`) is an
/// error.
fn print(text: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Failure::Runtime(anyhow!("cannot write to stdout: {e}"))),
    }
}

/// Refuses a default control directory that another user prepared (a symlink, a directory of
/// theirs, or one open to others): what answers there could be anyone's. A missing directory
/// is left to `connect`, which says that no herd runs there.
fn check_dir(control: &Path) -> Result<(), Failure> {
    let Some(dir) = control.parent() else {
        return Ok(());
    };
    if std::fs::symlink_metadata(dir).is_err() {
        return Ok(());
    }
    let uid = herd_sys::process::effective_uid();
    crate::control::path::check_private_dir(dir, uid)
        .map(drop)
        .map_err(Failure::Runtime)
}

/// Sends one request and returns its result, or a failure that says what went wrong. The
/// server must be one the caller trusts ([`herd::trust`], with `owner` named) before its
/// answer is believed.
pub fn request<R: DeserializeOwned>(
    control: &Path,
    command: Command,
    timeout: Option<Duration>,
    owner: Option<u32>,
) -> Result<R, Failure> {
    Client::connect(control, owner)
        .and_then(|mut client| client.call(command, timeout))
        .map_err(failure)
}

/// A client error as the `herd` commands report it.
fn failure(error: ClientError) -> Failure {
    let error = match error {
        ClientError::PathTooLong { .. } => return Failure::Usage(error.to_string()),
        ClientError::Refused { error, .. } => error,
        other => return Failure::Runtime(anyhow!(other)),
    };
    let code = error.code;
    // The message is herd's, but may quote a worker: no control characters reach the terminal.
    let message = escape(&error.message);
    let line = match code {
        ErrorCode::UpgradeFailed => {
            format!("upgrade failed, the old workers keep serving ({code}): {message}")
        }
        // The message says that herd is stopping; for a re-exec check, which binary, why, and
        // that herd keeps running.
        ErrorCode::Stopping | ErrorCode::ReexecCheckFailed => format!("{message} ({code})"),
        _ => format!("herd refused ({code}): {message}"),
    };
    Failure::Runtime(anyhow!(line))
}

/// `herd attach`: fetch the sockets, register with herd, and become COMMAND with the sockets at
/// fds 3, 4, ... (the same process, so `LISTEN_PID` is simply its pid).
fn attach(args: cli::AttachArgs, control: &Path, owner: Option<u32>) -> Result<(), Failure> {
    // Look first, check the command against the sockets, then fetch for real and register:
    // a command that cannot run is never listed as an attached worker.
    let fetched = fetch(control, args.only.clone(), false, owner)?;
    let names: Vec<String> = fetched.iter().map(|(s, _)| s.name.clone()).collect();
    let mut argv = Vec::with_capacity(args.command.len());
    for (i, arg) in args.command.iter().enumerate() {
        let template = ArgTemplate::compile(arg, i, &names).map_err(Failure::Usage)?;
        if let Some(placeholder) = template.worker_only() {
            return Err(Failure::Usage(format!(
                "argument {i}: {placeholder} has no value for an attached process (it has no \
                 slot or generation): remove it from the command"
            )));
        }
        argv.push(template.expand(0, 0));
    }
    let program = resolve_program(&argv[0], std::env::var_os("PATH").as_deref(), None)
        .map_err(Failure::Usage)?;
    drop(fetched);
    // Lead a process group before registering, so that herd, which stops an attached
    // process's group as it stops a worker's, reaches what COMMAND forks too (a shell's
    // foreground job leads its group already; run from a script, this leaves the script's
    // group: see docs on attach and job control). A group this process already leads with
    // others in it (a pipeline's, a script's under setsid) is not taken as COMMAND's: herd
    // checks that itself, and signals only COMMAND then.
    match herd_sys::process::lead_own_group() {
        Err(e) => tracing::warn!(
            event = LogEvent::SetupNote.as_str(),
            "cannot lead a process group ({e}): herd will stop only this process, not what it \
             forks"
        ),
        Ok(()) => {
            let others = herd_sys::process::group_members(herd_sys::process::current_pid());
            if !others.is_empty() {
                tracing::warn!(
                    event = LogEvent::SetupNote.as_str(),
                    "this process leads a process group that other processes share (a \
                     pipeline's or a script's, {} of them): herd will stop only COMMAND, not \
                     what it forks",
                    others.len()
                );
            }
        }
    }
    let fetched = fetch(control, names.clone(), true, owner)?;
    let count = fetched.len();
    // The sockets go to 3, 4, ...; fds this process inherited and does not pass on (a shell's
    // fd 10, say) are set aside, and put back only if the exec fails. execve, as `herd run`
    // starts its workers: no shell fallback for a file the system cannot execute (std's exec
    // is execvp, which would run it through /bin/sh).
    // The log queue dies with this program.
    crate::logging::flush();
    let mut executed = false;
    let fds = fetched.into_iter().map(|(_, fd)| fd).collect();
    // This process's only other thread, if any, is the log writer, which writes to stderr
    // alone: nothing else opens or uses an fd while the sockets are placed.
    let sole = herd_sys::fd::NoOtherThreadUsesFds::promise();
    let error = herd_sys::fd::exec_with_listen_fds(fds, sole, || {
        executed = true;
        exec_attached(&program, &argv, count, &names, control, owner)
    });
    if executed {
        return Err(Failure::Runtime(anyhow!(
            "{}",
            crate::command::explain_exec_error(&program, &error, "")
        )));
    }
    let hint = match error.raw_os_error() {
        Some(libc::EMFILE) | Some(libc::EINVAL) => format!(
            " ({count} sockets need about {} fds: raise the open-file limit, ulimit -n)",
            2 * count + 16
        ),
        _ => String::new(),
    };
    Err(Failure::Runtime(anyhow!(
        "cannot place the sockets at fds 3 to {}: {error}{hint}",
        count + 2
    )))
}

/// Fetches the sockets named in `only` (all if empty), registering this process with `attach`.
pub fn fetch(
    control: &Path,
    only: Vec<String>,
    attach: bool,
    owner: Option<u32>,
) -> Result<Vec<(SocketInfo, OwnedFd)>, Failure> {
    Client::connect(control, owner)
        .and_then(|mut client| client.sockets(only, attach, Some(QUICK)))
        .map_err(failure)
}

/// Replaces this process with `program`, the sockets' variables set in its environment (with
/// `HERD_CONTROL_OWNER` when an owner was named, so that it trusts the same herd);
/// returns only on failure.
fn exec_attached(
    program: &Path,
    argv: &[std::ffi::OsString],
    count: usize,
    names: &[String],
    control: &Path,
    owner: Option<u32>,
) -> std::io::Error {
    use std::ffi::OsStr;
    const DROPPED: &[&str] = &[
        "LISTEN_FDS",
        "LISTEN_FDNAMES",
        "LISTEN_PID",
        "LISTEN_PIDFDID",
        "NOTIFY_SOCKET",
        "HERD_WORKER",
        "HERD_GENERATION",
        "HERD_CONTROL",
        herd::trust::OWNER_VAR,
    ];
    let set: [(&str, std::ffi::OsString); 4] = [
        ("LISTEN_FDS", count.to_string().into()),
        ("LISTEN_FDNAMES", names.join(":").into()),
        ("LISTEN_PID", std::process::id().to_string().into()),
        ("HERD_CONTROL", control.as_os_str().to_owned()),
    ];
    let plan = || -> std::io::Result<herd_sys::spawn::ExecPlan> {
        let mut plan = herd_sys::spawn::ExecPlan::new(program.as_os_str())?;
        for arg in argv {
            plan.arg(arg)?;
        }
        for (key, value) in std::env::vars_os() {
            if !DROPPED.iter().any(|d| OsStr::new(d) == key) {
                plan.env(&key, &value)?;
            }
        }
        for (key, value) in &set {
            plan.env(OsStr::new(key), value)?;
        }
        if let Some(owner) = owner {
            plan.env(
                OsStr::new(herd::trust::OWNER_VAR),
                OsStr::new(&owner.to_string()),
            )?;
        }
        Ok(plan)
    };
    let pipe = herd_sys::process::Signal::from_number(libc::SIGPIPE);
    match (plan(), pipe.map(herd_sys::process::default_disposition)) {
        (Ok(plan), None | Some(Ok(()))) => plan.exec_in_place(),
        (Err(e), _) | (_, Some(Err(e))) => e,
    }
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
