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

/// Moves `fds` to 3, 4, ... in order and clears close-on-exec on them, for a process about to
/// `exec` a program that takes them through `LISTEN_FDS`. The fds at 3, 4, ... afterwards
/// belong to no Rust owner: they are meant for the program that is executed next.
///
/// Refuses (`EBUSY`) when one of the target numbers is open and is not among `fds`, so that it
/// never closes an fd that something else owns.
pub fn place_listen_fds(fds: Vec<OwnedFd>) -> io::Result<()> {
    let raws: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    let first_free = 3 + raws.len() as RawFd;
    for target in 3..first_free {
        // SAFETY: fcntl(F_GETFD) only queries the fd table.
        let open = unsafe { libc::fcntl(target, libc::F_GETFD) } >= 0;
        if open && !raws.contains(&target) {
            return Err(io::Error::new(
                io::ErrorKind::Other,
                format!("fd {target} is in use; cannot place the sockets at 3.."),
            ));
        }
    }
    let mut moved = Vec::with_capacity(fds.len());
    for fd in &fds {
        // SAFETY: F_DUPFD_CLOEXEC returns a fresh fd that we own at once.
        let raw = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, first_free) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is fresh and owned by nobody else.
        moved.push(unsafe { OwnedFd::from_raw_fd(raw) });
    }
    drop(fds);
    for (i, fd) in moved.iter().enumerate() {
        // SAFETY: the target is free (checked above, or just closed as one of ours); dup2
        // leaves FD_CLOEXEC clear on it, as inheritance wants.
        if unsafe { libc::dup2(fd.as_raw_fd(), 3 + i as RawFd) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// An anonymous file for handing data across `execve`: a `memfd` on Linux (not close-on-exec
/// only once the caller says so), elsewhere a temporary file unlinked at once.
pub fn anonymous_file(name: &str) -> io::Result<std::fs::File> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let cname = std::ffi::CString::new(name)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in memfd name"))?;
        // SAFETY: memfd_create reads a NUL-terminated name and returns a fresh fd we own.
        let raw = unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC) };
        if raw >= 0 {
            // SAFETY: `raw` is fresh and owned by nobody else.
            return Ok(std::fs::File::from(unsafe { OwnedFd::from_raw_fd(raw) }));
        }
    }
    let path = std::env::temp_dir().join(format!("{name}.{}", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    std::fs::remove_file(&path)?;
    Ok(file)
}
