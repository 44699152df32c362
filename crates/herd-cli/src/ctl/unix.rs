//! The client commands on Unix: the herd is reached at its control socket, whose server must
//! be one the caller trusts ([`herd::trust`]); `attach` becomes COMMAND with the sockets.

use std::os::unix::io::OwnedFd;
use std::path::Path;
use std::time::Duration;

use anyhow::anyhow;
use serde::de::DeserializeOwned;

use super::{ask, failure, WireSignal, QUICK};
use crate::cli;
use crate::command::{resolve_attached, ArgTemplate};
use crate::control::client::Client;
use crate::control::protocol::Command;
use crate::control::results::SocketInfo;
use crate::exit::Failure;
use crate::logging::LogEvent;
use crate::worker_env::stop_signal::STOP_SIGNAL_VAR;

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
    match command {
        cli::Command::Attach(args) => attach(args, control, owner),
        command => ask(command, &|| Client::connect(control, owner)),
    }
}

/// A signal as the protocol names it: its number, which the server reads like a name.
pub(super) fn wire_signal(args: &cli::SignalArgs) -> Result<WireSignal, Failure> {
    Ok(WireSignal {
        wire: args.signal.number().to_string(),
        shown: args.signal.to_string(),
    })
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
    request_with_peer(control, command, timeout, owner).map(|(answer, _, _)| answer)
}

/// [`request`], with the user and the pid of the herd that answered (the kernel's word, from
/// the very connection that carried the answer: whoever made the listening socket).
pub fn request_with_peer<R: DeserializeOwned>(
    control: &Path,
    command: Command,
    timeout: Option<Duration>,
    owner: Option<u32>,
) -> Result<(R, Option<u32>, Option<u32>), Failure> {
    Client::connect(control, owner)
        .and_then(|mut client| {
            let (uid, pid) = (client.server_uid(), client.server_pid());
            client
                .call(command, timeout)
                .map(|answer| (answer, uid, pid))
        })
        .map_err(failure)
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
    let program =
        resolve_attached(&argv[0], std::env::var_os("PATH").as_deref()).map_err(Failure::Usage)?;
    drop(fetched);
    lead_own_group();
    let (fetched, stop_signal) = Client::connect(control, owner)
        .and_then(|mut client| client.attach(names.clone(), Some(QUICK)))
        .map_err(failure)?;
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
        let env = AttachedEnv {
            count,
            names: &names,
            control,
            owner,
            stop_signal: stop_signal.as_deref(),
        };
        exec_attached(&program, &argv, &env)
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

/// Leads a process group before registering, so that herd, which stops an attached process's
/// group as it stops a worker's, reaches what COMMAND forks too (a shell's foreground job leads
/// its group already; run from a script, this leaves the script's group: see docs on attach
/// and job control). A group this process already leads with others in it (a pipeline's, a
/// script's under setsid) is not taken as COMMAND's: herd checks that itself, and signals only
/// COMMAND then.
fn lead_own_group() {
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

/// What `herd attach` tells its command in the environment.
struct AttachedEnv<'a> {
    /// How many sockets are at fds 3, 4, ...
    count: usize,
    /// Their names, in order.
    names: &'a [String],
    /// herd's control socket.
    control: &'a Path,
    /// The uid named as herd's owner, if one was.
    owner: Option<u32>,
    /// herd's stop signal, as `HERD_STOP_SIGNAL` names it (`None` from an older herd).
    stop_signal: Option<&'a str>,
}

/// Replaces this process with `program`, the sockets' variables set in its environment (with
/// `HERD_CONTROL_OWNER` when an owner was named, so that it trusts the same herd, and
/// `HERD_STOP_SIGNAL` as for herd's own workers); returns only on failure.
fn exec_attached(program: &Path, argv: &[std::ffi::OsString], env: &AttachedEnv) -> std::io::Error {
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
        STOP_SIGNAL_VAR,
    ];
    let set: [(&str, std::ffi::OsString); 4] = [
        ("LISTEN_FDS", env.count.to_string().into()),
        ("LISTEN_FDNAMES", env.names.join(":").into()),
        ("LISTEN_PID", std::process::id().to_string().into()),
        ("HERD_CONTROL", env.control.as_os_str().to_owned()),
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
        if let Some(owner) = env.owner {
            plan.env(
                OsStr::new(herd::trust::OWNER_VAR),
                OsStr::new(&owner.to_string()),
            )?;
        }
        if let Some(signal) = env.stop_signal {
            plan.env(OsStr::new(STOP_SIGNAL_VAR), OsStr::new(signal))?;
        }
        Ok(plan)
    };
    let pipe = herd_sys::process::Signal::from_number(libc::SIGPIPE);
    match (plan(), pipe.map(herd_sys::process::default_disposition)) {
        (Ok(plan), None | Some(Ok(()))) => plan.exec_in_place(),
        (Err(e), _) | (_, Some(Err(e))) => e,
    }
}

/// Whether stdout's reader is gone (a pipe whose reader exited: `herd logs -f | head -1`),
/// seen without writing to it.
pub(super) fn stdout_gone() -> bool {
    use std::os::unix::io::AsFd;
    herd_sys::fd::hung_up(std::io::stdout().as_fd()).unwrap_or(false)
}

/// Whether this process may draw on stdout's terminal: its group is the terminal's
/// foreground one (a background one is stopped by `SIGTTOU` as it sets the terminal up).
pub(super) fn in_foreground() -> bool {
    use std::os::unix::io::AsFd;
    herd_sys::process::in_terminal_foreground(std::io::stdout().as_fd())
}
