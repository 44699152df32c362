//! einhorn's worker acknowledgement, with `--compat einhorn`: a worker connects to
//! `EINHORN_SOCK_PATH` and writes `{"command":"worker:ack","pid":N}` (einhorn's Ruby client
//! writes the same as YAML), one message per line with `%` and newlines escaped as `%25` and
//! `%0A` (einhorn's `Einhorn::Client::Transport`). herd counts it as `READY=1` from the worker
//! the connecting process belongs to, by the pid the kernel recorded at `connect`
//! (`SO_PEERCRED`), as the notify socket attributes its datagrams: the `pid` in the message is
//! not trusted. Other commands (einhornsh's) are ignored.
//!
//! The socket is herd's own (`NAME.PID.ack` beside the notify socket, mode 0600 from the moment
//! it appears there, as herd's directory may be open to others), removed when herd exits and
//! handed over across a re-exec. It refuses fds (`SO_PASSRIGHTS` off, Linux 6.16+): an ack
//! carries none, and letting go of one can wait as long as the sender likes (a pipe whose
//! lock it holds). Where the kernel lets them through, they are taken as fds and closed on a
//! closing thread, as each connection is once read ([`read_acks`]).

use std::os::unix::fs::DirBuilderExt;
use std::os::unix::io::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, Semaphore};

use crate::logging::LogEvent;
use crate::spec::SocketFile;

/// The most a connection may send, and how long it may take: an ack is a few dozen bytes.
const MAX_BYTES: usize = 64 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections read at once; more wait in the listen queue.
const MAX_CONNECTIONS: usize = 32;
/// The pause after a failed accept, doubled per failure in a row up to [`MAX_ACCEPT_PAUSE`].
const FIRST_ACCEPT_PAUSE: Duration = Duration::from_millis(100);
const MAX_ACCEPT_PAUSE: Duration = Duration::from_secs(1);

/// herd's socket for einhorn's acknowledgements.
#[derive(Debug)]
pub struct EinhornSocket {
    /// The bound stream socket.
    pub listener: std::os::unix::net::UnixListener,
    /// Its path, `EINHORN_SOCK_PATH`.
    pub path: PathBuf,
    file: SocketFile,
}

impl EinhornSocket {
    /// Binds at `path` (in herd's private directory; named after herd's pid, so a file there
    /// is a stale one of a herd that had this pid), mode 0600, and removes those of herds
    /// that are gone.
    pub fn bind(path: &Path) -> anyhow::Result<EinhornSocket> {
        EinhornSocket::bind_at(path, path)
    }

    /// Binds it at `at`, another way to name `path` (through an fd on its directory,
    /// `/proc/self/fd/N/NAME`), as the socket at `path`.
    pub fn bind_at(at: &Path, path: &Path) -> anyhow::Result<EinhornSocket> {
        super::notify::remove_stale(at, herd_sys::process::effective_uid());
        let shown = path.display();
        if let Ok(meta) = std::fs::symlink_metadata(at) {
            use std::os::unix::fs::FileTypeExt;
            anyhow::ensure!(
                meta.file_type().is_socket(),
                "{shown} exists and is not a socket; herd will not touch it"
            );
            std::fs::remove_file(at).with_context(|| format!("cannot remove stale {shown}"))?;
        }
        let listener = bind_private(at, path)
            .with_context(|| format!("cannot create einhorn's socket {shown}"))?;
        let file = SocketFile::created_at(at, path)?;
        Ok(EinhornSocket {
            listener,
            path: path.to_path_buf(),
            file,
        })
    }

    /// The socket a previous image of this process handed over.
    pub fn restore(socket: OwnedFd, file: SocketFile) -> EinhornSocket {
        EinhornSocket {
            listener: std::os::unix::net::UnixListener::from(socket),
            path: file.parts().0.to_path_buf(),
            file,
        }
    }

    /// Its socket file.
    pub fn file(&self) -> &SocketFile {
        &self.file
    }

    /// Closes it on a closing thread (`herd_sys::fd::close_in_background`): connections still
    /// in its queue go with it, and so do the files they were sent with, whose release can
    /// wait (see [`read_acks`]).
    pub fn close_off_loop(self) {
        herd_sys::fd::close_in_background(OwnedFd::from(self.listener));
    }

