//! herd's children as [`orphans`](crate::supervisor::orphans) sees them: `/proc`, `waitpid`
//! by pid and `kill`.

use std::os::unix::io::AsRawFd;

use herd_sys::process::{Child, Signal};

use crate::supervisor::orphans::Family;

/// herd's real children.
#[derive(Default)]
pub struct OwnFamily {
    /// herd's children as the caller just read them: the first look takes them instead of
    /// reading `/proc` again (thousands of pids with thousands of workers).
    listed: Option<Vec<u32>>,
    /// herd's sockets, to tell which an orphan holds: name and inode.
    sockets: Vec<(String, u64)>,
}

impl OwnFamily {
    /// The family whose first list of children is `children`, read a moment ago.
    pub fn listed(children: Vec<u32>) -> OwnFamily {
        OwnFamily {
            listed: Some(children),
            sockets: Vec::new(),
        }
    }

    /// The family that tells which of `listeners`' sockets an orphan holds.
    pub fn with_sockets(mut self, listeners: &[crate::spec::Listener]) -> OwnFamily {
        for l in listeners {
            let fds = l
                .fd()
                .into_iter()
                .chain(l.group().into_iter().flat_map(|g| g.sockets()));
            for fd in fds {
                if let Some(inode) = socket_inode(&format!("/proc/self/fd/{}", fd.as_raw_fd())) {
                    self.sockets.push((l.name.clone(), inode));
                }
            }
        }
        self
    }
}

/// The inode of the socket that the `/proc` fd link at `link` names (`socket:[INODE]`).
fn socket_inode(link: &str) -> Option<u64> {
    let target = std::fs::read_link(link).ok()?;
    let target = target.to_str()?;
    target
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
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

    fn sockets_held(&mut self, pid: u32) -> Vec<String> {
        if self.sockets.is_empty() {
            return Vec::new();
        }
        let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            return Vec::new();
        };
        let inodes: std::collections::HashSet<u64> = entries
            .flatten()
            .filter_map(|e| socket_inode(e.path().to_str()?))
            .collect();
        let mut held: Vec<String> = Vec::new();
        for (name, inode) in &self.sockets {
            if inodes.contains(inode) && !held.contains(name) {
                held.push(name.clone());
            }
        }
        held
    }

    fn signal(&mut self, pid: u32, signal: Signal) {
        let sent =
            herd_sys::process::send_stop(signal, |s| herd_sys::process::signal_process(pid, s));
        if let Err(e) = sent {
            tracing::debug!(pid, "cannot send {signal} to orphan {pid}: {e}");
        }
    }
}
