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
//! datagram is read once, and taken once, in order. Elsewhere the fds are received and closed
//! on a closing thread.

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
    #[cfg(any(target_os = "linux", target_os = "android"))]
    set_option(socket, libc::SO_PASSCRED, 1)?;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = socket;
    Ok(())
}

/// Sets the `SOL_SOCKET` option `option` of `socket` to `value`.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn set_option(socket: BorrowedFd<'_>, option: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: setsockopt reads one c_int from `value`, whose size we pass.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
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
    /// Whether its peek offset is on, so that datagrams are peeked, then taken later.
    peeks: bool,
    /// How many datagrams were read and are not taken off the queue yet.
    pending: Mutex<usize>,
    /// Signalled as `pending` reaches 0.
    settled: Condvar,
}

impl Receiver {
    /// Reads `socket`, a datagram socket (with [`enable_credentials`] for senders' pids),
    /// from now on; keeps a copy of it. On Linux its peek offset is turned on (`SO_PEEK_OFF`
    /// 0), unless it is on already: a socket another image of this program read is read on
    /// from where that one stopped. Where it cannot be, fds are received and closed on a
    /// closing thread, as elsewhere.
    pub fn new(socket: BorrowedFd<'_>) -> io::Result<Receiver> {
        let socket = socket.try_clone_to_owned()?;
        #[cfg(any(target_os = "linux", target_os = "android"))]
        let peeks = match peek_offset(socket.as_fd()) {
            Ok(offset) if offset >= 0 => true,
            Ok(_) => set_option(socket.as_fd(), libc::SO_PEEK_OFF, 0).is_ok(),
            Err(_) => false,
        };
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        let peeks = false;
        Ok(Receiver {
            shared: Arc::new(Shared {
                socket,
                peeks,
                pending: Mutex::new(0),
                settled: Condvar::new(),
            }),
        })
    }

    /// Receives one datagram into `buf` without blocking: `Ok(None)` when none is waiting.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<Datagram>> {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if self.shared.peeks {
            return self.peek_and_take_later(buf);
        }
        recv_closing_fds(self.shared.socket.as_fd(), buf)
    }

    /// Waits at most `within` until every datagram read is off the socket's queue (their
    /// files released, or their closing threads given up on); whether they are. Before the
    /// socket is handed to another program, which would read them again.
    pub fn settle(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let mut pending = self.shared.lock();
        while *pending > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            pending = (self.shared.settled.wait_timeout(pending, left))
                .map_or_else(|p| p.into_inner().0, |(pending, _)| pending);
        }
        true
    }

    /// [`Receiver::recv`] on Linux: a peek, then the datagram taken off the queue, here if it
    /// carries nothing to release and nothing read is ahead of it, else on a closing thread.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn peek_and_take_later(&self, buf: &mut [u8]) -> io::Result<Option<Datagram>> {
        let socket = self.shared.socket.as_fd();
        let (len, carries, sender_pid) = match read(socket, buf, libc::MSG_PEEK)? {
            Some(read) => read,
            None => return Ok(None),
        };
        // A peek moves the offset only past what it copied: the rest is peeked past too.
        let mut rest = len.saturating_sub(buf.len());
        let mut scratch = Vec::new();
        while rest > 0 {
            scratch.resize(rest.min(1 << 16), 0);
            match read(socket, &mut scratch, libc::MSG_PEEK)? {
                Some((left, ..)) => rest = left.saturating_sub(scratch.len()),
                None => break,
            }
        }
        let mut pending = self.shared.lock();
        if !carries && *pending == 0 {
            // It is the head of the queue, and has no file to release.
            drop(pending);
            take(socket);
        } else {
            *pending += 1;
            drop(pending);
            let (shared, instead) = (Arc::clone(&self.shared), Arc::clone(&self.shared));
            let counted = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let once = Arc::clone(&counted);
            let job = crate::fd::Job::new(move || {
                take(shared.socket.as_fd());
                shared.taken(&counted);
            });
            // A thread given up on waits in a release: its datagram is off the queue.
            crate::fd::run_later(job.or_when_given_up(move || instead.taken(&once)));
        }
        Ok(Some(Datagram {
            len: len.min(buf.len()),
            truncated: len > buf.len(),
            sender_pid,
        }))
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, usize> {
        match self.pending.lock() {
            Ok(pending) => pending,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// One datagram is off the queue, unless `counted` says so already.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn taken(&self, counted: &std::sync::atomic::AtomicBool) {
        if counted.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let mut pending = self.lock();
        *pending = pending.saturating_sub(1);
        if *pending == 0 {
            self.settled.notify_all();
        }
    }
}

/// `socket`'s peek offset (`SO_PEEK_OFF`), -1 when off.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn peek_offset(socket: BorrowedFd<'_>) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = -1;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `value`, which is that long.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEEK_OFF,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value)
}

