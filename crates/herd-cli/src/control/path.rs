//! Where the control socket lives, and creating it safely: a private directory (0700) owned by
//! herd's user, a socket (0600), never following or replacing a path herd does not own. With
//! `--control-allow-uid`/`gid` the directory is 0711 and the socket 0666, so that the allowed
//! users can reach it; the server admits peers by their credentials (`SO_PEERCRED`).

use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use socket2::{Domain, SockAddr, Socket, Type};

use crate::logging::LogEvent;
use crate::spec::{prepare_socket_path, SocketFile, SocketInUse, MAX_UNIX_PATH};

pub use super::name::check_name;

/// The control socket's path: `--control PATH`, else `$HERD_CONTROL`, else
/// `$XDG_RUNTIME_DIR/herd/NAME.sock`, else `/tmp/herd-UID/NAME.sock`. The flag says whether the
/// directory is herd's own default (created and checked by herd).
pub fn resolve(control: Option<&Path>, name: &str, uid: u32) -> (PathBuf, bool) {
    if let Some(path) = control {
        return (path.to_path_buf(), false);
    }
    if let Some(path) = std::env::var_os("HERD_CONTROL").filter(|p| !p.is_empty()) {
        return (PathBuf::from(path), false);
    }
    let dir = match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(runtime) => PathBuf::from(runtime).join("herd"),
        None => std::env::temp_dir().join(format!("herd-{uid}")),
    };
    (dir.join(format!("{name}.sock")), true)
}

/// `path` made absolute against herd's current directory (unchanged if it already is, or if
/// that directory cannot be found, and then a relative path is all there is).
pub fn absolute(path: &Path) -> PathBuf {
    match std::env::current_dir() {
        // Components collected: `./c.sock` becomes `DIR/c.sock`, not `DIR/./c.sock`.
        Ok(dir) if path.is_relative() => dir.join(path).components().collect(),
        _ => path.to_path_buf(),
    }
}

/// Checks that the control socket at `control`, and the sockets herd names after it (the
/// notify socket `NAME.PID.notify`, and `NAME.takeover.PID` during a `takeover`), fit in a Unix
/// socket address whatever herd's pid: the error names the control socket and its limit.
pub fn check_length(control: &Path, takeover: bool) -> Result<(), String> {
    // The widest pid there can be, so the answer does not depend on this run's.
    const WIDEST_PID: &str = "4294967295";
    let len = control.as_os_str().len();
    let mut derived = vec![control.with_extension(format!("{WIDEST_PID}.notify"))];
    if takeover {
        derived.push(takeover_path(control, WIDEST_PID));
    }
    let extra = derived
        .iter()
        .map(|d| d.as_os_str().len().saturating_sub(len))
        .max()
        .unwrap_or(0);
    let limit = MAX_UNIX_PATH.saturating_sub(extra);
    if len > limit {
        return Err(format!(
            "the control socket path {} is {len} bytes; with the sockets herd names after it \
             ({}), it may be at most {limit} bytes (Unix socket paths hold {MAX_UNIX_PATH}): \
             pass a shorter --control or set $HERD_CONTROL",
            control.display(),
            derived
                .iter()
                .filter_map(|d| d.file_name())
                .map(|f| f.to_string_lossy().replace(WIDEST_PID, "PID"))
                .collect::<Vec<_>>()
                .join(", "),
        ));
    }
    Ok(())
}

/// Where a `--takeover` herd binds its control socket until its workers are ready:
/// `NAME.takeover.PID` beside the old herd's `control`, with its own pid.
pub fn takeover_path(control: &Path, pid: impl std::fmt::Display) -> PathBuf {
    control.with_extension(format!("takeover.{pid}"))
}

