//! herd's children as [`orphans`](crate::supervisor::orphans) sees them: `/proc`, `waitpid`
//! by pid and `kill`.

use herd_sys::process::{Child, Signal};

use crate::supervisor::orphans::Family;

/// herd's real children.
#[derive(Default)]
pub struct OwnFamily {
    /// herd's children as the caller just read them: the first look takes them instead of
    /// reading `/proc` again (thousands of pids with thousands of workers).
    listed: Option<Vec<u32>>,
}

impl OwnFamily {
    /// The family whose first list of children is `children`, read a moment ago.
    pub fn listed(children: Vec<u32>) -> OwnFamily {
        OwnFamily {
            listed: Some(children),
        }
    }
}

impl Family for OwnFamily {
    fn children(&mut self) -> Vec<u32> {
        self.listed
            .take()
            .unwrap_or_else(herd_sys::process::own_children)
    }

    fn describe(&mut self, pid: u32) -> Option<Child> {
        herd_sys::process::describe_child(pid)
    }

    fn own_group(&mut self) -> u32 {
        herd_sys::process::own_group()
    }

    fn reap(&mut self, pid: u32) -> Option<std::process::ExitStatus> {
        herd_sys::process::reap(pid).ok().flatten()
    }

    fn signal(&mut self, pid: u32, signal: Signal) {
        let sent =
            herd_sys::process::send_stop(signal, |s| herd_sys::process::signal_process(pid, s));
        if let Err(e) = sent {
            tracing::debug!(pid, "cannot send {signal} to orphan {pid}: {e}");
        }
    }
}
