//! herd's HTTP endpoints: `--metrics` (`GET /metrics`, and `/healthz` and `/readyz`) and
//! `--health` (`/healthz` and `/readyz` only), served by a thread of their own
//! ([`start`]), so that a probe is answered even while the supervisor's loop is busy or stuck.
//! Each connection is a task, a bounded number at once per listener, with bounded reads and
//! timeouts: a slow or hostile client only ever holds its own slot.
//!
//! Scrapes ask the supervisor for a rendering over a channel (shared by the scrapes waiting at
//! that moment, and reused briefly: see [`metrics`](super::metrics)); health probes are
//! answered from the last [`HealthView`](super::health::HealthView) the loop published.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use super::health::{liveness, readiness, HealthBoard};
use super::metrics::CONTENT_TYPE;
use crate::logging::LogEvent;
use reading::{read_head, Connection, Got, Head, Reading, MAX_HEAD};
use request::{route, Route};

mod reading;
mod request;

/// A scrape waiting for the supervisor's rendering (an error if it could not be encoded).
pub type Scrape = oneshot::Sender<Result<String, std::fmt::Error>>;

/// What a listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `--metrics`: `/metrics` (and `/`), `/healthz` and `/readyz`.
    Metrics,
    /// `--health`: `/healthz` and `/readyz`.
    Health,
}

/// Where the answers come from: the supervisor for scrapes, the board for probes.
#[derive(Clone, Debug)]
pub struct Answers {
    /// Scrapes, answered by the supervisor's loop.
    pub scrapes: mpsc::Sender<Scrape>,
    /// The loop's last published view.
    pub health: HealthBoard,
}

const TEXT: &str = "text/plain; charset=utf-8";

/// The HTTP status, content type and body that answer a scrape: the rendering, or 500 if it
/// could not be encoded, or 503 once herd's loop has ended, as it exits (`None`: no rendering
/// will come; while it drains and stops its workers, it renders as ever).
fn scrape_response(
    rendered: Option<Result<String, std::fmt::Error>>,
) -> (&'static str, &'static str, String) {
    match rendered {
        Some(Ok(text)) => ("200 OK", CONTENT_TYPE, text),
        Some(Err(_)) => (
            "500 Internal Server Error",
            TEXT,
            "herd cannot encode its metrics\n".to_string(),
        ),
        None => (
            "503 Service Unavailable",
            TEXT,
            "herd is stopping\n".to_string(),
        ),
    }
}

/// The status and body that answer a probe: 200 `ok`, or 503 and why not.
fn probe_response(verdict: Result<(), String>) -> (&'static str, String) {
    match verdict {
        Ok(()) => ("200 OK", "ok\n".to_string()),
        Err(why) => ("503 Service Unavailable", format!("{why}\n")),
    }
}

/// The most connections served at once on each listener (fewer when herd has few fds: see
/// [`fdlimit::connection_cap`](crate::fdlimit::connection_cap); on Windows, whose handle limit
/// is 2^24, always this many).
pub const MAX_CONNECTIONS: usize = 64;

/// Serves `listeners` on a thread of its own, with its own event loop, until herd exits. Each
/// is announced in the log (`metrics_ready`, `health_ready`) once its task waits for clients.
pub fn start(
    listeners: Vec<(std::net::TcpListener, Endpoint)>,
    answers: Answers,
) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut registered = Vec::new();
    for (listener, endpoint) in listeners {
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        let _inside = runtime.enter();
        registered.push((TcpListener::from_std(listener)?, endpoint, address));
    }
    std::thread::Builder::new()
        .name("herd-http".to_string())
        .spawn(move || {
            runtime.block_on(async move {
                let mut served = Vec::new();
                let mut ready = Vec::new();
                for (listener, endpoint, address) in registered {
                    served.push(tokio::spawn(serve(listener, endpoint, answers.clone())));
                    ready.push((endpoint, address));
                }
                // Once each task waits for its first client, with its socket polled.
                tokio::task::yield_now().await;
                ready.into_iter().for_each(announce);
                for task in served {
                    let _ = task.await;
                }
            })
        })?;
    Ok(())
}

