//! The library's error type: an opaque struct with a stable, non-exhaustive kind.

use std::fmt;
use std::io;

/// What went wrong, in broad strokes; match on it, read [`Error`]'s message for details.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// `LISTEN_FDS`, `LISTEN_PID` or `LISTEN_FDNAMES` is malformed or inconsistent, or
    /// `HERD_CONTROL_OWNER` is not a uid.
    InvalidEnvironment,
    /// No inherited socket has the requested name or index.
    NotFound,
    /// The inherited fd is not the kind of socket that was asked for.
    WrongKind,
    /// A system call failed.
    Io,
    /// The operation needs a single-threaded process (prefork), and threads are running.
    ThreadsRunning,
    /// tokio needs a non-blocking socket and the inherited one is blocking (bind it with
    /// `nonblocking`).
    Blocking,
    /// [`BalancedListener`](crate::balanced::BalancedListener) needs a blocking socket and the
    /// inherited one is non-blocking (bind it without `nonblocking`).
    NonBlocking,
    /// A tokio type was asked for outside a tokio runtime, or inside one built without IO.
    NoRuntime,
    /// The server behind a control socket runs as a user the caller does not trust (see
    /// the `trust` module).
    Untrusted,
}

/// An error from the herd worker library.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<io::Error>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            source: None,
        }
    }

    pub(crate) fn io(message: impl Into<String>, source: io::Error) -> Error {
        Error {
            kind: ErrorKind::Io,
            message: message.into(),
            source: Some(source),
        }
    }

    /// The kind of error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(source) => write!(f, "{}: {}", self.message, source),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<Error> for io::Error {
    fn from(err: Error) -> io::Error {
        let kind = match err.kind {
            ErrorKind::NotFound => io::ErrorKind::NotFound,
            ErrorKind::Io => err
                .source
                .as_ref()
                .map_or(io::ErrorKind::Other, io::Error::kind),
            ErrorKind::Untrusted => io::ErrorKind::PermissionDenied,
            _ => io::ErrorKind::InvalidInput,
        };
        io::Error::new(kind, err)
    }
}

/// A `Result` with the library's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
