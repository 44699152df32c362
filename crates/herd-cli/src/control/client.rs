//! The one client of the control protocol: connect to a herd's control socket, send typed
//! requests, read typed results (and the fds of `sockets`). Failures are [`ClientError`]s,
//! told apart by errno and by the protocol's error codes, never by message text. Blocking
//! ([`Client`]) for the `herd` subcommands; [`AsyncClient`] for the supervisor's loop.

use std::fmt;
use std::io::{self, Write};
use std::os::unix::io::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::protocol::{Command, ErrorBody, Request, Response, VERSION};
use super::results::{SocketInfo, SocketsResult};
use super::wait;

/// The most of an answer a client holds (a herd's status with thousands of workers is a few
/// MB): a peer that sends more without a line end is not a herd.
const MAX_ANSWER: usize = 16 << 20;

/// How long a request may take to send.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// Why nothing answers at a control socket's path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vacancy {
    /// No file there (`ENOENT`): the herd removed its socket as it stopped, or never ran.
    NoSocket,
    /// A socket nobody listens on (`ECONNREFUSED`): the herd was killed.
    NobodyListening,
}

impl Vacancy {
    /// What it says about the herd that was there.
    pub fn describe(self) -> &'static str {
        match self {
            Vacancy::NoSocket => "its control socket is gone",
            Vacancy::NobodyListening => "nobody listens on its control socket",
        }
    }
}

/// What can go wrong talking to a herd.
#[derive(Debug)]
pub enum ClientError {
    /// The path does not fit in a Unix socket address.
    PathTooLong {
        /// The control socket's path.
        path: PathBuf,
    },
    /// No herd runs there.
    NotRunning {
        /// The control socket's path.
        path: PathBuf,
        /// How we know.
        why: Vacancy,
    },
    /// The caller may not connect (`EACCES`, `EPERM`). A herd that refuses the caller's
    /// credentials answers [`Refused`](ClientError::Refused) with `permission_denied`.
    PermissionDenied {
        /// The control socket's path.
        path: PathBuf,
    },
    /// Something that is not a herd's control socket answers there: a socket of another type
    /// (`EPROTOTYPE`), or an answer that is not the protocol's.
    NotHerd {
        /// The control socket's path.
        path: PathBuf,
        /// What was wrong.
        why: String,
    },
    /// The server runs as a user the caller does not trust ([`herd::trust`]).
    Untrusted(herd::Error),
    /// The herd is stopped (SIGSTOP) and cannot answer.
    Stopped {
        /// The control socket's path.
        path: PathBuf,
        /// The herd's pid.
        pid: u32,
    },
    /// No answer came in time.
    Timeout {
        /// The control socket's path.
        path: PathBuf,
        /// How long the client waited.
        after: Duration,
        /// The herd's pid, if the system says.
        pid: Option<u32>,
    },
    /// The herd closed the connection without answering.
    Closed {
        /// The control socket's path.
        path: PathBuf,
    },
    /// A system call failed.
    Io {
        /// The control socket's path.
        path: PathBuf,
        /// What failed, worded to precede the path (`cannot connect to`).
        what: &'static str,
        /// The error.
        source: io::Error,
    },
    /// The herd answered with an error.
    Refused {
        /// The control socket's path.
        path: PathBuf,
        /// Its code and message.
        error: ErrorBody,
    },
}

impl ClientError {
    pub(super) fn io(path: &Path, what: &'static str, source: io::Error) -> ClientError {
        ClientError::Io {
            path: path.to_path_buf(),
            what,
            source,
        }
    }

