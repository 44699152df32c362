//! What a control client makes of a herd's answer: the result it asked for, or a
//! [`ClientError`] that says why not, told apart by errno and by the protocol's error codes,
//! never by message text. Platform-neutral: the transports (the Unix socket's
//! [`client`](super::client)) read the line.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::objects;
use super::protocol::{ErrorBody, Response, VERSION};

/// Why nothing answers at a control socket's path (or pipe's name).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vacancy {
    /// No file there (`ENOENT`): the herd removed its socket as it stopped, or never ran.
    NoSocket,
    /// A socket nobody listens on (`ECONNREFUSED`): the herd was killed.
    NobodyListening,
    /// No pipe of that name (Windows, `ERROR_FILE_NOT_FOUND`): the herd stopped, was killed,
    /// or never ran.
    NoPipe,
}

impl Vacancy {
    /// What it says about the herd that was there.
    pub fn describe(self) -> &'static str {
        match self {
            Vacancy::NoSocket => "its control socket is gone",
            Vacancy::NobodyListening => "nobody listens on its control socket",
            Vacancy::NoPipe => "its control pipe is gone",
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
        /// The herd's name, when the path is the default one for it ([`ClientError::named`]).
        herd: Option<String>,
    },
    /// The caller may not connect (`EACCES`, `EPERM`). A herd that refuses the caller's
    /// credentials answers [`Refused`](ClientError::Refused) with `permission_denied`.
    PermissionDenied {
        /// The control socket's path.
        path: PathBuf,
        /// Whether a directory on the way is what the caller may not search (the socket file
        /// itself is then not even seen).
        directory: bool,
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
            ClientError::NotRunning {
                path,
                why,
                herd: Some(name),
            } => {
                write!(
                f,
                "no herd named {name} is running ({} {}): start one with 'herd run', or select \
                 it with --name or --control",
                if *why == Vacancy::NoPipe { "pipe" } else { "socket" },
                path.display()
            )
            }
            ClientError::NotRunning { path, .. } => write!(
                f,
                "no herd is running at {}: start one with 'herd run', or select it with --name \
                 or --control",
                path.display()
            ),
            ClientError::PermissionDenied {
                path,
                directory: true,
            } => write!(
                f,
                "permission denied reaching {}: your user may not search a directory on its \
                 way; run this as a user who may (herd's, or an administrator), or let yours \
                 search it (chmod)",
                path.display()
            ),
            ClientError::PermissionDenied { path, .. } => {
                write!(
                    f,
                    "permission denied opening {}: run this as herd's user (or an \
                     administrator), or start herd with --control-allow-user naming yours",
                    path.display()
                )
            }
            ClientError::NotHerd { path, why } => {
                write!(
                    f,
                    "unexpected answer from {}: {}",
                    path.display(),
                    shown(why)
                )
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
                shown(&error.message)
            ),
        }
    }
}

impl std::error::Error for ClientError {}

/// The most of a text from the other end that an error shows: herd's error line goes through
/// a queue of 1 MiB that drops a longer line whole, and a terminal needs no more.
const MOST_SHOWN: usize = 64 << 10;

/// `text`, from whatever answers at the path (what serde_json says of it quotes it), escaped
/// so that it stays on the error's one line and cannot drive the terminal, and cut after
/// [`MOST_SHOWN`] bytes.
pub(crate) fn shown(text: &str) -> String {
    let mut end = text.len().min(MOST_SHOWN);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let escaped = crate::text::escape(&text[..end]);
    match text.len() - end {
        0 => escaped.into_owned(),
        cut => format!("{escaped}... ({cut} more bytes)"),
    }
}

impl ClientError {
    /// `what` failed on the herd at `path`, with `source`.
    pub(super) fn io(path: &Path, what: &'static str, source: io::Error) -> ClientError {
        ClientError::Io {
            path: path.to_path_buf(),
            what,
            source,
        }
    }

