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

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use super::health::{liveness, readiness, HealthBoard};
use super::metrics::CONTENT_TYPE;
use crate::logging::LogEvent;
use reading::{read_head, Connection, Head, Reading};

mod reading;

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
/// could not be encoded, or 503 if herd is stopping (`None`: no rendering will come).
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
        tokio::spawn(async move {
            let _permit = permit;
            answer_one(stream, endpoint, &answers, &reading, connection).await;
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

/// Reads one request (for at most [`HEAD_TIMEOUT`], or until `connection` is told to close)
/// and answers it. Told to close, it reads what the client sent first, and answers a whole
/// request after all.
async fn answer_one(
    mut stream: tokio::net::TcpStream,
    endpoint: Endpoint,
    answers: &Answers,
    reading: &Reading,
    connection: Arc<Connection>,
) {
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
    let (mut stream, head) = match read {
        Some(Ok(Ok(Some(whole)))) => (stream, whole),
        Some(_) => return,
        None => {
            let Ok(mut unregistered) = stream.into_std() else {
                return;
            };
            let Some(whole) = head.read_now(&mut unregistered) else {
                return;
            };
            let Ok(stream) = tokio::net::TcpStream::from_std(unregistered) else {
                return;
            };
            (stream, whole)
        }
    };
    let answer = async {
        let (route, head_only) = route(&head, endpoint);
        let response = answer(route, answers).await.encode(head_only);
        stream.write_all(response.as_bytes()).await
    };
    let _ = tokio::time::timeout(ANSWER_TIMEOUT, answer).await;
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
        Route::MethodNotAllowed(allow) => {
            let body = format!("only {} is served here\n", allow.replace(", ", " and "));
            let extra = match allow {
                "GET" => "Allow: GET\r\n",
                _ => "Allow: GET, HEAD\r\n",
            };
            Response::text("405 Method Not Allowed", extra, body)
        }
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
/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    /// `GET /metrics` or `GET /` on `--metrics` (a query string is ignored).
    Scrape,
    /// `GET /healthz`.
    Live,
    /// `GET /readyz`.
    Ready,
    /// Another method on a path served here; the methods allowed.
    MethodNotAllowed(&'static str),
    /// Any other path.
    NotFound(Endpoint),
}

/// Routes a request on `endpoint` by its request line; and whether it is a `HEAD`, which is
/// answered without the body.
fn route(head: &str, endpoint: Endpoint) -> (Route, bool) {
    let mut words = head.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let probe = match path {
        "/healthz" => Some(Route::Live),
        "/readyz" => Some(Route::Ready),
        _ => None,
    };
    let metrics = endpoint == Endpoint::Metrics && matches!(path, "/metrics" | "/");
    let route = match (method, probe) {
        ("GET" | "HEAD", Some(probe)) => probe,
        (_, Some(_)) => Route::MethodNotAllowed("GET, HEAD"),
        ("GET", None) if metrics => Route::Scrape,
        (_, None) if metrics => Route::MethodNotAllowed("GET"),
        _ => Route::NotFound(endpoint),
    };
    let head_only = method == "HEAD" && !matches!(route, Route::MethodNotAllowed(_));
    (route, head_only)
}

#[cfg(test)]
mod tests {
    use super::super::health::{HealthView, Stage};
    use super::*;
    use tokio::io::AsyncReadExt;

    #[test]
    fn requests_are_routed_by_method_and_path_without_the_query() {
        let r = |line: &str| route(&format!("{line}\r\nHost: x\r\n\r\n"), Endpoint::Metrics).0;
        assert_eq!(r("GET /metrics HTTP/1.1"), Route::Scrape);
        assert_eq!(r("GET / HTTP/1.0"), Route::Scrape);
        assert_eq!(r("GET /metrics?x HTTP/1.1"), Route::Scrape);
        assert_eq!(r("GET /metrics?a=1&b=2 HTTP/1.1"), Route::Scrape);
        assert_eq!(r("POST /metrics HTTP/1.1"), Route::MethodNotAllowed("GET"));
        assert_eq!(r("PUT /?x HTTP/1.1"), Route::MethodNotAllowed("GET"));
        assert_eq!(
            r("GET /metricsx HTTP/1.1"),
            Route::NotFound(Endpoint::Metrics)
        );
        assert_eq!(
            r("GET /nope?metrics HTTP/1.1"),
            Route::NotFound(Endpoint::Metrics)
        );
        assert_eq!(r(""), Route::NotFound(Endpoint::Metrics));
        assert_eq!(r("GET /healthz HTTP/1.1"), Route::Live);
        assert_eq!(r("GET /readyz?verbose HTTP/1.1"), Route::Ready);
    }

    #[test]
    fn health_alone_serves_the_probes_get_and_head() {
        let r = |line: &str| route(&format!("{line}\r\n\r\n"), Endpoint::Health);
        assert_eq!(r("GET /healthz HTTP/1.1"), (Route::Live, false));
        assert_eq!(r("HEAD /readyz HTTP/1.1"), (Route::Ready, true));
        assert_eq!(
            r("POST /readyz HTTP/1.1"),
            (Route::MethodNotAllowed("GET, HEAD"), false)
        );
        assert_eq!(
            r("GET /metrics HTTP/1.1"),
            (Route::NotFound(Endpoint::Health), false)
        );
        assert_eq!(
            r("GET / HTTP/1.1"),
            (Route::NotFound(Endpoint::Health), false)
        );
    }

    #[test]
    fn a_head_answer_has_the_length_of_the_body_it_leaves_out() {
        let response = Response::text("200 OK", "", "ok\n".to_string());
        let head = response.encode(true);
        assert!(
            head.ends_with("Content-Length: 3\r\nConnection: close\r\n\r\n"),
            "{head}"
        );
        assert!(response.encode(false).ends_with("\r\n\r\nok\n"));
    }

    fn answers() -> (Answers, mpsc::Receiver<Scrape>) {
        let (scrapes, scrapes_rx) = mpsc::channel::<Scrape>(4);
        let health = HealthBoard::new(1, Instant::now());
        (Answers { scrapes, health }, scrapes_rx)
    }

    async fn get(addr: std::net::SocketAddr, request: String) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer
    }

    #[tokio::test]
    async fn a_scrape_over_loopback_gets_the_supervisors_rendering() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (answers, mut scrapes) = answers();
        tokio::spawn(serve(listener, Endpoint::Metrics, answers));
        // The supervisor's side: one rendering per scrape.
        tokio::spawn(async move {
            while let Some(reply) = scrapes.recv().await {
                let _ = reply.send(Ok("herd_up 1\n# EOF\n".to_string()));
            }
        });
        let answer = tokio::time::timeout(ANSWER_TIMEOUT, async {
            (
                get(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".into()).await,
                get(addr, "GET /nope HTTP/1.1\r\n\r\n".into()).await,
            )
        });
        let (scraped, missing) = answer.await.expect("answers in time");
        assert!(scraped.starts_with("HTTP/1.1 200 OK\r\n"), "{scraped}");
        assert!(scraped.contains(CONTENT_TYPE), "{scraped}");
        assert!(scraped.ends_with("\r\n\r\nherd_up 1\n# EOF\n"), "{scraped}");
        assert!(
            missing.starts_with("HTTP/1.1 404 Not Found\r\n"),
            "{missing}"
        );
    }

    #[tokio::test]
    async fn probes_are_answered_from_the_last_view_without_the_loop() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // No one answers scrapes: probes do not need the loop.
        let (answers, _scrapes) = answers();
        let board = answers.health.clone();
        tokio::spawn(serve(listener, Endpoint::Health, answers));
        let probe = |path: &str| get(addr, format!("GET {path} HTTP/1.0\r\n\r\n"));
        let live = probe("/healthz").await;
        assert!(
            live.starts_with("HTTP/1.1 200 OK\r\n") && live.ends_with("\r\n\r\nok\n"),
            "{live}"
        );
        let ready = probe("/readyz").await;
        assert!(
            ready.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{ready}"
        );
        assert!(
            ready.ends_with("\r\n\r\n0 of 1 ready workers needed\n"),
            "{ready}"
        );
        board.publish(HealthView {
            turned: Instant::now(),
            ready: 1,
            ready_min: 1,
            stage: Stage::Serving,
        });
        assert!(probe("/readyz").await.starts_with("HTTP/1.1 200 OK\r\n"));
        // A loop that stopped turning: /healthz says so.
        let Some(long_ago) = Instant::now().checked_sub(Duration::from_secs(30)) else {
            return;
        };
        board.publish(HealthView {
            turned: long_ago,
            ready: 1,
            ready_min: 1,
            stage: Stage::Serving,
        });
        let stalled = probe("/healthz").await;
        assert!(
            stalled.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{stalled}"
        );
        assert!(
            stalled.ends_with("\r\n\r\nthe supervisor's loop has not turned for 30s\n"),
            "{stalled}"
        );
    }

    /// Connections to `addr`, each with a whole probe already sent, before anything reads them.
    async fn requests_sent(addr: std::net::SocketAddr, count: usize) -> Vec<tokio::net::TcpStream> {
        let mut clients = Vec::new();
        for _ in 0..count {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            clients.push(stream);
        }
        clients
    }

    #[tokio::test]
    async fn a_burst_of_whole_requests_beyond_the_cap_is_answered_not_reset() {
        // Each round on a listener of its own, served once the burst waits in its queue.
        for round in 0..10 {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (answers, _scrapes) = answers();
            // Twice as many as the slots (the listener's backlog is 128), all in the accept
            // queue with their requests when herd starts accepting: none has to make way for
            // another, each is read and answered.
            let clients = requests_sent(addr, 2 * MAX_CONNECTIONS).await;
            let served = tokio::spawn(serve(listener, Endpoint::Health, answers));
            let mut reads = tokio::task::JoinSet::new();
            for mut stream in clients {
                reads.spawn(async move {
                    let mut answer = String::new();
                    stream.read_to_string(&mut answer).await.map(|_| answer)
                });
            }
            let all = tokio::time::timeout(ANSWER_TIMEOUT, reads.join_all());
            let answers = all.await.expect("answers in time");
            served.abort();
            let failed: Vec<_> = answers
                .iter()
                .filter(|a| !matches!(a, Ok(a) if a.starts_with("HTTP/1.1 200 OK\r\n")))
                .collect();
            assert!(
                failed.is_empty(),
                "round {round}: {} of {} not answered: {:?}",
                failed.len(),
                answers.len(),
                failed.first()
            );
        }
    }

    /// Starts clients of `addr` on a thread of their own, as other processes would be: some
    /// that never send anything, some that send a request one byte at a time, never to the
    /// end; each reconnects as soon as it is closed. They stop when the sender is dropped.
    fn crowd(addr: std::net::SocketAddr, idle: usize, slow: usize) -> oneshot::Sender<()> {
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                for _ in 0..idle {
                    tokio::spawn(async move {
                        loop {
                            if let Ok(mut idle) = tokio::net::TcpStream::connect(addr).await {
                                let _ = idle.read_to_end(&mut Vec::new()).await;
                            }
                        }
                    });
                }
                for _ in 0..slow {
                    tokio::spawn(async move {
                        loop {
                            let Ok(mut slow) = tokio::net::TcpStream::connect(addr).await else {
                                continue;
                            };
                            while slow.write_all(b"G").await.is_ok() {
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                        }
                    });
                }
                let _ = stopped.await;
            });
        });
        stop
    }

    #[tokio::test]
    async fn a_probe_is_answered_at_once_despite_a_crowd_that_reconnects() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (answers, _scrapes) = answers();
        tokio::spawn(serve(listener, Endpoint::Health, answers));
        // Twice as many as the slots, and some: more would overflow the listener's backlog
        // (128), where the kernel drops a new client's SYN, and it tries again after 1 s.
        let crowd = crowd(addr, 2 * MAX_CONNECTIONS, MAX_CONNECTIONS / 4);
        // Until the crowd has taken every slot (and been closed to make way for itself).
        tokio::time::sleep(Duration::from_millis(300)).await;
        for _ in 0..10 {
            let started = Instant::now();
            let probe = get(addr, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".into());
            let answer = tokio::time::timeout(ANSWER_TIMEOUT, probe).await;
            let took = started.elapsed();
            let answer = answer.expect("an answer in time");
            assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
            // Not after a crowd's client gave up its slot at the end of HEAD_TIMEOUT.
            assert!(took < Duration::from_secs(1), "{took:?}");
        }
        drop(crowd);
    }

    #[test]
    fn scrapes_get_the_right_status_and_type() {
        let (status, kind, body) = scrape_response(Some(Ok("x 1\n# EOF\n".to_string())));
        assert_eq!((status, kind), ("200 OK", CONTENT_TYPE));
        assert!(body.ends_with("# EOF\n"));
        let (status, kind, _) = scrape_response(Some(Err(std::fmt::Error)));
        assert_eq!(status, "500 Internal Server Error");
        assert!(kind.starts_with("text/plain"));
        let (status, _, body) = scrape_response(None);
        assert_eq!(
            (status, body.as_str()),
            ("503 Service Unavailable", "herd is stopping\n")
        );
    }
}
