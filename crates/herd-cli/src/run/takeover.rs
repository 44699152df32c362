//! `herd run --takeover`: where the new herd's control socket ends, the old herd's socket
//! file as it was, and the sockets fetched from the old herd.

use std::os::unix::io::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use herd_sys::pidfd::PidFd;

use crate::control::protocol::Command;
use crate::control::results::Status;
use crate::exit::Failure;
use crate::logging::LogEvent;
use crate::spec;
use crate::supervisor::Takeover;

/// Where a herd taking over from `old` ends: at `old` itself. A `--control` naming another
/// socket is a usage error, not a path to move to (it could be a live, unrelated herd's).
pub(super) fn takeover_control(
    old: &Path,
    control: Option<&Path>,
) -> Result<std::path::PathBuf, Failure> {
    if let Some(asked) = control {
        let same = |p: &Path| std::fs::canonicalize(p).ok();
        if asked != old && (same(asked).is_none() || same(asked) != same(old)) {
            return Err(Failure::Usage(format!(
                "--takeover {} ends at the old herd's control socket, not at --control {}; \
                 drop --control (or pass the same path)",
                old.display(),
                asked.display()
            )));
        }
    }
    Ok(old.to_path_buf())
}

/// What a takeover knows of the old herd before it starts.
pub(super) struct OldHerd {
    /// Its control socket file's device and inode.
    pub socket: (u64, u64),
    /// Its `--grace`, if its status says.
    pub grace: Option<Duration>,
    /// Its process, to tell at the end whether it still runs (`None` where the system cannot
    /// hold a process: a kernel before 5.3, another Unix).
    pub process: Option<PidFd>,
    /// Its pid, as its status said.
    pub pid: u32,
}

impl OldHerd {
    /// The takeover of this herd, whose control socket is at `old`.
    pub(super) fn takeover((old, herd): (PathBuf, OldHerd)) -> Takeover {
        Takeover {
            old,
            old_socket: herd.socket,
            old_grace: herd.grace,
            old_process: herd.process,
            old_pid: herd.pid,
            vacant_until: None,
        }
    }
}

/// The device and inode of the socket file at `path` (the old herd's control socket).
pub(super) fn socket_identity(path: &Path) -> Result<(u64, u64), Failure> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let shown = path.display();
    let meta = std::fs::symlink_metadata(path).map_err(|e| {
        Failure::Runtime(anyhow::anyhow!(
            "cannot take over from {shown}: {e}; pass the control socket of a running herd"
        ))
    })?;
    if !meta.file_type().is_socket() {
        return Err(Failure::Runtime(anyhow::anyhow!(
            "cannot take over from {shown}: it is not a socket; pass the control socket of a \
             running herd"
        )));
    }
    Ok((meta.dev(), meta.ino()))
}

