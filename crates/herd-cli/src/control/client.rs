//! The one client of the control protocol: connect to a herd's control socket, send typed
//! requests, read typed results (and the fds of `sockets`). Failures are [`ClientError`]s,
//! told apart by errno and by the protocol's error codes, never by message text. Blocking
//! ([`Client`]) for the `herd` subcommands; [`AsyncClient`] for the supervisor's loop.

use std::io::ErrorKind::{TimedOut, WouldBlock};
use std::io::{self, Write};
use std::os::unix::io::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

pub use super::answer::{decode_answer, ClientError, Vacancy};
pub use super::protocol::encode_request;
use super::protocol::Command;
use super::results::{SocketInfo, SocketsResult};
use super::wait::{self, WhenStopped};

/// The most of an answer a client holds (a herd's status with thousands of workers is a few
/// MB): a peer that sends more without a line end is not a herd.
const MAX_ANSWER: usize = 16 << 20;

/// How long a request may take to send.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// A peer that has sent more than [`MAX_ANSWER`] bytes `without` what ends an answer.
fn too_long(path: &Path, without: &str) -> ClientError {
    ClientError::NotHerd {
        path: path.to_path_buf(),
        why: format!("it sent more than {} MiB {without}", MAX_ANSWER >> 20),
    }
}

/// What [`too_long`] says of an answer line that does not end.
const NO_LINE_END: &str = "without a line end";

impl ClientError {
    /// A failed `connect`, classified by its errno.
    pub fn from_connect(path: &Path, e: io::Error) -> ClientError {
        let path = path.to_path_buf();
        match e.raw_os_error() {
            Some(libc::ENOENT) => ClientError::NotRunning {
                path,
                why: Vacancy::NoSocket,
                herd: None,
            },
            // Linux refuses a connection to a file that is no socket the same way.
            Some(libc::ECONNREFUSED) => match not_a_socket(&path) {
                Some(kind) => ClientError::Io {
                    path,
                    what: "cannot connect to",
                    source: io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!(
                            "it is {kind}, not a herd's control socket: pass the path herd \
                             was started with (--control) or its --name"
                        ),
                    ),
                },
                None => ClientError::NotRunning {
                    path,
                    why: Vacancy::NobodyListening,
                    herd: None,
                },
            },
            Some(libc::EACCES | libc::EPERM) => ClientError::PermissionDenied {
                // A directory on the way forbids even a look at the socket file.
                directory: std::fs::symlink_metadata(&path)
                    .is_err_and(|e| e.kind() == io::ErrorKind::PermissionDenied),
                path,
            },
            Some(libc::EPROTOTYPE | libc::ENOTSOCK) => ClientError::NotHerd {
                path,
                why: format!("it is not a stream socket ({e})"),
            },
            _ => ClientError::Io {
                path,
                what: "cannot connect to",
                source: e,
            },
        }
    }
}

/// What the file at `path` is (following symlinks, as `connect` does) if it is no socket.
fn not_a_socket(path: &Path) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    let kind = std::fs::metadata(path).ok()?.file_type();
    Some(if kind.is_socket() {
        return None;
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a named pipe"
    } else if kind.is_file() {
        "a regular file"
    } else {
        "a device"
    })
}

/// What `sockets` with `attach` brings: the sockets with their fds, and the signal herd stops
/// this process with, as `HERD_STOP_SIGNAL` names it (`None` from a herd too old to say).
pub type Attached = (Vec<(SocketInfo, OwnedFd)>, Option<String>);

/// A connection to a herd's control socket, for blocking callers.
#[derive(Debug)]
pub struct Client {
    stream: UnixStream,
    path: PathBuf,
    /// Bytes read: those past `taken` are not handed out yet.
    buffered: Vec<u8>,
    /// How much of `buffered` was handed out (dropped before the next read).
    taken: usize,
    /// Fds received and not yet handed out.
    fds: Vec<OwnedFd>,
    /// When the whole answer to the current request is due, and the timeout it came from.
    deadline: Option<(Instant, Duration)>,
    /// How a herd seen stopped once a request was delivered is taken (see [`Client::patient`]).
    when_stopped: WhenStopped,
}

