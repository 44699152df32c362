//! Watches the socket files herd created: the Unix listeners', and those of the notify,
//! einhorn's and control sockets.
//!
//! A worker, or anything else with access to the directory, may remove one (a cleanup of
//! "stale" sockets, a tmp cleaner). The socket itself lives on, so nothing fails at once: the
//! connected clients are served, but nobody can connect by that path again, and a worker that
//! starts afterwards cannot send `READY=1` to a removed notify socket. A bound socket cannot be
//! given a file again, so herd says so, once per file (and again if the file comes back and is
//! removed once more); the notify, einhorn's and control sockets are bound anew at their paths
//! first, in the directory herd bound them in only ([`in_dir_bound`]; see
//! `platform::unix::rebind`), and only a failure to do so is said here. A path that names
//! another file now was replaced on purpose (a takeover does), and is left alone.

use std::io;
use std::path::{Path, PathBuf};

use crate::logging::LogEvent;
use crate::spec::SocketFile;
use crate::supervisor::rate_limit::RateLimit;
use crate::supervisor::said_once::SaidOnce;

/// How often a socket bound again is said at most (an `rm` loop on its file binds it again at
/// every look): once, then how many more times, once per this window.
pub const REBOUND_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

/// Which socket file it is, for the log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind<'a> {
    /// The file of the listener of this name.
    Listener(&'a str),
    /// The notify socket's file.
    Notify,
    /// The control socket's file.
    Control,
    /// The file of einhorn's socket (`--compat einhorn`).
    Einhorn,
}

/// The files found removed, said once each.
#[derive(Debug, Default)]
pub struct Watch {
    gone: SaidOnce<PathBuf>,
    /// The notify socket could not be bound again (said once until it can).
    unbound: SaidOnce<()>,
    /// The control socket could not be bound again (said once until it can).
    control_unbound: SaidOnce<()>,
    /// Einhorn's socket could not be bound again (said once until it can).
    einhorn_unbound: SaidOnce<()>,
    /// The control socket's directory (its path, and its [`DirIdentity`]) as herd bound it
    /// ([`Watch::control_bound`]), or at the last look that found herd's own socket there: it
    /// is bound again only in that directory.
    control_dir: Option<(PathBuf, DirIdentity)>,
    /// The sockets bound again, by name (`notify`, `control`, `einhorn`): each said once per
    /// [`REBOUND_WINDOW`], the others counted.
    rebound: Vec<(&'static str, RateLimit)>,
}

impl Watch {
    /// Whether the notify socket newly could not be bound again (`failed`): to be said once,
    /// not at every look.
    pub fn notify_unbound_newly(&mut self, failed: bool) -> bool {
        self.unbound.newly(&(), failed)
    }

    /// Whether einhorn's socket newly could not be bound again (`failed`).
    pub fn einhorn_unbound_newly(&mut self, failed: bool) -> bool {
        self.einhorn_unbound.newly(&(), failed)
    }

    /// Whether the control socket newly could not be bound again (`failed`).
    pub fn control_unbound_newly(&mut self, failed: bool) -> bool {
        self.control_unbound.newly(&(), failed)
    }

    /// Whether socket `name`, just bound again, is to be said now: the first time, then at
    /// most once per [`REBOUND_WINDOW`] (the others are counted, [`Watch::rebinds_held_back`]).
    pub fn say_rebound(&mut self, name: &'static str, now: std::time::Instant) -> bool {
        let at = match self.rebound.iter().position(|(n, _)| *n == name) {
            Some(at) => at,
            None => {
                self.rebound.push((name, RateLimit::new(1, REBOUND_WINDOW)));
                self.rebound.len() - 1
            }
        };
        self.rebound[at].1.allow(now).0
    }

    /// The sockets bound again and not said in windows that ended by `now`, and how many
    /// times each: to be said once.
    pub fn rebinds_held_back(&mut self, now: std::time::Instant) -> Vec<(&'static str, u32)> {
        (self.rebound.iter_mut())
            .map(|(name, limit)| (*name, limit.end_window(now)))
            .filter(|(_, held)| *held > 0)
            .collect()
    }

