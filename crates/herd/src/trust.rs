//! Whether the server behind a control socket may be trusted, before anything it says is
//! believed or any socket it sends is used.
//!
//! A control socket is found by its path, and a path can be prepared by someone else: another
//! local user can create `/tmp/herd-UID` (as a directory or a symlink, with a mode and owner
//! that look right) before its owner does, or bind a decoy anywhere they may write, and serve
//! decoy answers there. Who owns the socket and its directory says nothing, since the decoy's
//! author owns both. So the client asks the kernel who is serving (`SO_PEERCRED`, or
//! `getpeereid`) and accepts:
//!
//! - root, or its own uid;
//! - the uid the caller names as the herd's owner (`herd --control-owner UID`,
//!   `HERD_CONTROL_OWNER=UID`, [`FetchOptions::owner`](crate::fetch::FetchOptions::owner)): a herd
//!   run by `app` that lets `deploy` in with `--control-allow-uid`;
//! - otherwise, the server's uid only when its socket is at a path nobody else could have
//!   prepared (as ssh's `StrictModes`): the socket file is the server's, and every directory from
//!   it up to `/`, both as named and with symlinks resolved, belongs to root, the server's uid or
//!   the caller and is writable by nobody else. A sticky directory that everyone may write, like
//!   `/tmp`, passes only when the entry below it belongs to root or the caller: anyone can create
//!   `/tmp/herd-app`, not only `app`. So `/srv/app/run/herd.sock` (with `/srv` root's and
//!   `/srv/app` app's, both 0755) is app's herd; `/tmp/herd-app/herd.sock` needs
//!   `--control-owner`.
//!
//! Anyone else is refused with [`ErrorKind::Untrusted`]. Access control lists are not read: a
//! directory that an ACL opens to others passes if its mode bits do not.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::io::AsFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind, Result};

/// The variable that names the uid a caller trusts to serve its control socket.
pub const OWNER_VAR: &str = "HERD_CONTROL_OWNER";

/// The owner named in `$HERD_CONTROL_OWNER` (a numeric uid), if set and not empty.
pub fn owner_from_env() -> Result<Option<u32>> {
    let value = match std::env::var_os(OWNER_VAR) {
        Some(value) if !value.is_empty() => value,
        _ => return Ok(None),
    };
    match value.to_str().and_then(uid) {
        Some(uid) => Ok(Some(uid)),
        None => Err(Error::new(
            ErrorKind::InvalidEnvironment,
            format!(
                "${OWNER_VAR} must be a numeric uid, not '{}'",
                value.to_string_lossy().escape_debug()
            ),
        )),
    }
}

/// A numeric uid, blanks around it aside; `-0` is 0 (as `herd --control-owner -0` takes it).
fn uid(text: &str) -> Option<u32> {
    let text = text.trim();
    let zeros = text
        .strip_prefix('-')
        .filter(|z| !z.is_empty() && z.bytes().all(|b| b == b'0'));
    zeros.unwrap_or(text).parse().ok()
}

/// Checks the server at the other end of `stream`, connected to `path`, for a caller that
/// names `owner` as the herd's owner (if any); see the module docs.
pub fn check_server(stream: &UnixStream, path: &Path, owner: Option<u32>) -> Result<()> {
    let shown = path.display();
    let server = herd_sys::socket::peer_uid(stream.as_fd())
        .map_err(|e| Error::io(format!("cannot learn who serves {shown}"), e))?;
    let me = herd_sys::process::effective_uid();
    if trusted(server, me, owner, path) {
        return Ok(());
    }
    let named = match owner {
        Some(owner) => format!(", nor uid {owner} that you named"),
        None => String::new(),
    };
    Err(Error::new(
        ErrorKind::Untrusted,
        format!(
            "refusing the server at {shown}: it runs as uid {server}, which is neither root nor \
             your uid {me}{named}, and the path is one that another user could have prepared; it \
             may be a decoy: if uid {server} runs the herd you want, say so with --control-owner \
             {server} (or ${OWNER_VAR}={server})"
        ),
    ))
}

/// The rule of the module docs, for a server running as `server`, a client as `client` that
/// names `owner`, at `path`.
pub fn trusted(server: u32, client: u32, owner: Option<u32>, path: &Path) -> bool {
    server == 0 || server == client || owner == Some(server) || safe_path(server, client, path)
}

