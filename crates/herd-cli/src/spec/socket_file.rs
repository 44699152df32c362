//! Unix socket files: never clobber a live listener or a non-socket, replace stale ones, and
//! remove what herd created when it exits.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use socket2::{Domain, SockAddr, Socket, Type};

use crate::logging::LogEvent;

mod remove;

pub use remove::is_socket_file;
use remove::remove_if_same;

/// Makes `path` free for a new socket: nothing there is fine; a socket file nobody listens on
/// (left by a crashed server) is removed; a live listener or any other kind of file is an error.
pub fn prepare(path: &Path) -> anyhow::Result<()> {
    let shown = path.display();
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => bail!(
            "cannot put a socket at {shown}: herd's user may not search a directory on its way; \
             choose a path that user may write in, or run herd as a user who may"
        ),
        Err(e) => return Err(e).with_context(|| format!("cannot inspect {shown}")),
    };
    if meta.file_type().is_symlink() {
        let to = std::fs::read_link(path).map_or_else(
            |_| "?".into(),
            |to| crate::text::escape(&to.display().to_string()).into_owned(),
        );
        bail!(
            "{shown} is a symbolic link (to {to}); herd binds no socket through one and never \
             removes one: pass the path it names, or another path"
        );
    }
    if !meta.file_type().is_socket() {
        bail!(
            "{shown} exists and is not a socket; herd never removes other files: \
             choose another path or remove it yourself"
        );
    }
    let live = match is_live(path) {
        // A stream cannot connect to it: a datagram (or seqpacket) socket a program is
        // bound to, such as another herd's notify socket. Stale, it would refuse.
        Err(e) if e.raw_os_error() == Some(libc::EPROTOTYPE) => bail!(
            "{shown} is a socket of another kind (datagram or seqpacket) that a program is \
             bound to; herd never removes a socket in use: choose another path"
        ),
        live => live.with_context(|| format!("cannot probe the socket file {shown}"))?,
    };
    if live {
        return Err(InUse(path.to_path_buf()).into());
    }
    std::fs::remove_file(path)
        .with_context(|| format!("cannot remove the stale socket file {shown}"))?;
    tracing::info!(event = LogEvent::StaleSocketRemoved.as_str(), path = %shown, "removed stale socket file");
    Ok(())
}

/// The sticky bit, which keeps a file from the cleaners of temporary and runtime directories:
/// systemd-tmpfiles' age-based clean-up (`/tmp` after 10 days on Fedora and Arch) and the XDG
/// runtime directory's (files untouched for 6 hours) skip a file that has it. tmpfiles also
/// skips a socket it sees bound in `/proc/net/unix`, but not one bound in another network
/// namespace (a container, `PrivateNetwork=`), by a relative path, or under another name and
/// renamed (einhorn's); on a socket Linux gives the bit no other meaning. Linux only: the BSDs
/// refuse the bit on a file to anyone but root (`EFTYPE`), and have no such cleaners.
const STICKY: u32 = if cfg!(target_os = "linux") { 0o1000 } else { 0 };

/// Gives the socket file herd created (or was handed) at `path` the permission bits `mode`
/// (`None`: those it has) and the sticky bit: a herd that runs for weeks keeps its control, notify
/// and listening sockets' files in `/tmp` or `$XDG_RUNTIME_DIR`, where a cleaner would remove
/// them (and nobody could then reach herd, nor a worker started afterwards say `READY=1`).
/// Where the bit is refused, `mode` is set alone, with a warning.
///
/// Only a socket is changed, never what a symlink put in its place names: whoever may write
/// to the directory could swap one in between the bind and this, and have herd (root, often)
/// make any file world-writable. On Linux the file is opened without following a symlink and
/// changed through that descriptor (`/proc/self/fd`); elsewhere, or without `/proc`, it is
/// checked just before.
pub fn set_mode(path: &Path, mode: Option<u32>) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let not_a_socket = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a socket (any more)", path.display()),
        )
    };
    #[cfg(target_os = "linux")]
    let opened = {
        use std::os::unix::io::AsRawFd;
        let file = herd_sys::fs::open_itself(path)?;
        let meta = file.metadata()?;
        if !meta.file_type().is_socket() {
            return Err(not_a_socket());
        }
        let by_fd = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
        Some((file, meta, by_fd)).filter(|(_, _, by_fd)| by_fd.exists())
    };
    #[cfg(not(target_os = "linux"))]
    let opened: Option<(std::fs::File, std::fs::Metadata, PathBuf)> = None;
    let (meta, target) = match &opened {
        Some((_, meta, by_fd)) => (meta.clone(), by_fd.as_path()),
        None => (std::fs::symlink_metadata(path)?, path),
    };
    if !meta.file_type().is_socket() {
        return Err(not_a_socket());
    }
    let mode = mode.unwrap_or(meta.mode() & 0o777);
    let chmod = |bits| std::fs::set_permissions(target, std::fs::Permissions::from_mode(bits));
    if let Err(e) = sticky_if_possible(mode, chmod)? {
        tracing::warn!(
            event = LogEvent::SetupNote.as_str(),
            path = %path.display(),
            "cannot set the sticky bit on {} ({e}): a cleaner of its directory \
             (systemd-tmpfiles) may remove it after days; serving on",
            path.display()
        );
    }
    Ok(())
}

