//! Whether a Unix socket is bound to the file at a path, as the kernel knows it: not what a
//! path held when it was looked at, nor what a peer says, but the very file the socket's
//! `bind` created. Linux asks `sock_diag` for the socket's file (`sock_diag.rs`: its inode
//! number's low 32 bits, and its file system's device) and compares it with the file at the
//! path, opened itself: its inode number, and the device of the mount it was opened on
//! (`mount.rs`). Other systems cannot tell.

use std::fs::Metadata;
use std::io;
use std::os::unix::io::BorrowedFd;
use std::path::Path;

#[cfg(target_os = "linux")]
mod mount;
#[cfg(target_os = "linux")]
mod sock_diag;

/// Whether this system tells which file a Unix socket is bound to (Linux); where it does not,
/// [`unix_socket_bound_to`] fails with [`io::ErrorKind::Unsupported`].
pub const KNOWS_BOUND_FILES: bool = cfg!(target_os = "linux");

/// The file at `path`, if the Unix socket `socket` is bound to that very file (the one its
/// `bind` created, not another put at its name since): its metadata, of the file opened itself
/// (`open(O_PATH | O_NOFOLLOW)`, then `fstat`), so that what the caller checks of it (owner,
/// `(st_dev, st_ino)`) is of the file found to be the socket's, not of whatever is at `path` a
/// moment later.
///
/// `Ok(None)`: the file at `path` is not the socket's: another file, not a socket file, a
/// symbolic link (never followed), or `socket` is bound to no file (unbound, abstract, or not
/// `AF_UNIX`). An error: `path` cannot be opened, `socket` is not a socket, or the kernel
/// cannot say (not Linux: [`io::ErrorKind::Unsupported`]; no `CONFIG_UNIX_DIAG`; a sandbox
/// such as gVisor; the socket in another network namespace).
///
/// Linux: the kernel (`sock_diag`) reports the bound file's device as its file system's
/// superblock names it, and only the low 32 bits of its inode number. The file at `path`
/// matches if it is a socket file, on a mount of that very device (the mount it was opened on:
/// `/proc/self/fdinfo`, then `/proc/self/mountinfo`), with an inode number of the same low 32
/// bits. Two files of one file system whose inode numbers differ only above bit 31 (XFS,
/// btrfs) are told apart only by the caller's other checks (owner, the `(st_dev, st_ino)` it
/// expects), which the returned metadata is for.
///
/// Where the mount's device cannot be read (no `/proc`, a kernel before 3.15), the file's
/// `st_dev` is compared instead, rather than failing: it is the superblock's device on most
/// file systems, and where it is not (btrfs gives each subvolume a device of its own, overlayfs
/// may give one per layer) the socket's own file is not recognised, which callers treat as
/// they would a refusal (they leave the file alone). It does not make another file pass for
/// the socket's: the devices those file systems give `stat` instead are anonymous devices
/// allocated for them, which no mounted file system has as its own.
pub fn unix_socket_bound_to(socket: BorrowedFd<'_>, path: &Path) -> io::Result<Option<Metadata>> {
    imp::bound_to(socket, path)
}

#[cfg(target_os = "linux")]
mod imp {
    use std::fs::Metadata;
    use std::io;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    use std::os::unix::io::{AsFd, BorrowedFd};
    use std::path::Path;

