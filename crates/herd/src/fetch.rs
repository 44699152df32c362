//! Fetching sockets from a running herd over its control socket (`SCM_RIGHTS`), for programs
//! that start on their own rather than under `herd run`.

use std::io::ErrorKind::{TimedOut, WouldBlock};
use std::io::Write;
use std::os::unix::io::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use herd_sys::fdpass::MAX_FDS_PER_MESSAGE;
use herd_sys::process::Signal;

use crate::error::{Error, ErrorKind, Result};
use crate::protocol::{
    out_of_files_hint, parse_sockets_answer, SocketsAnswer, SocketsGiven, SocketsRequest,
};

/// The most of an answer read (a herd's answers to `sockets` are a few kilobytes).
const MAX_ANSWER: usize = 1 << 20;
/// What to fetch.
#[derive(Clone, Debug, Default)]
pub struct FetchOptions {
    /// Only these sockets, by name (empty: all of them).
    pub only: Vec<String>,
    /// Register this process with herd as an attached worker: `herd status` lists it and a
    /// herd stop sends it the stop signal. herd identifies it by the credentials of the
    /// connection, so register from the process that will serve (it may `exec` later).
    ///
    /// herd's answer names its stop signal ([`attach`] returns it), which
    /// [`stop_requested`](crate::stop_requested) catches from then on instead of the one
    /// `HERD_STOP_SIGNAL` names (which another herd set, if any).
    pub attach: bool,
    /// The uid of the herd's owner, trusted to serve the control socket as root and the
    /// caller's own uid are (see [`trust`](crate::trust)); `None` reads `$HERD_CONTROL_OWNER`.
    pub owner: Option<u32>,
}

/// One fetched socket.
#[derive(Debug)]
pub struct Fetched {
    /// Its name in `LISTEN_FDNAMES`.
    pub name: String,
    /// `tcp`, `udp` or `unix`.
    pub kind: String,
    /// Where it is bound.
    pub address: String,
    /// The socket, close-on-exec.
    pub fd: OwnedFd,
}

/// What attaching to a herd gives ([`attach`]).
#[derive(Debug)]
#[non_exhaustive]
pub struct Attached {
    /// The sockets, as [`fetch`] gives them.
    pub sockets: Vec<Fetched>,
    /// The number of the signal herd stops this process with (its `--stop-signal`:
    /// `libc::SIGTERM` unless it was given another), for a program that handles it itself;
    /// `None` from a herd too old to say. [`stop_requested`](crate::stop_requested) catches it.
    pub stop_signal: Option<i32>,
}

/// How long herd may take to answer in full.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Fetches the listening sockets of the herd whose control socket is `control`.
///
/// The fds arrive close-on-exec; any herd sent beyond those described are closed. A server
/// that runs as an untrusted user (not root, the caller or [`FetchOptions::owner`], and
/// at a path another user could have prepared) is refused before anything is asked
/// ([`trust`](crate::trust), [`ErrorKind::Untrusted`]). The whole answer must arrive within
/// 30 seconds.
///
/// ```no_run
/// use herd::fetch::{fetch, FetchOptions};
///
/// let options = FetchOptions { only: vec!["http".into()], attach: true, ..Default::default() };
/// for socket in fetch("/run/herd/app.sock".as_ref(), &options)? {
///     println!("{} ({}) at {}", socket.name, socket.kind, socket.address);
/// }
/// # Ok::<(), herd::Error>(())
/// ```
pub fn fetch(control: &Path, options: &FetchOptions) -> Result<Vec<Fetched>> {
    fetch_within(control, options, TIMEOUT).map(|attached| attached.sockets)
}

