use super::super::health::{HealthView, Stage};
use super::*;
use tokio::io::AsyncReadExt;

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
    // A loop that turns all through the test, however long a loaded machine makes it: a
    // board made now would say it stalled after 10 s (CI saw a crowd test take 11 s).
    let health = HealthBoard::new(1, Instant::now() + Duration::from_secs(3600));
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
            get(addr, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n".into()).await,
            get(addr, "HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n".into()).await,
            get(addr, "hello herd\r\n\r\n".into()).await,
            // An empty line before the request line is left out (RFC 9112, 2.2): it was 400.
            get(addr, "\r\nGET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".into()).await,
        )
    });
    let (scraped, missing, head, garbage, late) = answer.await.expect("answers in time");
    assert_eq!(late, scraped);
    assert!(
        garbage.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{garbage}"
    );
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.ends_with("Content-Length: 16\r\nConnection: close\r\n\r\n"),
        "{head}"
    );
    assert!(scraped.starts_with("HTTP/1.1 200 OK\r\n"), "{scraped}");
    assert!(scraped.contains(CONTENT_TYPE), "{scraped}");
    assert!(scraped.ends_with("\r\n\r\nherd_up 1\n# EOF\n"), "{scraped}");
    assert!(
        missing.starts_with("HTTP/1.1 404 Not Found\r\n"),
        "{missing}"
    );
}

/// Over loopback, on the `--health` endpoint: `OPTIONS *` and `POST /readyz` are told which
/// methods are served, `POST /metrics` (not served there) is not found.
#[tokio::test]
async fn another_method_is_answered_405_with_the_methods_allowed() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (answers, _scrapes) = answers();
    tokio::spawn(serve(listener, Endpoint::Health, answers));
    let allowed = "HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, HEAD\r\n";
    for (request, answered) in [
        ("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", allowed),
        (
            "POST /readyz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
            allowed,
        ),
        (
            "POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
            "HTTP/1.1 404 Not Found\r\n",
        ),
    ] {
        let answer = tokio::time::timeout(ANSWER_TIMEOUT, get(addr, request.into()));
        let answer = answer.await.expect("answers in time");
        assert!(answer.starts_with(answered), "{request:?}: {answer}");
    }
}

#[tokio::test]
async fn a_head_too_long_is_answered_431_not_reset() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (answers, _scrapes) = answers();
    tokio::spawn(serve(listener, Endpoint::Health, answers));
    // 32 KiB of head, more than herd reads: the rest is still being sent, or unread, when
    // herd answers; its close must not reset the connection and lose the answer.
    let long = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX: {}\r\n\r\n",
        "y".repeat(32 * 1024)
    );
    let answer = tokio::time::timeout(ANSWER_TIMEOUT, get(addr, long));
    let answer = answer.await.expect("answers in time");
    assert!(
        answer.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        "{answer}"
    );
    assert!(
        answer.ends_with("\r\n\r\na request head is at most 8 KiB\n"),
        "{answer}"
    );
    // A request line that never ends is a target too long.
    let long = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "y".repeat(32 * 1024));
    let answer = tokio::time::timeout(ANSWER_TIMEOUT, get(addr, long));
    let answer = answer.await.expect("answers in time");
    assert!(
        answer.starts_with("HTTP/1.1 414 URI Too Long\r\n"),
        "{answer}"
    );
    // A body nobody reads is read all the same, so the 405 reaches the client.
    let body = "z".repeat(32 * 1024);
    let post = format!(
        "POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let answer = tokio::time::timeout(ANSWER_TIMEOUT, get(addr, post));
    let answer = answer.await.expect("answers in time");
    assert!(
        answer.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
        "{answer}"
    );
}

/// A client that began its head and did not end it within [`HEAD_TIMEOUT`] is answered 408
/// (it was closed without a word); one that sent nothing at all is closed silently, as a
/// connection opened ahead of need is.
#[tokio::test]
async fn a_head_not_ended_in_time_is_answered_408() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (answers, _scrapes) = answers();
    tokio::spawn(serve(listener, Endpoint::Health, answers));
    let bound = HEAD_TIMEOUT + ANSWER_TIMEOUT;
    let begun = tokio::time::timeout(bound, get(addr, "GET /healthz HTTP/1.1\r\nHo".into()));
    let silent = tokio::time::timeout(bound, get(addr, String::new()));
    let (begun, silent) = tokio::join!(begun, silent);
    let begun = begun.expect("answered in time");
    assert!(
        begun.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{begun}"
    );
    assert!(
        begun.ends_with("\r\n\r\nthe request head did not end within 2 s\n"),
        "{begun}"
    );
    assert_eq!(silent.expect("closed in time"), "");
}