impl Client {
    /// Connects to the herd at `path`, which must run as root, the caller, `owner`, or be
    /// at a path only they could have prepared ([`herd::trust`]), and must not be stopped.
    pub fn connect(path: &Path, owner: Option<u32>) -> Result<Client, ClientError> {
        if path.as_os_str().len() > crate::spec::MAX_UNIX_PATH {
            return Err(ClientError::PathTooLong {
                path: path.to_path_buf(),
            });
        }
        let stream = UnixStream::connect(path).map_err(|e| ClientError::from_connect(path, e))?;
        Client::over(stream, path, owner)
    }

    /// [`Client::connect`] without waiting for room in the herd's backlog: a connection
    /// that would wait fails (`EAGAIN`), as [`AsyncClient::connect_now`]'s does.
    pub fn connect_now(path: &Path, owner: Option<u32>) -> Result<Client, ClientError> {
        let stream = connect_nonblocking(path)?;
        stream
            .set_nonblocking(false)
            .map_err(|e| ClientError::io(path, "cannot use", e))?;
        Client::over(stream, path, owner)
    }

    /// A client over `stream`, connected to `path`, once its server is trusted and runs.
    fn over(stream: UnixStream, path: &Path, owner: Option<u32>) -> Result<Client, ClientError> {
        herd::trust::check_server(&stream, path, owner).map_err(ClientError::Untrusted)?;
        wait::check_running(&stream, path)?;
        stream
            .set_write_timeout(Some(SEND_TIMEOUT))
            .map_err(|e| ClientError::io(path, "cannot use", e))?;
        Ok(Client {
            stream,
            path: path.to_path_buf(),
            buffered: Vec::new(),
            taken: 0,
            fds: Vec::new(),
            deadline: None,
            when_stopped: WhenStopped::Fail,
        })
    }

    /// The pid of the process that serves this connection (`SO_PEERCRED`), if the system says.
    pub fn server_pid(&self) -> Option<u32> {
        herd_sys::socket::peer_pid(self.stream.as_fd())
            .ok()
            .flatten()
    }

    /// The user the server runs as, as the kernel says (checked on connecting).
    pub fn server_uid(&self) -> Option<u32> {
        herd_sys::socket::peer_uid(self.stream.as_fd()).ok()
    }

    /// This client waits for a herd that stops after it got a request (within the request's
    /// timeout), saying so once on stderr, rather than fail: herd carries the request out
    /// once it resumes (an upgrade under way goes on), and a failure would be reported for
    /// what succeeds. A herd already stopped when the client connects is still refused at
    /// once. For the `herd` commands; a herd that asks another herd (a takeover) does not wait.
    pub fn patient(mut self) -> Client {
        self.when_stopped = WhenStopped::Wait;
        self
    }

    /// Sends `command` and reads its result, waiting at most `timeout` for all of it
    /// (`None`: as long as it takes, for `upgrade` and `stop`).
    pub fn call<R: DeserializeOwned>(
        &mut self,
        command: Command,
        timeout: Option<Duration>,
    ) -> Result<R, ClientError> {
        let line = self.exchange(command, timeout)?;
        // Fds sent along with an answer that does not describe them are closed.
        self.fds.clear();
        decode_answer(&line, &self.path)
    }

    /// `sockets`: the listening sockets (only those named in `only`, if any), each with its
    /// fd; with `attach`, this process is registered as an attached worker. The answer and
    /// its fds must all arrive within `timeout`.
    pub fn sockets(
        &mut self,
        only: Vec<String>,
        attach: bool,
        timeout: Option<Duration>,
    ) -> Result<Vec<(SocketInfo, OwnedFd)>, ClientError> {
        self.fetch(only, attach, timeout)
            .map(|(sockets, _)| sockets)
    }

    /// `sockets` with `attach`: the sockets, as [`sockets`](Client::sockets) gives them, and
    /// herd's stop signal.
    pub fn attach(
        &mut self,
        only: Vec<String>,
        timeout: Option<Duration>,
    ) -> Result<Attached, ClientError> {
        self.fetch(only, true, timeout)
    }

