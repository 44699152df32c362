//! The notify socket: workers send `sd_notify` datagrams (`READY=1`, `STATUS=`, `WATCHDOG=1`)
//! to `NOTIFY_SOCKET`. Each datagram is attributed by the sender's pid, which the kernel
//! vouches for (`SCM_CREDENTIALS`): a worker, or a descendant of one (such as
//! `systemd-notify` run by a shell-script worker). Anything else is ignored.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::io::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use socket2::{Domain, SockAddr, Socket, Type};

use crate::spec::SocketFile;

use super::notify_dir::{NotifyDir, WorkerUser};

pub use super::rate_limit::RateLimit;

/// The largest datagram read; longer ones are dropped (systemd uses the same limit).
pub const MAX_DATAGRAM: usize = 4096;
/// How many ancestors of a sender are searched for a worker.
const MAX_DEPTH: usize = 8;
/// How many times a socket is bound again in one look while the directory herd made for it
/// keeps being removed (a clean-up loop): each try takes well under a millisecond.
const REBIND_ATTEMPTS: usize = 4;

/// herd's notify socket.
#[derive(Debug)]
pub struct NotifySocket {
    /// The bound, non-blocking datagram socket.
    pub socket: std::os::unix::net::UnixDatagram,
    /// Where workers send their messages.
    pub path: PathBuf,
    _file: SocketFile,
    /// Its directory when herd bound it ([`DirIdentity`](super::socket_files::DirIdentity)): bound again only there.
    dir: Option<super::socket_files::DirIdentity>,
    /// With `--compat einhorn`: where workers acknowledge einhorn's way, another way to say
    /// `READY=1`.
    pub einhorn: Option<super::einhorn::EinhornSocket>,
    /// With workers of another user (`--user`): their uid, whose the socket's file is.
    workers_uid: Option<u32>,
    /// The directory herd made for it with `--user` (removed after the file, as herd stops).
    made_dir: Option<NotifyDir>,
}

impl NotifySocket {
    /// Binds a datagram socket at `path` (mode 0600) that receives senders' credentials.
    /// `path` lies in a directory of herd's own (its private directory next to its control
    /// socket, which herd has just bound, or the one it made for workers of another user), so
    /// a socket file already there is a stale one of herd's own user.
    pub fn bind(path: &Path, uid: u32) -> anyhow::Result<NotifySocket> {
        NotifySocket::bind_at(path, path, uid)
    }

    /// Binds it at `at`, another way to name `path` (through an fd on its directory,
    /// `/proc/self/fd/N/NAME`), as the socket at `path`: by `path`'s name, so that `ss -x`
    /// shows where it is, and found there through `at` (in a directory another put at the
    /// name meanwhile, it is not found).
    fn bind_at(at: &Path, path: &Path, uid: u32) -> anyhow::Result<NotifySocket> {
        remove_stale(at, uid);
        let shown = path.display();
        if let Ok(meta) = std::fs::symlink_metadata(at) {
            if !meta.file_type().is_socket() || meta.uid() != uid {
                bail!("{shown} exists and is not herd's notify socket; herd will not touch it");
            }
            std::fs::remove_file(at).with_context(|| format!("cannot remove stale {shown}"))?;
        }
        let socket = Socket::new(Domain::UNIX, Type::DGRAM, None)?;
        socket.set_nonblocking(true)?;
        socket
            .bind(&SockAddr::unix(path)?)
            .with_context(|| format!("cannot create the notify socket {shown}"))?;
        let file = SocketFile::created_at(at, path).with_context(|| {
            format!("cannot find the notify socket {shown} just bound (its directory removed, or replaced)")
        })?;
        crate::spec::set_socket_mode(at, Some(0o600))?;
        herd_sys::notify::enable_credentials(socket.as_fd())?;
        Ok(NotifySocket {
            socket: std::os::unix::net::UnixDatagram::from(OwnedFd::from(socket)),
            path: path.to_path_buf(),
            _file: file,
            dir: super::socket_files::dir_identity(path),
            einhorn: None,
            workers_uid: None,
            made_dir: None,
        })
    }

    /// Binds the notify socket of workers of another user (`--user`) in a directory of its own
    /// ([`notify_dir`](super::notify_dir)): the socket is theirs (0600), so that they and root
    /// alone can send to it.
    pub fn bind_for(workers: WorkerUser<'_>) -> anyhow::Result<NotifySocket> {
        let dir = NotifyDir::create(&super::notify_dir::base(), workers)?;
        let mut socket = dir.within(&dir.socket(), |at, path| {
            let socket = NotifySocket::bind_at(at, path, herd_sys::process::effective_uid())?;
            super::notify_dir::give(at, path, workers.uid)?;
            Ok(socket)
        })?;
        dir.open()?;
        // As checked through its fd, not looked up by its name again.
        socket.dir = Some(dir.identity());
        socket.workers_uid = Some(workers.uid);
        socket.made_dir = Some(dir);
        Ok(socket)
    }

