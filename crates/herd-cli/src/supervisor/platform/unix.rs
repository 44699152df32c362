//! The supervisor on Unix: herd's children and their exit statuses as `waitid` gives them,
//! signals, the status of the
//! listening sockets, and herd's own process statistics.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use herd_core::WorkerExit;

use crate::spec::Listener;
use crate::supervisor::reap::{Children, Peek};
use crate::supervisor::status::{SocketFileStatus, SocketStatus};

pub(crate) mod fork_servers;
mod inputs;
mod orphans;
mod process_stats;
mod queues;
mod rebind;
pub(crate) mod signals;
mod spawner;
mod state;
mod turns;
mod usage;

pub(crate) use crate::cli::signal_error;
/// herd's own service manager, which `NOTIFY_SOCKET` names.
pub(crate) use crate::supervisor::systemd::ServiceNotifier as ServiceManager;
pub(crate) use herd_sys::process::{cpu_ticks, ticks_per_second, Signal};
pub(in crate::supervisor) use inputs::{ControlServer, Input, Inputs, Wants};
pub(in crate::supervisor) use orphans::OwnFamily;
pub(crate) use process_stats::process_stats;
pub(in crate::supervisor) use queues::{queue_probes, QueueProbe};
pub(crate) use signals::{signal_name, Signals as Intents};
pub(in crate::supervisor) use spawner::Spawner;
pub(in crate::supervisor) use state::{pool_config, State};
pub(crate) use usage::usage;

/// An effect only Unix has.
#[derive(Debug)]
pub enum Effect {
    /// Answer the client on `connection` directly, waiting at most 5 s for the answer to be
    /// written: the client of the re-exec that made this image, before the loop runs.
    AnswerOn {
        connection: std::os::unix::io::OwnedFd,
        response: crate::control::protocol::Response,
    },
}

impl Effect {
    /// Carries it out.
    pub fn execute(self) {
        match self {
            Effect::AnswerOn {
                connection,
                response,
            } => {
                let mut stream = std::os::unix::net::UnixStream::from(connection);
                let _ = stream.set_write_timeout(Some(std::time::Duration::from_secs(5)));
                let _ = std::io::Write::write_all(&mut stream, &response.to_line());
            }
        }
    }
}

/// How many sockets of its own each worker's slot holds (`--balance reuseport`).
pub fn per_slot_sockets(listeners: &[Listener]) -> usize {
    crate::supervisor::balance::per_slot_sockets(listeners)
}

/// Says, as herd stops, which processes other than herd and its ancestors still hold one of
/// the TCP or UDP sockets it closed its copies of, keeping the port in use (a daemon an
/// attached command or a worker started in a session of its own, out of the reach of herd's
/// stop); nothing where none does.
pub fn say_still_held(listeners: &[Listener]) {
    use crate::spec::SocketKind;
    let sockets = (listeners.iter())
        .filter(|l| matches!(l.kind, SocketKind::Tcp | SocketKind::Udp))
        .map(|l| (l.address.as_str(), l.closed_sockets()));
    for (address, holders) in crate::spec::still_held(sockets) {
        let pids: Vec<String> = holders.iter().map(|h| h.pid.to_string()).collect();
        tracing::warn!(
            event = crate::logging::LogEvent::SocketStillHeld.as_str(),
            address,
            pids = %pids.join(","),
            "{address} stays in use after herd stops: its socket is held{}, which herd did \
             not start or could not reach (a daemon an attached command or a worker started in \
             a session of its own, or another process the socket was passed to); stop them to \
             free it",
            crate::spec::describe_holders(&holders)
        );
    }
}

/// Whether the process `pid` still runs (or is a zombie not yet reaped).
pub fn process_runs(pid: u32) -> bool {
    herd_sys::process::exists(pid)
}

/// Lets through the signals a re-exec held back across `execve`.
pub fn release_held_signals() -> io::Result<()> {
    herd_sys::process::unblock_signals(&signals::held())
}

/// Why a message from a process that is no worker is dropped. On Unix a worker's descendant
/// may speak for it (`systemd-notify` run by a script: its parent chain is walked).
pub const NOT_A_WORKER: &str = "is not a worker nor a descendant of one";

/// How to stop at once while a graceful stop runs, as the log advises.
/// What `herd status` calls the resident memory it shows (`memory_kind`).
pub const RESIDENT_MEMORY: &str = "rss";