    /// A failed `connect`, classified by its errno.
    pub fn from_connect(path: &Path, e: io::Error) -> ClientError {
        let path = path.to_path_buf();
        match e.raw_os_error() {
            Some(libc::ENOENT) => ClientError::NotRunning {
                path,
                why: Vacancy::NoSocket,
            },
            Some(libc::ECONNREFUSED) => ClientError::NotRunning {
                path,
                why: Vacancy::NobodyListening,
            },
            Some(libc::EACCES | libc::EPERM) => ClientError::PermissionDenied { path },
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

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::PathTooLong { path } => write!(
                f,
                "the control socket path {} is {} bytes; Unix socket paths hold at most {}: \
                 pass the herd's real --control path",
                path.display(),
                path.as_os_str().len(),
                crate::spec::MAX_UNIX_PATH
            ),
            ClientError::NotRunning { path, .. } => write!(
                f,
                "no herd is running at {}: start one with 'herd run', or select it with --name \
                 or --control",
                path.display()
            ),
            ClientError::PermissionDenied { path } => {
                write!(f, "permission denied opening {}", path.display())
            }
            ClientError::NotHerd { path, why } => {
                write!(f, "unexpected answer from {}: {why}", path.display())
            }
            ClientError::Untrusted(e) => e.fmt(f),
            ClientError::Stopped { path, pid } => write!(
                f,
                "the herd at {} (pid {pid}) is stopped (by SIGSTOP, Ctrl-Z or a debugger) and \
                 cannot answer; resume it with 'kill -CONT {pid}'",
                path.display()
            ),
            ClientError::Timeout { path, after, pid } => write!(
                f,
                "no answer from {} within {}: herd{} is overloaded or stuck; try again, or look \
                 at its log",
                path.display(),
                humantime::format_duration(*after),
                pid.map_or_else(String::new, |p| format!(" (pid {p})"))
            ),
            ClientError::Closed { path } => {
                write!(
                    f,
                    "{} closed the connection without an answer",
                    path.display()
                )
            }
            ClientError::Io { path, what, source } => {
                write!(f, "{what} {}: {source}", path.display())
            }
            ClientError::Refused { path, error } => write!(
                f,
                "herd at {} refused ({}): {}",
                path.display(),
                error.code,
                crate::text::escape(&error.message)
            ),
        }
    }
}

impl std::error::Error for ClientError {}

/// A peer that has sent more than [`MAX_ANSWER`] bytes `without` what ends an answer.
fn too_long(path: &Path, without: &str) -> ClientError {
    ClientError::NotHerd {
        path: path.to_path_buf(),
        why: format!("it sent more than {} MiB {without}", MAX_ANSWER >> 20),
    }
}

/// What [`too_long`] says of an answer line that does not end.
const NO_LINE_END: &str = "without a line end";

/// A request as one line, newline included.
pub fn encode_request(command: Command) -> Vec<u8> {
    let request = Request {
        version: VERSION,
        command,
    };
    // A request is strings, numbers and booleans: it always serializes.
    let mut line = serde_json::to_vec(&request).unwrap_or_default();
    line.push(b'\n');
    line
}

/// Reads one response line (without its newline) as the result `R` of the command sent, or
/// the error herd answered.
///
/// An answer is herd's only if it is UTF-8 JSON of protocol version 1 (the integer) that names
/// no member twice (readers disagree on which of two counts), as the worker library's reader
/// (`herd::protocol`) requires too.
pub fn decode_answer<R: DeserializeOwned>(line: &[u8], path: &Path) -> Result<R, ClientError> {
    let path = path.to_path_buf();
    let not_herd = |why: String| ClientError::NotHerd {
        path: path.clone(),
        why,
    };
    let text = std::str::from_utf8(line).map_err(|_| not_herd("it is not UTF-8".into()))?;
    if text.trim().is_empty() {
        return Err(ClientError::Closed { path });
    }
    let response: Response<serde_json::Value> =
        serde_json::from_str(text.trim()).map_err(|e| not_herd(e.to_string()))?;
    if let Some(name) = super::named_twice::named_twice(text.as_bytes()) {
        return Err(not_herd(format!("it names {name:?} twice")));
    }
    if response.version != VERSION {
        return Err(not_herd(format!(
            "it speaks protocol version {}, not {VERSION}",
            response.version
        )));
    }
    let not_herd = |e: serde_json::Error| not_herd(e.to_string());
    match response {
        Response {
            ok: true, result, ..
        } => serde_json::from_value(result.unwrap_or_default()).map_err(not_herd),
        Response {
            error: Some(error), ..
        } => Err(ClientError::Refused { path, error }),
        Response { error: None, .. } => Err(ClientError::NotHerd {
            path,
            why: "herd refused without saying why".to_string(),
        }),
    }
}