/// Says in the log that `endpoint` serves at `address`.
fn announce((endpoint, address): (Endpoint, std::net::SocketAddr)) {
    match endpoint {
        Endpoint::Metrics => tracing::info!(
            event = LogEvent::MetricsReady.as_str(),
            address = %address,
            "metrics at http://{address}/metrics"
        ),
        Endpoint::Health => tracing::info!(
            event = LogEvent::HealthReady.as_str(),
            address = %address,
            "health at http://{address}/healthz and /readyz"
        ),
    }
}

/// Serves `endpoint` on `listener`. At most [`MAX_CONNECTIONS`] connections are open at once
/// (and one just accepted): when all are taken, the oldest one that herd has waited on and
/// that has not sent its request head yet is closed for the new one (see [`slot`]), so a crowd
/// of idle clients can neither take the fds that supervision and the control socket need nor
/// keep a probe waiting.
pub async fn serve(listener: TcpListener, endpoint: Endpoint, answers: Answers) {
    let limit = crate::fdlimit::handle_limit();
    let slots = Arc::new(Semaphore::new(crate::fdlimit::connection_cap(
        limit,
        MAX_CONNECTIONS,
    )));
    let reading = Arc::new(Reading::default());
    let lingering = Arc::new(Semaphore::new(LINGERING_AT_ONCE));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Some(permit) = slot(&slots, &reading).await else {
            return;
        };
        let connection = reading.add(Instant::now());
        let (answers, reading) = (answers.clone(), Arc::clone(&reading));
        let lingering = Arc::clone(&lingering);
        tokio::spawn(async move {
            let _permit = permit;
            let ours = Ours {
                reading: &reading,
                connection,
                lingering: &lingering,
            };
            answer_one(stream, endpoint, &answers, ours).await;
        });
    }
}

/// How often a full listener looks again for a connection to close while none may be.
const LOOK_AGAIN: Duration = Duration::from_millis(5);

/// A slot for a connection just accepted (`None` once the slots are gone). When none is free,
/// the connections accepted so far read what they were sent first (one with its whole request
/// is answered, and frees its slot); then the oldest one that herd has waited on in vain is
/// told to close ([`Reading::close_oldest`]), never one just accepted, whose request may be
/// waiting unread: closing a socket with unread data resets the connection.
async fn slot(slots: &Arc<Semaphore>, reading: &Reading) -> Option<OwnedSemaphorePermit> {
    loop {
        if let Ok(permit) = Arc::clone(slots).try_acquire_owned() {
            return Some(permit);
        }
        tokio::task::yield_now().await;
        if let Ok(permit) = Arc::clone(slots).try_acquire_owned() {
            return Some(permit);
        }
        reading.close_oldest(Instant::now());
        tokio::select! {
            permit = Arc::clone(slots).acquire_owned() => return permit.ok(),
            () = tokio::time::sleep(LOOK_AGAIN) => {}
        }
    }
}

/// A connection's place among its listener's: in its head's reading, and the room to linger.
struct Ours<'a> {
    reading: &'a Reading,
    connection: Arc<Connection>,
    lingering: &'a Semaphore,
}