    /// After a re-exec: the socket's file is `workers_uid`'s (`--user`), as the previous image
    /// handed over, and its directory is herd's to remove if that image made it.
    pub fn restore_for(&mut self, workers_uid: Option<u32>) {
        self.workers_uid = workers_uid;
        self.made_dir = NotifyDir::adopt(&self.path, self.dir);
    }
}

/// Removes the sockets of herds that are gone: `STEM.PID.EXT` next to `path` (the notify
/// socket's `.notify`, einhorn's `.ack`), owned by `uid`, whose PID no longer runs (a herd
/// killed with SIGKILL leaves its sockets behind).
pub(super) fn remove_stale(path: &Path, uid: u32) {
    let (Some(dir), Some(stem), Some(ext)) = (
        path.parent(),
        path.file_stem().and_then(|s| s.to_str()),
        path.extension().and_then(|s| s.to_str()),
    ) else {
        return;
    };
    let suffix = format!(".{ext}");
    let Some(prefix) = stem.rsplit_once('.').map(|(p, _)| format!("{p}.")) else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|n| n.strip_suffix(suffix.as_str()))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let ours = entry
            .metadata()
            .is_ok_and(|m| m.file_type().is_socket() && m.uid() == uid);
        if ours && herd_sys::process::start_time(pid).is_none() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

impl NotifySocket {
    /// The socket's file.
    pub fn file(&self) -> &SocketFile {
        &self._file
    }

    /// Binds this socket again at its path if its file was removed (by a worker, an
    /// operator's clean-up; with `--user`, the directory herd made for it too, which is made
    /// again): a socket cannot be given a file again, but workers send each message to the
    /// path, so a new socket there hears every one from now on. Returns the
    /// old socket (its queued datagrams still to read), or `None` if the file is there, or the
    /// socket has none (abstract). A directory another took the place of (with a file of any
    /// kind at the socket's name, or none) is an error: workers' messages no longer reach herd.
    pub fn bind_again_if_removed(
        &mut self,
    ) -> anyhow::Result<Option<std::os::unix::net::UnixDatagram>> {
        let (path, _, ino) = self._file.parts();
        if ino == 0 {
            return Ok(None);
        }
        let replaced = || self.dir.is_some() && super::socket_files::dir_identity(path) != self.dir;
        if !super::socket_files::removed(path) && !replaced() {
            return Ok(None);
        }
        let path = path.to_path_buf();
        self.retry_while_dir_removed(|notify| notify.bind_again(&path))
            .map(Some)
    }

    /// Binds the socket again at `path`; returns the old one.
    fn bind_again(&mut self, path: &Path) -> anyhow::Result<std::os::unix::net::UnixDatagram> {
        self.make_dir_again_if_removed()?;
        super::socket_files::in_dir_bound(path, self.dir.as_ref()).map_err(anyhow::Error::msg)?;
        // Closed to others until the new file is the workers' alone.
        if let Some(dir) = &self.made_dir {
            dir.close()?;
        }
        let fresh = self.bind_for_workers(path, |at, path| {
            NotifySocket::bind_at(at, path, herd_sys::process::effective_uid())
        });
        // The directory is opened again whatever the bind did: a bind's error says more.
        let opened = self.made_dir.as_ref().map_or(Ok(()), NotifyDir::open);
        let fresh = fresh?;
        opened?;
        self._file = fresh._file;
        Ok(std::mem::replace(&mut self.socket, fresh.socket))
    }

    /// Runs `bind` for the socket at `path`, through the directory herd made for workers of
    /// another user if it made one ([`NotifyDir::within`]), and gives what it bound to them.
    fn bind_for_workers<T>(
        &self,
        path: &Path,
        bind: impl FnOnce(&Path, &Path) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let workers_uid = self.workers_uid;
        let bind_and_give = |at: &Path, path: &Path| {
            let bound = bind(at, path)?;
            if let Some(uid) = workers_uid {
                super::notify_dir::give(at, path, uid)?;
            }
            Ok(bound)
        };
        match &self.made_dir {
            Some(dir) => dir.within(path, bind_and_give),
            None => bind_and_give(path, path),
        }
    }

    /// Makes the directory herd made for workers of another user again if it was removed (with
    /// its sockets), and takes it for the one the socket is bound in.
    fn make_dir_again_if_removed(&mut self) -> anyhow::Result<()> {
        if let Some(dir) = &mut self.made_dir {
            if dir.make_again()? {
                self.dir = Some(dir.identity());
            }
        }
        Ok(())
    }

    /// Runs `bind`, again while it fails because the directory herd made was removed once
    /// more meanwhile (a clean-up loop), up to [`REBIND_ATTEMPTS`] times: a failure that the
    /// next look would mend is not said.
    fn retry_while_dir_removed<T>(
        &mut self,
        mut bind: impl FnMut(&mut Self) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let mut attempt = 1;
        loop {
            match bind(self) {
                Err(_)
                    if attempt < REBIND_ATTEMPTS
                        && self.made_dir.as_ref().is_some_and(NotifyDir::gone) =>
                {
                    attempt += 1;
                }
                done => return done,
            }
        }
    }