/// Gives `mode` with the sticky bit through `chmod`; where that is refused, `mode` alone (the
/// bit keeps a file from cleaners, and only `mode` guards who may connect): `Ok(Err(why))`
/// then, for a warning. An error only when `mode` alone cannot be set.
fn sticky_if_possible(
    mode: u32,
    chmod: impl Fn(u32) -> io::Result<()>,
) -> io::Result<Result<(), io::Error>> {
    match chmod(mode | STICKY) {
        Ok(()) => Ok(Ok(())),
        Err(e) if STICKY != 0 => chmod(mode).map(|()| Err(e)),
        Err(e) => Err(e),
    }
}

/// Locks the directory that holds the socket file `path` (`flock` on the directory itself)
/// until the returned file is dropped: held from [`prepare`] until the new socket listens, so
/// that a herd started at the same moment on the same path never takes our socket, bound but
/// not yet listening, for a stale one and removes it. `None` if the directory cannot be opened,
/// or is still locked after 2s (then herd goes on without: another user who may read a shared
/// directory such as /tmp could hold its lock forever, and a herd holds it for microseconds).
pub fn lock_dir_of(path: &Path) -> Option<std::fs::File> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let file = std::fs::File::open(dir).ok()?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match file.try_lock() {
            Ok(()) => return Some(file),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(_) => return None,
        }
    }
}

/// [`prepare`]'s error for a socket file a running server listens on.
#[derive(Debug)]
pub struct InUse(pub PathBuf);

impl std::fmt::Display for InUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is in use by a running server; stop it or choose another path",
            self.0.display()
        )
    }
}

impl std::error::Error for InUse {}

/// Whether something listens on the socket file (a non-blocking connect, so a full backlog
/// cannot hang herd).
fn is_live(path: &Path) -> io::Result<bool> {
    let probe = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    probe.set_nonblocking(true)?;
    match probe.connect(&SockAddr::unix(path)?) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => Ok(false),
        Err(e)
            if e.kind() == io::ErrorKind::WouldBlock
                || e.raw_os_error() == Some(libc::EINPROGRESS) =>
        {
            Ok(true)
        }
        Err(e) => Err(e),
    }
}

/// A socket file herd created; dropping it removes the file if it is still the same file (a
/// file someone else put there since is left alone).
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
    /// Cleared by [`release`](SocketFile::release): the file stays when the guard drops.
    remove: bool,
}

impl SocketFile {
    /// Moves the file to `to` (replacing whatever is there, atomically) and follows it.
    pub fn rename(&mut self, to: &Path) -> io::Result<()> {
        std::fs::rename(&self.path, to)?;
        self.path = to.to_path_buf();
        Ok(())
    }