    /// Starts serving a copy of the socket: the pid of each process that acknowledges goes to
    /// `acks`. Its task, which serves until it is aborted (the socket bound again) or herd ends.
    pub fn serve(&self, acks: mpsc::Sender<u32>) -> anyhow::Result<tokio::task::JoinHandle<()>> {
        // Set when it was bound; again for one an older herd handed over (a connection made
        // before this keeps the setting it was made with).
        herd_sys::fdpass::refuse_fds(self.listener.as_fd());
        let listener = self.listener.try_clone()?;
        listener.set_nonblocking(true)?;
        let listener = ClosedOffLoop(Some(UnixListener::from_std(listener)?));
        Ok(tokio::spawn(accept(listener, acks)))
    }
}

/// Binds a socket at `at` (`path`, as [`NotifyDir::within`](super::notify_dir::NotifyDir::within)
/// names it) that is mode 0600 from the moment it is reachable there: bound in a 0700
/// staging directory (`.PID` beside it, a shorter path), made 0600, then renamed. herd's
/// directory may be open to others (`--control-allow-uid/gid`, or `--control`'s own). The
/// socket is bound by `path`'s name (`ss -x` shows the directory it was bound in, not
/// `/proc/self/fd/N`); all else goes by `at`.
fn bind_private(at: &Path, path: &Path) -> std::io::Result<std::os::unix::net::UnixListener> {
    let name = format!(".{}", std::process::id());
    let staging = at.with_file_name(&name);
    let inner = staging.join("a");
    // A staging directory left by a herd that had this pid and was killed mid-bind.
    use std::os::unix::fs::FileTypeExt;
    if std::fs::symlink_metadata(&inner).is_ok_and(|m| m.file_type().is_socket()) {
        let _ = std::fs::remove_file(&inner);
    }
    let _ = std::fs::remove_dir(&staging);
    std::fs::DirBuilder::new().mode(0o700).create(&staging)?;
    let named = path.with_file_name(&name).join("a");
    let bound = std::os::unix::net::UnixListener::bind(&named).and_then(|listener| {
        // Before it is reachable: each connection takes the setting as it connects.
        herd_sys::fdpass::refuse_fds(listener.as_fd());
        crate::spec::set_socket_mode(&inner, Some(0o600))?;
        std::fs::rename(&inner, at)?;
        Ok(listener)
    });
    let _ = std::fs::remove_file(&inner);
    let _ = std::fs::remove_dir(&staging);
    bound
}

/// The accepting task's copy of the socket, closed on a closing thread when the task ends (it
/// is aborted when the socket is bound again): see [`EinhornSocket::close_off_loop`].
struct ClosedOffLoop(Option<UnixListener>);

impl Drop for ClosedOffLoop {
    fn drop(&mut self) {
        if let Some(Ok(listener)) = self.0.take().map(UnixListener::into_std) {
            herd_sys::fd::close_in_background(OwnedFd::from(listener));
        }
    }
}

/// Accepts connections, each read by a task of its own, at most [`MAX_CONNECTIONS`] at once.
async fn accept(listener: ClosedOffLoop, acks: mpsc::Sender<u32>) {
    let Some(listener) = &listener.0 else {
        return;
    };
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut backoff = AcceptBackoff::default();
    loop {
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => {
                backoff.succeeded();
                stream
            }
            Err(e) => {
                // EMFILE and friends last: pause instead of spinning on the runtime.
                let (pause, first) = backoff.failed();
                if first {
                    tracing::warn!(
                        event = LogEvent::EinhornAcceptFailed.as_str(),
                        "einhorn's ack socket: accept failed: {e}; retrying"
                    );
                }
                tokio::time::sleep(pause).await;
                continue;
            }
        };
        let acks = acks.clone();
        // Only the reading is timed (in `read_acks`): a second timeout of the same length
        // around it all, started a little earlier, could end the task just before the acks
        // read by then were sent.
        tokio::spawn(async move {
            read_acks(stream, acks).await;
            drop(permit);
        });
    }
}

/// The pauses between failed accepts, and whether a failure is the first in a row.
#[derive(Debug, Default)]
struct AcceptBackoff {
    /// The pause after the last failure; `None` after a success.
    pause: Option<Duration>,
}

impl AcceptBackoff {
    /// A failed accept: how long to pause, and whether it is the first failure in a row.
    fn failed(&mut self) -> (Duration, bool) {
        let pause = match self.pause {
            None => FIRST_ACCEPT_PAUSE,
            Some(last) => (last * 2).min(MAX_ACCEPT_PAUSE),
        };
        let first = self.pause.is_none();
        self.pause = Some(pause);
        (pause, first)
    }

    /// A successful accept: the next failure starts over.
    fn succeeded(&mut self) {
        self.pause = None;
    }
}