/// Reads one datagram from `socket` into `buf` without blocking (`flags`: `MSG_PEEK` or
/// not), with room for its sender's credentials and no fd: `Some` of its whole length, whether
/// it carried more than the credentials (fds, which the kernel dropped), and the sender's pid;
/// `None` when none is waiting.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn read(
    socket: BorrowedFd<'_>,
    buf: &mut [u8],
    flags: libc::c_int,
) -> io::Result<Option<(usize, bool, Option<u32>)>> {
    // Room for one SCM_CREDENTIALS message (CMSG_SPACE of a ucred: 32 bytes), aligned.
    let mut control = [0u64; 4];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: a zeroed msghdr is valid; we point it at buffers that outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE is arithmetic.
    msg.msg_controllen =
        unsafe { libc::CMSG_SPACE(std::mem::size_of::<libc::ucred>() as u32) } as _;
    let flags = flags | libc::MSG_DONTWAIT | libc::MSG_TRUNC | libc::MSG_CMSG_CLOEXEC;
    let n = loop {
        // SAFETY: recvmsg writes into the buffers described by `msg`.
        let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, flags) };
        if n >= 0 {
            break n as usize;
        }
        let err = io::Error::last_os_error();
        match err.kind() {
            io::ErrorKind::WouldBlock => return Ok(None),
            io::ErrorKind::Interrupted => continue,
            _ => return Err(err),
        }
    };
    let mut sender_pid = None;
    // SAFETY: the CMSG_* helpers walk the control buffer the kernel filled, within
    // msg_controllen; a header's data is read only when its level and type say what it is.
    // No SCM_RIGHTS can be there: it had no room.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            let data = libc::CMSG_DATA(cmsg);
            let data_len = (*cmsg).cmsg_len as usize - (data as usize - cmsg as usize);
            if (*cmsg).cmsg_level == libc::SOL_SOCKET
                && (*cmsg).cmsg_type == libc::SCM_CREDENTIALS
                && data_len >= std::mem::size_of::<libc::ucred>()
            {
                let cred = std::ptr::read_unaligned(data as *const libc::ucred);
                sender_pid = u32::try_from(cred.pid).ok().filter(|&p| p > 0);
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok(Some((n, msg.msg_flags & libc::MSG_CTRUNC != 0, sender_pid)))
}

/// Takes the datagram at the head of `socket`'s queue, with no room for fds: the kernel
/// releases the files it carries, in this thread.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn take(socket: BorrowedFd<'_>) {
    let _ = read(socket, &mut [0u8; 1], 0);
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
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let flags = libc::MSG_DONTWAIT | libc::MSG_TRUNC | libc::MSG_CMSG_CLOEXEC;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let flags = libc::MSG_DONTWAIT;
    // SAFETY: recvmsg writes into the buffers described by `msg`.
    let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, flags) };
    if n < 0 {
        let err = io::Error::last_os_error();
        return match err.kind() {
            io::ErrorKind::WouldBlock => Ok(None),
            io::ErrorKind::Interrupted => recv_closing_fds(socket, buf),
            _ => Err(err),
        };
    }
    let mut sender_pid = None;
    // SAFETY: the CMSG_* helpers walk the control buffer the kernel filled, within
    // msg_controllen; SCM_RIGHTS data is an array of fds the kernel just installed for us; other
    // data is read only when its level and type say what it is.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            let (level, kind) = ((*cmsg).cmsg_level, (*cmsg).cmsg_type);
            let data = libc::CMSG_DATA(cmsg);
            let data_len = (*cmsg).cmsg_len as usize - (data as usize - cmsg as usize);
            if level == libc::SOL_SOCKET && kind == libc::SCM_RIGHTS {
                for i in 0..data_len / std::mem::size_of::<libc::c_int>() {
                    let fd = std::ptr::read_unaligned((data as *const libc::c_int).add(i));
                    // The kernel gave it to us: ours alone.
                    let fd = std::os::unix::io::FromRawFd::from_raw_fd(fd);
                    crate::fd::close_in_background(fd);
                }
            }
            #[cfg(any(target_os = "linux", target_os = "android"))]
            if level == libc::SOL_SOCKET
                && kind == libc::SCM_CREDENTIALS
                && data_len >= std::mem::size_of::<libc::ucred>()
            {
                let cred = std::ptr::read_unaligned(data as *const libc::ucred);
                sender_pid = u32::try_from(cred.pid).ok().filter(|&p| p > 0);
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    let n = n as usize;
    Ok(Some(Datagram {
        len: n.min(buf.len()),
        truncated: n > buf.len() || msg.msg_flags & libc::MSG_TRUNC != 0,
        sender_pid,
    }))
}

#[cfg(test)]
mod tests;
