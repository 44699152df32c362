//! Whether the server behind a control socket may be trusted, before anything it says is
//! believed or any socket it sends is used.
//!
//! A control socket is found by its path, and a path can be prepared by someone else: another
//! local user can create `/tmp/herd-UID` (as a directory or a symlink) before its owner does,
//! and serve decoy answers there. So the client asks the kernel who is serving (`SO_PEERCRED`,
//! or `getpeereid`) and accepts:
//!
//! - root, or its own uid;
//! - otherwise, the uid that owns both the socket file and its directory, when that directory
//!   is writable by nobody else: that user put the server where the caller looked (a herd run
//!   by `app` that lets `deploy` in with `--control-allow-uid`, reached with `--control`).
//!
//! Anyone else is refused with [`ErrorKind::Untrusted`].

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::io::AsFd;
use std::os::unix::net::UnixStream;
use std::path::Path;

use crate::error::{Error, ErrorKind, Result};

/// Checks the server at the other end of `stream`, connected to `path`; see the module docs.
pub fn check_server(stream: &UnixStream, path: &Path) -> Result<()> {
    let shown = path.display();
    let server = herd_sys::socket::peer_uid(stream.as_fd())
        .map_err(|e| Error::io(format!("cannot learn who serves {shown}"), e))?;
    let me = herd_sys::process::effective_uid();
    if trusted(server, me, path) {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::Untrusted,
        format!(
            "refusing the server at {shown}: it runs as uid {server}, which is neither root nor \
             your uid {me} nor the owner of a directory only it can write; it may be a decoy \
             left by another user: remove it, or point --control at the real herd"
        ),
    ))
}

/// The rule of the module docs, for a server running as `server` and a client as `client`.
pub fn trusted(server: u32, client: u32, path: &Path) -> bool {
    server == 0 || server == client || owns_path(server, path)
}

/// Whether `uid` owns the socket file at `path` (not a symlink) and its directory, and nobody
/// else may write to that directory.
fn owns_path(uid: u32, path: &Path) -> bool {
    let socket = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(_) => return false,
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let dir = match std::fs::metadata(dir) {
        Ok(meta) => meta,
        Err(_) => return false,
    };
    socket.file_type().is_socket()
        && socket.uid() == uid
        && dir.is_dir()
        && dir.uid() == uid
        && dir.mode() & 0o022 == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn root_self_and_owners_of_private_directories_are_trusted() {
        let tmp = std::env::temp_dir().join(format!("herd-trust-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir(&tmp).unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = tmp.join("x.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let owner = std::fs::metadata(&path).unwrap().uid();
        let other = owner.wrapping_add(4242);
        assert!(trusted(0, other, &path));
        assert!(trusted(other, other, &path));
        assert!(!trusted(other.wrapping_add(1), other, &path));
        // The owner of the socket and of its private directory.
        assert!(owns_path(owner, &path));
        assert!(!owns_path(other, &path));
        // Not once others may write to the directory (like /tmp).
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(!owns_path(owner, &path));
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
        // Not through a symlink, and not a missing file.
        let link = tmp.join("link.sock");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(!owns_path(owner, &link));
        assert!(!owns_path(owner, &tmp.join("missing.sock")));
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
