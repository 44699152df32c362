//! The supervisor on Unix: herd's children and their exit statuses as `waitid` gives them,
//! signals, the status of the
//! listening sockets, and herd's own process statistics.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use herd_core::WorkerExit;
use herd_sys::process::Signal;

use crate::spec::Listener;
use crate::supervisor::reap::{Children, Peek};
use crate::supervisor::status::{SocketFileStatus, SocketStatus};

mod process_stats;
pub(crate) mod signals;

pub(crate) use herd_sys::process::{cpu_ticks, ticks_per_second};
pub(crate) use process_stats::process_stats;
pub(crate) use signals::{signal_name, Signals as Intents};

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

/// herd's real children (`waitid`, `waitpid`).
pub struct OwnChildren;

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
