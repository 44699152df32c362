//! File-descriptor hygiene: close-on-exec flags and ownership of inherited fds.

use std::io;
use std::os::unix::io::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Sets or clears `FD_CLOEXEC` on `fd` (`fcntl(F_GETFD/F_SETFD)`).
pub fn set_cloexec(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    let raw = fd.as_raw_fd();
    // SAFETY: fcntl on a borrowed, open fd with integer arguments only.
    let flags = unsafe { libc::fcntl(raw, libc::F_GETFD) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    let wanted = if on {
        flags | libc::FD_CLOEXEC
    } else {
        flags & !libc::FD_CLOEXEC
    };
    if wanted != flags {
        // SAFETY: as above.
        if unsafe { libc::fcntl(raw, libc::F_SETFD, wanted) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Whether `FD_CLOEXEC` is set on `fd`.
pub fn is_cloexec(fd: BorrowedFd<'_>) -> io::Result<bool> {
    // SAFETY: fcntl(F_GETFD) on a borrowed, open fd.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(flags & libc::FD_CLOEXEC != 0)
}

/// Whether `O_NONBLOCK` is set on the open file description behind `fd`.
pub fn is_nonblocking(fd: BorrowedFd<'_>) -> io::Result<bool> {
    // SAFETY: fcntl(F_GETFL) on a borrowed, open fd.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(flags & libc::O_NONBLOCK != 0)
}

/// Sets `O_NONBLOCK` on the open file description behind `fd`.
///
/// The flag is shared by every process holding a copy of the description (all workers of a
/// herd socket), which is why herd sets it once, before any worker starts.
pub fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    let raw = fd.as_raw_fd();
    // SAFETY: fcntl on a borrowed, open fd with integer arguments only.
    let flags = unsafe { libc::fcntl(raw, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(raw, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Takes ownership of an fd number this process inherited (for example through `LISTEN_FDS`),
/// after checking that it is open, and marks it close-on-exec so that it does not leak further.
///
/// # Safety
/// The caller asserts that nothing else in the process owns `raw`: the fd was handed to this
/// process by its parent and is claimed here once.
pub unsafe fn claim_inherited(raw: RawFd) -> io::Result<OwnedFd> {
    if raw < 0 || libc::fcntl(raw, libc::F_GETFD) < 0 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    let owned = OwnedFd::from_raw_fd(raw);
    set_cloexec(std::os::unix::io::AsFd::as_fd(&owned), true)?;
    Ok(owned)
}

/// Makes sure fds 0, 1 and 2 are open, opening `/dev/null` on any that is closed, so that a
/// file herd opens later can never land on a standard stream number.
pub fn ensure_std_fds_open() -> io::Result<()> {
    for raw in 0..3 {
        // SAFETY: fcntl(F_GETFD) only queries the fd table.
        if unsafe { libc::fcntl(raw, libc::F_GETFD) } >= 0 {
            continue;
        }
        // SAFETY: a constant NUL-terminated path; the lowest free fd is `raw` because all lower
        // standard fds are open, and we deliberately leave it open (no CLOEXEC) for good.
        let got = unsafe { libc::open(b"/dev/null\0".as_ptr().cast(), libc::O_RDWR) };
        if got < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Marks every fd above 2 close-on-exec, so that fds this process inherited by accident (from a
/// careless parent shell or service manager) can never leak into the workers it starts.
///
/// Uses `close_range(3, ~0, CLOSE_RANGE_CLOEXEC)` on Linux 5.11+, else walks `/dev/fd`.
pub fn cloexec_all_above_stdio() -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: close_range with CLOSE_RANGE_CLOEXEC closes nothing; it only sets flags.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC as libc::c_uint,
            )
        };
        if rc == 0 {
            return Ok(());
        }
    }
    let dir = std::fs::read_dir("/dev/fd")?;
    let fds: Vec<RawFd> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect();
    for raw in fds {
        // SAFETY: we only set a flag; an fd that closed meanwhile (the directory's own) fails
        // with EBADF, which is ignored.
        unsafe {
            let flags = libc::fcntl(raw, libc::F_GETFD);
            if flags >= 0 {
                libc::fcntl(raw, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
    Ok(())
}

/// Opens `/dev/null` read-write, close-on-exec.
pub fn open_dev_null() -> io::Result<OwnedFd> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    Ok(OwnedFd::from(file))
}