/// Whether the socket file at `path` (not a symlink) is `server`'s and sits where only root,
/// `server` or `client` could have put it. (A server that runs as root is trusted wherever
/// its socket is; a caller that acts on what it says about files can ask this of root too.)
pub fn safe_path(server: u32, client: u32, path: &Path) -> bool {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        match std::env::current_dir() {
            Ok(cwd) => cwd.join(path),
            Err(_) => return false,
        }
    };
    let (dir, name) = match (absolute.parent(), absolute.file_name()) {
        (Some(dir), Some(name)) => (dir, name),
        _ => return false,
    };
    let socket = match std::fs::symlink_metadata(&absolute) {
        Ok(meta) => meta,
        Err(_) => return false,
    };
    if !socket.file_type().is_socket() || socket.uid() != server {
        return false;
    }
    let real: PathBuf = match std::fs::canonicalize(dir) {
        Ok(real) => real.join(name),
        Err(_) => return false,
    };
    safe_chain(&absolute, server, client) && safe_chain(&real, server, client)
}

/// Walks from `path` (absolute) up to `/`: each entry belongs to root, `server` or `client`,
/// each directory is writable by its owner alone, or is a sticky directory of root's (`/tmp`)
/// whose entry on the way belongs to root or `client`. A symlink on the way is judged by its
/// owner (its target is checked by the resolved walk).
fn safe_chain(path: &Path, server: u32, client: u32) -> bool {
    let mut below: Option<u32> = None;
    for (i, entry) in path.ancestors().enumerate() {
        let meta = match std::fs::symlink_metadata(entry) {
            Ok(meta) => meta,
            Err(_) => return false,
        };
        let owner = meta.uid();
        if owner != 0 && owner != server && owner != client {
            return false;
        }
        if i > 0 && !meta.file_type().is_symlink() {
            if !meta.is_dir() {
                return false;
            }
            let mode = meta.mode();
            // Anyone may add an entry to /tmp, but not replace root's or the caller's.
            let sticky_root = mode & 0o1000 != 0 && owner == 0;
            let below_trusted = matches!(below, Some(b) if b == 0 || b == client);
            if mode & 0o022 != 0 && !(sticky_root && below_trusted) {
                return false;
            }
        }
        below = Some(owner);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// `$HERD_CONTROL_OWNER=-0` was "must be a numeric uid, not '-0'", which `--control-owner`
    /// takes as uid 0.
    #[test]
    fn an_owner_is_a_uid_and_minus_zero_is_root() {
        for (text, read) in [
            ("1000", Some(1000)),
            (" 0 ", Some(0)),
            ("-0", Some(0)),
            ("-00", Some(0)),
            ("-1", None),
            ("-", None),
            ("--0", None),
            ("root", None),
        ] {
            assert_eq!(uid(text), read, "{text:?}");
        }
    }

    #[test]
    fn root_self_and_named_owners_are_trusted() {
        let path = Path::new("/nonexistent/herd.sock");
        assert!(trusted(0, 1000, None, path));
        assert!(trusted(1000, 1000, None, path));
        assert!(trusted(4242, 1000, Some(4242), path));
        assert!(!trusted(4242, 1000, None, path));
        assert!(!trusted(4242, 1000, Some(4343), path));
    }

    #[test]
    fn only_paths_nobody_else_could_prepare_are_trusted() {
        // A directory of the socket's owner in the shared temporary directory (like
        // /tmp/herd-VICTIM, made by an attacker): anyone could have made it.
        let scratch = crate::scratch::Scratch::new("herd-trust");
        let tmp = scratch.path();
        std::fs::create_dir(tmp).unwrap();
        std::fs::set_permissions(tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = tmp.join("x.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let owner = std::fs::metadata(&path).unwrap().uid();
        let other = owner.wrapping_add(4242);
        let temp_is_shared = std::fs::metadata(std::env::temp_dir())
            .map_or(false, |m| m.mode() & 0o1022 == 0o1022 && m.uid() == 0);
        if owner != 0 && temp_is_shared {
            assert!(
                !safe_path(owner, other, &path),
                "a directory anyone could make"
            );
            assert!(!trusted(owner, other, None, &path));
        }
        // The caller's own directory is the caller's say.
        assert!(safe_chain(&path, other, owner));
        // Not once others may write to it, nor for a server that does not own the socket.
        std::fs::set_permissions(tmp, std::fs::Permissions::from_mode(0o775)).unwrap();
        assert!(!safe_chain(&path, other, owner));
        std::fs::set_permissions(tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(!safe_path(other, owner, &path));
        // Not through a symlink to the socket, and not a missing file.
        let link = tmp.join("link.sock");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(!safe_path(owner, owner, &link));
        assert!(!safe_path(owner, owner, &tmp.join("missing.sock")));
    }
}
