//! Files: exchanging two paths atomically, opening a file itself (not what it names), and
//! whether this process may create entries in a directory.
//!
//! [`exchange`] is `renameat2(RENAME_EXCHANGE)` on Linux; elsewhere it fails with
//! [`io::ErrorKind::Unsupported`], and callers fall back to a check and a `rename`.
//! [`open_itself`] is `open(O_PATH | O_NOFOLLOW)` on Linux. [`may_create_in`] asks the
//! kernel whether this process may make entries in a directory.

use std::io;
use std::path::Path;

pub use imp::exchange;
#[cfg(any(target_os = "linux", target_os = "android"))]
pub use imp::open_itself;

#[cfg(any(target_os = "linux", target_os = "android"))]
mod imp {
    use super::*;
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;

    /// Exchanges the files at `a` and `b` in one step (both must exist):
    /// `renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE)`. A kernel or file system without
    /// it fails with `ENOSYS` or `EINVAL`. Made as a raw system call: musl has no wrapper.
    pub fn exchange(a: &Path, b: &Path) -> io::Result<()> {
        let c = |p: &Path| {
            CString::new(p.as_os_str().as_bytes())
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path with a NUL byte"))
        };
        let (a, b) = (c(a)?, c(b)?);
        // SAFETY: both paths are NUL-terminated strings that outlive the call; renameat2 only
        // reads them, and takes these five arguments (ints and pointers, as passed).
        let rc = unsafe {
            libc::syscall(
                libc::SYS_renameat2,
                libc::AT_FDCWD,
                a.as_ptr(),
                libc::AT_FDCWD,
                b.as_ptr(),
                libc::RENAME_EXCHANGE,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Opens the file at `path` itself, for `fstat` and `/proc/self/fd`, with no access to its
    /// contents: a socket is not connected to, a symlink is not followed (the link is opened).
    /// Made with `open` directly: Rust's `OpenOptions` drops `O_PATH` on musl, whose
    /// `O_ACCMODE` includes it (the open then connects to a socket, and fails with `ENXIO`).
    pub fn open_itself(path: &Path) -> io::Result<std::fs::File> {
        use std::os::unix::io::FromRawFd;
        let path = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path with a NUL byte"))?;
        // SAFETY: the path is a NUL-terminated string that outlives the call; open only reads
        // it, and with these flags takes no mode argument.
        let fd = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just opened here and is owned by nothing else.
        Ok(unsafe { std::fs::File::from_raw_fd(fd) })
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod imp {
    use super::*;

    /// Not available here: always [`io::ErrorKind::Unsupported`].
    pub fn exchange(_a: &Path, _b: &Path) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "no atomic exchange of two paths on this system",
        ))
    }
}

/// `faccessat`'s flag for the effective ids; Android's `faccessat` refuses every flag.
#[cfg(not(target_os = "android"))]
const EFFECTIVE_IDS: libc::c_int = libc::AT_EACCESS;
#[cfg(target_os = "android")]
const EFFECTIVE_IDS: libc::c_int = 0;

/// Whether this process, by its effective ids, may create entries in the directory `dir`:
/// `faccessat(W_OK | X_OK, AT_EACCESS)`. The error says why not, e.g. `EROFS` (a read-only
/// file system, such as `/tmp` under systemd's `ProtectSystem=strict`) or `EACCES`.
/// On Android, whose `faccessat` takes no flags, the real ids (herd's are the same).
pub fn may_create_in(dir: &Path) -> io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let path = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path with a NUL byte"))?;
    // SAFETY: the path is a NUL-terminated string that outlives the call; faccessat only
    // reads it.
    let rc = unsafe {
        libc::faccessat(
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::W_OK | libc::X_OK,
            EFFECTIVE_IDS,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exchanges_two_files() {
        let scratch = crate::scratch::Scratch::new("herd-sys-fs");
        let dir = scratch.path();
        std::fs::create_dir(dir).unwrap();
        let (a, b) = (dir.join("a"), dir.join("b"));
        std::fs::write(&a, "a").unwrap();
        std::fs::write(&b, "b").unwrap();
        match exchange(&a, &b) {
            Ok(()) => {
                assert_eq!(std::fs::read_to_string(&a).unwrap(), "b");
                assert_eq!(std::fs::read_to_string(&b).unwrap(), "a");
            }
            Err(e) => assert!(
                e.kind() == io::ErrorKind::Unsupported
                    || matches!(e.raw_os_error(), Some(libc::ENOSYS) | Some(libc::EINVAL)),
                "{e}"
            ),
        }
        assert!(exchange(&a, &dir.join("missing")).is_err());
    }

    #[test]
    fn says_whether_entries_may_be_created_in_a_directory() {
        let scratch = crate::scratch::Scratch::new("herd-sys-may-create");
        let dir = scratch.path();
        std::fs::create_dir(dir).unwrap();
        assert!(may_create_in(dir).is_ok());
        let missing = may_create_in(&dir.join("missing")).unwrap_err();
        assert_eq!(missing.raw_os_error(), Some(libc::ENOENT));
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn opens_a_socket_file_and_a_symlink_themselves() {
        use std::os::unix::fs::FileTypeExt;
        let scratch = crate::scratch::Scratch::new("herd-sys-open-itself");
        let dir = scratch.path();
        std::fs::create_dir(dir).unwrap();
        let socket = dir.join("s.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let file = open_itself(&socket).unwrap();
        assert!(file.metadata().unwrap().file_type().is_socket());
        let link = dir.join("link");
        std::os::unix::fs::symlink(&socket, &link).unwrap();
        let file = open_itself(&link).unwrap();
        assert!(file.metadata().unwrap().file_type().is_symlink());
        assert!(open_itself(&dir.join("missing")).is_err());
    }
}
