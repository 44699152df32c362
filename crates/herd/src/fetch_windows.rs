//! Windows: fetching sockets from a running herd over its control pipe, for programs that
//! start on their own rather than under `herd run`. herd duplicates each socket for the
//! process it learns from the pipe (`GetNamedPipeClientProcessId`) and sends its
//! `WSAPROTOCOL_INFOW` as hex; this rebuilds them (`WSASocketW(FROM_PROTOCOL_INFO)`). With
//! `attach`, herd copies into the process the event it sets to ask it to stop, which
//! [`stop_requested`](crate::stop_requested) then watches.

use std::os::windows::io::OwnedSocket;
use std::path::Path;
use std::time::{Duration, Instant};

use herd_sys::windows::event::Event;
use herd_sys::windows::handle;

use crate::error::{Error, ErrorKind, Result};
use crate::pipe::{Connection, ReadError, ACCESS_DENIED, NO_PIPE};
use crate::protocol::{parse_sockets_answer, SocketsAnswer, SocketsRequest};

/// The most of an answer read (a herd's answers to `sockets` are a few kilobytes).
const MAX_ANSWER: usize = 1 << 20;

/// How long herd may take to answer in full.
const TIMEOUT: Duration = Duration::from_secs(30);

/// What to fetch.
#[derive(Clone, Debug, Default)]
pub struct FetchOptions {
    /// Only these sockets, by name (empty: all of them).
    pub only: Vec<String>,
    /// Register this process with herd as an attached worker: `herd status` lists it and a
    /// herd stop stops it. herd identifies it by the process id the pipe reports.
    ///
    /// herd's answer carries the event it sets to ask this process to stop, which
    /// [`stop_requested`](crate::stop_requested) watches from then on (as well as the one
    /// `HERD_STOP_EVENT` names, which another herd set, if any).
    pub attach: bool,
}

/// One fetched socket.
#[derive(Debug)]
pub struct Fetched {
    /// Its name.
    pub name: String,
    /// `tcp` or `udp`.
    pub kind: String,
    /// Where it is bound.
    pub address: String,
    /// The socket, not inheritable.
    pub socket: OwnedSocket,
}

/// What attaching to a herd gives ([`attach`]).
#[derive(Debug)]
#[non_exhaustive]
pub struct Attached {
    /// The sockets, as [`fetch`] gives them.
    pub sockets: Vec<Fetched>,
}

/// Fetches the listening sockets of the herd whose control pipe is `control`
/// (`\\.\pipe\herd\SID\NAME` for a herd named NAME run by the user SID, or its `--control`).
///
/// A server that runs as neither the caller's user nor LocalSystem is refused before anything
/// is asked ([`ErrorKind::Untrusted`]). The whole answer must arrive within 30 seconds.
pub fn fetch(control: &Path, options: &FetchOptions) -> Result<Vec<Fetched>> {
    fetch_within(control, options, TIMEOUT)
}

/// [`fetch`] with [`FetchOptions::attach`] (whatever `options` says): registers this process
/// as an attached worker of the herd whose control pipe is `control`, and returns its
/// sockets; [`stop_requested`](crate::stop_requested) is set when that herd asks this process
/// to stop, from then on.
pub fn attach(control: &Path, options: &FetchOptions) -> Result<Attached> {
    let options = FetchOptions {
        attach: true,
        ..options.clone()
    };
    let sockets = fetch_within(control, &options, TIMEOUT)?;
    Ok(Attached { sockets })
}