    /// The `sockets` request: the sockets with their fds, and the stop signal's name.
    fn fetch(
        &mut self,
        only: Vec<String>,
        attach: bool,
        timeout: Option<Duration>,
    ) -> Result<Attached, ClientError> {
        let only = (!only.is_empty()).then_some(only);
        let line = self.exchange(Command::Sockets { only, attach }, timeout)?;
        let result: SocketsResult = decode_answer(&line, &self.path)?;
        while self.fds.len() < result.sockets.len() {
            if self.buffered.len() - self.taken > MAX_ANSWER {
                return Err(too_long(&self.path, "without the fds its answer describes"));
            }
            if !self.receive()? {
                return Err(ClientError::Closed {
                    path: self.path.clone(),
                });
            }
        }
        let fds = std::mem::take(&mut self.fds);
        Ok((
            result.sockets.into_iter().zip(fds).collect(),
            result.stop_signal,
        ))
    }

    /// Sends the request and returns the first line of the answer.
    fn exchange(
        &mut self,
        command: Command,
        timeout: Option<Duration>,
    ) -> Result<Vec<u8>, ClientError> {
        // herd may answer before reading (a refusal) and close: then the write fails, but the
        // answer is waiting to be read, and it says more than "broken pipe".
        self.deadline = timeout.map(|t| (Instant::now() + t, t));
        let sent = self.stream.write_all(&encode_request(command));
        // Delivered: a herd stopped from now on carries it out once it resumes.
        let when_stopped = match sent {
            Ok(()) => self.when_stopped,
            Err(_) => WhenStopped::Fail,
        };
        wait::wait(&self.stream, &self.path, timeout, when_stopped)?;
        match self.read_answer()? {
            Some(line) => Ok(line),
            None => Err(match sent {
                Err(e) => ClientError::io(&self.path, "cannot send to", e),
                Ok(()) => ClientError::Closed {
                    path: self.path.clone(),
                },
            }),
        }
    }

    /// The next line herd sends after an answer (`logs`), waiting at most `timeout` (`None`:
    /// as long as it takes); `None` once herd has closed the connection, also amid a line (a
    /// re-exec or a takeover can cut one short): what it cut is no line.
    pub fn next_line(&mut self, timeout: Option<Duration>) -> Result<Option<Vec<u8>>, ClientError> {
        self.deadline = timeout.map(|t| (Instant::now() + t, t));
        if timeout.is_none() {
            (self.stream.set_read_timeout(None))
                .map_err(|e| ClientError::io(&self.path, "cannot use", e))?;
        }
        self.read_whole_line()
    }

    /// The answer's line: up to the next line end, or what came before the connection ended
    /// (`None` if nothing did).
    fn read_answer(&mut self) -> Result<Option<Vec<u8>>, ClientError> {
        match self.read_whole_line()? {
            Some(line) => Ok(Some(line)),
            None => Ok(Some(std::mem::take(&mut self.buffered)).filter(|rest| !rest.is_empty())),
        }
    }

    /// Reads up to the next line end; `None` once the connection ends first (what came of a
    /// line stays in `buffered`).
    fn read_whole_line(&mut self) -> Result<Option<Vec<u8>>, ClientError> {
        // What has been looked at for a line end: each byte once.
        let mut scanned = self.taken;
        loop {
            if let Some(at) = self.buffered[scanned..].iter().position(|&b| b == b'\n') {
                return Ok(Some(self.take_line(scanned + at)));
            }
            // What was handed out goes before the next read: each byte moves once at most.
            self.buffered.drain(..self.taken);
            self.taken = 0;
            scanned = self.buffered.len();
            if scanned > MAX_ANSWER {
                return Err(too_long(&self.path, NO_LINE_END));
            }
            if !self.receive()? {
                return Ok(None);
            }
        }
    }

    /// Hands out the line that ends at `end` (a line end's index in `buffered`): the buffer
    /// itself when the line is all of it (a status of thousands of workers is not copied), a
    /// copy of it otherwise (many short lines, as `logs` sends, each copied once).
    fn take_line(&mut self, end: usize) -> Vec<u8> {
        let line = match self.taken == 0 && end + 1 == self.buffered.len() {
            true => {
                let mut line = std::mem::take(&mut self.buffered);
                line.truncate(end);
                line
            }
            false => self.buffered[self.taken..end].to_vec(),
        };
        self.taken = end + 1;
        if self.taken >= self.buffered.len() {
            self.buffered.clear();
            self.taken = 0;
        }
        line
    }

