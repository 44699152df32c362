//! The listening sockets' accept queues, read on the sampler's thread: copies of the TCP
//! sockets made on the loop, each read with `TCP_INFO` there (waiting connections and the
//! backlog in force).

use std::os::unix::io::{AsFd, OwnedFd};

use crate::spec::{Listener, SocketKind};
use crate::supervisor::sampler::ListenQueue;

/// One TCP listener's sockets (one, or one per slot under `reuseport`), to read off the loop.
pub struct QueueProbe {
    socket: String,
    fds: Vec<OwnedFd>,
    set: Option<u32>,
}

/// A probe for each TCP listener herd still holds (UDP and Unix sockets have no such queue to
/// read; shared memory is no socket).
pub fn queue_probes(listeners: &[Listener]) -> Vec<QueueProbe> {
    listeners
        .iter()
        .filter(|l| l.kind == SocketKind::Tcp)
        .filter_map(|l| {
            let fds: Vec<OwnedFd> = match l.group() {
                Some(group) => group
                    .sockets()
                    .filter_map(|fd| fd.try_clone_to_owned().ok())
                    .collect(),
                None => vec![l.fd()?.try_clone_to_owned().ok()?],
            };
            Some(QueueProbe {
                socket: l.name.clone(),
                fds,
                set: l.backlog_set,
            })
        })
        .collect()
}

impl QueueProbe {
    /// The queue now: connections waiting over all its sockets, and the smallest backlog.
    pub fn read(&self) -> Option<ListenQueue> {
        let read = |fd: &OwnedFd| herd_sys::socket::accept_queue(fd.as_fd()).ok().flatten();
        let (queued, backlog) = self
            .fds
            .iter()
            .filter_map(read)
            .reduce(|a, b| (a.0 + b.0, a.1.min(b.1)))?;
        Some(ListenQueue {
            socket: self.socket.clone(),
            queued,
            backlog,
            set: self.set,
        })
    }
}
