//! What a `--bind` spec may ask of a socket taken over on Unix.

use std::os::unix::io::AsFd;

use anyhow::bail;

use super::super::parse::{Address, BindSpec};
use super::Inherited;
use crate::spec::SocketKind;

/// A socket taken over: a file descriptor.
pub type OwnedSocket = std::os::unix::io::OwnedFd;

/// Applies the options that can change on a live socket, and refuses those that cannot: the
/// blocking mode first, then what every platform checks, then a Unix socket's file mode.
pub(super) fn apply_options(spec: &BindSpec, socket: &Inherited) -> anyhow::Result<()> {
    let options = &spec.options;
    let fd = socket.fd.as_fd();
    let nonblocking = herd_sys::fd::is_nonblocking(fd)?;
    if options.nonblocking != nonblocking {
        let (is, asked) = if nonblocking {
            ("non-blocking", "without 'nonblocking'")
        } else {
            ("blocking", "with 'nonblocking'")
        };
        bail!(
            "conflicts with the inherited socket {:?}: it is {is}, and its workers share that \
             mode; bind it {asked} to match, or under another name",
            socket.name
        );
    }
    super::apply_socket_options(spec, socket)?;
    if let (Some(mode), Address::UnixPath(path)) = (options.mode, &spec.address) {
        crate::spec::set_socket_mode(path, Some(mode))?;
    }
    Ok(())
}

/// Whether `path` (as a `--bind` spells it: relative, or through a link) leads to the file
/// the Unix socket `socket` is bound to (as the kernel says, else as the old herd said): the
/// same socket however either herd spelled its path.
pub(super) fn leads_to_its_file(path: &std::path::Path, socket: &Inherited) -> bool {
    if socket.kind != Some(SocketKind::Unix) {
        return false;
    }
    // Links followed: the file compared is opened itself, a link never followed.
    let Ok(path) = std::fs::canonicalize(path) else {
        return false;
    };
    match herd_sys::socket::unix_socket_bound_to(socket.fd.as_fd(), &path) {
        Ok(file) => file.is_some(),
        Err(_) => socket.file.as_ref().is_some_and(|&(_, dev, ino)| {
            std::fs::symlink_metadata(&path)
                .is_ok_and(|meta| crate::spec::is_socket_file(&meta, (dev, ino)))
        }),
    }
}

impl super::UntakenFile {
    /// Removes the file, if it still is the one the old herd created (a file put there since
    /// is left alone), and says so.
    pub fn remove(self) {
        let (path, dev, ino) = self.file;
        let shown = path.display().to_string();
        let file = super::super::socket_file::SocketFile::from_parts(path, dev, ino);
        match file.remove_now() {
            Ok(true) => tracing::info!(
                event = crate::logging::LogEvent::UntakenSocketFileRemoved.as_str(),
                name = %self.name,
                path = %shown,
                "removed the socket file of {:?}, which this herd did not take over",
                self.name
            ),
            Ok(false) => {}
            Err(e) => tracing::warn!(
                event = crate::logging::LogEvent::SystemError.as_str(),
                path = %shown,
                "cannot remove the socket file of {:?}, which this herd did not take over: {e}",
                self.name
            ),
        }
    }
}