    /// Reads what arrived, and the fds that came with it, before the deadline; `false` at
    /// the end of the stream.
    fn receive(&mut self) -> Result<bool, ClientError> {
        let late = |after| ClientError::Timeout {
            path: self.path.clone(),
            after,
            pid: None,
        };
        if let Some((deadline, timeout)) = self.deadline {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(late(timeout));
            }
            (self.stream.set_read_timeout(Some(remaining)))
                .map_err(|e| ClientError::io(&self.path, "cannot use", e))?;
        }
        // A status of 4096 workers is about 900 KB: read in 64 KiB, not 4 KiB, steps.
        let mut buf = [0u8; 65536];
        let got = match herd_sys::fdpass::recv_with_fds(self.stream.as_fd(), &mut buf) {
            Ok(got) => got,
            Err(e) => {
                return Err(match self.deadline {
                    Some((_, timeout)) if matches!(e.kind(), WouldBlock | TimedOut) => {
                        late(timeout)
                    }
                    _ => ClientError::io(&self.path, "no answer from", e),
                })
            }
        };
        self.fds.extend(got.fds);
        if got.out_of_files {
            return Err(ClientError::Io {
                path: self.path.clone(),
                what: "cannot receive the sockets from",
                source: io::Error::other(herd::protocol::out_of_files_hint()),
            });
        }
        if got.fds_truncated {
            return Err(ClientError::NotHerd {
                path: self.path.clone(),
                why: "more fds than fit in one message".to_string(),
            });
        }
        self.buffered.extend_from_slice(&buf[..got.len]);
        Ok(got.len > 0)
    }
}

/// A connection to a herd's control socket inside an async runtime.
#[derive(Debug)]
pub struct AsyncClient {
    stream: tokio::io::BufReader<tokio::net::UnixStream>,
    path: PathBuf,
}

impl AsyncClient {
    /// Connects without blocking: a Unix stream connect completes at once, or fails
    /// (`EAGAIN` when the herd's backlog is full); a herd that is stopped (SIGSTOP) is
    /// [`ClientError::Stopped`]. Needs a tokio runtime.
    pub fn connect_now(path: &Path) -> Result<AsyncClient, ClientError> {
        let stream = connect_nonblocking(path)?;
        wait::check_running(&stream, path)?;
        let stream = tokio::net::UnixStream::from_std(stream)
            .map_err(|e| ClientError::io(path, "cannot use", e))?;
        Ok(AsyncClient {
            stream: tokio::io::BufReader::new(stream),
            path: path.to_path_buf(),
        })
    }

    /// The pid of the process that serves this connection (`SO_PEERCRED`), if the system says.
    pub fn server_pid(&self) -> Option<u32> {
        herd_sys::socket::peer_pid(self.stream.get_ref().as_fd())
            .ok()
            .flatten()
    }

    /// Sends `command` and reads its result.
    pub async fn call<R: DeserializeOwned>(&mut self, command: Command) -> Result<R, ClientError> {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        let sent = self
            .stream
            .get_mut()
            .write_all(&encode_request(command))
            .await;
        use tokio::io::AsyncReadExt;
        let mut line = Vec::new();
        // Bounded: a peer that never ends its line cannot grow this without limit.
        let read = (&mut self.stream)
            .take(MAX_ANSWER as u64 + 1)
            .read_until(b'\n', &mut line)
            .await;
        match (read, sent) {
            (Ok(0), Err(e)) => Err(ClientError::io(&self.path, "cannot send to", e)),
            (Ok(_), _) if line.len() > MAX_ANSWER && line.last() != Some(&b'\n') => {
                Err(too_long(&self.path, NO_LINE_END))
            }
            (Ok(_), _) => {
                if line.last() == Some(&b'\n') {
                    line.pop();
                }
                decode_answer(&line, &self.path)
            }
            (Err(e), _) => Err(ClientError::io(&self.path, "no answer from", e)),
        }
    }
}

/// Connects to `path` without waiting (see [`AsyncClient::connect_now`]); the stream is
/// non-blocking.
pub fn connect_nonblocking(path: &Path) -> Result<UnixStream, ClientError> {
    use socket2::{Domain, SockAddr, Socket, Type};
    let address = SockAddr::unix(path).map_err(|_| ClientError::PathTooLong {
        path: path.to_path_buf(),
    })?;
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)
        .and_then(|s| s.set_nonblocking(true).map(|()| s))
        .map_err(|e| ClientError::io(path, "cannot connect to", e))?;
    socket
        .connect(&address)
        .map_err(|e| ClientError::from_connect(path, e))?;
    Ok(socket.into())
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