/// [`fetch`] with [`FetchOptions::attach`] (whatever `options` says): registers this process
/// as an attached worker of the herd whose control socket is `control`, and returns its
/// sockets and the signal it stops this process with, which
/// [`stop_requested`](crate::stop_requested) catches from then on.
///
/// ```no_run
/// let options = herd::fetch::FetchOptions::default();
/// let attached = herd::fetch::attach("/run/herd/app.sock".as_ref(), &options)?;
/// let stop = herd::stop_requested()?.expect("always Some on Unix");
/// # Ok::<(), herd::Error>(())
/// ```
pub fn attach(control: &Path, options: &FetchOptions) -> Result<Attached> {
    let options = FetchOptions {
        attach: true,
        ..options.clone()
    };
    fetch_within(control, &options, TIMEOUT)
}

/// [`fetch`], with the whole answer due within `timeout`; when attaching, herd's stop signal
/// is noted for [`stop_requested`](crate::stop_requested).
fn fetch_within(control: &Path, options: &FetchOptions, timeout: Duration) -> Result<Attached> {
    let owner = match options.owner {
        Some(owner) => Some(owner),
        None => crate::trust::owner_from_env()?,
    };
    let stream = UnixStream::connect(control)
        .map_err(|e| Error::io(format!("cannot connect to {}", control.display()), e))?;
    crate::trust::check_server(&stream, control, owner)?;
    let request = SocketsRequest {
        only: options.only.clone(),
        attach: options.attach,
    };
    // herd may refuse (and close) before reading: the answer is still worth reading.
    let sent = (&stream).write_all(&request.encode());
    let answer = Answer {
        stream: &stream,
        control,
        deadline: Instant::now() + timeout,
        timeout,
    };
    let (given, fds) = answer.read(sent)?;
    let stop_signal = match given.stop_signal {
        Some(name) if options.attach => Some(Signal::from_name(&name).ok_or_else(|| {
            bad_answer(
                control,
                &format!("{name:?} is not a signal this program knows"),
            )
        })?),
        _ => None,
    };
    if options.attach {
        crate::stop::attached(stop_signal)?;
    }
    let sockets = given
        .sockets
        .into_iter()
        .zip(fds)
        .map(|(socket, fd)| Fetched {
            name: socket.name,
            kind: socket.kind,
            address: socket.address,
            fd,
        })
        .collect();
    Ok(Attached {
        sockets,
        stop_signal: stop_signal.map(Signal::number),
    })
}

/// The answer to a `sockets` request, being read.
struct Answer<'a> {
    stream: &'a UnixStream,
    control: &'a Path,
    /// When the whole answer is due.
    deadline: Instant,
    timeout: Duration,
}

impl Answer<'_> {
    /// Reads the response line and the fds it describes (and perhaps more, to be closed).
    fn read(&self, sent: std::io::Result<()>) -> Result<(SocketsGiven, Vec<OwnedFd>)> {
        let shown = self.control.display();
        let mut bytes: Vec<u8> = Vec::new();
        let mut fds: Vec<OwnedFd> = Vec::new();
        let mut first: Option<SocketsGiven> = None;
        let mut buf = [0u8; 4096];
        while first.as_ref().map_or(true, |d| fds.len() < d.sockets.len()) {
            let got = self.receive(&mut buf)?;
            fds.extend(got.fds);
            if got.len == 0 {
                return Err(match sent {
                    Err(e) => Error::io(format!("cannot send to {shown}"), e),
                    Ok(()) => not_herd(format!("{shown} closed the connection early")),
                });
            }
            // What follows the line is not read as an answer, but counts against the bound: a
            // peer that sends on without the fds is not a herd.
            let scanned = bytes.len();
            bytes.extend_from_slice(&buf[..got.len]);
            if first.is_none() {
                if let Some(at) = bytes[scanned..].iter().position(|&b| b == b'\n') {
                    first = Some(given(&bytes[..scanned + at], self.control)?);
                }
            }
            if first.is_none() && fds.len() > MAX_FDS_PER_MESSAGE {
                // herd sends one message of fds with its answer line, further ones only after
                // it. Dropped, so closed.
                drop(fds);
                return Err(not_herd(format!(
                    "{shown} sent more than {MAX_FDS_PER_MESSAGE} fds before its answer: it \
                     is not a herd"
                )));
            }
            if bytes.len() > MAX_ANSWER {
                let what = match first {
                    None => "without a line end",
                    Some(_) => "without the sockets its answer describes",
                };
                return Err(not_herd(format!(
                    "{shown} sent more than {} MiB {what}: it is not a herd",
                    MAX_ANSWER >> 20
                )));
            }
        }
        Ok((first.unwrap_or_default(), fds))
    }

    /// The next bytes and fds, if they come before the deadline.
    fn receive(&self, buf: &mut [u8]) -> Result<herd_sys::fdpass::Received> {
        let shown = self.control.display();
        let late = || {
            let timeout = self.timeout;
            not_herd(format!("{shown} did not answer in full within {timeout:?}"))
        };
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(late());
        }
        self.stream
            .set_read_timeout(Some(remaining))
            .map_err(|e| Error::io(format!("cannot use {shown}"), e))?;
        let got = match herd_sys::fdpass::recv_with_fds(self.stream.as_fd(), buf) {
            Ok(got) => got,
            Err(e) if matches!(e.kind(), WouldBlock | TimedOut) => return Err(late()),
            Err(e) => return Err(Error::io(format!("cannot read from {shown}"), e)),
        };
        if got.out_of_files {
            let why = format!(
                "cannot receive the sockets from {shown}: {}",
                out_of_files_hint()
            );
            return Err(Error::new(ErrorKind::Io, why));
        }
        if got.fds_truncated {
            return Err(not_herd(format!(
                "{shown} sent more fds than fit in one message"
            )));
        }
        Ok(got)
    }
}

