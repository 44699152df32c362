//! Taking a datagram off a notify socket's queue in a child process (Linux): the kernel
//! releases the files it carries in the process that takes it, and a release can wait for
//! good where no signal ends it (the last file of a pipe whose lock a sender holds, a `splice`
//! from it into a socket nobody reads). A closing thread waiting so kept its process from
//! exiting (`exit` and `execve` wait for every thread), so a stopped herd stayed, unkillable,
//! holding its listening sockets. In a child only the child waits; it holds nothing but the
//! socket and the pipe it reports on, and the thread that forked it waits for its report in a
//! wait any signal ends.

use std::io;
use std::os::unix::io::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// `close_range(2)`'s number, the same on every architecture (Linux 5.9+).
const SYS_CLOSE_RANGE: libc::c_long = 436;

/// How long a child's release may wait before it is interrupted, as a closing thread's job
/// is (a socket's `SO_LINGER` ends then).
const PATIENCE_MS: libc::c_int = 100;

/// Takes the datagram at the head of `socket`'s queue in a child process, with no room for
/// fds, and waits until the child says it is taken (its files released), or has died. A
/// signal that interrupts the wait (the closing thread's watcher's) is passed on to the child,
/// where it ends a wait that a signal ends, as it would have in this thread. `Err` if no child
/// could start: nothing was taken.
pub(super) fn take_in_child(socket: BorrowedFd<'_>) -> io::Result<()> {
    let mut fds = [-1; 2];
    // SAFETY: pipe2 writes two fds into the array we pass.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 just opened both; they are ours alone.
    let (report, reported) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: the child runs `take_and_exit`, which makes only async-signal-safe system
    // calls (sigprocmask, close_range, close, recvmsg, write, _exit) on its own stack: no
    // allocation, no lock, nothing another thread of this process may have held at the fork.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => return Err(io::Error::last_os_error()),
        // SAFETY: in the child, as above; it never returns.
        0 => unsafe { take_and_exit(socket.as_raw_fd(), reported.as_raw_fd()) },
        _ => {}
    }
    drop(reported);
    wait_for_report(&report, pid);
    // The child is reaped by whoever reaps this process's children (herd's loop): a wait for
    // its pid here could take another child's exit, were the pid reused meanwhile.
    Ok(())
}

/// Waits until the child `pid` reports on `report` or closes it (it died); after
/// [`PATIENCE_MS`], or once a signal interrupts the wait (the closing thread's watcher's),
/// sends the child the closing threads' signal, once. `poll`, which a signal always
/// interrupts: a read would be restarted (that signal is caught with `SA_RESTART`).
fn wait_for_report(report: &OwnedFd, pid: libc::pid_t) {
    let mut passed = false;
    loop {
        match poll(report, if passed { -1 } else { PATIENCE_MS }) {
            Ok(()) => return,
            Err(e)
                if !matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::TimedOut
                ) =>
            {
                return
            }
            Err(_) if passed => continue,
            Err(_) => passed = true,
        }
        // Only while its end of the pipe is open: it has not exited, so it is not reaped and
        // its pid is its own.
        if poll(report, 0).is_err() {
            // SAFETY: kill takes plain integers.
            unsafe { libc::kill(pid, crate::fd::interrupting_signal()) };
        }
    }
}

/// Waits at most `timeout` ms (-1: for ever) until `report` can be read or is closed:
/// `Ok` then, `Err` on timeout (`TimedOut`) or interruption.
fn poll(report: &OwnedFd, timeout: libc::c_int) -> io::Result<()> {
    let mut ready = libc::pollfd {
        fd: report.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll reads and writes the one pollfd we own.
    match unsafe { libc::poll(&mut ready, 1, timeout) } {
        0 => Err(io::ErrorKind::TimedOut.into()),
        n if n > 0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// In the child: closes every fd but `socket` and `report`, takes the head of `socket`'s
/// queue with no room for control data (the kernel installs no fd, and releases the files
/// here, before recvmsg returns), says so on `report`, and exits.
///
/// # Safety
///
/// Called only in a child just forked: it makes async-signal-safe system calls alone.
unsafe fn take_and_exit(socket: libc::c_int, report: libc::c_int) -> ! {
    // Only the signal passed on from the closing thread is let in: another (sent to herd's
    // process group) would end the child before it reports.
    let mut mask: libc::sigset_t = std::mem::zeroed();
    libc::sigfillset(&mut mask);
    libc::sigdelset(&mut mask, crate::fd::interrupting_signal());
    libc::sigprocmask(libc::SIG_SETMASK, &mask, std::ptr::null_mut());
    let (low, high) = (socket.min(report), socket.max(report));
    close_range(0, low - 1);
    close_range(low + 1, high - 1);
    close_range(high + 1, libc::c_int::MAX);
    let mut byte = 0u8;
    let mut iov = libc::iovec {
        iov_base: (&mut byte as *mut u8).cast(),
        iov_len: 1,
    };
    let mut msg: libc::msghdr = std::mem::zeroed();
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    loop {
        let n = libc::recvmsg(socket, &mut msg, libc::MSG_DONTWAIT | libc::MSG_TRUNC);
        if n >= 0 || *libc::__errno_location() != libc::EINTR {
            break;
        }
    }
    let taken = 1u8;
    libc::write(report, (&taken as *const u8).cast(), 1);
    libc::_exit(0)
}

/// Closes the fds from `first` to `last`; one by one up to the open-file limit where the
/// kernel has no `close_range` (before 5.9).
///
/// # Safety
///
/// As [`take_and_exit`]: system calls alone.
unsafe fn close_range(first: libc::c_int, last: libc::c_int) {
    if first > last {
        return;
    }
    if libc::syscall(
        SYS_CLOSE_RANGE,
        first as libc::c_uint,
        last as libc::c_uint,
        0,
    ) == 0
    {
        return;
    }
    let mut limit: libc::rlimit = std::mem::zeroed();
    let most = match libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) {
        0 => limit.rlim_cur.min(1 << 20) as libc::c_int,
        _ => 1 << 16,
    };
    for fd in first..=last.min(most) {
        libc::close(fd);
    }
}