    /// A device number as its major and minor: the one form in which `sock_diag`'s, the mount
    /// table's and `stat`'s devices, each encoded its own way, compare.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Device {
        /// The major number: which driver (0 for file systems without a block device).
        pub major: u32,
        /// The minor number: which of its devices.
        pub minor: u32,
    }

    impl Device {
        /// The device that `stat` encodes as `st_dev` (`makedev`).
        pub fn of_stat(st_dev: u64) -> Device {
            let dev = st_dev as libc::dev_t;
            Device {
                major: libc::major(dev),
                minor: libc::minor(dev),
            }
        }
    }

    pub fn bound_to(socket: BorrowedFd<'_>, path: &Path) -> io::Result<Option<Metadata>> {
        let bound = match super::sock_diag::bound_file(socket)? {
            Some(bound) => bound,
            None => return Ok(None),
        };
        let file = crate::fs::open_itself(path)?;
        let meta = file.metadata()?;
        let device =
            super::mount::device(file.as_fd()).unwrap_or_else(|| Device::of_stat(meta.dev()));
        // The kernel reports 32 bits of the inode number: compare those.
        let same = meta.file_type().is_socket()
            && device == bound.dev
            && meta.ino() as u32 == bound.ino_low;
        Ok(if same { Some(meta) } else { None })
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use std::fs::Metadata;
    use std::io;
    use std::os::unix::io::BorrowedFd;
    use std::path::Path;

    pub fn bound_to(_socket: BorrowedFd<'_>, _path: &Path) -> io::Result<Option<Metadata>> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "which file a Unix socket is bound to is known on Linux only (sock_diag)",
        ))
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::io::{AsFd, AsRawFd};
    use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};

    fn identity(meta: &Metadata) -> (u64, u64) {
        (meta.dev(), meta.ino())
    }

    fn identity_at(path: &Path) -> (u64, u64) {
        identity(&std::fs::symlink_metadata(path).unwrap())
    }

    #[test]
    fn a_listener_is_bound_to_its_own_file_and_no_other() {
        let scratch = crate::scratch::Scratch::new("herd-sys-bound-file");
        std::fs::create_dir(scratch.path()).unwrap();
        let (a, b) = (scratch.path().join("a.sock"), scratch.path().join("b.sock"));
        let listener = UnixListener::bind(&a).unwrap();
        let _other = UnixListener::bind(&b).unwrap();
        let bound = |path: &Path| unix_socket_bound_to(listener.as_fd(), path).unwrap();
        let meta = bound(&a).expect("its own file");
        assert_eq!(
            identity(&meta),
            identity_at(&a),
            "the metadata is its file's"
        );
        assert!(bound(&b).is_none(), "another socket's file");
        // The same file by another name: a hard link, a path through `..`.
        let link = scratch.path().join("hard.sock");
        std::fs::hard_link(&a, &link).unwrap();
        assert!(bound(&link).is_some());
        std::fs::create_dir(scratch.path().join("sub")).unwrap();
        assert!(bound(&scratch.path().join("sub/../a.sock")).is_some());
        // A symbolic link to it is not its file (and is never followed).
        let symlink = scratch.path().join("sym.sock");
        std::os::unix::fs::symlink(&a, &symlink).unwrap();
        assert!(bound(&symlink).is_none());
        // Nothing there: an error, as any path that cannot be opened.
        let missing = unix_socket_bound_to(listener.as_fd(), &scratch.path().join("none"));
        assert_eq!(missing.unwrap_err().kind(), io::ErrorKind::NotFound);
    }

    /// A path whose socket file was replaced after the bind, by another socket's (renamed over
    /// it) or by one bound at its name anew, no longer leads to the socket's file.
    #[test]
    fn a_path_replaced_since_the_bind_is_not_the_sockets_file() {
        let scratch = crate::scratch::Scratch::new("herd-sys-bound-file-replaced");
        std::fs::create_dir(scratch.path()).unwrap();
        let (a, b) = (scratch.path().join("a.sock"), scratch.path().join("b.sock"));
        let listener = UnixListener::bind(&a).unwrap();
        let other = UnixListener::bind(&b).unwrap();
        std::fs::rename(&b, &a).unwrap();
        assert!(unix_socket_bound_to(listener.as_fd(), &a)
            .unwrap()
            .is_none());
        assert!(unix_socket_bound_to(other.as_fd(), &a).unwrap().is_some());
        std::fs::remove_file(&a).unwrap();
        let _anew = UnixListener::bind(&a).unwrap();
        assert!(unix_socket_bound_to(listener.as_fd(), &a)
            .unwrap()
            .is_none());
        assert!(unix_socket_bound_to(other.as_fd(), &a).unwrap().is_none());
    }

    /// What the kernel reports of a socket's file (its file system's device as the mount
    /// table names it, the low 32 bits of its inode number) is the file's own, also once
    /// it is unlinked.
    #[test]
    fn the_kernel_reports_the_files_device_and_inode() {
        let scratch = crate::scratch::Scratch::new("herd-sys-bound-file-kernel");
        std::fs::create_dir(scratch.path()).unwrap();
        let a = scratch.path().join("a.sock");
        let listener = UnixListener::bind(&a).unwrap();
        let file = crate::fs::open_itself(&a).unwrap();
        let (_, ino) = identity_at(&a);
        let expected = sock_diag::BoundFile {
            dev: mount::device(file.as_fd()).unwrap(),
            ino_low: ino as u32,
        };
        let bound = sock_diag::bound_file(listener.as_fd()).unwrap();
        assert_eq!(bound, Some(expected));
        std::fs::remove_file(&a).unwrap();
        assert_eq!(sock_diag::bound_file(listener.as_fd()).unwrap(), bound);
    }

    #[test]
    fn unbound_and_abstract_sockets_are_bound_to_no_file() {
        let scratch = crate::scratch::Scratch::new("herd-sys-bound-file-none");
        std::fs::create_dir(scratch.path()).unwrap();
        let path = scratch.path().join("a.sock");
        let _listener = UnixListener::bind(&path).unwrap();
        let (stream, _peer) = UnixStream::pair().unwrap();
        assert!(unix_socket_bound_to(stream.as_fd(), &path)
            .unwrap()
            .is_none());
        let datagram = UnixDatagram::unbound().unwrap();
        autobind(&datagram);
        assert!(unix_socket_bound_to(datagram.as_fd(), &path)
            .unwrap()
            .is_none());
    }

    /// Not a Unix socket: bound to no file; not a socket: an error.
    #[test]
    fn other_families_are_bound_to_no_file_and_files_are_no_sockets() {
        let scratch = crate::scratch::Scratch::new("herd-sys-bound-file-other");
        std::fs::create_dir(scratch.path()).unwrap();
        let path = scratch.path().join("a.sock");
        let _listener = UnixListener::bind(&path).unwrap();
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(unix_socket_bound_to(tcp.as_fd(), &path).unwrap().is_none());
        let file = std::fs::File::open("/dev/null").unwrap();
        assert!(unix_socket_bound_to(file.as_fd(), &path).is_err());
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
        let path = std::path::Path::new("/");
        let error = super::unix_socket_bound_to(stream.as_fd(), path).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::Unsupported);
        assert!(!super::KNOWS_BOUND_FILES);
    }
}