fn not_herd(message: String) -> Error {
    Error::new(ErrorKind::Io, message)
}

/// Reads the response line: the sockets that follow and the stop signal, or herd's refusal.
fn given(line: &[u8], control: &Path) -> Result<SocketsGiven> {
    match parse_sockets_answer(line).map_err(|e| bad_answer(control, &e))? {
        SocketsAnswer::Sockets(given) => Ok(given),
        SocketsAnswer::Refused { code, message } => {
            let kind = match code.as_str() {
                "invalid_argument" => ErrorKind::NotFound,
                _ => ErrorKind::Io,
            };
            Err(Error::new(
                kind,
                format!("herd at {} refused ({code}): {message}", control.display()),
            ))
        }
    }
}

fn bad_answer(control: &Path, why: &str) -> Error {
    Error::new(
        ErrorKind::Io,
        format!("unexpected answer from {}: {why}", control.display()),
    )
}

impl crate::Sockets {
    /// Fetches every socket of the herd whose control socket is `control`, as a [`Sockets`]
    /// set taken by name or index like inherited ones.
    ///
    /// ```no_run
    /// let mut sockets = herd::Sockets::from_control("/run/herd/app.sock".as_ref())?;
    /// let listener = sockets.take_tcp_listener("http")?.expect("herd binds http");
    /// # Ok::<(), herd::Error>(())
    /// ```
    ///
    /// [`Sockets`]: crate::Sockets
    pub fn from_control(control: &Path) -> Result<crate::Sockets> {
        let fetched = fetch(control, &FetchOptions::default())?;
        Ok(crate::Sockets::from_named(
            fetched.into_iter().map(|f| (f.name, f.fd)).collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// A peer at `path` that answers the first connection with `head`, then `size` bytes of
    /// `x` (and a line end if `line_end`), and closes; it stops early when the client goes
    /// away. Returns how much it sent.
    fn peer(
        path: &Path,
        head: &'static [u8],
        size: usize,
        line_end: bool,
    ) -> std::thread::JoinHandle<usize> {
        let listener = UnixListener::bind(path).unwrap();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let chunk = [b'x'; 1 << 16];
            let mut sent = 0;
            if stream.write_all(head).is_err() {
                return 0;
            }
            while sent < size {
                match stream.write(&chunk) {
                    Ok(n) => sent += n,
                    Err(_) => return sent,
                }
            }
            if line_end {
                let _ = stream.write_all(b"\n");
            }
            sent
        })
    }

    #[test]
    fn an_endless_huge_or_fdless_answer_fails_in_bounded_memory() {
        let scratch = crate::scratch::Scratch::new("herd-fetch-bounds");
        std::fs::create_dir(scratch.path()).unwrap();
        let one_socket: &[u8] = b"{\"version\":1,\"ok\":true,\"result\":{\"sockets\":[{\"name\":\"http\",\"kind\":\"tcp\",\"address\":\"127.0.0.1:1\"}]}}\n";
        let cases: [(&[u8], usize, bool, &str); 3] = [
            // 16 MiB without a line end stands for an endless line.
            (b"", 16 << 20, false, "without a line end"),
            (b"", 8 << 20, true, "without a line end"),
            // An answer, and then endless bytes instead of the socket it describes.
            (
                one_socket,
                16 << 20,
                false,
                "without the sockets its answer describes",
            ),
        ];
        for (i, (head, size, line_end, says)) in cases.into_iter().enumerate() {
            let path = scratch.path().join(format!("{i}.sock"));
            let server = peer(&path, head, size, line_end);
            let e = fetch(&path, &FetchOptions::default()).unwrap_err();
            let text = e.to_string();
            assert!(
                text.contains("sent more than 1 MiB") && text.contains(says),
                "case {i}: {text}"
            );
            assert!(!text.contains('\n'), "one line: {text}");
            // It read no more than the bound and what the socket buffers hold.
            assert!(server.join().unwrap() < (1 << 20) + (8 << 20), "case {i}");
        }
    }

    #[test]
    fn an_attach_answer_with_a_stop_signal_unknown_here_is_refused() {
        let scratch = crate::scratch::Scratch::new("herd-fetch-signal");
        std::fs::create_dir(scratch.path()).unwrap();
        let path = scratch.path().join("signal.sock");
        let answer =
            b"{\"version\":1,\"ok\":true,\"result\":{\"sockets\":[],\"stop_signal\":\"NOPE\"}}\n";
        let server = peer(&path, answer, 0, false);
        let e = attach(&path, &FetchOptions::default()).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("\"NOPE\" is not a signal this program knows"),
            "{e}"
        );
        server.join().unwrap();
    }