    /// Moves the file to `to` in place of the socket file `expected` (device and inode) there;
    /// anything else at `to` is left alone (`AlreadyExists`).
    ///
    /// On Linux the two files are exchanged in one step (`renameat2(RENAME_EXCHANGE)`) and what
    /// came out is checked afterwards: the expected file is removed, anything else is put back,
    /// so a file that appears at `to` between a look and the move is never lost. Elsewhere (or
    /// on a file system without the exchange) it is a check, then a `rename`: a file put at `to`
    /// between the two is replaced.
    pub fn replace(&mut self, to: &Path, expected: (u64, u64)) -> io::Result<()> {
        let identity = |path: &Path| {
            std::fs::symlink_metadata(path)
                .ok()
                .map(|meta| (meta.dev(), meta.ino()))
        };
        let not_ours = || {
            io::Error::new(
                io::ErrorKind::AlreadyExists,
                "another socket has replaced the one taken over there; herd never replaces a \
                 socket it does not own",
            )
        };
        match herd_sys::fs::exchange(&self.path, to) {
            Ok(()) => {
                // What was at `to` is now at our old path.
                if identity(&self.path) != Some(expected) {
                    return match herd_sys::fs::exchange(&self.path, to) {
                        Ok(()) => Err(not_ours()),
                        Err(e) => Err(io::Error::new(
                            e.kind(),
                            format!(
                                "another socket had replaced the one taken over there, and it \
                                 cannot be put back from {}: {e}",
                                self.path.display()
                            ),
                        )),
                    };
                }
                let out = std::mem::replace(&mut self.path, to.to_path_buf());
                std::fs::remove_file(out)
            }
            Err(e)
                if e.kind() == io::ErrorKind::Unsupported
                    || matches!(e.raw_os_error(), Some(libc::ENOSYS) | Some(libc::EINVAL)) =>
            {
                if identity(to) != Some(expected) {
                    return Err(not_ours());
                }
                self.rename(to)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && identity(to).is_none() => {
                Err(not_ours())
            }
            Err(e) => Err(e),
        }
    }

    /// Moves the file to `to` only if nothing is there (a hard link, which never replaces, then
    /// the old name removed): `AlreadyExists` if something is.
    pub fn move_to_vacant(&mut self, to: &Path) -> io::Result<()> {
        std::fs::hard_link(&self.path, to)?;
        let from = std::mem::replace(&mut self.path, to.to_path_buf());
        std::fs::remove_file(from)
    }

    /// Records the socket file at `path`, which becomes herd's to remove (a takeover's).
    pub fn existing_socket(path: &Path) -> io::Result<SocketFile> {
        let meta = std::fs::symlink_metadata(path)?;
        if !meta.file_type().is_socket() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a socket file",
            ));
        }
        SocketFile::created(path)
    }

    /// Gives the file up, leaving it in place.
    pub fn release(mut self) {
        self.remove = false;
    }

    /// Removes the file now if it still is this one: `Ok(false)` if another file (or none) is
    /// there.
    pub fn remove_now(mut self) -> io::Result<bool> {
        self.remove = false;
        remove_if_same(&self.path, (self.dev, self.ino))
    }

    /// Where the file is, and which file it is (device and inode).
    pub fn parts(&self) -> (&Path, u64, u64) {
        (&self.path, self.dev, self.ino)
    }

    /// The guard for a file recorded by [`parts`](SocketFile::parts) (after a re-exec).
    pub fn from_parts(path: PathBuf, dev: u64, ino: u64) -> SocketFile {
        SocketFile {
            path,
            dev,
            ino,
            remove: true,
        }
    }

    /// Records the file herd just bound at `path`.
    pub fn created(path: &Path) -> io::Result<SocketFile> {
        SocketFile::created_at(path, path)
    }

    /// Records the file herd just bound at `at`, another way to name `path` (through an fd
    /// on its directory, `/proc/self/fd/N/NAME`), as the file at `path`.
    pub fn created_at(at: &Path, path: &Path) -> io::Result<SocketFile> {
        let meta = std::fs::symlink_metadata(at)?;
        Ok(SocketFile {
            path: path.to_path_buf(),
            dev: meta.dev(),
            ino: meta.ino(),
            remove: true,
        })
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if !self.remove {
            return;
        }
        if let Err(e) = remove_if_same(&self.path, (self.dev, self.ino)) {
            tracing::warn!(event = LogEvent::SystemError.as_str(), path = %self.path.display(), "cannot remove socket file: {e}");
        }
    }
}

#[cfg(test)]
mod release_tests {
    use super::*;