/// Reads one request (for at most [`HEAD_TIMEOUT`], or until `connection` is told to close)
/// and answers it. Told to close, it reads what the client sent first, and answers a whole
/// request after all. A client that sent, or said it sends, more than the head lingers after
/// its answer, as long as no more than [`LINGERING_AT_ONCE`] do.
async fn answer_one(
    mut stream: tokio::net::TcpStream,
    endpoint: Endpoint,
    answers: &Answers,
    ours: Ours<'_>,
) {
    let Ours {
        reading,
        connection,
        lingering,
    } = ours;
    let mut head = Head::default();
    let read = tokio::select! {
        biased;
        read = tokio::time::timeout(
            HEAD_TIMEOUT,
            read_head(&mut stream, &mut head, || connection.waited()),
        ) => Some(read),
        () = connection.closing() => None,
    };
    reading.remove(&connection);
    let (mut stream, got) = match read {
        Some(Ok(Ok(got))) => (stream, got),
        // A client that began its head and did not end it in time is told so; one that sent
        // nothing (a connection opened ahead of need) is closed without a word.
        Some(Err(_elapsed)) if head.begun() => (stream, Got::TimedOut),
        Some(_) => return,
        None => {
            let Ok(mut unregistered) = stream.into_std() else {
                return;
            };
            let got = match head.read_now(&mut unregistered) {
                // A head begun and not ended is told why its connection ends.
                Got::Nothing if head.begun() => Got::Evicted,
                Got::Nothing => return,
                got => got,
            };
            let Ok(stream) = tokio::net::TcpStream::from_std(unregistered) else {
                return;
            };
            (stream, got)
        }
    };
    let answer = async {
        let (response, unread) = match got {
            Got::Whole(head) => {
                let (route, head_only) = route(&head, endpoint);
                let unread = body_follows(&head);
                (answer(route, answers).await.encode(head_only), unread)
            }
            Got::TooLong { line_ended } => (too_long(line_ended).encode(false), true),
            Got::TimedOut => (timed_out().encode(false), false),
            Got::Evicted => (evicted().encode(false), false),
            // More of it is likely on its way: read before closing, so the 400 is not reset.
            Got::NotHttp { binary: true } => (not_http().encode(false), true),
            Got::NotHttp { binary: false } => {
                (answer(Route::BadRequest, answers).await.encode(false), true)
            }
            Got::Nothing => return Ok(()),
        };
        stream.write_all(response.as_bytes()).await?;
        let unread = unread || waiting(&stream);
        if let (true, Ok(_lingers)) = (unread, lingering.try_acquire()) {
            linger(&mut stream).await;
        }
        Ok::<(), std::io::Error>(())
    };
    let _ = tokio::time::timeout(ANSWER_TIMEOUT, answer).await;
}

/// The answer to a head longer than [`MAX_HEAD`]: `414` if not even its request line ended,
/// else `431`.
fn too_long(line_ended: bool) -> Response {
    let kib = MAX_HEAD / 1024;
    match line_ended {
        false => {
            let body = format!("a request line is at most {kib} KiB\n");
            Response::text("414 URI Too Long", "", body)
        }
        true => {
            let body = format!("a request head is at most {kib} KiB\n");
            Response::text("431 Request Header Fields Too Large", "", body)
        }
    }
}

/// The answer to bytes no HTTP/1 request starts with: most often a TLS handshake.
fn not_http() -> Response {
    let body = "not an HTTP/1 request: this port speaks plain HTTP (http://, not https://); send \
                a request line such as GET /healthz HTTP/1.1\n";
    Response::text("400 Bad Request", "", body.to_string())
}

/// The answer to a head that did not end within [`HEAD_TIMEOUT`].
fn timed_out() -> Response {
    let body = format!(
        "the request head did not end within {} s\n",
        HEAD_TIMEOUT.as_secs()
    );
    Response::text("408 Request Timeout", "", body)
}

/// The answer to a head not ended yet when its connection was closed for a new client (every
/// slot taken, [`MAX_CONNECTIONS`] at most).
fn evicted() -> Response {
    let body = "the request head had not ended when its connection was needed for another \
                client (every connection this endpoint takes was busy): send it whole, at once\n";
    Response::text("408 Request Timeout", "", body.to_string())
}

/// Whether the client sent, or said it sends, more than the request head `whole` (as read,
/// with what came after its blank line in the same read): bytes after it, a `Content-Length`
/// other than 0, or a `Transfer-Encoding`. Unread, they would reset the connection as it
/// closes.
fn body_follows(whole: &str) -> bool {
    let ends =
        [("\n\r\n", 3), ("\n\n", 2)].map(|(blank, len)| whole.find(blank).map(|at| at + len));
    let end = ends.into_iter().flatten().min().unwrap_or(whole.len());
    if end < whole.len() {
        return true;
    }
    whole.lines().skip(1).any(|line| {
        let Some((name, value)) = line.split_once(':') else {
            return false;
        };
        let name = name.trim();
        name.eq_ignore_ascii_case("transfer-encoding")
            || (name.eq_ignore_ascii_case("content-length") && value.trim() != "0")
    })
}