    /// The control socket at `path` was bound in the directory `dir` (as herd bound it, or as
    /// a previous image knew it): known from the start, a removal before the first look is
    /// bound again too.
    pub fn control_bound(&mut self, path: &Path, dir: DirIdentity) {
        let parent = path.parent().unwrap_or(Path::new("/"));
        self.control_dir = Some((parent.to_path_buf(), dir));
    }

    /// The directory known of the control socket at `path`, to hand over to a re-exec.
    pub fn control_dir(&self, path: &Path) -> Option<DirIdentity> {
        let parent = path.parent().unwrap_or(Path::new("/"));
        let (at, dir) = self.control_dir.as_ref()?;
        (at == parent).then_some(*dir)
    }

    /// Whether the control socket's file at `path` was removed, and if so, whether its
    /// directory is still the one it was bound in (`Err` if not, or never seen: then nothing
    /// of herd's goes there). While herd's own socket (`own`: device, inode) is there, its
    /// directory is noted; any other file there says nothing of the directory (one made anew
    /// by another user, with a file put at the path, is not herd's).
    pub fn control_removed(&mut self, path: &Path, own: (u64, u64)) -> Result<bool, String> {
        let parent = path.parent().unwrap_or(Path::new("/"));
        if !removed(path) {
            if let Some(dir) = dir_holding(path, own) {
                self.control_dir = Some((parent.to_path_buf(), dir));
            }
            return Ok(false);
        }
        // The same directory, whatever the file's name in it (a takeover's control socket is
        // bound next to the old herd's, then moved to its path).
        let seen = self.control_dir.as_ref().filter(|(at, _)| at == parent);
        in_dir_bound(path, seen.map(|(_, dir)| dir)).map(|()| true)
    }

    /// Looks at each of `files`; says, once, which were removed since. The notify, einhorn
    /// and control sockets' only when they could not be bound again (`unbound`): one bound
    /// again is not removed, and its next failure is said again.
    pub fn check<'a>(&mut self, files: impl IntoIterator<Item = (Kind<'a>, &'a SocketFile, bool)>) {
        for (kind, file, unbound) in files {
            let (path, _, ino) = file.parts();
            // A socket in the abstract namespace has no file (inode 0).
            if ino == 0 {
                continue;
            }
            if self.gone.newly(path, unbound && removed(path)) {
                report(kind, path);
            }
        }
    }
}

/// Whether nothing is at `path` any more: no file, or no directory on the way (one replaced
/// by a file). Another file there (a takeover puts its own) is not herd's to judge.
pub(super) fn removed(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_err_and(|e| {
        e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR)
    })
}

/// Which directory it is: device, inode and, where the file system keeps it, birth time (a
/// directory removed and made again often gets the same inode number back on ext4).
pub type DirIdentity = (u64, u64, Option<std::time::SystemTime>);

/// The identity of the directory of `path`, not following a symlink.
pub(crate) fn dir_identity(path: &Path) -> Option<DirIdentity> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let meta = std::fs::symlink_metadata(dir).ok().filter(|m| m.is_dir())?;
    Some(identity_of(&meta))
}

/// The identity of the directory `meta` describes (as [`dir_identity`] gives it).
pub(crate) fn identity_of(meta: &std::fs::Metadata) -> DirIdentity {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino(), meta.created().ok())
}

/// The identity of the directory of `path` while herd's own socket file (`own`: device and
/// inode, a socket of herd's user: an inode number freed is given to the next file made,
/// anyone's) is there: then it is surely the directory herd bound it in.
pub(crate) fn dir_holding(path: &Path, own: (u64, u64)) -> Option<DirIdentity> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let meta = std::fs::symlink_metadata(path).ok()?;
    let ours = own == (meta.dev(), meta.ino())
        && meta.file_type().is_socket()
        && meta.uid() == herd_sys::process::effective_uid();
    ours.then(|| dir_identity(path))?
}

/// The directory herd just bound its socket at `path` (`own`: device and inode) in: its file
/// is there, or, removed already (a clean-up at the worst moment), the directory is the one
/// that was there before the bind (`before`), unchanged.
pub(crate) fn dir_bound_in(
    path: &Path,
    own: (u64, u64),
    before: Option<DirIdentity>,
) -> Option<DirIdentity> {
    dir_holding(path, own).or_else(|| before.filter(|b| dir_identity(path).as_ref() == Some(b)))
}

