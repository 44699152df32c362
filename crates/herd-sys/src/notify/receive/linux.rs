//! [`super::Receiver`] on Linux: each datagram peeked with room for its sender's
//! credentials only, then taken off the queue (see the parent module).

use std::io;
use std::os::unix::io::{AsFd, AsRawFd, BorrowedFd};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use super::{Datagram, Shared};
use crate::fdpass::set_socket_option;

/// The flags every receive uses.
pub(super) const RECV_FLAGS: libc::c_int =
    libc::MSG_DONTWAIT | libc::MSG_TRUNC | libc::MSG_CMSG_CLOEXEC;

pub(super) fn enable_credentials(socket: BorrowedFd<'_>) -> io::Result<()> {
    set_socket_option(socket, libc::SO_PASSCRED, 1)
}

/// Turns on `socket`'s credentials and its peek offset (left where it is if on already);
/// whether both are on, so that datagrams may be peeked. The credentials fill the room
/// [`read`] leaves for control messages: without them, that room would take 4 fds, installed
/// here.
pub(super) fn start_peeking(socket: BorrowedFd<'_>) -> bool {
    if enable_credentials(socket).is_err() || !credentials_on(socket) {
        return false;
    }
    match get_option(socket, libc::SO_PEEK_OFF) {
        Ok(offset) if offset >= 0 => true,
        Ok(_) => set_socket_option(socket, libc::SO_PEEK_OFF, 0).is_ok(),
        Err(_) => false,
    }
}

fn credentials_on(socket: BorrowedFd<'_>) -> bool {
    get_option(socket, libc::SO_PASSCRED).map_or(false, |on| on != 0)
}

/// The sender's pid, if this control message is its credentials.
pub(super) fn sender_pid(
    level: libc::c_int,
    kind: libc::c_int,
    data: *const u8,
    len: usize,
) -> Option<u32> {
    if level != libc::SOL_SOCKET
        || kind != libc::SCM_CREDENTIALS
        || len < std::mem::size_of::<libc::ucred>()
    {
        return None;
    }
    // SAFETY: `data` points at `len` bytes of one control message (see
    // `each_control_message`), enough for a ucred, read unaligned.
    let cred = unsafe { std::ptr::read_unaligned(data as *const libc::ucred) };
    u32::try_from(cred.pid).ok().filter(|&p| p > 0)
}

/// [`super::Receiver::recv`] on Linux: a peek, then the datagram taken off the queue, here if
/// it carries nothing to release and no taking is outstanding (so it is the head of the
/// queue), else (or if taking it here fails) on a closing thread.
pub(super) fn peek_and_take_later(
    shared: &Arc<Shared>,
    buf: &mut [u8],
) -> io::Result<Option<Datagram>> {
    let socket = shared.socket.as_fd();
    let peeked = match read(socket, buf, libc::MSG_PEEK)? {
        Some(read) => read,
        None => return Ok(None),
    };
    // A peek moves the offset only past what it copied: the rest is peeked past too.
    let mut rest = peeked.len.saturating_sub(buf.len());
    let mut scratch = Vec::new();
    while rest > 0 {
        scratch.resize(rest.min(1 << 16), 0);
        match read(socket, &mut scratch, libc::MSG_PEEK)? {
            Some(read) => rest = read.len.saturating_sub(scratch.len()),
            None => break,
        }
    }
    // Nothing to release: taken here, unless that fails (short of memory); then, as with
    // files to release, on a closing thread, which tries until it is done.
    if peeked.carries_more || !shared.settling.reads_the_head() || !take_once(socket) {
        take_later(shared);
    }
    Ok(Some(Datagram {
        len: peeked.len.min(buf.len()),
        truncated: peeked.len > buf.len(),
        sender_pid: peeked.sender_pid,
    }))
}

/// Queues the taking of the head of `shared`'s socket's queue for a closing thread.
fn take_later(shared: &Arc<Shared>) {
    shared.settling.queued();
    let (shared, settling) = (Arc::clone(shared), Arc::clone(&shared.settling));
    let counted = Arc::new(AtomicBool::new(false));
    let once = Arc::clone(&counted);
    let job = crate::fd::Job::new(move || {
        take(shared.socket.as_fd());
        shared.settling.taken(&counted, true);
    });
    // A thread given up on waits in a release: its datagram is off the queue. What runs then
    // holds no socket, whose last close would release the files queued on it there.
    crate::fd::run_later(job.or_when_given_up(move || settling.taken(&once, false)));
}

/// What [`read`] read.
struct Read {
    /// The datagram's whole length.
    len: usize,
    /// Whether it carried more control data than the credentials (fds, which the kernel
    /// dropped).
    carries_more: bool,
    /// The sender's pid.
    sender_pid: Option<u32>,
}

/// `socket`'s `SOL_SOCKET` option `option`.
fn get_option(socket: BorrowedFd<'_>, option: libc::c_int) -> io::Result<libc::c_int> {
    crate::socket::getsockopt_int(socket.as_raw_fd(), option)
}

/// Reads one datagram from `socket` into `buf` without blocking (`flags`: `MSG_PEEK` or
/// not), with room for its sender's credentials and no fd; `None` when none is waiting.
fn read(socket: BorrowedFd<'_>, buf: &mut [u8], flags: libc::c_int) -> io::Result<Option<Read>> {
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
    // SAFETY: `msg` describes buffers that outlive the call. The socket's credentials are on
    // (`start_peeking`), and the kernel puts them first: they fill the control buffer, and fds
    // find no room (MSG_CTRUNC), so none is installed.
    let n = match unsafe { super::receive(socket, &mut msg, flags | RECV_FLAGS)? } {
        Some(n) => n,
        None => return Ok(None),
    };
    let mut sender_pid = None;
    // SAFETY: `msg` is what recvmsg just filled; an SCM_RIGHTS message in it holds fds the
    // kernel installed for us.
    unsafe {
        super::each_control_message(&msg, |level, kind, data, len| {
            // None: the credentials leave them no room. Were they turned off since, the fds
            // installed here are closed, not kept.
            super::close_passed_fds(level, kind, data, len);
            sender_pid = sender_pid.or_else(|| self::sender_pid(level, kind, data, len));
        });
    }
    Ok(Some(Read {
        len: n,
        carries_more: msg.msg_flags & libc::MSG_CTRUNC != 0,
        sender_pid,
    }))
}

/// Takes the datagram at the head of `socket`'s queue, with no room for fds: the kernel
/// releases the files it carries, in this thread. A failed taking (short of memory) is tried
/// again until it is done, or there is nothing left to take: each one read must be taken once.
fn take(socket: BorrowedFd<'_>) {
    while !take_once(socket) {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Takes the datagram at the head of `socket`'s queue once; whether it is off the queue (or
/// the queue was empty).
fn take_once(socket: BorrowedFd<'_>) -> bool {
    read(socket, &mut [0u8; 1], 0).is_ok()
}
