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

use super::socket_files::{dir_identity, identity_of, DirIdentity};

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
    /// bound (`dir`: the directory it was bound in, as handed over), if it is one herd makes:
    /// still there, or removed since (it is then made again, as [`make_again`](Self::make_again)
    /// would have, had the previous image looked once more).
    pub fn adopt(socket: &Path, dir: Option<DirIdentity>) -> Option<NotifyDir> {
        let path = socket.parent()?;
        let name = path.file_name()?.to_str()?;
        let identity = dir?;
        let still_there = || {
            dir_identity(socket) == Some(identity)
                && std::fs::symlink_metadata(path)
                    .is_ok_and(|m| m.uid() == herd_sys::process::effective_uid())
        };
        let ours = is_name(name)
            && socket.file_name() == Some(SOCKET.as_ref())
            && (super::socket_files::removed(path) || still_there());
        ours.then(|| NotifyDir {
            path: path.to_path_buf(),
            identity,
        })
    }

    /// Makes the directory again at its path, closed to others (0700) until
    /// [`open`](Self::open), if it was removed (a clean-up of the temporary directory), so that
    /// the socket can be bound there again: whether it was. Its name can be read in the
    /// temporary directory's listing, and one that someone else took meanwhile is refused
    /// (`mkdir` is exclusive).
    pub fn make_again(&mut self) -> anyhow::Result<bool> {
        match std::fs::symlink_metadata(&self.path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            _ => return Ok(false),
        }
        let shown = self.path.display();
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&self.path)
            .with_context(|| format!("cannot make the notify directory {shown} again"))?;
        self.identity =
            dir_identity(&self.socket()).with_context(|| format!("cannot inspect {shown}"))?;
        // The umask may have narrowed the mode; it never widens it.
        self.close()?;
        Ok(true)
    }

    /// Which directory it is, as herd made it (or made it again).
    pub fn identity(&self) -> DirIdentity {
        self.identity
    }

    /// Whether nothing is at its path any more (removed).
    pub fn gone(&self) -> bool {
        super::socket_files::removed(&self.path)
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

    /// Sets the directory's mode through an fd on the directory itself ([`open_dir`]).
    fn set_mode(&self, mode: u32) -> anyhow::Result<()> {
        self.open_dir()?
            .set_permissions(std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot set mode {mode:o} on {}", self.path.display()))
    }

    /// Runs `bind` for `path`, a file in the directory, with the name to bind it at (`at`):
    /// `/proc/self/fd/N/NAME`, through an fd on the directory itself ([`open_dir`]), so that
    /// what `bind` makes, chowns and chmods is in herd's directory even if another took its
    /// name meanwhile; `path` itself where `/proc` is not mounted.
    pub fn within<T>(
        &self,
        path: &Path,
        bind: impl FnOnce(&Path, &Path) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        use std::os::unix::io::AsRawFd;
        let dir = self.open_dir()?;
        let by_fd = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
        match path.file_name() {
            Some(name) if path.parent() == Some(&self.path) && by_fd.is_dir() => {
                bind(&by_fd.join(name), path)
            }
            _ => bind(path, path),
        }
    }

    /// The directory, opened itself (`O_DIRECTORY | O_NOFOLLOW`): a symlink another user put
    /// at its name (after something with root's rights removed it) is not followed, and a
    /// directory that is not the one herd made is refused.
    fn open_dir(&self) -> anyhow::Result<std::fs::File> {
        use std::os::unix::fs::OpenOptionsExt;
        let shown = self.path.display();
        let replaced =
            || anyhow::anyhow!("{shown} is not the directory herd made (removed, or replaced)");
        let dir = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(&self.path)
            .map_err(|_| replaced())?;
        let meta = dir.metadata().map_err(|_| replaced())?;
        if identity_of(&meta) != self.identity {
            return Err(replaced());
        }
        Ok(dir)
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

/// Gives the socket at `at` (`path`, as [`NotifyDir::within`] names it) to the workers' user
/// (`uid`); its mode (0600) stays.
pub fn give(at: &Path, path: &Path, uid: u32) -> anyhow::Result<()> {
    std::os::unix::fs::lchown(at, Some(uid), None)
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
                // A read-only file system is told apart before this (`check_base`), unless it
                // became one since.
                let hint = if e.raw_os_error() == Some(libc::EROFS) {
                    " (under systemd's ProtectSystem=strict, add PrivateTmp=yes or ReadWritePaths=)"
                } else {
                    ""
                };
                return Err(e).with_context(|| {
                    format!(
                        "cannot create the notify directory {}: set TMPDIR to a directory \
                         herd may write and the workers' user can pass through{hint}",
                        path.display()
                    )
                });
            }
        }
    }
    bail!(
        "cannot create the notify directory: {ATTEMPTS} random names were all taken (the last \
         {}); something is occupying names on purpose",
        last.display()
    )
}

/// How to fix what [`check_base`] refuses.
const FIX: &str = "set TMPDIR to a directory the workers' user can pass through and no \
                   other user can write, such as /tmp";

/// Checks `base`, where the workers' notify directory goes, and returns it resolved
/// (absolute, no symlinks: workers may run elsewhere, `--chdir`): every directory down to it
/// must be root's or herd's user's and writable by no one else unless sticky (nobody else may
/// move the directory herd makes there), the workers must be able to pass through each by its
/// mode bits (else their `READY=1` would never arrive; an ACL granting more is not seen),
/// herd must be able to make entries in it (no read-only file system), and the sockets' paths
/// must fit in a socket address (107 bytes).
pub fn check_base(base: &Path, workers: WorkerUser<'_>) -> Result<PathBuf, String> {
    let real = std::fs::canonicalize(base).map_err(|e| {
        format!(
            "cannot use {} for the notify socket: {e}; {FIX}",
            base.display()
        )
    })?;
    if !real.is_dir() {
        return Err(format!(
            "cannot use {} for the notify socket: it is not a directory; {FIX}",
            real.display()
        ));
    }
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
        check_step(dir, herd, &workers)?;
    }
    herd_may_create_in(&real, herd)?;
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

/// One directory on the way to the notify directory, `dir`: root's or herd's (`herd`),
/// writable by no one else unless sticky, and passable by the workers by its mode bits.
fn check_step(dir: &Path, herd: u32, workers: &WorkerUser<'_>) -> Result<(), String> {
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
    Ok(())
}

/// herd's user may make the notify directory in `dir`: not read-only, writable by it.
fn herd_may_create_in(dir: &Path, herd: u32) -> Result<(), String> {
    let Err(e) = herd_sys::fs::may_create_in(dir) else {
        return Ok(());
    };
    let shown = dir.display();
    Err(match e.raw_os_error() {
        Some(libc::EROFS) => format!(
            "herd cannot make the workers' notify directory in {shown}: it is on a read-only \
             file system; set TMPDIR to a writable directory (under systemd's \
             ProtectSystem=strict, add PrivateTmp=yes or ReadWritePaths={shown})"
        ),
        Some(libc::EACCES) => format!(
            "herd cannot make the workers' notify directory in {shown}: herd's uid {herd} may \
             not write or search it; {FIX}"
        ),
        _ => format!("herd cannot make the workers' notify directory in {shown}: {e}; {FIX}"),
    })
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
mod tests;
