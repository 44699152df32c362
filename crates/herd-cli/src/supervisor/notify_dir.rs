//! Where a herd whose workers run as another user (`--user`) puts their notify socket: a
//! directory of its own in the temporary directory (`herd-notify-` and 128 random bits), herd's
//! user's, that others may pass through but not list or write (0711), holding the socket
//! `notify`, which belongs to the workers' user (0600). Only that user and root can send to it:
//! any other local user is refused by the kernel (`EACCES`) before herd reads a byte. With
//! `--compat einhorn`, einhorn's socket (`einhorn.ack`) lies beside it, the workers' too.

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use super::socket_files::{dir_identity, DirIdentity};

/// The directory's name before its random part.
const PREFIX: &str = "herd-notify-";
/// The socket's name in it.
const SOCKET: &str = "notify";
/// The name of einhorn's socket in it (`--compat einhorn`).
const EINHORN: &str = "einhorn.ack";
/// How many random names are tried: a clash means someone guessed 128 random bits, so a
/// second one already says something is wrong.
const ATTEMPTS: usize = 8;
/// An empty directory of the kind is left alone this long: a herd may have just made it.
const EMPTY_GRACE: std::time::Duration = std::time::Duration::from_secs(60);

/// The workers' user: who may send.
#[derive(Debug, Clone, Copy)]
pub struct WorkerUser<'a> {
    /// Their uid.
    pub uid: u32,
    /// Their gids, primary and supplementary.
    pub gids: &'a [u32],
}

/// A notify directory herd made; removed (once empty) when dropped, if it is still the one
/// herd made.
#[derive(Debug)]
pub struct NotifyDir {
    path: PathBuf,
    identity: DirIdentity,
}

impl NotifyDir {
    /// Makes a fresh directory in `base`, closed to everyone but herd's user (0700) until
    /// [`open`](Self::open): checks `base` first ([`check_base`]), and removes the directories
    /// of herds that are gone.
    pub fn create(base: &Path, workers: WorkerUser<'_>) -> anyhow::Result<NotifyDir> {
        let base = check_base(base, workers).map_err(anyhow::Error::msg)?;
        remove_stale(&base, herd_sys::process::effective_uid());
        create_first_free(&base, random_name)
    }

    /// Takes over the directory of `socket`, a notify socket a previous image of this process
    /// bound (`dir`: the directory it was bound in, as handed over), if it is one herd makes.
    pub fn adopt(socket: &Path, dir: Option<DirIdentity>) -> Option<NotifyDir> {
        let path = socket.parent()?;
        let name = path.file_name()?.to_str()?;
        let identity = dir_identity(socket)?;
        let ours = is_name(name)
            && socket.file_name() == Some(SOCKET.as_ref())
            && dir == Some(identity)
            && std::fs::symlink_metadata(path)
                .is_ok_and(|m| m.uid() == herd_sys::process::effective_uid());
        ours.then(|| NotifyDir {
            path: path.to_path_buf(),
            identity,
        })
    }

    /// Where the socket goes.
    pub fn socket(&self) -> PathBuf {
        self.path.join(SOCKET)
    }

    /// Where einhorn's socket goes.
    pub fn einhorn(&self) -> PathBuf {
        self.path.join(EINHORN)
    }

    /// Lets others pass through (0711) once the socket in it is the workers' alone.
    pub fn open(&self) -> anyhow::Result<()> {
        self.set_mode(0o711)
    }

    /// Closes it to others (0700) while its socket is bound anew.
    pub fn close(&self) -> anyhow::Result<()> {
        self.set_mode(0o700)
    }

    fn set_mode(&self, mode: u32) -> anyhow::Result<()> {
        if dir_identity(&self.socket()) != Some(self.identity) {
            bail!(
                "{} is not the directory herd made (removed, or replaced)",
                self.path.display()
            );
        }
        std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot set mode {mode:o} on {}", self.path.display()))
    }
}

impl Drop for NotifyDir {
    fn drop(&mut self) {
        if dir_identity(&self.socket()) != Some(self.identity) {
            return;
        }
        if let Err(e) = std::fs::remove_dir(&self.path) {
            tracing::warn!(event = crate::logging::LogEvent::SystemError.as_str(), path = %self.path.display(), "cannot remove the notify socket's directory: {e}");
        }
    }
}

/// Gives the socket at `path` to the workers' user (`uid`); its mode (0600) stays.
pub fn give(path: &Path, uid: u32) -> anyhow::Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), None)
        .with_context(|| format!("cannot give {} to the workers' uid {uid}", path.display()))
}