/// The pid in the file name `name` if it is that of a takeover socket beside `control`
/// ([`takeover_path`]).
fn takeover_pid(control: &Path, name: &std::ffi::OsStr) -> Option<u32> {
    use std::os::unix::ffi::OsStrExt;
    let prefix = takeover_path(control, "");
    let digits = name
        .as_bytes()
        .strip_prefix(prefix.file_name()?.as_bytes())?;
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Removes the takeover sockets ([`takeover_path`]) that herds killed during a takeover left
/// beside `control`: each only if it is a socket of `uid`'s whose herd no longer exists and
/// that nobody listens on (logged as `stale_socket_removed`). Anything else is left alone:
/// another user's, a live herd's (or one not yet reaped), a file that is not a socket. Called
/// under the directory's lock, which a takeover holds from binding its socket until it listens.
pub fn remove_stale_takeovers(control: &Path, uid: u32) {
    let dir = match control.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = takeover_pid(control, &entry.file_name()) else {
            continue;
        };
        // A directory entry's metadata does not follow a symlink.
        let ours = entry
            .metadata()
            .is_ok_and(|m| m.file_type().is_socket() && m.uid() == uid);
        if ours && !herd_sys::process::exists(pid) {
            // Refused if anything listens there (a herd whose pid is another namespace's).
            let _ = prepare_socket_path(&entry.path());
        }
    }
}

/// Creates (or checks) herd's private directory: a real directory, owned by `uid`, mode 0700.
/// With `shared` (`--control-allow-uid`/`--control-allow-gid`), others may also pass through
/// it (0711, never list it) to reach the socket, where herd checks their credentials.
pub fn ensure_private_dir(dir: &Path, uid: u32, shared: bool) -> anyhow::Result<()> {
    let shown = dir.display();
    let mode = if shared { 0o711 } else { 0o700 };
    match std::fs::DirBuilder::new().mode(mode).create(dir) {
        Ok(()) => {
            // The umask may have narrowed the mode.
            return std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
                .with_context(|| format!("cannot set mode {mode:o} on {shown}"));
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(anyhow::anyhow!(
                "cannot create the control directory {shown}: {e}; give --control PATH, or \
                 set XDG_RUNTIME_DIR (or TMPDIR) to a directory herd may write"
            ))
        }
    }
    let current = check_private_dir(dir, uid)?;
    if shared && current & 0o011 != 0o011 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(current | 0o011))
            .with_context(|| format!("cannot open {shown} for --control-allow-uid/gid"))?;
    }
    Ok(())
}

/// Locks herd's private directory (`flock` on the directory itself) until the returned file is
/// dropped: held while herd opens the directory to others and binds its socket there, and
/// while it closes it again, so that two herds in one directory never close it on each other.
/// `None` if the directory cannot be opened or locked (then herd goes on without).
pub fn lock_dir(dir: &Path) -> Option<std::fs::File> {
    let file = std::fs::File::open(dir).ok()?;
    file.lock().ok()?;
    Some(file)
}

/// Closes herd's private directory to others again (back to 0700) when a herd that opened it
/// for `--control-allow-uid`/`gid` stops, unless a socket open to others is still there (another
/// herd's with an allow list, or the stale one of such a herd that was killed).
pub fn close_shared_dir(dir: &Path, uid: u32) {
    let _lock = lock_dir(dir);
    let Ok(mode) = check_private_dir(dir, uid) else {
        return;
    };
    if mode & 0o011 == 0 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let open_socket = entries.flatten().find(|e| {
        e.metadata()
            .is_ok_and(|m| m.file_type().is_socket() && m.permissions().mode() & 0o066 != 0)
    });
    if let Some(socket) = open_socket {
        tracing::info!(
            event = LogEvent::SetupNote.as_str(),
            "{} stays open to others (mode {mode:o}): {} is a socket open to them",
            dir.display(),
            socket.path().display()
        );
        return;
    }
    let closed = mode & !0o011;
    if let Err(e) = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(closed)) {
        tracing::warn!(
            event = LogEvent::SystemError.as_str(),
            "cannot close {} to others again (mode {closed:o}): {e}",
            dir.display()
        );
    }
}