/// [`fetch`], with the whole answer due within `timeout`.
fn fetch_within(control: &Path, options: &FetchOptions, timeout: Duration) -> Result<Vec<Fetched>> {
    let shown = control.display();
    let mut pipe = Connection::open(control).map_err(|e| match e.raw_os_error() {
        Some(NO_PIPE) => Error::new(
            ErrorKind::Io,
            format!("no herd is running at {shown}: no such pipe"),
        ),
        Some(ACCESS_DENIED) => Error::io(format!("permission denied opening {shown}"), e),
        _ => Error::io(format!("cannot connect to {shown}"), e),
    })?;
    pipe.check_server()?;
    let request = SocketsRequest {
        only: options.only.clone(),
        attach: options.attach,
    };
    // herd may refuse (and close) before reading: the answer is still worth reading.
    let sent = pipe.send(&request.encode());
    let line = match pipe.read_line(Some(Instant::now() + timeout), MAX_ANSWER) {
        Ok(line) => line,
        Err(ReadError::Late) => {
            return Err(not_herd(format!(
                "{shown} did not answer in full within {timeout:?}"
            )))
        }
        Err(ReadError::TooLong) => {
            return Err(not_herd(format!(
                "{shown} sent more than {} MiB without a line end: it is not a herd",
                MAX_ANSWER >> 20
            )))
        }
        Err(ReadError::Io(e)) => return Err(Error::io(format!("cannot read from {shown}"), e)),
    };
    if line.is_empty() {
        return Err(match sent {
            Err(e) => Error::io(format!("cannot send to {shown}"), e),
            Ok(()) => not_herd(format!("{shown} closed the connection early")),
        });
    }
    rebuild(&line, control, options.attach)
}

/// The sockets the answer `line` describes, rebuilt from the blocks it carries; when
/// `attached`, with the stop event it names handed to [`stop_requested`].
///
/// [`stop_requested`]: crate::stop_requested
fn rebuild(line: &[u8], control: &Path, attached: bool) -> Result<Vec<Fetched>> {
    let shown = control.display();
    let bad = |why: String| not_herd(format!("unexpected answer from {shown}: {why}"));
    let given = match parse_sockets_answer(line).map_err(bad)? {
        SocketsAnswer::Sockets(given) => given,
        SocketsAnswer::Refused { code, message } => {
            let kind = match code.as_str() {
                "invalid_argument" => ErrorKind::NotFound,
                _ => ErrorKind::Io,
            };
            return Err(Error::new(
                kind,
                format!("herd at {shown} refused ({code}): {message}"),
            ));
        }
    };
    // The stop event herd copied into this process (an attaching one only) is owned before
    // anything can fail, so that it is closed if something does; the process counts as
    // attached only once every socket was rebuilt.
    let stop = given.stop_event.filter(|_| attached).map(|value| {
        handle::claim(value).map_err(|e| {
            let why = format!("its stop event {value} is not a handle it gave this process");
            Error::io(format!("unexpected answer from {shown}: {why}"), e)
        })
    });
    if given.shared.len() != given.sockets.len() {
        return Err(bad(format!(
            "it describes {} sockets but shares {}",
            given.sockets.len(),
            given.shared.len()
        )));
    }
    // Every block is rebuilt, even after one fails: each holds a socket made for this process.
    let rebuilt: Vec<_> = given
        .shared
        .iter()
        .map(|block| herd_sys::wsa::from_blob(block))
        .collect();
    let fetched = given
        .sockets
        .into_iter()
        .zip(rebuilt)
        .map(|(socket, rebuilt)| {
            let rebuilt = rebuilt.map_err(|e| {
                Error::io(
                    format!("cannot rebuild socket {:?} from {shown}", socket.name),
                    e,
                )
            })?;
            Ok(Fetched {
                name: socket.name,
                kind: socket.kind,
                address: socket.address,
                socket: rebuilt,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    if let Some(stop) = stop.transpose()? {
        crate::stop::attached(Event::from_handle(stop))?;
    }
    Ok(fetched)
}

fn not_herd(message: String) -> Error {
    Error::new(ErrorKind::Io, message)
}

impl crate::Sockets {
    /// Fetches every socket of the herd whose control pipe is `control`, as a [`Sockets`]
    /// set taken by name or index like inherited ones.
    ///
    /// [`Sockets`]: crate::Sockets
    pub fn from_control(control: &Path) -> Result<crate::Sockets> {
        let fetched = fetch(control, &FetchOptions::default())?;
        crate::Sockets::from_fetched(fetched)
    }
}
