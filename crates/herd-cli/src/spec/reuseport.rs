//! `--balance reuseport`: one `SO_REUSEPORT` listening socket per worker slot, all held by
//! herd, so that each worker has its own accept queue and a restarting worker's queue waits
//! for its successor.
//!
//! Slot k's socket is the k-th to join the kernel's reuseport group, and herd never closes one
//! while it runs: the group's numbering is then the slot numbering, and a classic BPF program
//! ([`herd_sys::reuseport::steer`]) chooses among the slots that should get new connections.
//! A slot taken out of rotation keeps its socket (and the connections already queued in it)
//! and is served again when the slot is used again.

use std::net::SocketAddr;
use std::os::unix::io::{AsFd, BorrowedFd, OwnedFd};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use socket2::{Domain, Protocol, Socket, Type};

/// How every socket of a group is made, so that the ones for new slots match the first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupOptions {
    /// The listen backlog.
    pub backlog: u32,
    /// `TCP_NODELAY`, inherited by accepted connections.
    pub nodelay: bool,
    /// `O_NONBLOCK`.
    pub nonblocking: bool,
    /// `IPV6_V6ONLY`, for IPv6 addresses.
    pub v6only: bool,
}

/// The per-slot sockets of one `--bind`.
#[derive(Debug)]
pub struct SlotSockets {
    address: SocketAddr,
    options: GroupOptions,
    /// Index k is slot k's socket.
    sockets: Vec<OwnedFd>,
    /// The slots the group's program sends new connections to, once one is attached.
    steering: Option<Vec<u32>>,
}

impl SlotSockets {
    /// A socket with `SO_REUSEPORT` set, not yet bound.
    pub fn socket(address: SocketAddr, options: &GroupOptions) -> anyhow::Result<Socket> {
        let socket = Socket::new(
            Domain::for_address(address),
            Type::STREAM,
            Some(Protocol::TCP),
        )?;
        if address.is_ipv6() {
            socket.set_only_v6(options.v6only)?;
        }
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        if options.nodelay {
            socket.set_tcp_nodelay(true)?;
        }
        Ok(socket)
    }

    /// A group whose first socket (slot 0's) is `first`, bound and listening at `address`.
    pub fn new(first: OwnedFd, address: SocketAddr, options: GroupOptions) -> SlotSockets {
        SlotSockets {
            address,
            options,
            sockets: vec![first],
            steering: None,
        }
    }

    /// A group restored after a re-exec, its sockets in slot order.
    pub fn restore(sockets: Vec<OwnedFd>, address: SocketAddr, options: GroupOptions) -> Self {
        SlotSockets {
            address,
            options,
            sockets,
            steering: None,
        }
    }

    /// The sockets, in slot order.
    pub fn sockets(&self) -> impl Iterator<Item = BorrowedFd<'_>> {
        self.sockets.iter().map(AsFd::as_fd)
    }

    /// Where every socket is bound.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// How every socket is made.
    pub fn options(&self) -> GroupOptions {
        self.options
    }

    /// Binds the sockets missing up to slot `slot`'s, in slot order (which keeps the group's
    /// numbering equal to the slot numbering).
    pub fn ensure(&mut self, slot: usize) -> anyhow::Result<()> {
        while self.sockets.len() <= slot {
            let socket = Self::socket(self.address, &self.options)?;
            socket.bind(&self.address.into()).with_context(|| {
                format!(
                    "cannot bind another SO_REUSEPORT socket at {} for slot {}",
                    self.address,
                    self.sockets.len()
                )
            })?;
            socket.listen(self.options.backlog.min(i32::MAX as u32) as i32)?;
            if self.options.nonblocking {
                socket.set_nonblocking(true)?;
            }
            // Until the next steering, the group's program (if any) never picks it.
            self.sockets.push(socket.into());
        }
        Ok(())
    }

    /// Slot `slot`'s socket, once [`ensure`](Self::ensure) bound it.
    pub fn get(&self, slot: usize) -> Option<BorrowedFd<'_>> {
        self.sockets.get(slot).map(AsFd::as_fd)
    }

    /// Sends new connections to a random one of `slots` (those without a socket yet are left
    /// out); does nothing when that was already asked for, or when no slot is left.
    pub fn steer(&mut self, slots: &[usize]) -> std::io::Result<()> {
        let targets: Vec<u32> = slots
            .iter()
            .filter(|&&s| s < self.sockets.len())
            .map(|&s| s as u32)
            .collect();
        if targets.is_empty() || self.steering.as_deref() == Some(&targets[..]) {
            return Ok(());
        }
        // Remembered even when it fails, so that a failure is reported once per change.
        let result = herd_sys::reuseport::steer(self.sockets[0].as_fd(), &targets);
        self.steering = Some(targets);
        result
    }

    /// Connections waiting in slot `slot`'s queue (0 when it has no socket).
    pub fn queued(&self, slot: usize) -> u32 {
        self.sockets
            .get(slot)
            .and_then(|s| herd_sys::socket::accept_queue(s.as_fd()).ok().flatten())
            .map_or(0, |(waiting, _)| waiting)
    }
}