/// Reads one connection to its end (or [`MAX_BYTES`], or [`READ_TIMEOUT`]); then sends its
/// peer's pid once per ack that arrived, the last one also without its newline (waiting for
/// room in the channel, which the supervisor empties every turn; gone when it stops).
/// The connection is closed on a closing thread (`herd_sys::fd::close_in_background`), as
/// are the files a client sent along, where the kernel lets them through (before Linux 6.16,
/// [`herd_sys::fdpass::refuse_fds`]): releasing one can wait (a pipe's lock its sender holds,
/// a lingering socket), and so would herd's loop, were they released in its thread, as a
/// plain `read` past them or the close of a connection still holding them does.
async fn read_acks(stream: UnixStream, acks: mpsc::Sender<u32>) {
    let pid = herd_sys::socket::peer_pid(stream.as_fd());
    let mut lines = AckLines::default();
    if let Ok(Some(_)) = pid {
        let _ = tokio::time::timeout(READ_TIMEOUT, read_lines(&stream, &mut lines)).await;
    }
    if let Ok(stream) = stream.into_std() {
        herd_sys::fd::close_in_background(OwnedFd::from(stream));
    }
    let Ok(Some(pid)) = pid else {
        return;
    };
    for _ in 0..lines.finish() {
        if acks.send(pid).await.is_err() {
            return;
        }
    }
}

/// Reads into `lines` until the peer closes, an ack line is complete, or [`MAX_BYTES`]; the
/// files sent along are closed on a closing thread.
async fn read_lines(stream: &UnixStream, lines: &mut AckLines) {
    let mut buf = [0u8; 4096];
    while lines.received < MAX_BYTES {
        if stream.readable().await.is_err() {
            return;
        }
        let received = stream.try_io(tokio::io::Interest::READABLE, || {
            herd_sys::fdpass::recv_with_fds(stream.as_fd(), &mut buf)
        });
        let received = match received {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return,
            Ok(received) => received,
        };
        for fd in received.fds {
            herd_sys::fd::close_in_background(fd);
        }
        // einhorn's worker closes after its ack, but a client may keep the connection open.
        if received.len == 0 || lines.push(&buf[..received.len]) {
            return;
        }
    }
}

/// The acks in a connection's bytes, each line looked at once as it completes.
#[derive(Debug, Default)]
struct AckLines {
    /// Bytes received so far.
    received: usize,
    /// The line not yet ended by a newline.
    partial: Vec<u8>,
    /// Acks among the complete lines.
    acks: usize,
}

impl AckLines {
    /// Adds received bytes; true when they end a line and an ack has arrived.
    fn push(&mut self, bytes: &[u8]) -> bool {
        self.received += bytes.len();
        let mut rest = bytes;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            self.partial.extend_from_slice(&rest[..end]);
            if is_ack(&unescape(&self.partial)) {
                self.acks += 1;
            }
            self.partial.clear();
            rest = &rest[end + 1..];
        }
        self.partial.extend_from_slice(rest);
        rest.is_empty() && self.acks > 0
    }

    /// The acks received, counting a last line without its newline.
    fn finish(self) -> usize {
        self.acks + usize::from(is_ack(&unescape(&self.partial)))
    }
}

/// How many of the lines in `text` are `worker:ack` messages.
#[cfg(test)]
fn count_acks(text: &[u8]) -> usize {
    let mut lines = AckLines::default();
    lines.push(text);
    lines.finish()
}

/// A line as einhorn's transport escaped it, unescaped: `%0A` is a newline, `%25` a `%`.
fn unescape(line: &[u8]) -> String {
    let mut out = Vec::with_capacity(line.len());
    let mut rest = line;
    while let Some((&first, tail)) = rest.split_first() {
        let (byte, skip) = match tail {
            [b'0', b'A', ..] if first == b'%' => (b'\n', 3),
            [b'2', b'5', ..] if first == b'%' => (b'%', 3),
            _ => (first, 1),
        };
        out.push(byte);
        rest = &rest[skip..];
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `message` (JSON, or the YAML mapping einhorn's Ruby client writes) is a
/// `worker:ack` command.
fn is_ack(message: &str) -> bool {
    let message = message.trim();
    if message.starts_with('{') {
        let json: Option<serde_json::Value> = serde_json::from_str(message).ok();
        return json.is_some_and(|v| v["command"] == "worker:ack");
    }
    message.lines().any(|line| {
        line.trim()
            .strip_prefix("command:")
            .map(|value| value.trim().trim_matches(['"', '\'']))
            == Some("worker:ack")
    })
}

#[cfg(test)]
mod tests;
