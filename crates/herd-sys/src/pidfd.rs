//! Holding a process that is not our child by a pidfd, so that a reused pid is never signalled
//! by mistake: `pidfd_open(2)`, `pidfd_send_signal(2)`, and `poll(2)` for its exit (a pidfd
//! becomes readable when the process exits). Linux 5.3 and later; elsewhere every function
//! fails with `Unsupported`, and callers fall back to pids checked by start time.

use std::io;
use std::os::unix::io::{AsFd, BorrowedFd, OwnedFd};

use crate::process::Signal;

/// A pidfd: a handle on one process, valid however long it lives.
#[derive(Debug)]
pub struct PidFd(OwnedFd);

impl PidFd {
    /// Opens a pidfd for `pid` (`pidfd_open(pid, 0)`; the fd is close-on-exec).
    pub fn open(pid: u32) -> io::Result<PidFd> {
        imp::open(pid).map(PidFd)
    }

    /// Sends `signal` to the process (`pidfd_send_signal`); `ESRCH` once it has exited.
    pub fn signal(&self, signal: Signal) -> io::Result<()> {
        imp::send_signal(self.0.as_fd(), signal)
    }

    /// The process at the other end of the connected Unix socket `socket`: the one that called
    /// `connect` (or `listen`), whatever happened to its pid since (`SO_PEERPIDFD`, Linux 6.5
    /// and later; the fd is close-on-exec). `Ok(None)` where the system cannot say (an older
    /// kernel, another system); an error if that process has exited.
    pub fn of_peer(socket: BorrowedFd<'_>) -> io::Result<Option<PidFd>> {
        Ok(imp::of_peer(socket)?.map(PidFd))
    }

    /// Whether the process has exited (`poll` for `POLLIN`, without waiting).
    pub fn has_exited(&self) -> bool {
        imp::readable(self.0.as_fd())
    }
}

impl AsFd for PidFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl std::os::unix::io::AsRawFd for PidFd {
    fn as_raw_fd(&self) -> std::os::unix::io::RawFd {
        self.0.as_raw_fd()
    }
}

impl From<OwnedFd> for PidFd {
    /// A pidfd handed over by a previous image of this process (the caller knows it is one).
    fn from(fd: OwnedFd) -> PidFd {
        PidFd(fd)
    }
}

impl From<PidFd> for OwnedFd {
    fn from(fd: PidFd) -> OwnedFd {
        fd.0
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod imp {
    use std::io;
    use std::os::unix::io::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

    use crate::process::Signal;

    pub fn open(pid: u32) -> io::Result<OwnedFd> {
        let pid =
            libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: pidfd_open takes a pid and flags, and returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel just returned this fd (close-on-exec); nothing else owns it.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
    }

    pub fn of_peer(socket: BorrowedFd<'_>) -> io::Result<Option<OwnedFd>> {
        let mut fd: libc::c_int = -1;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into the c_int we own.
        let rc = unsafe {
            libc::getsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERPIDFD,
                (&mut fd as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        if rc < 0 {
            let err = io::Error::last_os_error();
            return match err.raw_os_error() {
                // A kernel before 6.5.
                Some(libc::ENOPROTOOPT) => Ok(None),
                _ => Err(err),
            };
        }
        if fd < 0 {
            return Ok(None);
        }
        // SAFETY: the kernel just made this fd (a pidfd, close-on-exec); nothing else owns it.
        Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    pub fn send_signal(fd: BorrowedFd<'_>, signal: Signal) -> io::Result<()> {
        let null = std::ptr::null::<libc::siginfo_t>();
        // SAFETY: a valid pidfd, a signal number, a null siginfo (as kill(2) would send) and no
        // flags.
        let result = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                fd.as_raw_fd(),
                signal.number(),
                null,
                0,
            )
        };
        if result < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    pub fn readable(fd: BorrowedFd<'_>) -> bool {
        let mut poll = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd we own, a timeout of zero.
        let n = unsafe { libc::poll(&mut poll, 1, 0) };
        n > 0 && poll.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod imp {
    use std::io;
    use std::os::unix::io::{BorrowedFd, OwnedFd};

    use crate::process::Signal;

    fn unsupported() -> io::Error {
        io::Error::new(io::ErrorKind::Unsupported, "pidfds need Linux 5.3 or later")
    }

    pub fn open(_pid: u32) -> io::Result<OwnedFd> {
        Err(unsupported())
    }

    pub fn of_peer(_socket: BorrowedFd<'_>) -> io::Result<Option<OwnedFd>> {
        Ok(None)
    }

    pub fn send_signal(_fd: BorrowedFd<'_>, _signal: Signal) -> io::Result<()> {
        Err(unsupported())
    }

    pub fn readable(_fd: BorrowedFd<'_>) -> bool {
        false
    }
}

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod tests {
    use super::*;

    #[test]
    fn a_pidfd_signals_its_process_and_sees_it_exit() {
        let mut child = std::process::Command::new("sleep")
            .arg("1000")
            .spawn()
            .unwrap();
        let pidfd = PidFd::open(child.id()).unwrap();
        assert!(!pidfd.has_exited());
        pidfd.signal(Signal::KILL).unwrap();
        let status = child.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );
        assert!(pidfd.has_exited());
        // Reaped: the pid may belong to someone else now, but not to this pidfd.
        assert_eq!(
            pidfd.signal(Signal::TERM).unwrap_err().raw_os_error(),
            Some(libc::ESRCH)
        );
    }

    #[test]
    fn a_peers_pidfd_is_the_process_that_connected() {
        use std::os::unix::io::{AsFd, AsRawFd};
        let (ours, _theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        // Before Linux 6.5 there is nothing to check.
        if let Some(pidfd) = PidFd::of_peer(ours.as_fd()).unwrap() {
            assert!(!pidfd.has_exited());
            let fd = pidfd.as_fd().as_raw_fd();
            let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap();
            let pid = format!("Pid:\t{}", std::process::id());
            assert!(info.lines().any(|l| l == pid), "{info}");
        }
    }
}

/// Waits on a tokio runtime for the process a pidfd holds to exit (the pidfd becomes readable).
#[cfg(feature = "tokio")]
pub struct ExitWatch(tokio::io::unix::AsyncFd<std::sync::Arc<PidFd>>);

#[cfg(feature = "tokio")]
impl ExitWatch {
    /// Registers `pidfd` with the current runtime's reactor (`epoll_ctl`), holding it until the
    /// watch is dropped. Must be called within a tokio runtime.
    pub fn new(pidfd: std::sync::Arc<PidFd>) -> io::Result<ExitWatch> {
        // SAFETY: the `AsyncFd` holds the `Arc`, so the `PidFd`, which owns its fd and closes it
        // only when dropped, lives and keeps the same open fd for the whole registration, as
        // `register_with_interest` requires.
        let fd = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE)
        }
        .map_err(|e| e.into_parts().1)?;
        Ok(ExitWatch(fd))
    }

    /// Returns once the process has exited.
    pub async fn exited(&self) {
        let _ = self.0.readable().await;
    }
}
