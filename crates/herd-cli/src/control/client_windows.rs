//! The control client on Windows: the Unix client's API ([`Client::connect`], `call`,
//! `sockets`) over the herd's named pipe (through the worker library's [`herd::pipe`]), with
//! the same bounds: at most 16 MiB of answer, all of it before the deadline. The server must
//! run as the caller's user or LocalSystem ([`herd::pipe::Connection::check_server`]); the
//! sockets of `sockets` arrive as `WSAPROTOCOL_INFOW` blocks made for this process.

use std::io;
use std::os::windows::io::OwnedSocket;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use herd::pipe::{Connection, ReadError, ACCESS_DENIED, NO_PIPE, PIPE_BUSY};
use serde::de::DeserializeOwned;

pub use super::answer::{decode_answer, ClientError, Vacancy};
pub use super::protocol::encode_request;
use super::protocol::Command;
use super::results::{SocketInfo, SocketsResult};

/// The most of an answer a client holds (as on Unix).
const MAX_ANSWER: usize = 16 << 20;

impl ClientError {
    /// A pipe that could not be opened, classified by the system's error code.
    pub fn from_open(path: &Path, e: io::Error) -> ClientError {
        let path = path.to_path_buf();
        match e.raw_os_error() {
            Some(NO_PIPE) => ClientError::NotRunning {
                path,
                why: Vacancy::NoPipe,
                herd: None,
            },
            Some(ACCESS_DENIED) => ClientError::PermissionDenied {
                path,
                directory: false,
            },
            Some(PIPE_BUSY) => ClientError::Timeout {
                path,
                after: herd::pipe::BUSY_WAIT,
                pid: None,
            },
            _ => ClientError::Io {
                path,
                what: "cannot connect to",
                source: e,
            },
        }
    }
}

/// What `sockets` with `attach` brings: the sockets, and the handle value, in this process,
/// of the stop request herd made for it (`None` from a herd that made none).
pub type Attached = (Vec<(SocketInfo, OwnedSocket)>, Option<u64>);

/// A connection to a herd's control pipe, for blocking callers.
#[derive(Debug)]
pub struct Client {
    pipe: Connection,
    path: PathBuf,
}

impl Client {
    /// Connects to the herd whose pipe is `path`; it must run as the caller's user or as
    /// LocalSystem.
    pub fn connect(path: &Path) -> Result<Client, ClientError> {
        let pipe = Connection::open(path).map_err(|e| ClientError::from_open(path, e))?;
        pipe.check_server().map_err(ClientError::Untrusted)?;
        Ok(Client {
            pipe,
            path: path.to_path_buf(),
        })
    }

    /// As the Unix client's `patient`, which every Windows client is: it waits for its answer
    /// within its timeout (the system says nothing of a suspended herd).
    pub fn patient(self) -> Client {
        self
    }

    /// The process serving the pipe, as the system reports it (`GetNamedPipeServerProcessId`).
    pub fn server_pid(&self) -> io::Result<u32> {
        self.pipe.server_pid()
    }

    /// Sends `command` and reads its result, waiting at most `timeout` for all of it
    /// (`None`: as long as it takes, for `upgrade` and `stop`).
    pub fn call<R: DeserializeOwned>(
        &mut self,
        command: Command,
        timeout: Option<Duration>,
    ) -> Result<R, ClientError> {
        let line = self.exchange(command, timeout)?;
        decode_answer(&line, &self.path)
    }