/// Fetches the sockets of the herd whose control socket is `old`; with its `--grace`, if its
/// status says.
pub(super) fn fetch_inherited(
    old: &Path,
    socket: (u64, u64),
    owner: Option<u32>,
) -> Result<(OldHerd, Vec<spec::Inherited>), Failure> {
    // Per-slot sockets cannot be handed over (the `sockets` command gives slot 0's, for
    // `herd attach`): look before taking anything.
    let (status, old_uid, old_pid): (Status, _, _) =
        crate::ctl::request_with_peer(old, Command::Status, Some(crate::ctl::QUICK), owner)
            .map_err(|e| in_takeover(e, old))?;
    // A herd serves its control socket itself: another pid there is a process that was handed
    // a listening socket (a worker), answering in the herd's place.
    if let Some(pid) = old_pid.filter(|&pid| pid != status.pid) {
        return Err(Failure::Runtime(anyhow::anyhow!(
            "cannot take over from {}: the process that made that socket is pid {pid}, not the \
             pid {} its status names: it is not a herd's control socket",
            old.display(),
            status.pid
        )));
    }
    // The old herd's user, where what it says of its files may be taken at its word.
    let files_uid = old_uid.filter(|&uid| files_trusted(old, uid));
    // The socket files the old herd created, by socket name: where they are and which files
    // they are, so that the one adopted (or removed) at the end is the same file (a herd that
    // does not say keeps its files). Only a socket file of the old herd's own user is taken
    // at its word: a herd of another user could name any file, which this herd would remove.
    // Its user is the kernel's word for the connection that answered, not the path's owner
    // (the path may be swapped meanwhile); only where no other user could have prepared
    // its control socket ([`files_trusted`]); and only for the socket it names, if the kernel
    // says that socket is bound to it ([`file_of`], which checks the rest again of that very
    // file).
    let files: Vec<(String, (PathBuf, u64, u64))> = status
        .sockets
        .iter()
        .filter_map(|s| {
            let (uid, file) = (files_uid?, s.file.as_ref()?);
            let path = PathBuf::from(&file.path);
            let ours = |meta| is_socket_of(&meta, (file.dev, file.ino), uid);
            (path.is_absolute() && std::fs::symlink_metadata(&path).is_ok_and(ours))
                .then(|| (s.name.clone(), (path, file.dev, file.ino)))
        })
        .collect();
    if status
        .sockets
        .iter()
        .any(|s| s.balance == spec::Balance::Reuseport)
    {
        return Err(Failure::Runtime(anyhow::anyhow!(
            "cannot take over from {}: it runs with --balance reuseport, whose per-worker \
             sockets cannot be handed over; replace its binary with `herd reexec` instead",
            old.display()
        )));
    }
    let fetched =
        crate::ctl::fetch(old, Vec::new(), false, owner).map_err(|e| in_takeover(e, old))?;
    tracing::info!(event = LogEvent::TakeoverSocketsFetched.as_str(), from = %old.display(), sockets = fetched.len(), "fetched the sockets to take over");
    let inherited = fetched
        .into_iter()
        .map(|(socket, fd)| spec::Inherited {
            file: files_uid.and_then(|uid| file_of(&socket.name, fd.as_fd(), &files, uid)),
            name: socket.name,
            kind: socket.kind,
            address: socket.address,
            fd,
            from_store: false,
        })
        .collect();
    let herd = OldHerd {
        socket,
        grace: status.grace_ms.map(Duration::from_millis),
        // It answered just now: the pid is its own.
        process: PidFd::open(status.pid).ok(),
        pid: status.pid,
    };
    Ok((herd, inherited))
}

/// Whether what the herd at `old`, run by `uid`, says of its socket files may be taken at its
/// word: only where no other user could have prepared its control socket (as `herd::trust`
/// judges a path). A process of another user that holds a listening socket of `uid`'s (a
/// worker run with `--user`) answers there as `uid` does, and could name any file of `uid`'s
/// for this herd to remove. Said when not.
fn files_trusted(old: &Path, uid: u32) -> bool {
    let me = herd_sys::process::effective_uid();
    let trusted = herd::trust::safe_path(uid, me, old);
    if !trusted {
        tracing::warn!(
            event = LogEvent::SocketFileNotTaken.as_str(),
            path = %old.display(),
            "not taking over the old herd's socket files: its control socket sits where a user \
             other than its own (uid {uid}) or yours could have put it; they stay where they \
             are (remove them once no herd uses them)"
        );
    }
    trusted
}

/// The file named in `files` for the socket `name`, if it is the very file `fd`, the socket
/// received under that name, is bound to, and still the socket file of `uid`'s that the old
/// herd named (checked again of that very file): a process that answers in a herd's place
/// (holding one of its listening sockets) could name any socket file of the herd's user for
/// this herd to remove. Said when not. Where the kernel does not tell which file a socket is
/// bound to (not Linux), a named file is believed on the other checks alone (its owner, the
/// control socket's place, the pid that made it); where it does, also on its word.
fn file_of(
    name: &str,
    fd: BorrowedFd<'_>,
    files: &[(String, (PathBuf, u64, u64))],
    uid: u32,
) -> Option<(PathBuf, u64, u64)> {
    let (_, file) = files.iter().find(|(named, _)| named == name)?;
    let (path, dev, ino) = file;
    let why = match herd_sys::socket::unix_socket_bound_to(fd, path) {
        Ok(Some(meta)) if is_socket_of(&meta, (*dev, *ino), uid) => None,
        Ok(Some(_)) => Some("it is no longer the file the old herd named".to_string()),
        Ok(None) => Some("it is not the file of the socket the old herd handed over".to_string()),
        Err(_) if !herd_sys::socket::KNOWS_BOUND_FILES => None,
        Err(e) => Some(format!(
            "cannot tell whether it is the file of the socket the old herd handed over: {e}"
        )),
    };
    let Some(why) = why else {
        return Some(file.clone());
    };
    tracing::warn!(
        event = LogEvent::SocketFileNotTaken.as_str(),
        path = %path.display(),
        socket = name,
        "not taking over the socket file named for socket {name}: {why}; it stays where it is \
         (remove it once nothing uses it)"
    );
    None
}