fn is_name(name: &str) -> bool {
    name.strip_prefix(PREFIX).is_some_and(|hex| {
        hex.len() == 32 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

fn random_name() -> anyhow::Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)
        .map_err(|e| anyhow::anyhow!("cannot name the notify directory: no randomness: {e}"))?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("{PREFIX}{hex}"))
}

/// Makes the directory at the first name from `names` that nobody holds (another user may
/// have made one there first), trying [`ATTEMPTS`].
fn create_first_free(
    base: &Path,
    mut names: impl FnMut() -> anyhow::Result<String>,
) -> anyhow::Result<NotifyDir> {
    let mut last = PathBuf::new();
    for _ in 0..ATTEMPTS {
        let path = base.join(names()?);
        let socket = path.join(SOCKET);
        match std::fs::DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => {
                let identity = dir_identity(&socket)
                    .with_context(|| format!("cannot inspect {}", path.display()))?;
                let dir = NotifyDir { path, identity };
                // The umask may have narrowed the mode; it never widens it.
                dir.close()?;
                return Ok(dir);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                tracing::warn!(event = crate::logging::LogEvent::SetupNote.as_str(), path = %path.display(), "the notify directory's name is taken; trying another");
                last = path;
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "cannot create the notify directory {}: set TMPDIR to a directory \
                         herd may write and the workers' user can pass through (under \
                         systemd's ProtectSystem=strict, add PrivateTmp=yes)",
                        path.display()
                    )
                })
            }
        }
    }
    bail!(
        "cannot create the notify directory: {ATTEMPTS} random names were all taken (the last \
         {}); something is occupying names on purpose",
        last.display()
    )
}

/// Checks `base`, where the workers' notify directory goes, and returns it resolved
/// (absolute, no symlinks: workers may run elsewhere, `--chdir`): every directory down to it
/// must be root's or herd's user's and writable by no one else unless sticky (nobody else may
/// move the directory herd makes there), the workers must be able to pass through each by its
/// mode bits (else their `READY=1` would never arrive; an ACL granting more is not seen), and
/// the sockets' paths must fit in a socket address (107 bytes).
pub fn check_base(base: &Path, workers: WorkerUser<'_>) -> Result<PathBuf, String> {
    const FIX: &str = "set TMPDIR to a directory the workers' user can pass through and no \
                       other user can write, such as /tmp";
    let real = std::fs::canonicalize(base).map_err(|e| {
        format!(
            "cannot use {} for the notify socket: {e}; {FIX}",
            base.display()
        )
    })?;
    let herd = herd_sys::process::effective_uid();
    // The symlinks on the way: another user's could point herd anywhere they like.
    let given = std::env::current_dir().map_or_else(|_| base.to_path_buf(), |cwd| cwd.join(base));
    for step in given.ancestors() {
        let Ok(meta) = std::fs::symlink_metadata(step) else {
            continue;
        };
        if meta.file_type().is_symlink() && meta.uid() != 0 && meta.uid() != herd {
            return Err(format!(
                "the workers' notify directory cannot go under {}: it is a symlink of uid {}, \
                 who could point it anywhere; {FIX}",
                step.display(),
                meta.uid()
            ));
        }
    }
    for dir in real.ancestors() {
        let meta = std::fs::metadata(dir)
            .map_err(|e| format!("cannot inspect {}: {e}; {FIX}", dir.display()))?;
        let mode = meta.permissions().mode();
        let shown = format!(
            "{} (mode {:o}, uid {}, gid {})",
            dir.display(),
            mode & 0o7777,
            meta.uid(),
            meta.gid()
        );
        if meta.uid() != 0 && meta.uid() != herd {
            return Err(format!(
                "the workers' notify directory cannot go under {shown}: it belongs to another \
                 user, who could move what herd makes there; {FIX}"
            ));
        }
        if mode & 0o022 != 0 && mode & 0o1000 == 0 {
            return Err(format!(
                "the workers' notify directory cannot go under {shown}: others may write it \
                 and it is not sticky, so they could move what herd makes there; {FIX}"
            ));
        }
        let bit = if workers.uid == 0 {
            0o111
        } else if meta.uid() == workers.uid {
            0o100
        } else if workers.gids.contains(&meta.gid()) {
            0o010
        } else {
            0o001
        };
        if mode & bit == 0 {
            return Err(format!(
                "the workers' uid {} cannot pass through {shown} to reach their notify \
                 socket; {FIX}",
                workers.uid
            ));
        }
    }
    // The longest: einhorn's socket, in a directory named as `random_name` names it.
    let longest = real
        .join(format!("{PREFIX}{}", "0".repeat(32)))
        .join(EINHORN);
    if longest.as_os_str().len() > 107 {
        return Err(format!(
            "the workers' notify socket would have a path longer than 107 bytes under {}; {FIX}",
            real.display()
        ));
    }
    Ok(real)
}