    /// The next line herd sends after an answer (`logs`), waiting at most `timeout` (`None`:
    /// as long as it takes); `None` once herd has closed the connection, also amid a line (a
    /// takeover can cut one short): what it cut is no line.
    pub fn next_line(&mut self, timeout: Option<Duration>) -> Result<Option<Vec<u8>>, ClientError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        match self.pipe.read_whole_line(deadline, MAX_ANSWER) {
            Ok(line) => Ok(line),
            Err(ReadError::Late) => Err(ClientError::Timeout {
                path: self.path.clone(),
                after: timeout.unwrap_or_default(),
                pid: self.pipe.server_pid().ok(),
            }),
            Err(ReadError::Io(e)) => Err(ClientError::io(&self.path, "no answer from", e)),
            Err(_) => Err(ClientError::NotHerd {
                path: self.path.clone(),
                why: format!(
                    "it sent more than {} MiB without a line end",
                    MAX_ANSWER >> 20
                ),
            }),
        }
    }

    /// `sockets`: the listening sockets (only those named in `only`, if any), each rebuilt
    /// from the block herd made for this process; with `attach`, this process is registered
    /// as an attached worker. The answer must arrive within `timeout`.
    pub fn sockets(
        &mut self,
        only: Vec<String>,
        attach: bool,
        timeout: Option<Duration>,
    ) -> Result<Vec<(SocketInfo, OwnedSocket)>, ClientError> {
        self.fetch(only, attach, timeout)
            .map(|(sockets, _)| sockets)
    }

    /// `sockets` with `attach`: the sockets, as [`sockets`](Client::sockets) gives them, and
    /// this process's stop request.
    pub fn attach(
        &mut self,
        only: Vec<String>,
        timeout: Option<Duration>,
    ) -> Result<Attached, ClientError> {
        self.fetch(only, true, timeout)
    }

    /// The `sockets` request: the sockets and the stop event's value.
    fn fetch(
        &mut self,
        only: Vec<String>,
        attach: bool,
        timeout: Option<Duration>,
    ) -> Result<Attached, ClientError> {
        let only = (!only.is_empty()).then_some(only);
        let line = self.exchange(Command::Sockets { only, attach }, timeout)?;
        let result: SocketsResult = decode_answer(&line, &self.path)?;
        let not_herd = |why: String| ClientError::NotHerd {
            path: self.path.clone(),
            why,
        };
        let blocks = herd::protocol::shared_blocks(&line).map_err(not_herd)?;
        if blocks.len() != result.sockets.len() {
            return Err(not_herd(format!(
                "it describes {} sockets but shares {}",
                result.sockets.len(),
                blocks.len()
            )));
        }
        // Every block is rebuilt, even after one fails: each holds a socket made for us.
        let rebuilt: Vec<_> = blocks.iter().map(|b| herd_sys::wsa::from_blob(b)).collect();
        let mut sockets = Vec::with_capacity(rebuilt.len());
        for (info, socket) in result.sockets.into_iter().zip(rebuilt) {
            let socket =
                socket.map_err(|e| ClientError::io(&self.path, "cannot rebuild a socket of", e))?;
            sockets.push((info, socket));
        }
        Ok((sockets, result.stop_event))
    }

    /// Sends the request and returns the first line of the answer.
    fn exchange(
        &mut self,
        command: Command,
        timeout: Option<Duration>,
    ) -> Result<Vec<u8>, ClientError> {
        // herd may answer before reading (a refusal) and close: then the write fails, but the
        // answer is waiting to be read, and it says more than "broken pipe".
        let sent = self.pipe.send(&encode_request(command));
        let deadline = timeout.map(|t| Instant::now() + t);
        match self.pipe.read_line(deadline, MAX_ANSWER) {
            Ok(line) if line.is_empty() => Err(match sent {
                Err(e) => ClientError::io(&self.path, "cannot send to", e),
                Ok(()) => ClientError::Closed {
                    path: self.path.clone(),
                },
            }),
            Ok(line) => Ok(line),
            Err(ReadError::Late) => Err(ClientError::Timeout {
                path: self.path.clone(),
                after: timeout.unwrap_or_default(),
                pid: self.pipe.server_pid().ok(),
            }),
            Err(ReadError::TooLong) => Err(ClientError::NotHerd {
                path: self.path.clone(),
                why: format!(
                    "it sent more than {} MiB without a line end",
                    MAX_ANSWER >> 20
                ),
            }),
            Err(ReadError::Io(e)) => Err(ClientError::io(&self.path, "no answer from", e)),
        }
    }
}
