//! Watches the socket files herd created: the Unix listeners' and the notify socket's.
//!
//! A worker, or anything else with access to the directory, may remove one (a cleanup of
//! "stale" sockets, a tmp cleaner). The socket itself lives on, so nothing fails at once: the
//! connected clients are served, but nobody can connect by that path again, and a worker that
//! starts afterwards cannot send `READY=1` to a removed notify socket. A bound socket cannot be
//! given a file again, so herd says so, once per file (and again if the file comes back and is
//! removed once more); the notify socket is bound anew at its path first
//! ([`NotifySocket::bind_again_if_removed`](super::notify::NotifySocket::bind_again_if_removed)),
//! and only a failure to do so is said here. A path that names another file now was replaced on purpose (a takeover
//! does), and is left alone.

use std::io;
use std::path::{Path, PathBuf};

use crate::logging::LogEvent;
use crate::spec::SocketFile;
use crate::supervisor::said_once::SaidOnce;

/// Which socket file it is, for the log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind<'a> {
    /// The file of the listener of this name.
    Listener(&'a str),
    /// The notify socket's file.
    Notify,
}

/// The files found removed, said once each.
#[derive(Debug, Default)]
pub struct Watch {
    gone: SaidOnce<PathBuf>,
    /// The notify socket could not be bound again (said once until it can).
    unbound: SaidOnce<()>,
}

impl Watch {
    /// Whether the notify socket newly could not be bound again (`failed`): to be said once,
    /// not at every look.
    pub fn notify_unbound_newly(&mut self, failed: bool) -> bool {
        self.unbound.newly(&(), failed)
    }

    /// Looks at each of `files`; says, once, which were removed since.
    pub fn check<'a>(&mut self, files: impl IntoIterator<Item = (Kind<'a>, &'a SocketFile)>) {
        for (kind, file) in files {
            let (path, _, ino) = file.parts();
            // A socket in the abstract namespace has no file (inode 0).
            if ino == 0 {
                continue;
            }
            if self.gone.newly(path, removed(path)) {
                report(kind, path);
            }
        }
    }
}

/// Whether nothing is at `path` any more. Another file there (a takeover puts its own) is not
/// herd's to judge.
pub(super) fn removed(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_err_and(|e| e.kind() == io::ErrorKind::NotFound)
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
}
