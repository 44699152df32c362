//! Where the control pipe's server instances come from: a new one waits for each next client,
//! and an instance whose client is gone is never connected again. mio's named pipe keeps a
//! finished connection's read and write state in the instance (bytes or a read error the client
//! left, a write that failed as it left), and a reconnected instance gives them to its next
//! client (mio issue 1983): that client was taken for gone at once, or its first answer failed
//! with the last client's write. So when no new instance can be made while the only one serves
//! a client, that one is closed once its client is gone and a new one is made in its place
//! ([`Instances::renew`]), the pipe's name staying herd's.

use std::ffi::OsStr;
use std::io;

use herd_sys::windows::pipe::{instances, SecurePipe};
use tokio::net::windows::named_pipe::NamedPipeServer;

/// The instances of `pipe`, each made by `next` (the pipe's `next_instance`; a test's may fail).
#[derive(Debug)]
pub(super) struct Instances<'a, N> {
    pipe: &'a SecurePipe,
    next: N,
    /// Whether the pipe's only instance was closed before another could be made: the name is
    /// no longer held, and the next instance must be its first again.
    released: bool,
}

impl<'a, N: FnMut(&SecurePipe) -> io::Result<NamedPipeServer>> Instances<'a, N> {
    /// The instances of `pipe`, made by `next`.
    pub fn new(pipe: &'a SecurePipe, next: N) -> Self {
        Instances {
            pipe,
            next,
            released: false,
        }
    }

    /// The pipe's name.
    pub fn name(&self) -> &'a OsStr {
        self.pipe.name()
    }

    /// A new instance to wait for the next client on: another of the pipe's, or its first again
    /// if [`renew`](Instances::renew) let the name go (so that a process that took the name
    /// meanwhile makes this fail instead of herd serving behind it).
    pub fn next_instance(&mut self) -> io::Result<NamedPipeServer> {
        if self.released {
            let first = self.pipe.first_instance();
            self.released = first.is_err();
            return first;
        }
        (self.next)(self.pipe)
    }

    /// Closes `lent`, an instance whose client is gone, and makes a new one in its place: while
    /// `lent` is still open if one can be made, else once it is closed (which frees what it
    /// held), as the pipe's first instance again if `lent` was its only one.
    pub fn renew(&mut self, lent: NamedPipeServer) -> io::Result<NamedPipeServer> {
        // A write still pending for the client that left fails now, instead of holding the
        // instance and its buffer.
        let _ = lent.disconnect();
        if let Ok(next) = self.next_instance() {
            return Ok(next);
        }
        let only = instances(&lent).map_or(true, |count| count <= 1);
        drop(lent);
        self.released |= only;
        self.next_instance()
    }
}
