//! Reading request heads, and the connections of an HTTP endpoint still waiting for theirs,
//! oldest first: when every slot is taken, the oldest of them that herd has really waited on
//! is told to close for a new client.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::Notify;

/// How long a connection herd found nothing to read on keeps its slot anyway: a client sends
/// its request as soon as it is connected, and this covers the moment between the two.
pub const GRACE: Duration = Duration::from_millis(50);

/// How old a connection herd has not read yet (its task has not run) may be before it is
/// closed for a new client: one just accepted, whose request may already be waiting, keeps
/// its slot.
pub const UNREAD_FOR: Duration = Duration::from_millis(100);

/// The connections still waiting for their request head, oldest first.
#[derive(Default)]
pub struct Reading {
    waiting: Mutex<Waiting>,
}

#[derive(Default)]
struct Waiting {
    next_id: u64,
    oldest_first: VecDeque<Arc<Connection>>,
}

/// A connection waiting for its request head.
pub struct Connection {
    id: u64,
    accepted: Instant,
    /// Its read has found nothing to read, at least once.
    waited: AtomicBool,
    closing: Notify,
}

impl Connection {
    /// Notes that its read found nothing to read.
    pub fn waited(&self) {
        self.waited.store(true, Ordering::Relaxed);
    }

    /// Returns once the connection is told to close for a new client.
    pub async fn closing(&self) {
        self.closing.notified().await;
    }
}

/// Whether a connection accepted `age` ago, still without its request head, may be closed for
/// a new client: once herd has waited on it ([`waited`](Connection::waited)) for
/// [`GRACE`], or [`UNREAD_FOR`] after it was accepted anyway.
fn may_close(age: Duration, waited: bool) -> bool {
    age >= UNREAD_FOR || (waited && age >= GRACE)
}

impl Reading {
    /// Registers a connection accepted at `now`.
    pub fn add(&self, now: Instant) -> Arc<Connection> {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        let connection = Arc::new(Connection {
            id: waiting.next_id,
            accepted: now,
            waited: AtomicBool::new(false),
            closing: Notify::new(),
        });
        waiting.next_id += 1;
        waiting.oldest_first.push_back(Arc::clone(&connection));
        connection
    }

    /// Forgets a connection that has its head (or gave up).
    pub fn remove(&self, connection: &Connection) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        waiting
            .oldest_first
            .retain(|other| other.id != connection.id);
    }

    /// Tells the oldest connection still without its head that [may be
    /// closed](may_close) at `now` to close; whether there was one.
    pub fn close_oldest(&self, now: Instant) -> bool {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        let oldest = waiting.oldest_first.iter().position(|c| {
            let age = now.saturating_duration_since(c.accepted);
            may_close(age, c.waited.load(Ordering::Relaxed))
        });
        let Some(connection) = oldest.and_then(|at| waiting.oldest_first.remove(at)) else {
            return false;
        };
        connection.closing.notify_one();
        true
    }
}

/// The longest request head read, its blank line included.
pub const MAX_HEAD: usize = 8192;

/// A request head, as far as it has come.
#[derive(Default)]
pub struct Head {
    bytes: Vec<u8>,
    /// Where the request line starts: after the empty lines some clients send before it.
    start: usize,
}

/// What a read of a request head got.
#[derive(Debug, PartialEq, Eq)]
pub enum Got {
    /// The whole head.
    Whole(String),
    /// [`MAX_HEAD`] bytes and no end: answered `431`, or `414` when not even the request
    /// line ended (`line_ended`).
    TooLong { line_ended: bool },
    /// Nothing to answer: the client closed first, the read failed, or (read without waiting)
    /// the head is not whole yet.
    Nothing,
    /// The head began (more than empty lines came) but did not end in time: answered `408`.
    TimedOut,
    /// The head began but had not ended when its connection was closed for a new client:
    /// answered `408`, saying why.
    Evicted,
    /// What came cannot begin an HTTP/1 request: answered `400` at once rather than after
    /// waiting for a head that will not come. `binary`: its first word has bytes no text
    /// request has (a TLS handshake); else its request line ended and is none (`SSH-2.0-...`).
    NotHttp { binary: bool },
}

/// What the bytes read so far make.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// The whole head.
    Whole(String),
    /// Not the whole head yet.
    More,
    /// [`MAX_HEAD`] bytes and no end.
    TooLong { line_ended: bool },
    /// Not the beginning of an HTTP/1 request ([`cannot_be_http`]).
    NotHttp { binary: bool },
}