/// Checks that `dir` can hold herd's control socket for `uid`: a real directory (not a
/// symlink), owned by `uid`, that nobody else may list or write (0700, or 0711 when others are
/// allowed in). Returns its mode. Clients apply the same check before they trust what answers
/// there.
pub fn check_private_dir(dir: &Path, uid: u32) -> anyhow::Result<u32> {
    let shown = dir.display();
    let meta = std::fs::symlink_metadata(dir)
        .with_context(|| format!("cannot inspect the control directory {shown}"))?;
    let owner = meta.uid();
    // Most often another user made it first, in a directory open to all (/tmp): one that is
    // sticky lets only them or root remove it, so "remove it" would not help.
    let remover = match owner {
        0 => "root".to_string(),
        owner => format!("uid {owner} or root"),
    };
    let fix = match owner == uid || uid == 0 {
        true => "remove it or pass --control".to_string(),
        false => format!(
            "pass --control (or HERD_CONTROL) with a path in a directory of your own, or have \
             it removed (in a sticky directory such as /tmp, only {remover} can)"
        ),
    };
    if !meta.file_type().is_dir() {
        bail!("{shown} is not a directory (a symlink or a file); herd will not use it: {fix}");
    }
    if owner != uid {
        bail!(
            "the control directory {shown} belongs to uid {owner}, not to uid {uid}; \
             herd will not use it: {fix}"
        );
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o066 != 0 {
        bail!(
            "the control directory {shown} has mode {mode:o}; it must be private (700, or 711 \
             with --control-allow-uid/gid): run 'chmod 700 {shown}' or pass --control"
        );
    }
    Ok(mode)
}

/// Warns when the directory of the control socket at `path` (a `--control` or `$HERD_CONTROL`
/// of the user's: herd's default one is checked private) lets others remove or replace the
/// socket: writable by group or others without the sticky bit that `/tmp` has. Clients refuse
/// a socket of another user, so nobody is misled, but herd can no longer be reached.
pub fn warn_if_others_may_replace(path: &Path) {
    let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return;
    };
    let Ok(meta) = std::fs::metadata(dir) else {
        return;
    };
    let mode = meta.permissions().mode();
    if mode & 0o022 != 0 && mode & 0o1000 == 0 {
        tracing::warn!(
            event = LogEvent::SetupNote.as_str(),
            "the control socket {} is in {}, which others may write (mode {:o}, not sticky): \
             any of them can remove or replace the socket, and herd commands then cannot reach \
             this herd; pass --control in a directory only herd's user may write",
            path.display(),
            dir.display(),
            mode & 0o7777
        );
    }
}

/// Warns when the users of `--control-allow-uid`/`gid` cannot reach `path` because a directory
/// on the way is closed to others (such as `$XDG_RUNTIME_DIR`, which is 0700).
pub fn warn_if_unreachable(path: &Path) {
    for dir in path.ancestors().skip(1) {
        let Ok(meta) = std::fs::metadata(dir) else {
            continue;
        };
        if meta.permissions().mode() & 0o001 == 0 {
            tracing::warn!(
                event = LogEvent::SetupNote.as_str(),
                "--control-allow-uid/gid: other users cannot reach {} because {} has mode {:o}; \
                 pass --control with a path in a directory they can enter",
                path.display(),
                dir.display(),
                meta.permissions().mode() & 0o777
            );
            return;
        }
    }
}

