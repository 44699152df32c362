//! Windows: the client end of a herd's control pipe, for [`fetch`](crate::fetch) and herd's
//! own commands. Opening it (waiting briefly while every instance is busy), checking who
//! serves it before believing anything it says, and reading an answer line within a bound and
//! a deadline. Public for herd's own client; not part of the library's stable API.
//!
//! Who may serve: the pipe's name is no proof (any process can create one of any name before
//! herd does), so the client asks the system which process serves
//! (`GetNamedPipeServerProcessId`) and which user that process runs as, and accepts only its
//! own user and LocalSystem (as the Unix client accepts its own uid and root). A server whose
//! user cannot be read (another user's process) is refused too.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use herd_sys::windows::peer;
use herd_sys::windows::sid::{Sid, LOCAL_SYSTEM};

use crate::error::{Error, ErrorKind, Result};

/// How long opening waits while every instance of the pipe is busy (`ERROR_PIPE_BUSY`): herd
/// makes the next instance as soon as a client connects, so this is brief.
pub const BUSY_WAIT: Duration = Duration::from_secs(2);

/// `ERROR_FILE_NOT_FOUND`: no pipe of that name.
pub const NO_PIPE: i32 = 2;
/// `ERROR_ACCESS_DENIED`: the pipe's security descriptor does not admit the caller.
pub const ACCESS_DENIED: i32 = 5;
/// `ERROR_PIPE_BUSY`: every instance of the pipe is serving another client.
pub const PIPE_BUSY: i32 = 231;

/// The longest pause between two looks at a quiet pipe.
const MAX_PAUSE: Duration = Duration::from_millis(50);

/// Why [`Connection::read_line`] returned no line.
#[derive(Debug)]
pub enum ReadError {
    /// The deadline passed first.
    Late,
    /// More than the bound arrived without a line end.
    TooLong,
    /// Reading failed.
    Io(io::Error),
}

/// A connection to a control pipe.
#[derive(Debug)]
pub struct Connection {
    pipe: File,
    path: PathBuf,
    /// Bytes read past the last line.
    buffered: Vec<u8>,
}

impl Connection {
    /// Opens the pipe at `path` for reading and writing, retrying for up to [`BUSY_WAIT`]
    /// while it is busy. The error is the system's, for the caller to classify ([`NO_PIPE`],
    /// [`ACCESS_DENIED`], [`PIPE_BUSY`]).
    pub fn open(path: &Path) -> io::Result<Connection> {
        let give_up = Instant::now() + BUSY_WAIT;
        loop {
            match File::options().read(true).write(true).open(path) {
                Ok(pipe) => {
                    return Ok(Connection {
                        pipe,
                        path: path.to_path_buf(),
                        buffered: Vec::new(),
                    })
                }
                Err(e) if e.raw_os_error() == Some(PIPE_BUSY) && Instant::now() < give_up => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Refuses a server that runs as neither the caller's user nor LocalSystem (see the
    /// module docs), with [`ErrorKind::Untrusted`].
    pub fn check_server(&self) -> Result<()> {
        let shown = self.path.display();
        let pid = (self.server_pid())
            .map_err(|e| Error::io(format!("cannot learn who serves {shown}"), e))?;
        let me = Sid::current_user()
            .map_err(|e| Error::io("cannot learn which user this process runs as", e))?;
        let server = Sid::of_process(pid).map_err(|e| {
            Error::new(
                ErrorKind::Untrusted,
                format!(
                    "refusing the server at {shown}: cannot read which user its process {pid} \
                     runs as ({e}), so it is not yours: herd must run as you or as LocalSystem"
                ),
            )
        })?;
        if trusted(server.as_str(), me.as_str()) {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::Untrusted,
            format!(
                "refusing the server at {shown}: its process {pid} runs as {}, which is \
                 neither you ({}) nor LocalSystem; it may be a decoy that took the pipe's name",
                server.as_str(),
                me.as_str()
            ),
        ))
    }

    /// Sends `line`.
    pub fn send(&mut self, line: &[u8]) -> io::Result<()> {
        self.pipe.write_all(line)?;
        self.pipe.flush()
    }

    /// The next line (without its line end), or at the end of the stream what is left
    /// (perhaps nothing), reading at most `max` bytes without a line end, until `deadline`
    /// (`None`: as long as it takes).
    pub fn read_line(
        &mut self,
        deadline: Option<Instant>,
        max: usize,
    ) -> std::result::Result<Vec<u8>, ReadError> {
        self.read_up_to_line_end(deadline, max)
            .map(|line| line.unwrap_or_else(|| std::mem::take(&mut self.buffered)))
    }

    /// [`read_line`](Self::read_line), but `None` at the end of the stream, also amid a line:
    /// a line cut short is no line.
    pub fn read_whole_line(
        &mut self,
        deadline: Option<Instant>,
        max: usize,
    ) -> std::result::Result<Option<Vec<u8>>, ReadError> {
        let line = self.read_up_to_line_end(deadline, max)?;
        if line.is_none() {
            // The end of the stream: what came of a line is no line.
            self.buffered.clear();
        }
        Ok(line)
    }

    /// The next line, or `None` at the end of the stream (what is left stays buffered).
    fn read_up_to_line_end(
        &mut self,
        deadline: Option<Instant>,
        max: usize,
    ) -> std::result::Result<Option<Vec<u8>>, ReadError> {
        let mut scanned = 0;
        let mut pause = Duration::from_millis(1);
        let mut chunk = vec![0u8; 1 << 16];
        loop {
            if let Some(at) = self.buffered[scanned..].iter().position(|&b| b == b'\n') {
                let end = scanned + at;
                let mut line: Vec<u8> = self.buffered.drain(..=end).collect();
                line.pop();
                return Ok(Some(line));
            }
            scanned = self.buffered.len();
            if scanned > max {
                return Err(ReadError::TooLong);
            }
            let waiting = match peer::bytes_waiting(&self.pipe).map_err(ReadError::Io)? {
                None => return Ok(None),
                Some(waiting) => waiting,
            };
            if waiting > 0 {
                // As much as waits, so the read does not block.
                let want = waiting.min(chunk.len());
                let got = self.pipe.read(&mut chunk[..want]).map_err(ReadError::Io)?;
                if got == 0 {
                    return Ok(None);
                }
                self.buffered.extend_from_slice(&chunk[..got]);
                pause = Duration::from_millis(1);
                continue;
            }
            let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if remaining == Some(Duration::ZERO) {
                return Err(ReadError::Late);
            }
            std::thread::sleep(remaining.map_or(pause, |r| r.min(pause)));
            pause = (pause * 2).min(MAX_PAUSE);
        }
    }

    /// The process id of the server (`GetNamedPipeServerProcessId`).
    pub fn server_pid(&self) -> io::Result<u32> {
        peer::server_process_id(&self.pipe)
    }

    /// The pipe's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Whether a server running as `server` may answer a client running as `client`.
fn trusted(server: &str, client: &str) -> bool {
    server == client || server == LOCAL_SYSTEM
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_callers_user_and_local_system_may_serve() {
        let me = "S-1-5-21-1-2-3-1000";
        assert!(trusted(me, me));
        assert!(trusted("S-1-5-18", me));
        assert!(!trusted("S-1-5-21-1-2-3-1001", me));
        assert!(!trusted("S-1-5-32-544", me));
    }
}