impl Head {
    /// Whether more than empty lines came: a request has begun.
    pub fn begun(&self) -> bool {
        self.bytes.len() > self.start
    }

    /// How much more may be read at most: never past [`MAX_HEAD`].
    fn room(&self) -> usize {
        (MAX_HEAD - self.bytes.len()).min(1024)
    }

    /// Adds `new`, just read (at most [`room`](Head::room) bytes). Empty lines before the
    /// request line are left out, as RFC 9112 (section 2.2) advises a server to, but still
    /// count towards [`MAX_HEAD`].
    fn push(&mut self, new: &[u8]) -> Step {
        let read_before = self.bytes.len();
        self.bytes.extend_from_slice(new);
        self.start += empty_lines(&self.bytes[self.start..]);
        let head = &self.bytes[self.start..];
        if head_ends(head, read_before.saturating_sub(self.start)) {
            Step::Whole(String::from_utf8_lossy(head).into_owned())
        } else if let Some(binary) = cannot_be_http(head) {
            Step::NotHttp { binary }
        } else if self.bytes.len() >= MAX_HEAD {
            let line_ended = head.contains(&b'\n');
            Step::TooLong { line_ended }
        } else {
            Step::More
        }
    }

    /// Reads what `stream` (non-blocking) has now, without waiting: the whole head if that
    /// completes it.
    pub fn read_now(&mut self, stream: &mut impl std::io::Read) -> Got {
        let mut buf = [0u8; 1024];
        loop {
            let room = self.room();
            match stream.read(&mut buf[..room]) {
                Ok(0) => return Got::Nothing,
                Ok(n) => match self.push(&buf[..n]) {
                    Step::Whole(head) => return Got::Whole(head),
                    Step::More => {}
                    Step::TooLong { line_ended } => return Got::TooLong { line_ended },
                    Step::NotHttp { binary } => return Got::NotHttp { binary },
                },
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return Got::Nothing,
            }
        }
    }
}

/// Reads up to the end of the request head, into `head` ([`Got::Nothing`] if the client
/// closes first). Calls `waited` each time the read finds nothing to read.
pub async fn read_head<S: AsyncRead + Unpin>(
    stream: &mut S,
    head: &mut Head,
    waited: impl Fn(),
) -> std::io::Result<Got> {
    let mut buf = [0u8; 1024];
    loop {
        let room = head.room();
        let n = std::future::poll_fn(|cx| {
            let mut read = ReadBuf::new(&mut buf[..room]);
            match Pin::new(&mut *stream).poll_read(cx, &mut read) {
                Poll::Pending => {
                    waited();
                    Poll::Pending
                }
                Poll::Ready(done) => Poll::Ready(done.map(|()| read.filled().len())),
            }
        })
        .await?;
        if n == 0 {
            return Ok(Got::Nothing);
        }
        match head.push(&buf[..n]) {
            Step::Whole(whole) => return Ok(Got::Whole(whole)),
            Step::More => {}
            Step::TooLong { line_ended } => return Ok(Got::TooLong { line_ended }),
            Step::NotHttp { binary } => return Ok(Got::NotHttp { binary }),
        }
    }
}

/// Whether `head` (after its empty lines, not whole) cannot begin an HTTP/1 request, and
/// if so whether it is binary: its first word, its method, has a byte no token has (binary
/// when the first is one: a TLS ClientHello's is 0x16), or its request line has ended and is
/// none (`SSH-2.0-...`, HTTP/0.9's `GET /`). Words end at ASCII whitespace, as
/// [`request_line`](super::request::request_line) splits the line, so that a head is judged
/// the same however its bytes arrive.
fn cannot_be_http(head: &[u8]) -> Option<bool> {
    let method = head
        .split(u8::is_ascii_whitespace)
        .find(|word| !word.is_empty())
        .unwrap_or_default();
    if !method.iter().all(|&b| super::request::is_tchar(b)) {
        // Binary from its first byte on (a TLS record's 0x16), or text gone wrong.
        return Some(!method.first().is_some_and(|&b| super::request::is_tchar(b)));
    }
    let end = head.iter().position(|&b| b == b'\n')?;
    let line = String::from_utf8_lossy(&head[..end]);
    super::request::request_line(&line)
        .is_none()
        .then_some(false)
}