    /// Binds einhorn's socket (`--compat einhorn`) again at its path if its file was removed,
    /// in the notify socket's directory only: whether it was.
    pub fn bind_einhorn_again_if_removed(&mut self) -> anyhow::Result<bool> {
        let Some(einhorn) = &self.einhorn else {
            return Ok(false);
        };
        let path = einhorn.path.clone();
        if !super::socket_files::removed(&path) {
            return Ok(false);
        }
        let bound = self.retry_while_dir_removed(|notify| {
            notify.make_dir_again_if_removed()?;
            super::socket_files::in_dir_bound(&path, notify.dir.as_ref())
                .map_err(anyhow::Error::msg)?;
            notify.bind_einhorn(&path)
        })?;
        if let Some(old) = self.einhorn.replace(bound) {
            old.close_off_loop();
        }
        Ok(true)
    }

    /// Binds einhorn's socket (`--compat einhorn`) at `path`; with `--user`, the workers',
    /// while the directory herd made is closed to others.
    fn bind_einhorn(&self, path: &Path) -> anyhow::Result<super::einhorn::EinhornSocket> {
        if let Some(dir) = &self.made_dir {
            dir.close()?;
        }
        let bound = self.bind_for_workers(path, super::einhorn::EinhornSocket::bind_at);
        let opened = self.made_dir.as_ref().map_or(Ok(()), NotifyDir::open);
        let bound = bound?;
        opened?;
        Ok(bound)
    }

    /// With `--compat einhorn`: binds einhorn's socket in the directory herd made for workers
    /// of another user (`--user`), theirs as the notify socket is. `false` if herd made none
    /// (the socket was handed over from an older herd, which kept it elsewhere).
    pub fn bind_einhorn_for_workers(&mut self) -> anyhow::Result<bool> {
        let Some(path) = self.made_dir.as_ref().map(NotifyDir::einhorn) else {
            return Ok(false);
        };
        self.einhorn = Some(self.bind_einhorn(&path)?);
        Ok(true)
    }

    /// The uid of the workers of another user (`--user`), whose its file is.
    pub fn workers_uid(&self) -> Option<u32> {
        self.workers_uid
    }

    /// The directory it was bound in, if known.
    pub fn dir(&self) -> Option<super::socket_files::DirIdentity> {
        self.dir
    }

    /// A notify socket handed over by a previous image of this process, with the directory
    /// that image bound it in (`dir`). A state from an older herd has none: it is then known
    /// only if its file is still there (one made anew meanwhile is not herd's).
    pub fn restore(
        socket: OwnedFd,
        file: SocketFile,
        dir: Option<super::socket_files::DirIdentity>,
    ) -> anyhow::Result<NotifySocket> {
        let socket = std::os::unix::net::UnixDatagram::from(socket);
        socket.set_nonblocking(true)?;
        let (path, dev, ino) = file.parts();
        Ok(NotifySocket {
            path: path.to_path_buf(),
            socket,
            dir: dir.or_else(|| super::socket_files::dir_holding(path, (dev, ino))),
            _file: file,
            einhorn: None,
            workers_uid: None,
            made_dir: None,
        })
    }
}

/// Receives one datagram, for `tokio`'s `try_io`: `WouldBlock` when none is waiting. The
/// files a sender attached never become herd's fds on Linux (see [`herd_sys::notify::Receiver`]).
pub fn recv(
    receiver: &herd_sys::notify::Receiver,
    buf: &mut [u8],
) -> std::io::Result<herd_sys::notify::Datagram> {
    receiver
        .recv(buf)?
        .ok_or_else(|| std::io::ErrorKind::WouldBlock.into())
}

/// `sender` and its ancestors, nearest first, as far as [`attribute`] looks (init, or a
/// process gone, ends it): read as its message comes, to tell whose it was once herd knows
/// more workers.
pub fn lineage(sender: u32) -> Vec<u32> {
    let mut pids = vec![sender];
    while pids.len() <= MAX_DEPTH {
        let last = pids[pids.len() - 1];
        match herd_sys::process::parent_of(last).filter(|&p| p > 1) {
            Some(parent) => pids.push(parent),
            None => break,
        }
    }
    pids
}

/// The worker pid a message from `sender` belongs to: the sender itself if it is a worker, or
/// its nearest ancestor that is one.
pub fn attribute(sender: u32, is_worker: impl Fn(u32) -> bool) -> Option<u32> {
    let mut pid = sender;
    for _ in 0..=MAX_DEPTH {
        if is_worker(pid) {
            return Some(pid);
        }
        pid = herd_sys::process::parent_of(pid).filter(|&p| p > 1)?;
    }
    None
}

#[cfg(test)]
mod tests;