/// A connection to a herd's control socket, for blocking callers.
#[derive(Debug)]
pub struct Client {
    stream: UnixStream,
    path: PathBuf,
    /// Bytes read past the last line.
    buffered: Vec<u8>,
    /// Fds received and not yet handed out.
    fds: Vec<OwnedFd>,
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
        herd::trust::check_server(&stream, path, owner).map_err(ClientError::Untrusted)?;
        wait::check_running(&stream, path)?;
        stream
            .set_write_timeout(Some(SEND_TIMEOUT))
            .map_err(|e| ClientError::io(path, "cannot use", e))?;
        Ok(Client {
            stream,
            path: path.to_path_buf(),
            buffered: Vec::new(),
            fds: Vec::new(),
        })
    }

    /// Sends `command` and reads its result, waiting at most `timeout` (`None`: as long as
    /// it takes, for `upgrade` and `stop`).
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
    /// fd; with `attach`, this process is registered as an attached worker.
    pub fn sockets(
        &mut self,
        only: Vec<String>,
        attach: bool,
        timeout: Option<Duration>,
    ) -> Result<Vec<(SocketInfo, OwnedFd)>, ClientError> {
        let only = (!only.is_empty()).then_some(only);
        let line = self.exchange(Command::Sockets { only, attach }, timeout)?;
        let result: SocketsResult = decode_answer(&line, &self.path)?;
        while self.fds.len() < result.sockets.len() {
            if self.buffered.len() > MAX_ANSWER {
                return Err(too_long(&self.path, "without the fds its answer describes"));
            }
            if !self.receive()? {
                return Err(ClientError::Closed {
                    path: self.path.clone(),
                });
            }
        }
        let fds = std::mem::take(&mut self.fds);
        Ok(result.sockets.into_iter().zip(fds).collect())
    }

    /// Sends the request and returns the first line of the answer.
    fn exchange(
        &mut self,
        command: Command,
        timeout: Option<Duration>,
    ) -> Result<Vec<u8>, ClientError> {
        // herd may answer before reading (a refusal) and close: then the write fails, but the
        // answer is waiting to be read, and it says more than "broken pipe".
        let sent = self.stream.write_all(&encode_request(command));
        wait::wait(&self.stream, &self.path, timeout)?;
        // What has been looked at for a line end: each byte once.
        let mut scanned = 0;
        loop {
            if let Some(at) = self.buffered[scanned..].iter().position(|&b| b == b'\n') {
                let end = scanned + at;
                let line: Vec<u8> = self.buffered.drain(..=end).collect();
                return Ok(line[..end].to_vec());
            }
            scanned = self.buffered.len();
            if scanned > MAX_ANSWER {
                return Err(too_long(&self.path, NO_LINE_END));
            }
            match self.receive() {
                Ok(true) => {}
                Ok(false) if !self.buffered.is_empty() => {
                    return Ok(std::mem::take(&mut self.buffered))
                }
                Ok(false) => {
                    return Err(match sent {
                        Err(e) => ClientError::io(&self.path, "cannot send to", e),
                        Ok(()) => ClientError::Closed {
                            path: self.path.clone(),
                        },
                    })
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads what arrived, and the fds that came with it; `false` at the end of the stream.
    fn receive(&mut self) -> Result<bool, ClientError> {
        let mut buf = [0u8; 4096];
        let got = herd_sys::fdpass::recv_with_fds(self.stream.as_fd(), &mut buf)
            .map_err(|e| ClientError::io(&self.path, "no answer from", e))?;
        self.fds.extend(got.fds);
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