    /// This error, saying which herd is not running when `name` is given: the path was the
    /// default one for the herd of that name.
    pub fn named(self, name: Option<&str>) -> ClientError {
        match self {
            ClientError::NotRunning { path, why, .. } if name.is_some() => {
                ClientError::NotRunning {
                    path,
                    why,
                    herd: name.map(str::to_string),
                }
            }
            other => other,
        }
    }
}

/// Reads one response line (without its newline) as the result `R` of the command sent, or
/// the error herd answered.
///
/// An answer is herd's only if it is UTF-8 JSON of protocol version 1 (the integer) that names
/// no member twice (readers disagree on which of two counts), and whose every struct (the
/// envelope, the result, what they hold) is a JSON object, not an array read member by member
/// in order, as the worker library's reader (`herd::protocol`) requires too.
pub fn decode_answer<R: DeserializeOwned>(line: &[u8], path: &Path) -> Result<R, ClientError> {
    let text = match std::str::from_utf8(line) {
        Ok(text) => text.trim(),
        Err(_) => return Err(not_herd(path, "it is not UTF-8".into())),
    };
    if text.is_empty() {
        let path = path.to_path_buf();
        return Err(ClientError::Closed { path });
    }
    // One parse straight into `R` (a status of 4096 workers took 16 ms through a `Value`
    // tree, 3 ms so); an answer that does not parse so is read as any JSON to say why. Either
    // way every struct, the envelope included, is read from an object only
    // ([`objects`](super::objects)): serde_json would take an array for one.
    if let Ok(response) = objects::from_str::<Response<R>>(text) {
        return settle(response, text, path, Ok);
    }
    match objects::from_str::<Response<serde_json::Value>>(text) {
        Ok(response) => settle(response, text, path, objects::from_value),
        // A name given twice comes first here too, as in `settle`: an envelope that names
        // `ok` twice is refused in the words used for any other member named twice, not in
        // serde's ("duplicate field `ok`"). Only an answer already refused pays for the look.
        Err(e) => match super::named_twice::named_twice(text.as_bytes()) {
            Ok(Some(name)) => Err(names_twice(path, &name)),
            _ => Err(not_herd(path, e.to_string())),
        },
    }
}

/// The answer `text`, parsed as `response`, as the result `R` (`into` makes one of its result)
/// or the error herd answered.
fn settle<T, R: DeserializeOwned>(
    response: Response<T>,
    text: &str,
    path: &Path,
    into: impl FnOnce(T) -> serde_json::Result<R>,
) -> Result<R, ClientError> {
    // Nested too deep to be read for members named twice, in a part the parse skipped (a
    // member `R` does not know): refused with the reason a read as any JSON gives.
    match super::named_twice::named_twice(text.as_bytes()) {
        Ok(None) => {}
        Ok(Some(name)) => return Err(names_twice(path, &name)),
        Err(e) => return Err(not_herd(path, e.to_string())),
    }
    if response.version != VERSION {
        let version = response.version;
        let why = format!("it speaks protocol version {version}, not {VERSION}");
        return Err(not_herd(path, why));
    }
    let path = path.to_path_buf();
    match response {
        Response {
            ok: true, result, ..
        } => match result {
            Some(result) => into(result),
            None => objects::from_value(serde_json::Value::Null),
        }
        .map_err(|e| ClientError::NotHerd {
            path,
            why: e.to_string(),
        }),
        Response {
            error: Some(error), ..
        } => Err(ClientError::Refused { path, error }),
        Response { error: None, .. } => Err(ClientError::NotHerd {
            path,
            why: "herd refused without saying why".to_string(),
        }),
    }
}

/// The answer at `path` is not herd's: it names `name` twice.
fn names_twice(path: &Path, name: &str) -> ClientError {
    not_herd(path, format!("it names {name:?} twice"))
}

/// The answer at `path` is not herd's, for the reason `why`.
fn not_herd(path: &Path, why: String) -> ClientError {
    let path = path.to_path_buf();
    ClientError::NotHerd { path, why }
}
