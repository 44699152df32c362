//! herd's children as [`orphans`](crate::supervisor::orphans) sees them: `/proc`, `waitpid`
//! by pid and `kill`.

use herd_sys::process::{Child, Signal};

use crate::spec::Listener;
use crate::supervisor::orphans::Family;
use crate::supervisor::warm_up::Lowered;

/// herd's real children.
#[derive(Default)]
pub struct OwnFamily<'a> {
    /// herd's children as the caller just read them: the first look takes them instead of
    /// reading `/proc` again (thousands of pids with thousands of workers).
    listed: Option<Vec<u32>>,
    /// herd's listeners, to tell which an orphan holds.
    listeners: &'a [Listener],
    /// Their sockets' names and inodes, read when an orphan is first found: a look that finds
    /// none reads nothing (under `--balance reuseport` there is a socket per slot).
    sockets: Option<Vec<(String, u64)>>,
    /// `--starting-nice`: how starting workers are lowered and the nice value herd gives
    /// ready ones, which an orphan found still lowered gets.
    warm_up: Option<(Lowered, i32)>,
}

impl<'a> OwnFamily<'a> {
    /// The family whose first list of children is `children`, read a moment ago.
    pub fn listed(children: Vec<u32>) -> OwnFamily<'a> {
        OwnFamily {
            listed: Some(children),
            ..OwnFamily::default()
        }
    }

    /// The family that tells which of `listeners`' sockets an orphan holds.
    pub fn with_sockets(mut self, listeners: &'a [Listener]) -> OwnFamily<'a> {
        self.listeners = listeners;
        self
    }

    /// The family that gives an orphan still at `warm_up`'s starting priority (lowered, nice
    /// value of ready workers) herd's.
    pub fn with_warm_up(mut self, warm_up: Option<(Lowered, i32)>) -> OwnFamily<'a> {
        self.warm_up = warm_up;
        self
    }

    /// The names and inodes of herd's sockets, read once.
    fn sockets(&mut self) -> &[(String, u64)] {
        let listeners = self.listeners;
        self.sockets.get_or_insert_with(|| {
            let mut sockets = Vec::new();
            for l in listeners {
                for inode in l.sockets().filter_map(crate::spec::socket_inode_of) {
                    sockets.push((l.name.clone(), inode));
                }
            }
            sockets
        })
    }
}

impl Family for OwnFamily<'_> {
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
        if self.listeners.is_empty() {
            return Vec::new();
        }
        let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            return Vec::new();
        };
        let inodes: std::collections::HashSet<u64> = entries
            .flatten()
            .filter_map(|e| crate::spec::socket_inode_at(&e.path()))
            .collect();
        let mut held: Vec<String> = Vec::new();
        for (name, inode) in self.sockets() {
            if inodes.contains(inode) && !held.contains(name) {
                held.push(name.clone());
            }
        }
        held
    }

    fn restore_priority(&mut self, pid: u32) -> std::io::Result<usize> {
        // Not a trickle's nice value: processes may have chosen it themselves.
        match self.warm_up {
            Some((how, serving)) => super::spawner::raise_lowered(pid, how, serving),
            None => Ok(0),
        }
    }

    fn born_at(&mut self, pid: u32) -> Option<std::time::Instant> {
        // Both clocks read together: the boot clock's ticks since the birth, back from now.
        let born = herd_sys::process::start_time(pid)?;
        let (now, ticks) = (std::time::Instant::now(), herd_sys::process::boot_ticks()?);
        let per_second = herd_sys::process::ticks_per_second().max(1);
        let ago = ticks.saturating_sub(born).saturating_mul(1000) / per_second;
        now.checked_sub(std::time::Duration::from_millis(ago))
    }

    fn signal(&mut self, pid: u32, signal: Signal) {
        let sent =
            herd_sys::process::send_stop(signal, |s| herd_sys::process::signal_process(pid, s));
        if let Err(e) = sent {
            tracing::debug!(pid, "cannot send {signal} to orphan {pid}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::time::Instant;

    use super::*;
    use crate::spec::SocketKind;
    use crate::supervisor::orphans::Orphans;

    #[test]
    fn a_look_that_finds_no_orphan_reads_no_socket_of_herd() {
        // The look runs on the supervisor's loop every second and at every exit: reading each
        // socket's link there (one per slot under reuseport) cost thousands of reads a look.
        let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = socket.local_addr().unwrap().to_string();
        let listener =
            Listener::restore("http".into(), SocketKind::Tcp, address, socket.into(), None);
        let listeners = [listener];
        let mut family = OwnFamily::listed(Vec::new()).with_sockets(&listeners);
        Orphans::default().look(
            &mut family,
            &HashSet::new(),
            Default::default(),
            Instant::now(),
        );
        assert!(family.sockets.is_none(), "read with no orphan found");
        // Asked about a process (this one holds the socket), it reads them once.
        assert_eq!(family.sockets_held(std::process::id()), ["http"]);
        assert_eq!(family.sockets().len(), 1);
    }
}
