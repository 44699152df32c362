//! Receiving notify datagrams without taking the files their senders attach (`SCM_RIGHTS`).
//!
//! A file received becomes an fd, and an fd can only be let go of by a close, which calls the
//! file's `->flush` (`filp_close`): on a FUSE file that is a request to its daemon, which a
//! hostile one never answers, and the close then waits for good (no signal ends it once the
//! daemon holds the request). On Linux no file a sender attaches becomes an fd here: each
//! datagram is read with `MSG_PEEK` and room for its sender's credentials only (the kernel
//! installs no fd then, and drops its copies at once, never the last), and taken off the
//! queue afterwards, on a closing thread ([`crate::fd::close_in_background`]), again with no
//! room for fds: the kernel releases the files then (`fput`, whose last `__fput` calls
//! `->release`, never `->flush`), in that thread. A release can wait too (a TCP socket's
//! `SO_LINGER`; a FUSE file of a filesystem with write-back caching writes its dirty pages
//! first): the closing thread's watcher interrupts it, or leaves the thread to it and takes
//! the queue on another. The socket's peek offset (`SO_PEEK_OFF`) keeps reads and takings
//! apart: each peek moves it past the datagram read, each taking moves it back, so that every
//! datagram is read once, and taken once, in order; several takings may be under way at once
//! (each takes the head of the queue: only their number matters). Elsewhere, or where the
//! socket's credentials (`SO_PASSCRED`, which fill the room left) or peek offset cannot be
//! turned on, the fds are received and closed on a closing thread.

use std::io;
use std::os::unix::io::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One datagram received on a notify socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Datagram {
    /// How many bytes were stored in the buffer.
    pub len: usize,
    /// Whether the datagram was longer than the buffer (the rest is lost).
    pub truncated: bool,
    /// The sender's pid, as the kernel vouches for it (`SCM_CREDENTIALS`); `None` where the
    /// system does not say.
    pub sender_pid: Option<u32>,
}

/// Asks the kernel to attach the sender's credentials to every datagram `socket` receives
/// (`SO_PASSCRED`), which [`Receiver::recv`] reads. Linux only; elsewhere a no-op.
pub fn enable_credentials(socket: BorrowedFd<'_>) -> io::Result<()> {
    imp::enable_credentials(socket)
}

/// The receiving side of a notify socket (see the module's documentation): datagrams are read
/// here, without blocking; the files they carry are never this process's fds on Linux.
#[derive(Debug)]
pub struct Receiver {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// A copy of the socket, for the closing threads.
    socket: OwnedFd,
    /// Whether datagrams are peeked, then taken later (see [`imp::start_peeking`]).
    peeks: bool,
    /// Held while a datagram is read: [`Receiver::recv`]'s fast path takes the head of the
    /// queue, which is the datagram it read only if no other read comes between.
    reading: Mutex<()>,
    /// Shared alone with what runs when a taking is given up on: that holds no socket.
    settling: Arc<Settling>,
}

/// The datagrams read and not yet taken off the queue, and their waiters.
#[derive(Debug, Default)]
struct Settling {
    counts: Mutex<Counts>,
    /// Signalled as `pending` reaches 0.
    settled: Condvar,
}

/// The datagrams read and not yet taken off the queue.
#[derive(Debug, Default)]
struct Counts {
    /// Not taken yet, nor given up on (their takings wait in a release): what
    /// [`Receiver::settle`] waits for.
    pending: usize,
    /// Takings not returned yet, given up on or not: while any is, the head of the queue may
    /// be a datagram another taking is for.
    // The peek path's (Linux).
    #[cfg_attr(not(any(target_os = "linux", target_os = "android")), allow(dead_code))]
    outstanding: usize,
}

impl Receiver {
    /// Reads `socket`, a datagram socket, from now on; keeps a copy of it. On Linux the
    /// socket's credentials are turned on (as [`enable_credentials`] does) and its peek offset
    /// (`SO_PEEK_OFF` 0), unless it is on already: a socket another image of this program read
    /// is read on from where that one stopped. Where they cannot be, fds are received and
    /// closed on a closing thread, as elsewhere.
    pub fn new(socket: BorrowedFd<'_>) -> io::Result<Receiver> {
        let socket = socket.try_clone_to_owned()?;
        let peeks = imp::start_peeking(socket.as_fd());
        Ok(Receiver {
            shared: Arc::new(Shared {
                socket,
                peeks,
                reading: Mutex::new(()),
                settling: Arc::default(),
            }),
        })
    }

    /// Receives one datagram into `buf` without blocking: `Ok(None)` when none is waiting.
    /// Calls from several threads read one datagram at a time.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<Datagram>> {
        let _reading = lock(&self.shared.reading);
        if self.shared.peeks {
            return imp::peek_and_take_later(&self.shared, buf);
        }
        recv_closing_fds(self.shared.socket.as_fd(), buf)
    }

    /// Waits at most `within` until every datagram read is off the socket's queue (their
    /// files released, or their closing threads given up on); whether they are. Before the
    /// socket is handed to another program, which would read them again.
    pub fn settle(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let settling = &self.shared.settling;
        let mut counts = settling.counts();
        while counts.pending > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            counts = (settling.settled.wait_timeout(counts, left))
                .map_or_else(|p| p.into_inner().0, |(counts, _)| counts);
        }
        true
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