/// Whether `head` holds the blank line that ends a request head (`\r\n\r\n`, or a bare
/// `\n\n`), looking only at what came after its first `scanned` bytes (already looked at).
fn head_ends(head: &[u8], scanned: usize) -> bool {
    let new = &head[scanned.saturating_sub(2)..];
    new.windows(2).any(|w| w == b"\n\n") || new.windows(3).any(|w| w == b"\n\r\n")
}

/// How many bytes the empty lines (`\r\n` or a bare `\n`) at the start of `bytes` take.
fn empty_lines(bytes: &[u8]) -> usize {
    let mut at = 0;
    loop {
        match &bytes[at..] {
            [b'\n', ..] => at += 1,
            [b'\r', b'\n', ..] => at += 2,
            _ => return at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_ends_at_its_blank_line_however_it_arrives() {
        let ends_bytewise =
            |request: &[u8]| (1..=request.len()).find(|&len| head_ends(&request[..len], len - 1));
        let crlf = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(ends_bytewise(crlf), Some(crlf.len()));
        let lf = b"GET /healthz HTTP/1.0\nHost: x\n\n";
        assert_eq!(ends_bytewise(lf), Some(lf.len()));
        assert_eq!(ends_bytewise(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
        assert!(head_ends(crlf, 0));
        assert!(head_ends(lf, lf.len() - 2));
        assert!(!head_ends(crlf, crlf.len()));
    }

    /// `request` read into a [`Head`] as a reader hands it over, at most 1 KiB at a time.
    fn read_whole(request: &[u8]) -> Got {
        Head::default().read_now(&mut std::io::Cursor::new(request))
    }

    #[test]
    fn a_head_is_at_most_8_kib_its_blank_line_included() {
        let with_line = |len: usize| {
            let end = " HTTP/1.1\r\n\r\n";
            let start = "GET /healthz?";
            let padding = "x".repeat(len - start.len() - end.len());
            format!("{start}{padding}{end}")
        };
        let most = with_line(MAX_HEAD);
        assert_eq!(read_whole(most.as_bytes()), Got::Whole(most.clone()));
        // A byte more is refused, however the bytes come; so is a 9,000-byte request line,
        // which a check before each 1 KiB read let through.
        // (The first 8 KiB of a byte more hold the line's end, not the blank line's.)
        let fields_too_long = Got::TooLong { line_ended: true };
        let one_more = with_line(MAX_HEAD + 1);
        assert_eq!(read_whole(one_more.as_bytes()), fields_too_long);
        let line_too_long = Got::TooLong { line_ended: false };
        assert_eq!(read_whole(with_line(9000).as_bytes()), line_too_long);
        let fields = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "y".repeat(MAX_HEAD));
        assert_eq!(read_whole(fields.as_bytes()), fields_too_long);
        assert_eq!(read_whole(b"GET / HTTP/1.1\r\n"), Got::Nothing);
        let mut head = Head::default();
        let long = with_line(MAX_HEAD + 1);
        let (first, last) = long.as_bytes().split_at(MAX_HEAD);
        assert_eq!(head.push(first), Step::TooLong { line_ended: true });
        assert_eq!(head.room(), 0, "{last:?} is not read");
        // A head that ends is whole, even with what follows it in the same read.
        let mut head = Head::default();
        let step = head.push(b"GET / HTTP/1.1\r\n\r\nbody");
        assert_eq!(step, Step::Whole("GET / HTTP/1.1\r\n\r\nbody".to_string()));
    }

    /// A TLS handshake or other bytes no request line starts with waited 2 s for a head,
    /// then got 408; they get 400 as soon as they come.
    #[test]
    fn what_cannot_begin_a_request_is_told_at_once() {
        let tls_hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03";
        let binary = Got::NotHttp { binary: true };
        assert_eq!(read_whole(tls_hello), binary);
        assert_eq!(read_whole(b"(GET / HTTP/1.1"), binary);
        assert_eq!(read_whole(b"\r\n\x00"), binary);
        // A request line that has ended and is none waits for no head either.
        let no_line = Got::NotHttp { binary: false };
        assert_eq!(read_whole(b"SSH-2.0-OpenSSH_9.2\r\n"), no_line);
        assert_eq!(read_whole(b"GET /healthz\r\n"), no_line);
        assert_eq!(read_whole(b"GET /healthz HTTP/2.0\r\nHost: x"), no_line);
        assert_eq!(read_whole(b"GET\x0b/ HTTP/1.1\r\n"), no_line);
        assert_eq!(read_whole(b"GE(T / HTTP/1.1"), no_line);
        // What may still become a request waits for more: its line's checks come once it
        // has ended, however its bytes arrive.
        let partials = [
            &b"GE"[..],
            b"GET",
            b"GET /",
            b"\r",
            b"\r\n",
            b"\r\nGET / HTTP/1.1\r\n",
            b" GET / HTTP/1.1\r\n",
            b"GET\t/ HTTP/1.1\r\n",
            b"GET / HTTP/1.1\nHost: x",
        ];
        for partial in partials {
            assert_eq!(read_whole(partial), Got::Nothing, "{partial:?}");
        }
        // Bytes a byte at a time are told at the first that cannot be.
        let mut head = Head::default();
        assert_eq!(head.push(b"\r"), Step::More);
        assert_eq!(head.push(b"\n"), Step::More);
        assert_eq!(head.push(b"P"), Step::More);
        assert_eq!(head.push(b"\x00"), Step::NotHttp { binary: false });
        let mut head = Head::default();
        assert_eq!(head.push(b"\r\n"), Step::More);
        assert_eq!(head.push(b"\x16"), Step::NotHttp { binary: true });
        let mut head = Head::default();
        assert_eq!(head.push(b"GET /x"), Step::More);
        assert_eq!(head.push(b"\r"), Step::More);
        assert_eq!(head.push(b"\n"), Step::NotHttp { binary: false });
    }

    /// RFC 9112, section 2.2: a server should ignore at least one empty line received before
    /// the request line. One was read as an empty request line (400), and `\r\n\r\n` as a
    /// whole head.
    #[test]
    fn empty_lines_before_the_request_line_are_left_out() {
        let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
        let whole = || Got::Whole(String::from_utf8_lossy(request).into_owned());
        for before in [&b"\r\n"[..], b"\n", b"\r\n\r\n", b"\n\r\n\n"] {
            let sent = [before, request].concat();
            assert_eq!(read_whole(&sent), whole(), "{before:?}");
            // However the bytes come: one at a time, the CR apart from its LF.
            let mut head = Head::default();
            let steps: Vec<Step> = sent.chunks(1).map(|byte| head.push(byte)).collect();
            let (last, before_last) = steps.split_last().unwrap();
            assert_eq!(*last, Step::Whole(String::from_utf8_lossy(request).into()));
            assert!(before_last.iter().all(|s| *s == Step::More), "{steps:?}");
        }
        // Empty lines alone are no head, and count towards the bound.
        assert_eq!(read_whole(b"\r\n\r\n\r\n"), Got::Nothing);
        let endless = b"\r\n".repeat(MAX_HEAD);
        assert_eq!(read_whole(&endless), Got::TooLong { line_ended: false });
        let late = [&b"\r\n".repeat(MAX_HEAD / 2 - 15)[..], request].concat();
        assert_eq!(read_whole(&late), Got::TooLong { line_ended: true });
        // What is not an empty line is not left out: the request line is answered 400.
        let cr = [&b"\r\r\n"[..], request].concat();
        assert!(matches!(read_whole(&cr), Got::Whole(w) if w.starts_with("\r\r\n")));
    }

    #[test]
    fn only_connections_herd_has_waited_on_are_closed_oldest_first() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let reading = Reading::default();
        let first = reading.add(t0);
        let second = reading.add(at(1));
        let third = reading.add(at(2));
        let fourth = reading.add(at(3));
        // Just accepted, never read: their requests may be waiting unread, none is closed.
        assert!(!reading.close_oldest(at(5)));
        // The second and the third found nothing to read; not before the grace is over.
        second.waited();
        third.waited();
        assert!(!reading.close_oldest(at(1) + GRACE - Duration::from_millis(1)));
        // The first has its head: the oldest left that herd waited on is told.
        reading.remove(&first);
        assert!(reading.close_oldest(at(1) + GRACE));
        // The third's grace is not over yet; the fourth was never read, not for long enough.
        assert!(!reading.close_oldest(at(1) + GRACE));
        assert!(reading.close_oldest(at(2) + GRACE));
        assert!(!reading.close_oldest(at(3) + GRACE));
        // One whose task never ran, however long ago it was accepted.
        assert!(reading.close_oldest(at(3) + UNREAD_FOR));
        assert!(!reading.close_oldest(at(1000)));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        // Each was told (a permit is stored for it) once, the first never.
        for told in [&second, &third, &fourth] {
            runtime.block_on(told.closing());
        }
        let told = |n: &Notify| {
            let notified = n.notified();
            tokio::pin!(notified);
            notified.as_mut().enable()
        };
        assert!(!told(&first.closing));
    }
}