/// Checks that the directory of `path` is still `bound`, the one herd bound a socket in
/// ([`dir_identity`] then): one removed and made again (by another user, or a symlink in its
/// place) is not herd's, and nothing of herd's goes there. `None`: never known, never herd's.
pub(super) fn in_dir_bound(path: &Path, bound: Option<&DirIdentity>) -> Result<(), String> {
    match bound {
        Some(dir) if dir_identity(path).as_ref() == Some(dir) => Ok(()),
        _ => Err(format!(
            "{} is not the directory herd bound it in (removed, or replaced)",
            path.parent().unwrap_or(Path::new("/")).display()
        )),
    }
}

/// The one log line of a removed socket file.
fn report(kind: Kind<'_>, path: &Path) {
    let shown = path.display().to_string();
    let path = crate::text::escape(&shown);
    match kind {
        Kind::Listener(name) => tracing::error!(
            event = LogEvent::SocketFileRemoved.as_str(),
            socket = %name,
            path = %path,
            "the file {path} of socket {name} was removed (by a worker or another process): the \
             socket still serves its connected clients, but nobody can connect by that path \
             until herd is restarted or taken over (herd run --takeover)"
        ),
        Kind::Notify => tracing::error!(
            event = LogEvent::SocketFileRemoved.as_str(),
            socket = "notify",
            path = %path,
            "the notify socket's file {path} was removed (by a worker or another process): \
             workers that start from now on cannot send READY=1 or WATCHDOG=1 to it \
             (NOTIFY_SOCKET) until herd is restarted or taken over (herd run --takeover)"
        ),
        Kind::Control => tracing::error!(
            event = LogEvent::SocketFileRemoved.as_str(),
            socket = "control",
            path = %path,
            "the control socket's file {path} was removed (by a worker or another process): \
             herd commands cannot reach this herd until it is restarted; its signals still \
             work (SIGTERM stops it, SIGHUP upgrades, SIGUSR2 re-executes)"
        ),
        Kind::Einhorn => tracing::error!(
            event = LogEvent::SocketFileRemoved.as_str(),
            socket = "einhorn",
            path = %path,
            "the file {path} of einhorn's socket was removed (by a worker or another \
             process): workers that start from now on cannot acknowledge einhorn's way \
             (EINHORN_SOCK_PATH) until herd is restarted or taken over (herd run --takeover)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_removed_file_is_said_once_until_it_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.sock");
        let _socket = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let mut watch = Watch::default();
        assert!(!watch.gone.newly(path.as_path(), removed(&path)));
        std::fs::remove_file(&path).unwrap();
        assert!(watch.gone.newly(path.as_path(), removed(&path)));
        assert!(!watch.gone.newly(path.as_path(), removed(&path)));
        // Another file there: not removed, and a later removal is said again.
        std::fs::write(&path, b"").unwrap();
        assert!(!watch.gone.newly(path.as_path(), removed(&path)));
        std::fs::remove_file(&path).unwrap();
        assert!(watch.gone.newly(path.as_path(), removed(&path)));
    }

    #[test]
    fn the_control_socket_is_bound_again_only_in_the_directory_seen() {
        let (_top, dir, path) = control_dir();
        let mut watch = Watch::default();
        // Never seen there: not herd's to bind in.
        assert!(watch.control_removed(&path, (0, 1)).is_err());
        let socket = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let ours = identity(&path);
        assert_eq!(watch.control_removed(&path, ours), Ok(false));
        std::fs::remove_file(&path).unwrap();
        assert_eq!(watch.control_removed(&path, ours), Ok(true));
        // The directory removed and made again: not the one seen.
        drop(socket);
        std::fs::remove_dir(&dir).unwrap();
        std::fs::create_dir(&dir).unwrap();
        let e = watch.control_removed(&path, ours).unwrap_err();
        assert!(e.contains("is not the directory herd bound it in"), "{e}");
        // Another file put there in the new directory says nothing of it: removed, the
        // directory is still not herd's (it was then bound in a directory anyone made).
        std::fs::write(&path, b"").unwrap();
        assert_eq!(watch.control_removed(&path, ours), Ok(false));
        std::fs::remove_file(&path).unwrap();
        assert!(watch.control_removed(&path, ours).is_err());
    }

    #[test]
    fn a_control_socket_moved_into_place_is_bound_again_in_its_directory() {
        // A takeover binds its control socket next to the old herd's, then moves it there.
        let dir = tempfile::tempdir().unwrap();
        let (bound, path) = (dir.path().join("c.takeover.1"), dir.path().join("c.sock"));
        let _socket = std::os::unix::net::UnixListener::bind(&bound).unwrap();
        let ours = identity(&bound);
        let mut watch = Watch::default();
        assert_eq!(watch.control_removed(&bound, ours), Ok(false));
        std::fs::rename(&bound, &path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(watch.control_removed(&path, ours), Ok(true));
    }

    /// Its directory learnt as herd bound it (or from a previous image): a removal before the
    /// first look is bound again. Learnt at the first look only, such a removal was only
    /// said, never bound again (in the first 250 ms after herd started or re-executed).
    #[test]
    fn a_control_socket_removed_before_the_first_look_is_bound_again_in_its_directory() {
        let (_top, dir, path) = control_dir();
        let _socket = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let ours = identity(&path);
        let bound = dir_holding(&path, ours).unwrap();
        std::fs::remove_file(&path).unwrap();
        let mut watch = Watch::default();
        watch.control_bound(&path, bound);
        assert_eq!(watch.control_dir(&path), Some(bound));
        assert_eq!(watch.control_removed(&path, ours), Ok(true));
        // The directory made anew since: still not herd's.
        std::fs::remove_dir(&dir).unwrap();
        std::fs::create_dir(&dir).unwrap();
        assert!(watch.control_removed(&path, ours).is_err());
    }

    /// The control socket's file removed just after herd bound it, before herd learnt its
    /// directory from it (CI, once): the directory, unchanged since before the bind, is
    /// still known. Made anew, it is not.
    #[test]
    fn a_socket_removed_just_after_its_bind_leaves_its_directory_known() {
        let (_top, dir, path) = control_dir();
        let before = dir_identity(&path);
        let _socket = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let ours = identity(&path);
        std::fs::remove_file(&path).unwrap();
        assert!(before.is_some());
        assert_eq!(dir_bound_in(&path, ours, before), before);
        std::fs::remove_dir(&dir).unwrap();
        std::fs::create_dir(&dir).unwrap();
        assert_eq!(dir_bound_in(&path, ours, before), None);
    }

    /// An `rm` loop on a socket's file: bound again at every look, said once, then how many
    /// more times once a minute (it was one WARN per look, four a second, without end).
    #[test]
    fn a_socket_bound_again_and_again_is_said_once_then_counted_once_a_minute() {
        let t0 = std::time::Instant::now();
        let at = |ms: u64| t0 + std::time::Duration::from_millis(ms);
        let mut watch = Watch::default();
        assert!(watch.say_rebound("control", at(0)));
        assert!(watch.say_rebound("notify", at(0)), "each socket its own");
        for look in 1..240 {
            assert!(!watch.say_rebound("control", at(250 * look)));
            assert!(watch.rebinds_held_back(at(250 * look)).is_empty());
        }
        // The minute over: how many more, once, and the next one said again.
        assert_eq!(watch.rebinds_held_back(at(60_000)), vec![("control", 239)]);
        assert!(watch.rebinds_held_back(at(60_250)).is_empty());
        assert!(watch.say_rebound("control", at(60_500)));
        assert!(!watch.say_rebound("control", at(60_750)));
        assert_eq!(watch.rebinds_held_back(at(121_000)), vec![("control", 1)]);
    }

    /// A temporary directory `run` (inside one that is removed when the first is dropped),
    /// and the control socket's path in it.
    fn control_dir() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let top = tempfile::tempdir().unwrap();
        let dir = top.path().join("run");
        std::fs::create_dir(&dir).unwrap();
        let path = dir.join("control.sock");
        (top, dir, path)
    }

    fn identity(path: &Path) -> (u64, u64) {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::symlink_metadata(path).unwrap();
        (meta.dev(), meta.ino())
    }
}