pub const STOP_AT_ONCE: &str = "send SIGQUIT or run `herd stop --fast` to stop at once";

/// What the pool needs of a Unix exit status.
pub fn worker_exit(status: ExitStatus) -> WorkerExit {
    WorkerExit {
        success: status.success(),
        killed: status.signal() == Some(Signal::KILL.number()),
        description: describe_exit(status),
        raw: status.into_raw(),
    }
}

/// A slot's last exit read back from the raw wait status a re-exec saved.
pub fn exit_from_raw(raw: i32) -> WorkerExit {
    worker_exit(ExitStatus::from_raw(raw))
}

/// `exit code 3`, `killed by SIGKILL`, `killed by SIGSEGV (core dumped)`.
pub fn describe_exit(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exit code {code}");
    }
    match status.signal() {
        Some(n) => {
            let name =
                Signal::from_number(n).map_or_else(|| format!("signal {n}"), |s| s.to_string());
            let core = if status.core_dumped() {
                " (core dumped)"
            } else {
                ""
            };
            format!("killed by {name}{core}")
        }
        None => format!("{status}"),
    }
}

/// herd's real children (`waitid`, `waitpid`), each the leader of its process group.
pub struct OwnChildren;

impl OwnChildren {
    /// herd's children.
    pub fn new() -> OwnChildren {
        OwnChildren
    }

    /// Asks worker `pid` and its process group to stop with `signal` (then `SIGCONT`, so that
    /// a paused worker can act on it).
    pub fn stop(&mut self, pid: u32, signal: Signal) -> io::Result<()> {
        herd_sys::process::send_stop(signal, |s| herd_sys::process::signal_group(pid, s))
    }

    /// Sends `signal`, and only that, to `pid` alone (`herd signal`).
    pub fn signal(&mut self, pid: u32, signal: Signal) -> io::Result<()> {
        herd_sys::process::signal_process(pid, signal)
    }

    /// Kills `pid`, not reaped yet, with its process group.
    pub fn kill_group(&mut self, pid: u32) -> io::Result<()> {
        herd_sys::process::signal_group(pid, Signal::KILL)
    }
}

/// The notify socket workers send `sd_notify` datagrams to.
pub(crate) use crate::supervisor::notify::NotifySocket;

/// The file of herd's control endpoint, which a takeover moves into place.
pub type ControlFile = crate::spec::SocketFile;

/// The control endpoint on Unix: the socket, its file and who may use it.
pub struct Control {
    /// The socket's file (moved into place at the end of a takeover).
    pub file: crate::spec::SocketFile,
    /// The bound control socket.
    pub listener: std::os::unix::net::UnixListener,
    /// Who may use it.
    pub policy: crate::control::server::AccessPolicy,
    /// The directory its file was bound in, learnt as it was bound (`run`'s `bind_control`,
    /// [`crate::supervisor::socket_files::dir_bound_in`]) or handed over by a re-exec: it is
    /// bound again only there, even if removed before herd first looks at it.
    pub dir: Option<crate::supervisor::socket_files::DirIdentity>,
}

impl Control {
    /// The directory of the control socket's `file`, which herd has just bound (or a previous
    /// image handed over), while that very socket file is there.
    pub fn dir_of(
        file: &crate::spec::SocketFile,
    ) -> Option<crate::supervisor::socket_files::DirIdentity> {
        let (path, dev, ino) = file.parts();
        crate::supervisor::socket_files::dir_holding(path, (dev, ino))
    }

    /// The socket's file, and what the loop serves.
    pub fn split(
        self,
    ) -> (
        ControlFile,
        (
            std::os::unix::net::UnixListener,
            crate::control::server::AccessPolicy,
        ),
    ) {
        (self.file, (self.listener, self.policy))
    }
}

impl Children for OwnChildren {
    fn peek_exit(&mut self, pid: u32) -> io::Result<Peek> {
        match herd_sys::process::peek_exit(pid) {
            Ok(Some(status)) => Ok(Peek::Exited(status)),
            Ok(None) => Ok(Peek::Running),
            Err(e) if e.raw_os_error() == Some(libc::ECHILD) => Ok(Peek::NotOurs),
            Err(e) => Err(e),
        }
    }

    fn reap_own_group(&mut self) -> io::Result<Option<(u32, ExitStatus)>> {
        herd_sys::process::reap_own_group()
    }

    fn first_exited(&mut self) -> Option<(u32, ExitStatus)> {
        // A failure here costs nothing: the scan after it looks at every worker.
        herd_sys::process::peek_any_exit().ok().flatten()
    }
}