/// Binds a Unix stream socket at `path` with mode 0600 (0666 with `shared`, for
/// `--control-allow-uid`/`gid`: the server then admits peers by their credentials), refusing a
/// live socket, a socket of another user, and anything that is not a socket.
pub fn bind_private(
    path: &Path,
    uid: u32,
    what: &str,
    shared: bool,
) -> anyhow::Result<(Socket, SocketFile)> {
    let shown = path.display();
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_socket() && meta.uid() != uid {
            bail!(
                "the {what} {shown} belongs to uid {}; herd never replaces another user's socket: \
                 choose another --name or --control",
                meta.uid()
            );
        }
    }
    prepare_socket_path(path).map_err(|e| {
        if e.is::<SocketInUse>() {
            anyhow::anyhow!(
                "another herd is already using the {what} {shown}: stop it, or give this one \
                 another --name or --control"
            )
        } else {
            e
        }
    })?;
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    // Before it listens: each connection takes the setting as it connects. No request carries
    // fds, and closing one a client sent along can wait (herd_sys::fd::close_in_background).
    herd_sys::fdpass::refuse_fds(std::os::unix::io::AsFd::as_fd(&socket));
    socket.bind(&SockAddr::unix(path)?).map_err(|e| {
        let why = match e.raw_os_error() {
            Some(libc::ENOENT) => "its directory does not exist: create it",
            Some(libc::EACCES) => "herd's user may not write in its directory: let it",
            _ => return anyhow::anyhow!("cannot create the {what} {shown}: {e}"),
        };
        anyhow::anyhow!("cannot create the {what} {shown}: {why}, or pass another --control")
    })?;
    let file = SocketFile::created(path)?;
    let mode = if shared { 0o666 } else { 0o600 };
    crate::spec::set_socket_mode(path, Some(mode))
        .with_context(|| format!("cannot set mode {mode:o} on {shown}"))?;
    socket.listen(128)?;
    Ok((socket, file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_paths_fit_whatever_the_pid() {
        let at = |len: usize| PathBuf::from(format!("/{}.sock", "x".repeat(len - 6)));
        // "NAME.4294967295.notify" is 13 bytes longer than "NAME.sock".
        assert!(check_length(&at(94), false).is_ok());
        let e = check_length(&at(95), false).unwrap_err();
        assert!(e.starts_with("the control socket path /xx"), "{e}");
        assert!(
            e.contains("is 95 bytes") && e.contains("at most 94 bytes"),
            "{e}"
        );
        assert!(e.contains(".PID.notify"), "{e}");
        // "NAME.takeover.4294967295" is 15 bytes longer.
        assert!(check_length(&at(92), true).is_ok());
        assert!(check_length(&at(93), true)
            .unwrap_err()
            .contains("at most 92 bytes"));
        assert!(check_length(&at(300), false).is_err());
    }

    #[test]
    fn takeover_sockets_are_known_by_name() {
        let control = Path::new("/run/herd/web.sock");
        assert_eq!(
            takeover_path(control, 42),
            Path::new("/run/herd/web.takeover.42")
        );
        let pid = |name: &str| takeover_pid(control, std::ffi::OsStr::new(name));
        assert_eq!(pid("web.takeover.42"), Some(42));
        for other in [
            "web.takeover.",
            "web.takeover.+42",
            "web.takeover.42x",
            "web.takeover.99999999999",
            "web.42.notify",
            "api.takeover.42",
            "web.sock",
        ] {
            assert_eq!(pid(other), None, "{other}");
        }
    }

    #[test]
    fn private_dirs_are_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let uid = std::fs::metadata(tmp.path()).unwrap().uid();
        let dir = tmp.path().join("herd");
        ensure_private_dir(&dir, uid, false).unwrap();
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        ensure_private_dir(&dir, uid, false).unwrap();
        // Others may pass through it to reach a socket that lets them in, never list it.
        ensure_private_dir(&dir, uid, true).unwrap();
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o711
        );
        assert_eq!(check_private_dir(&dir, uid).unwrap(), 0o711);
        ensure_private_dir(&dir, uid, false).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(ensure_private_dir(&dir, uid, false)
            .unwrap_err()
            .to_string()
            .contains("must be private"));
        let err = ensure_private_dir(&dir, uid + 1, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("belongs to uid"), "{err}");
        // Another user's directory in /tmp: removing it is beyond the one told of it, and
        // root's was "only uid 0 or root can": root twice.
        assert!(!err.contains("remove it"), "{err}");
        let remover = match uid {
            0 => "only root can".to_string(),
            uid => format!("only uid {uid} or root can"),
        };
        assert!(err.contains(&remover), "{err}");
        if uid == 0 {
            // Root may remove anyone's directory: told so.
            std::os::unix::fs::chown(&dir, Some(1), None).unwrap();
            let err = check_private_dir(&dir, 0).unwrap_err().to_string();
            assert!(err.contains("remove it or pass --control"), "{err}");
            std::os::unix::fs::chown(&dir, Some(0), None).unwrap();
        }
        // One that cannot be made (TMPDIR=/proc, a directory gone): what to give instead.
        let err = ensure_private_dir(&tmp.path().join("gone/herd"), uid, false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("give --control PATH, or set XDG_RUNTIME_DIR"),
            "{err}"
        );
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        assert!(ensure_private_dir(&link, uid, false)
            .unwrap_err()
            .to_string()
            .contains("not a directory"));
        // Another user's symlink (or file) there: not for the one told of it to remove.
        let err = check_private_dir(&link, uid + 1).unwrap_err().to_string();
        assert!(err.contains("not a directory"), "{err}");
        assert!(!err.contains("remove it"), "{err}");
        assert!(err.contains(&remover), "{err}");
    }
}