/// Whether `stream` holds bytes herd has not read: more than the head that came in a read of
/// its own (a head that ends at a 1 KiB read's end, a request pipelined after it, a body
/// nobody announced), which would reset the connection as it closes.
fn waiting(stream: &tokio::net::TcpStream) -> bool {
    let mut byte = [std::mem::MaybeUninit::uninit()];
    matches!(socket2::SockRef::from(stream).peek(&mut byte), Ok(n) if n > 0)
}

/// How long, and how many bytes, of what a client still sends after its answer (a body, the
/// rest of a too-long head) are read and dropped before the connection is closed: closing a
/// socket with unread data resets the connection, and the client may lose the answer with
/// it. At most [`LINGERING_AT_ONCE`] connections of a listener linger at once; the others are
/// closed at once, as before, so that clients that never close cannot hold the slots.
const LINGER: Duration = Duration::from_millis(250);
const LINGER_BYTES: usize = 64 * 1024;
const LINGERING_AT_ONCE: usize = 8;

/// Ends the answer (FIN), then reads and drops what the client still sends, within
/// [`LINGER`] and [`LINGER_BYTES`], or until it closes.
async fn linger(stream: &mut tokio::net::TcpStream) {
    let _ = stream.shutdown().await;
    let drain = async {
        let mut buf = [0u8; 4096];
        let mut left = LINGER_BYTES;
        while left > 0 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

/// An HTTP response, before it is written.
struct Response {
    status: &'static str,
    /// Extra header lines, each ending in CRLF.
    extra: &'static str,
    content_type: &'static str,
    body: String,
}

impl Response {
    fn text(status: &'static str, extra: &'static str, body: String) -> Response {
        Response {
            status,
            extra,
            content_type: TEXT,
            body,
        }
    }

    /// The response's bytes; for `HEAD`, the head alone (with the body's length).
    fn encode(&self, head_only: bool) -> String {
        let Response {
            status,
            extra,
            content_type,
            body,
        } = self;
        let body = if head_only { "" } else { body.as_str() };
        format!(
            "HTTP/1.1 {status}\r\n{extra}Content-Type: {content_type}\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            self.body.len()
        )
    }
}

/// The answer to `route`.
async fn answer(route: Route, answers: &Answers) -> Response {
    match route {
        Route::Scrape => {
            let (reply, rendered) = oneshot::channel();
            let rendered = match answers.scrapes.send(reply).await {
                Ok(()) => rendered.await.ok(),
                Err(_) => None,
            };
            let (status, content_type, body) = scrape_response(rendered);
            Response {
                status,
                extra: "",
                content_type,
                body,
            }
        }
        Route::Live => {
            let (status, body) = probe_response(liveness(&answers.health.view(), Instant::now()));
            Response::text(status, "", body)
        }
        Route::Ready => {
            let (status, body) = probe_response(readiness(&answers.health.view()));
            Response::text(status, "", body)
        }
        Route::BadRequest => Response::text(
            "400 Bad Request",
            "",
            "not an HTTP/1 request: send a request line such as GET /healthz HTTP/1.1\n"
                .to_string(),
        ),
        Route::BadField(why) => Response::text("400 Bad Request", "", format!("{why}\n")),
        Route::MethodNotAllowed => Response::text(
            "405 Method Not Allowed",
            "Allow: GET, HEAD\r\n",
            "only GET and HEAD are served here\n".to_string(),
        ),
        Route::NotFound(endpoint) => {
            let body = match endpoint {
                Endpoint::Metrics => "try GET /metrics, /healthz or /readyz\n",
                Endpoint::Health => "try GET /healthz or /readyz\n",
            };
            Response::text("404 Not Found", "", body.to_string())
        }
    }
}

/// How long a client has to send its request head once connected.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(2);
/// How long rendering and writing an answer may take.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
#[cfg(test)]
mod tests;