/// A duplicate of a listener's socket for a `sockets` answer, and what it is.
pub struct SocketCopy {
    /// The duplicate, sent with the answer.
    pub socket: crate::control::reply::Handed,
    /// `inet`, `inet6`, `unix`..., if the system says.
    pub family: Option<String>,
    /// `stream`, `dgram`..., if the system says.
    pub sock_type: Option<String>,
}

/// The stop signal as an attached process learns it: named as in `HERD_STOP_SIGNAL`, which
/// `herd attach` sets for its command (on Windows, none: it gets a stop event).
pub fn attached_stop_signal(signal: Signal) -> Option<String> {
    Some(crate::worker_env::stop_signal::value(signal))
}

/// Why herd could not stop the attaching process `pid` of `uid` with its signals (another
/// user's, and herd is not allowed to signal it), if so; checked before it is held.
pub fn unstoppable(pid: u32, uid: Option<u32>) -> Option<String> {
    if herd_sys::process::may_signal(pid).unwrap_or(true) {
        // Allowed, or gone already (holding it says so).
        return None;
    }
    let herd = herd_sys::process::effective_uid();
    Some(match uid {
        // The same user as the socket says (its effective uid): a setuid program, whose real
        // uid kill(2) checks too, or a security policy (SELinux, AppArmor, seccomp).
        Some(uid) if uid == herd => format!(
            "herd (uid {herd}) may not signal the attaching process (effective uid {uid}: a \
             setuid program started by another user, or a security policy, refuses it), so it \
             could not stop it with the pool: let herd signal it, or fetch the sockets without \
             attaching"
        ),
        _ => format!(
            "herd (uid {herd}) may not signal the attaching process{}, so it could not stop it \
             with the pool: run herd attach as herd's user or give herd the right to signal it \
             (root, CAP_KILL), or fetch the sockets without attaching",
            uid.map(|uid| format!(" (uid {uid})")).unwrap_or_default()
        ),
    })
}

/// A duplicate of `l`'s socket; `None` once herd closed its copy.
pub fn copy_socket(l: &Listener) -> Option<io::Result<SocketCopy>> {
    let fd = l.fd()?;
    Some(fd.try_clone_to_owned().map(|socket| {
        let info = herd_sys::socket::inspect(fd).ok().flatten();
        SocketCopy {
            socket,
            family: info.map(|i| format!("{:?}", i.family).to_lowercase()),
            sock_type: info.map(|i| format!("{:?}", i.sock_type).to_lowercase()),
        }
    }))
}

/// The status of listening socket `i` (fd `3 + i` in the workers).
pub fn socket_status(i: usize, l: &Listener) -> SocketStatus {
    let queue = l.accept_queue();
    SocketStatus {
        name: l.name.clone(),
        address: l.address.clone(),
        kind: l.kind,
        fd: herd::LISTEN_FDS_START + i as i32,
        queue: queue.map(|q| q.0),
        queue_limit: queue.map(|q| q.1),
        backlog_set: l.backlog_set,
        balance: l.balance(),
        slot_queues: l.group().map_or_else(Vec::new, |g| {
            (0..g.sockets().count())
                .map(|slot| g.queued(slot))
                .collect()
        }),
        file: l.file().and_then(|f| {
            let (path, dev, ino) = f.parts();
            // herd never changes its own working directory.
            let path = match std::env::current_dir() {
                Ok(cwd) if path.is_relative() => cwd.join(path),
                _ => path.to_path_buf(),
            };
            let path = path.to_str()?.to_string();
            Some(SocketFileStatus { path, dev, ino })
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_exits_say_what_the_pool_needs() {
        let code = worker_exit(ExitStatus::from_raw(3 << 8));
        assert!(!code.success && !code.killed);
        assert_eq!(code.description, "exit code 3");
        let killed = worker_exit(ExitStatus::from_raw(libc::SIGKILL));
        assert!(killed.killed);
        assert_eq!(killed.description, "killed by SIGKILL");
        assert!(worker_exit(ExitStatus::from_raw(0)).success);
        assert_eq!(exit_from_raw(3 << 8), code);
    }

    #[test]
    fn a_process_that_is_not_herds_child_is_not_ours() {
        // init is never a child of the test.
        assert_eq!(OwnChildren.peek_exit(1).unwrap(), Peek::NotOurs);
    }
}