/// Removes the notify directories in `base` of `uid`'s herds that are gone (killed with
/// SIGKILL): their socket refuses a connection (nothing is bound to it), or, with no socket,
/// they have been empty for a minute.
pub fn remove_stale(base: &Path, uid: u32) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_name().to_str().is_some_and(is_name) {
            continue;
        }
        let dir = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&dir) else {
            continue;
        };
        if !meta.is_dir() || meta.uid() != uid {
            continue;
        }
        let socket = dir.join(SOCKET);
        let gone = match std::fs::symlink_metadata(&socket) {
            Ok(_) => {
                let gone = unbound(&socket) && std::fs::remove_file(&socket).is_ok();
                if gone {
                    let _ = std::fs::remove_file(dir.join(EINHORN));
                }
                gone
            }
            Err(e) => {
                e.kind() == io::ErrorKind::NotFound
                    && meta
                        .modified()
                        .ok()
                        .and_then(|m| m.elapsed().ok())
                        .is_some_and(|age| age >= EMPTY_GRACE)
            }
        };
        if gone {
            let _ = std::fs::remove_dir(&dir);
        }
    }
}

/// Whether nothing is bound to the datagram socket at `path` any more: it refuses a
/// connection. Where herd may not connect (the workers' 0600 socket, herd without
/// `CAP_DAC_OVERRIDE`), it cannot tell, and the directory stays: `/proc/net/unix` lists only
/// this network namespace's sockets, by path, so a live herd's in another one (or reached by
/// another path) would look gone there.
fn unbound(path: &Path) -> bool {
    let Ok(probe) = std::os::unix::net::UnixDatagram::unbound() else {
        return false;
    };
    probe
        .connect(path)
        .is_err_and(|e| e.raw_os_error() == Some(libc::ECONNREFUSED))
}