/// Whether `meta` is that of the socket file `identity` (device, inode), owned by `uid`.
fn is_socket_of(meta: &std::fs::Metadata, identity: (u64, u64), uid: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    spec::is_socket_file(meta, identity) && meta.uid() == uid
}

/// A client failure as the takeover from `old` reports it.
fn in_takeover(failure: Failure, old: &Path) -> Failure {
    match failure {
        Failure::Runtime(e) => {
            Failure::Runtime(e.context(format!("cannot take over from {}", old.display())))
        }
        usage => usage,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a herd says of its files is believed only where no other user could have prepared
    /// its control socket: in a directory anyone may write, another user's process holding a
    /// listening socket of its (a worker's) could answer there in its name.
    #[test]
    fn the_old_herds_files_are_believed_only_where_its_socket_could_not_be_prepared() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let control = dir.path().join("herd.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&control).unwrap();
        let me = herd_sys::process::effective_uid();
        assert!(files_trusted(&control, me));
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(
            !files_trusted(&control, me),
            "in a directory anyone may write"
        );
    }

    /// Only a socket file of the old herd's own user, the very file it named, is taken at the
    /// old herd's word: one of another user's could name any file, which the new herd would
    /// remove (as root: anything).
    #[test]
    fn only_the_old_herds_own_socket_files_are_taken_at_its_word() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("app.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let plain = dir.path().join("victim.txt");
        std::fs::write(&plain, "precious").unwrap();
        let identity = |path: &Path| {
            let meta = std::fs::symlink_metadata(path).unwrap();
            ((meta.dev(), meta.ino()), meta.uid())
        };
        let meta = |path: &Path| std::fs::symlink_metadata(path).unwrap();
        let (id, uid) = identity(&socket);
        assert!(is_socket_of(&meta(&socket), id, uid));
        assert!(!is_socket_of(&meta(&socket), id, uid + 1), "another user's");
        assert!(
            !is_socket_of(&meta(&socket), (id.0, id.1 + 1), uid),
            "another file"
        );
        let (id, uid) = identity(&plain);
        assert!(!is_socket_of(&meta(&plain), id, uid), "not a socket");
    }

    /// A socket file named for a socket is believed only if it is the file that very socket is
    /// bound to: a process answering in the old herd's place, holding one of its listening
    /// sockets, could name another socket file of the herd's user (root's) for removal.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_file_is_believed_only_for_the_socket_bound_to_it() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let (handed, other) = (dir.path().join("web.sock"), dir.path().join("other.sock"));
        let listener = std::os::unix::net::UnixListener::bind(&handed).unwrap();
        let _other = std::os::unix::net::UnixListener::bind(&other).unwrap();
        let uid = std::fs::symlink_metadata(&handed).unwrap().uid();
        let named = |path: &Path| {
            let meta = std::fs::symlink_metadata(path).unwrap();
            vec![(
                "web".to_string(),
                (path.to_path_buf(), meta.dev(), meta.ino()),
            )]
        };
        let fd = listener.as_fd();
        assert_eq!(
            file_of("web", fd, &named(&other), uid),
            None,
            "another socket's file"
        );
        let (stream, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
        let unbound = stream.as_fd();
        assert_eq!(
            file_of("web", unbound, &named(&handed), uid),
            None,
            "a socket bound to none"
        );
        assert_eq!(
            file_of("api", fd, &named(&handed), uid),
            None,
            "named for another socket"
        );
        assert_eq!(
            file_of("web", fd, &named(&handed), uid + 1),
            None,
            "not the old herd's user's"
        );
        let mut elsewhere = named(&handed);
        elsewhere[0].1 .2 += 1;
        assert_eq!(
            file_of("web", fd, &elsewhere, uid),
            None,
            "not the file the old herd named"
        );
        let believed = file_of("web", fd, &named(&handed), uid).map(|(path, _, _)| path);
        assert_eq!(believed, Some(handed));
    }
}