/// A TLS handshake on the probe port (`https://` by mistake) waited [`HEAD_TIMEOUT`] and got
/// 408; it is answered 400 as soon as its first bytes come.
#[tokio::test]
async fn a_tls_handshake_is_answered_400_at_once() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (answers, _scrapes) = answers();
    tokio::spawn(serve(listener, Endpoint::Health, answers));
    let hello = "\x16\x03\x01\x02\x00\x01\x00\x01\x7c\x03\x03".to_string();
    let answer = tokio::time::timeout(HEAD_TIMEOUT / 2, get(addr, hello)).await;
    let answer = answer.expect("answered before a head could time out");
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer}"
    );
    let said = "not an HTTP/1 request: this port speaks plain HTTP (http://, not https://)";
    assert!(answer.contains(said), "{answer}");
}

#[tokio::test]
async fn a_request_pipelined_after_a_head_read_to_its_end_is_read_not_reset() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (answers, _scrapes) = answers();
    tokio::spawn(serve(listener, Endpoint::Health, answers));
    // A head of exactly 1 KiB is read whole by one read, with nothing after it in that read:
    // the request pipelined after it is still unread when herd answers, and its close reset
    // the connection (the client read ECONNRESET after the answer).
    for size in [1024, 2048] {
        let start = "GET /healthz HTTP/1.1\r\nHost: x\r\nX: ";
        let padding = "a".repeat(size - start.len() - 4);
        let pipelined = format!("{start}{padding}\r\n\r\nGET /readyz HTTP/1.1\r\nHost: x\r\n\r\n");
        let answer = tokio::time::timeout(ANSWER_TIMEOUT, get(addr, pipelined));
        let answer = answer.await.expect("answers in time");
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.ends_with("\r\n\r\nok\n"), "{answer}");
    }
}

#[test]
fn a_body_is_seen_after_the_head_or_in_its_fields() {
    assert!(!body_follows("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    assert!(!body_follows("GET / HTTP/1.0\n\n"));
    assert!(!body_follows(
        "POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
    ));
    assert!(body_follows("POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\n"));
    assert!(body_follows("POST / HTTP/1.1\r\ncontent-length:3\r\n\r\n"));
    assert!(body_follows(
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    ));
    assert!(body_follows("GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n"));
    assert!(body_follows("GET / HTTP/1.0\n\nx"));
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
        paused: 0,
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
        paused: 0,
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

/// Whether `client` is still open: nothing to read, and no end of the stream.
fn still_open(client: &mut std::net::TcpStream) -> bool {
    use std::io::Read;
    client.set_nonblocking(true).unwrap();
    matches!(client.read(&mut [0; 1]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// A crowd of idle clients holding every slot does not keep a probe waiting: the oldest of
/// them is closed for it, not the whole crowd after HEAD_TIMEOUT. Told by which clients are
/// closed once the probe is answered, not by how long they took (a timed bound failed on
/// a loaded CI machine, the crowd reconnecting on a thread of its own).
#[tokio::test]
async fn a_probe_is_answered_by_closing_the_oldest_of_a_crowd_holding_every_slot() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (answers, _scrapes) = answers();
    tokio::spawn(serve(listener, Endpoint::Health, answers));
    // The kernel completes each handshake; herd accepts them in order.
    let mut crowd: Vec<_> = (0..MAX_CONNECTIONS)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    let started = Instant::now();
    let probe = get(addr, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".into());
    let answer = tokio::time::timeout(ANSWER_TIMEOUT, probe).await;
    let answer = answer.expect("an answer in time");
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    let took = started.elapsed();
    assert!(!still_open(&mut crowd[0]), "the oldest was not closed");
    // The crowd's own HEAD_TIMEOUT (2 s) closes them all: the probe must come before.
    let newest = crowd.last_mut().unwrap();
    assert!(
        still_open(newest),
        "the whole crowd was closed first ({took:?})"
    );
}

/// Past every slot, a client whose head had begun and not ended when its connection was
/// closed for a new one is told so with a 408, as one that ran out of time is: it was closed
/// without a word.
#[tokio::test]
async fn a_half_sent_head_closed_for_a_new_client_gets_a_408() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (answers, _scrapes) = answers();
    tokio::spawn(serve(listener, Endpoint::Health, answers));
    let mut crowd: Vec<_> = (0..MAX_CONNECTIONS)
        .map(|_| {
            let mut client = std::net::TcpStream::connect(addr).unwrap();
            std::io::Write::write_all(&mut client, b"GET /healthz HTTP/1.1\r\nHost").unwrap();
            client
        })
        .collect();
    let probe = get(addr, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".into());
    let answer = tokio::time::timeout(ANSWER_TIMEOUT, probe).await;
    assert!(answer
        .expect("an answer in time")
        .starts_with("HTTP/1.1 200 OK\r\n"));
    let oldest = &mut crowd[0];
    oldest.set_read_timeout(Some(ANSWER_TIMEOUT)).unwrap();
    let mut told = String::new();
    let _ = std::io::Read::read_to_string(oldest, &mut told);
    assert!(
        told.starts_with("HTTP/1.1 408 Request Timeout\r\n")
            && told.contains("needed for another client"),
        "{told:?}"
    );
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
