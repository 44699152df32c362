//! The file a Unix socket is bound to, as the kernel knows it: not what a path holds now, nor
//! what a peer says, but the very file the socket's `bind` created. Linux asks `sock_diag`
//! (`sock_diag.rs`); other systems cannot tell.

use std::io;
use std::os::unix::io::BorrowedFd;

#[cfg(target_os = "linux")]
#[path = "bound_file/sock_diag.rs"]
mod imp;

#[cfg(not(target_os = "linux"))]
mod imp {
    use std::io;
    use std::os::unix::io::BorrowedFd;

    pub fn bound_file(_fd: BorrowedFd<'_>) -> io::Result<Option<super::BoundFile>> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "which file a Unix socket is bound to is known on Linux only (sock_diag)",
        ))
    }
}

/// The file a Unix socket is bound to: its device, as `st_dev` shows it, and the low 32 bits
/// of its inode number (all the kernel reports).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BoundFile {
    /// The device of the file system the file is on, encoded as `stat`'s `st_dev`.
    pub dev: u64,
    /// The low 32 bits of the file's inode number.
    pub ino_low: u32,
}

impl BoundFile {
    /// Whether this is the file whose `stat` gives `(st_dev, st_ino)` = `identity`: the same
    /// device, and an inode number with the same low 32 bits.
    pub fn is(&self, identity: (u64, u64)) -> bool {
        let (dev, ino) = identity;
        self.dev == dev && u64::from(self.ino_low) == ino & u64::from(u32::MAX)
    }
}

/// The file the Unix socket `fd` is bound to, as the kernel says: `Ok(None)` for a socket
/// bound to no file (unbound, abstract, or of another family than `AF_UNIX`), `Err` for an fd
/// that is not a socket, or where the kernel cannot say (not Linux: `ErrorKind::Unsupported`;
/// no `CONFIG_UNIX_DIAG`; the socket in another network namespace).
///
/// Linux: `SO_DOMAIN`, the socket's inode (`fstat`) and cookie (`SO_COOKIE`, Linux 4.12), then
/// one `SOCK_DIAG_BY_FAMILY` request over a `NETLINK_SOCK_DIAG` socket (`SOCK_CLOEXEC`) for
/// that socket with `UDIAG_SHOW_VFS`. The cookie makes the kernel answer for this socket and no
/// other one that has come to share its inode number. A file unlinked since `bind` is still
/// the one reported.
pub fn unix_bound_file(fd: BorrowedFd<'_>) -> io::Result<Option<BoundFile>> {
    imp::bound_file(fd)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::io::{AsFd, AsRawFd};
    use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};

    fn identity(path: &std::path::Path) -> (u64, u64) {
        let meta = std::fs::symlink_metadata(path).unwrap();
        (meta.dev(), meta.ino())
    }

    #[test]
    fn a_listener_is_bound_to_its_own_file_and_no_other() {
        let scratch = crate::scratch::Scratch::new("herd-sys-bound-file");
        std::fs::create_dir(scratch.path()).unwrap();
        let (a, b) = (scratch.path().join("a.sock"), scratch.path().join("b.sock"));
        let listener = UnixListener::bind(&a).unwrap();
        let _other = UnixListener::bind(&b).unwrap();
        let bound = unix_bound_file(listener.as_fd()).unwrap().unwrap();
        let (dev, ino) = identity(&a);
        assert_eq!(
            bound,
            BoundFile {
                dev,
                ino_low: ino as u32
            }
        );
        assert!(bound.is((dev, ino)));
        assert!(!bound.is(identity(&b)), "another socket's file");
        assert!(!bound.is((dev + 1, ino)), "another device");
        // Its file removed, the socket is still bound to it.
        std::fs::remove_file(&a).unwrap();
        assert_eq!(unix_bound_file(listener.as_fd()).unwrap(), Some(bound));
    }

    #[test]
    fn unbound_and_abstract_sockets_are_bound_to_no_file() {
        let (stream, _peer) = UnixStream::pair().unwrap();
        assert_eq!(unix_bound_file(stream.as_fd()).unwrap(), None);
        let datagram = UnixDatagram::unbound().unwrap();
        autobind(&datagram);
        assert_eq!(unix_bound_file(datagram.as_fd()).unwrap(), None);
    }

    /// Not a Unix socket: bound to no file; not a socket: an error.
    #[test]
    fn other_families_are_bound_to_no_file_and_files_are_no_sockets() {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert_eq!(unix_bound_file(tcp.as_fd()).unwrap(), None);
        let file = std::fs::File::open("/dev/null").unwrap();
        assert!(unix_bound_file(file.as_fd()).is_err());
    }

    /// Binds `socket` to an abstract address of the kernel's choosing (Linux's autobind).
    fn autobind(socket: &UnixDatagram) {
        // SAFETY: sockaddr_un is plain integers, for which all-zero is a valid value.
        let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        let len = std::mem::size_of::<libc::sa_family_t>() as libc::socklen_t;
        // SAFETY: bind reads `len` bytes of the sockaddr_un we own.
        let rc = unsafe {
            libc::bind(
                socket.as_raw_fd(),
                (&addr as *const libc::sockaddr_un).cast(),
                len,
            )
        };
        assert_eq!(rc, 0, "{}", io::Error::last_os_error());
        let name = socket.local_addr().unwrap();
        assert!(
            !name.is_unnamed() && name.as_pathname().is_none(),
            "{name:?}"
        );
    }
}

#[cfg(all(test, not(target_os = "linux")))]
mod tests {
    use std::os::unix::io::AsFd;

    #[test]
    fn other_systems_cannot_tell() {
        let (stream, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
        let error = super::unix_bound_file(stream.as_fd()).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::Unsupported);
    }
}