    #[test]
    fn a_trickling_answer_fails_at_the_deadline() {
        let scratch = crate::scratch::Scratch::new("herd-fetch-trickle");
        std::fs::create_dir(scratch.path()).unwrap();
        let path = scratch.path().join("trickle.sock");
        let listener = UnixListener::bind(&path).unwrap();
        // One byte every 20 ms, far less than the timeout apart, for up to 10 s.
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            for _ in 0..500 {
                if stream.write_all(b" ").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let start = Instant::now();
        let timeout = Duration::from_millis(300);
        let e = fetch_within(&path, &FetchOptions::default(), timeout).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("did not answer in full within 300ms"),
            "{e}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
        server.join().unwrap();
    }

    #[test]
    fn fds_beyond_a_first_message_before_the_answer_are_refused() {
        let scratch = crate::scratch::Scratch::new("herd-fetch-fds");
        std::fs::create_dir(scratch.path()).unwrap();
        let path = scratch.path().join("fds.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let fds = vec![stream.as_fd(); MAX_FDS_PER_MESSAGE];
            // Two messages, no line end: more fds than herd ever sends before its answer.
            for _ in 0..2 {
                if herd_sys::fdpass::send_with_fds(stream.as_fd(), b" ", &fds).is_err() {
                    return;
                }
            }
            // Held open until the client hangs up.
            let _ = std::io::Read::read(&mut &stream, &mut [0; 64]);
        });
        let e = fetch_within(&path, &FetchOptions::default(), Duration::from_secs(10))
            .unwrap_err()
            .to_string();
        assert!(
            e.ends_with("sent more than 252 fds before its answer: it is not a herd"),
            "{e}"
        );
        server.join().unwrap();
    }
}