#[cfg_attr(not(any(target_os = "linux", target_os = "android")), allow(dead_code))] // the peek path's
impl Settling {
    fn counts(&self) -> MutexGuard<'_, Counts> {
        lock(&self.counts)
    }

    /// Whether the datagram just read is the head of the queue: no taking is outstanding.
    fn reads_the_head(&self) -> bool {
        self.counts().outstanding == 0
    }

    /// A taking of one datagram is queued.
    fn queued(&self) {
        let mut counts = self.counts();
        counts.pending += 1;
        counts.outstanding += 1;
    }

    /// A taking returned (`returned`), or was given up on; its datagram is off the queue,
    /// unless `counted` says so already.
    fn taken(&self, counted: &std::sync::atomic::AtomicBool, returned: bool) {
        let mut counts = self.counts();
        if returned {
            counts.outstanding = counts.outstanding.saturating_sub(1);
        }
        if counted.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        counts.pending = counts.pending.saturating_sub(1);
        if counts.pending == 0 {
            self.settled.notify_all();
        }
    }
}

/// The most descriptors one message carries (Linux's `SCM_MAX_FD`).
const MAX_FDS: usize = 253;

/// [`Receiver::recv`] where there is no peek offset: fds a sender attached are received, and
/// closed at once on a closing thread ([`crate::fd::close_in_background`]).
fn recv_closing_fds(socket: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Option<Datagram>> {
    // Room for the most fds a message can carry, aligned for cmsghdr: those that did not fit
    // would be released in this thread.
    let mut control = [0u64; 32 + MAX_FDS / 2];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: a zeroed msghdr is valid; we point it at buffers that outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: `msg` describes buffers that outlive the call.
    let n = match unsafe { receive(socket, &mut msg, imp::RECV_FLAGS)? } {
        Some(n) => n,
        None => return Ok(None),
    };
    let mut sender_pid = None;
    // SAFETY: `msg` is what recvmsg just filled; SCM_RIGHTS data is an array of fds the kernel
    // just installed for us, read unaligned within the message's length.
    unsafe {
        each_control_message(&msg, |level, kind, data, len| {
            close_passed_fds(level, kind, data, len);
            sender_pid = sender_pid.or_else(|| imp::sender_pid(level, kind, data, len));
        });
    }
    Ok(Some(Datagram {
        len: n.min(buf.len()),
        truncated: n > buf.len() || msg.msg_flags & libc::MSG_TRUNC != 0,
        sender_pid,
    }))
}

/// `recvmsg` of one datagram from `socket` into `msg` with `flags`, again when interrupted:
/// its length, `None` when none is waiting (`flags` hold `MSG_DONTWAIT`).
///
/// # Safety
///
/// `msg` describes buffers valid for writes for the call.
unsafe fn receive(
    socket: BorrowedFd<'_>,
    msg: &mut libc::msghdr,
    flags: libc::c_int,
) -> io::Result<Option<usize>> {
    loop {
        let n = libc::recvmsg(socket.as_raw_fd(), msg, flags);
        if n >= 0 {
            return Ok(Some(n as usize));
        }
        let err = io::Error::last_os_error();
        match err.kind() {
            io::ErrorKind::WouldBlock => return Ok(None),
            io::ErrorKind::Interrupted => continue,
            _ => return Err(err),
        }
    }
}

/// Calls `each` with every control message `msg` holds: its level, type, data and the data's
/// length.
///
/// # Safety
///
/// `msg` is one recvmsg filled: its control buffer holds `msg_controllen` valid bytes.
unsafe fn each_control_message(
    msg: &libc::msghdr,
    mut each: impl FnMut(libc::c_int, libc::c_int, *const u8, usize),
) {
    // The CMSG_* helpers walk the control buffer the kernel filled, within msg_controllen,
    // which the caller vouches for; each header they return is in it. (No unsafe block: Rust
    // 1.63 calls one inside an unsafe fn unnecessary.)
    let mut cmsg = libc::CMSG_FIRSTHDR(msg);
    while !cmsg.is_null() {
        let data = libc::CMSG_DATA(cmsg);
        let len = ((*cmsg).cmsg_len as usize).saturating_sub(data as usize - cmsg as usize);
        each((*cmsg).cmsg_level, (*cmsg).cmsg_type, data, len);
        cmsg = libc::CMSG_NXTHDR(msg, cmsg);
    }
}

/// Closes the fds of one control message on a closing thread, if it is `SCM_RIGHTS`.
///
/// # Safety
///
/// `data` points at `len` bytes of a control message a recvmsg just filled (as
/// [`each_control_message`] gives them): `SCM_RIGHTS` data is fds the kernel installed for us.
unsafe fn close_passed_fds(level: libc::c_int, kind: libc::c_int, data: *const u8, len: usize) {
    if level != libc::SOL_SOCKET || kind != libc::SCM_RIGHTS {
        return;
    }
    for i in 0..len / std::mem::size_of::<libc::c_int>() {
        let fd = std::ptr::read_unaligned((data as *const libc::c_int).add(i));
        // The kernel gave it to us: ours alone.
        crate::fd::close_in_background(std::os::unix::io::FromRawFd::from_raw_fd(fd));
    }
}

/// Peeking, then taking later (Linux).
#[cfg(any(target_os = "linux", target_os = "android"))]
#[path = "receive/linux.rs"]
mod imp;

/// Elsewhere: fds are received and closed on a closing thread.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
#[path = "receive/other.rs"]
mod imp;

#[cfg(test)]
mod tests;