    #[test]
    fn a_released_file_stays_and_a_dropped_one_goes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        SocketFile::created(&path).unwrap().release();
        assert!(path.exists(), "released: left in place");
        drop(SocketFile::created(&path).unwrap());
        assert!(!path.exists(), "dropped: removed");
    }

    #[test]
    fn a_move_to_a_vacant_path_never_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (dir.path().join("a"), dir.path().join("b"));
        let _listener = std::os::unix::net::UnixListener::bind(&from).unwrap();
        let mut file = SocketFile::created(&from).unwrap();
        std::fs::write(&to, "someone else's").unwrap();
        let e = file.move_to_vacant(&to).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read_to_string(&to).unwrap(), "someone else's");
        assert!(from.exists());
        std::fs::remove_file(&to).unwrap();
        file.move_to_vacant(&to).unwrap();
        assert!(!from.exists() && file.parts().0 == to);
        drop(file);
        assert!(!to.exists(), "followed: removed from its new place");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_mode_makes_a_socket_file_sticky_and_keeps_its_bits_unless_told() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("s.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let bits = || std::fs::symlink_metadata(&path).unwrap().mode() & 0o7777;
        let created = bits();
        set_mode(&path, None).unwrap();
        assert_eq!(bits(), created | STICKY);
        set_mode(&path, Some(0o600)).unwrap();
        assert_eq!(bits(), 0o600 | STICKY);
    }

    /// A symlink put in the socket's place between its bind and its chmod (by anyone who may
    /// write to its directory) is not followed: the file it names keeps its mode.
    #[test]
    fn set_mode_never_follows_a_symlink_in_the_sockets_place() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let (target, path) = (tmp.path().join("secret"), tmp.path().join("s.sock"));
        std::fs::write(&target, "x").unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let bits = || std::fs::metadata(&target).unwrap().mode() & 0o7777;
        assert!(set_mode(&path, None).is_err());
        assert_eq!(bits(), 0o600, "not made world-writable");
        assert!(set_mode(&path, Some(0o666)).is_err());
        assert_eq!(bits(), 0o600);
        // Nor is a file that is not a socket chmod'ed.
        assert!(set_mode(&target, Some(0o666)).is_err());
        assert_eq!(bits(), 0o600);
    }

    /// A symlink where the socket would go is said to be one (it was "not a socket"), and
    /// left alone.
    #[test]
    fn prepare_says_a_symlink_is_one_and_leaves_it() {
        let tmp = tempfile::tempdir().unwrap();
        let (live, link) = (tmp.path().join("live.sock"), tmp.path().join("link.sock"));
        let _listener = std::os::unix::net::UnixListener::bind(&live).unwrap();
        std::os::unix::fs::symlink(&live, &link).unwrap();
        let e = prepare(&link).unwrap_err().to_string();
        assert!(e.contains("is a symbolic link (to "), "{e}");
        assert!(std::fs::symlink_metadata(&link).is_ok());
    }

    /// A file system or security policy that refuses the sticky bit costs no socket: the mode
    /// that guards who may connect is set alone, and the refusal is told for a warning.
    #[test]
    fn a_refused_sticky_bit_still_sets_the_mode() {
        let set = std::cell::Cell::new(None);
        let refusing = |bits: u32| {
            if bits & 0o1000 != 0 {
                return Err(io::Error::from_raw_os_error(libc::EPERM));
            }
            set.set(Some(bits));
            Ok(())
        };
        let got = sticky_if_possible(0o600, refusing).unwrap();
        if STICKY != 0 {
            assert!(got.is_err(), "the refusal is told");
        }
        assert_eq!(set.get(), Some(0o600));
        // A mode that cannot be set at all is an error.
        let nothing = |_| Err(io::Error::from_raw_os_error(libc::EPERM));
        assert!(sticky_if_possible(0o600, nothing).is_err());
    }

    fn identity(path: &Path) -> (u64, u64) {
        let meta = std::fs::symlink_metadata(path).unwrap();
        (meta.dev(), meta.ino())
    }

    #[test]
    fn replace_takes_only_the_expected_file_s_place() {
        let tmp = tempfile::tempdir().unwrap();
        let (ours, theirs) = (tmp.path().join("new.sock"), tmp.path().join("old.sock"));
        let _new = std::os::unix::net::UnixListener::bind(&ours).unwrap();
        let old = std::os::unix::net::UnixListener::bind(&theirs).unwrap();
        let expected = identity(&theirs);
        let mine = identity(&ours);
        // Another socket has replaced the old one: it stays, and so does ours. (Both exist
        // at once, so they cannot share an inode number.)
        let elsewhere = tmp.path().join("other.sock");
        let _other = std::os::unix::net::UnixListener::bind(&elsewhere).unwrap();
        let other = identity(&elsewhere);
        std::fs::rename(&elsewhere, &theirs).unwrap();
        drop(old);
        let mut file = SocketFile::created(&ours).unwrap();
        let e = file.replace(&theirs, expected).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists, "{e}");
        assert_eq!(identity(&theirs), other);
        assert_eq!(identity(&ours), mine);
        assert_eq!(file.parts().0, ours.as_path());
        // Nothing there at all: nothing to replace.
        std::fs::remove_file(&theirs).unwrap();
        assert!(file.replace(&theirs, other).is_err());
        assert_eq!(identity(&ours), mine);
        // The expected file: ours takes its place, and it is gone.
        let _old = std::os::unix::net::UnixListener::bind(&theirs).unwrap();
        let expected = identity(&theirs);
        file.replace(&theirs, expected).unwrap();
        assert_eq!(identity(&theirs), mine);
        assert!(std::fs::symlink_metadata(&ours).is_err());
        assert_eq!(file.parts().0, theirs.as_path());
    }
}