/// Where the workers' notify directory goes: the temporary directory (`$TMPDIR`, `/tmp` when
/// unset or empty).
pub fn base() -> PathBuf {
    let dir = std::env::temp_dir();
    match dir.as_os_str().is_empty() {
        true => PathBuf::from("/tmp"),
        false => dir,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> WorkerUser<'static> {
        WorkerUser {
            uid: herd_sys::process::effective_uid(),
            gids: &[],
        }
    }

    #[test]
    fn names_are_unguessable_and_clashes_retried() {
        let base = tempfile::tempdir().unwrap();
        let a = NotifyDir::create(base.path(), me()).unwrap();
        let b = NotifyDir::create(base.path(), me()).unwrap();
        let name = a.path.file_name().unwrap().to_str().unwrap().to_string();
        assert!(is_name(&name), "{name}");
        assert_ne!(a.path, b.path);
        assert!(!name.contains(&std::process::id().to_string()));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&a.path), 0o700, "closed until opened");
        a.open().unwrap();
        assert_eq!(mode(&a.path), 0o711);
        // Someone holds the first name: the next one is used.
        let mut names = vec![Ok(name.clone()), Ok(format!("{PREFIX}{}", "0".repeat(32)))];
        names.reverse();
        let c = create_first_free(base.path(), || names.pop().unwrap()).unwrap();
        assert!(c.path.ends_with(format!("{PREFIX}{}", "0".repeat(32))));
        // Every name taken: a one-line error, no endless loop.
        let e = create_first_free(base.path(), || Ok(name.clone()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("were all taken"), "{e}");
        // Dropped: gone, once empty.
        let path = a.path.clone();
        drop(a);
        assert!(!path.exists());
    }

    #[test]
    fn a_directory_made_anew_is_neither_adopted_nor_removed() {
        let base = tempfile::tempdir().unwrap();
        let dir = NotifyDir::create(base.path(), me()).unwrap();
        let socket = dir.socket();
        let _bound = std::os::unix::net::UnixDatagram::bind(&socket).unwrap();
        let handed = Some(dir.identity);
        assert!(NotifyDir::adopt(&socket, handed).is_some());
        assert!(NotifyDir::adopt(&socket, None).is_none());
        let other = base.path().join("elsewhere").join(SOCKET);
        assert!(NotifyDir::adopt(&other, handed).is_none());
        // Replaced behind herd's back: not herd's to remove.
        std::fs::remove_dir_all(&dir.path).unwrap();
        std::fs::create_dir(&dir.path).unwrap();
        std::fs::write(dir.path.join("theirs"), "").unwrap();
        assert!(dir.open().is_err());
        let path = dir.path.clone();
        drop(dir);
        assert!(path.join("theirs").exists());
    }

    #[test]
    fn stale_directories_are_removed_and_live_ones_kept() {
        let base = tempfile::tempdir().unwrap();
        let uid = herd_sys::process::effective_uid();
        let live = NotifyDir::create(base.path(), me()).unwrap();
        let _bound = std::os::unix::net::UnixDatagram::bind(live.socket()).unwrap();
        let dead = NotifyDir::create(base.path(), me()).unwrap();
        drop(std::os::unix::net::UnixDatagram::bind(dead.socket()).unwrap());
        drop(std::os::unix::net::UnixListener::bind(dead.einhorn()).unwrap());
        let fresh = NotifyDir::create(base.path(), me()).unwrap();
        let other = base.path().join("herd-notify-other");
        std::fs::create_dir(&other).unwrap();
        remove_stale(base.path(), uid);
        assert!(live.socket().exists());
        assert!(!dead.path.exists(), "its socket's herd is gone");
        assert!(fresh.path.exists(), "empty, but just made");
        assert!(other.exists(), "not a name herd makes");
        remove_stale(base.path(), uid + 1);
        assert!(live.path.exists());
        std::fs::remove_file(live.socket()).unwrap();
    }

    #[test]
    fn workers_that_cannot_pass_through_are_refused_in_one_line() {
        let base = tempfile::tempdir().unwrap();
        std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        let closed = base.path().join("closed");
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&closed)
            .unwrap();
        let uid = herd_sys::process::effective_uid();
        let stranger = WorkerUser {
            uid: uid.wrapping_add(12345).max(1),
            gids: &[],
        };
        let e = NotifyDir::create(&closed, stranger)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cannot pass through") && e.contains("TMPDIR"),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
        // Its group may: through.
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o710)).unwrap();
        let gid = std::fs::metadata(&closed).unwrap().gid();
        let member = WorkerUser {
            gids: &[gid],
            ..stranger
        };
        assert!(check_base(&closed, member).is_ok());
        assert!(check_base(&closed, stranger).is_err());
        let long = base.path().join("d".repeat(70));
        std::fs::create_dir(&long).unwrap();
        let e = NotifyDir::create(&long, me()).unwrap_err().to_string();
        assert!(e.contains("longer than 107 bytes"), "{e}");
    }

    #[test]
    fn a_base_others_could_move_things_in_is_refused() {
        let base = tempfile::tempdir().unwrap();
        let open = base.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = check_base(&open, me()).unwrap_err();
        assert!(e.contains("not sticky"), "{e}");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
        // Resolved: absolute, through a symlink, and relative.
        let link = base.path().join("link");
        std::os::unix::fs::symlink(&open, &link).unwrap();
        let real = std::fs::canonicalize(&open).unwrap();
        assert_eq!(check_base(&link, me()).unwrap(), real);
        if herd_sys::process::effective_uid() == 0 {
            let theirs = base.path().join("theirs");
            std::fs::create_dir(&theirs).unwrap();
            std::os::unix::fs::chown(&theirs, Some(12345), None).unwrap();
            let e = check_base(&theirs, me()).unwrap_err();
            assert!(e.contains("belongs to another user"), "{e}");
            let their_link = base.path().join("their-link");
            std::os::unix::fs::symlink(&open, &their_link).unwrap();
            std::os::unix::fs::lchown(&their_link, Some(12345), None).unwrap();
            let e = check_base(&their_link, me()).unwrap_err();
            assert!(e.contains("a symlink of uid 12345"), "{e}");
        }
    }

    #[test]
    fn a_socket_herd_may_not_connect_to_is_kept() {
        let base = tempfile::tempdir().unwrap();
        let path = base.path().join(SOCKET);
        let bound = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        assert!(!unbound(&path));
        drop(bound);
        assert!(unbound(&path));
        // Any other failure (EACCES where herd may not connect; ENOENT here): kept.
        assert!(!unbound(&base.path().join("missing").join(SOCKET)));
    }
}
