//! The load generator against loopback servers: outcomes, paths, keep-alive, schedules.

use super::*;
use std::net::TcpListener;

/// A server on loopback that answers `n` connections with `reply`, then returns.
fn serve(n: usize, reply: &'static [u8]) -> (SocketAddr, std::thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let h = std::thread::spawn(move || {
        for _ in 0..n {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; 256];
            let _ = s.read(&mut buf);
            let _ = s.write_all(reply);
        }
    });
    (addr, h)
}

#[test]
fn an_answer_counts_as_ok() {
    let (addr, h) = serve(1, b"HTTP/1.0 200 OK\r\n\r\nhi");
    assert_eq!(one(addr, Duration::from_secs(5), "/"), Ok(b"hi".to_vec()));
    h.join().unwrap();
}

#[test]
fn a_close_without_answer_counts_as_eof() {
    let (addr, h) = serve(1, b"");
    assert_eq!(one(addr, Duration::from_secs(5), "/"), Err(Failure::Eof));
    h.join().unwrap();
}

#[test]
fn a_closed_port_counts_as_refused() {
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    assert_eq!(
        one(addr, Duration::from_secs(5), "/"),
        Err(Failure::Refused)
    );
}

#[test]
fn one_request_in_n_is_long() {
    let args = Args::parse_from([
        "herd-loadgen",
        "127.0.0.1:1",
        "1",
        "1",
        "--long-every",
        "10",
    ]);
    let paths: Vec<&str> = (0..20).map(|i| args.path(i)).collect();
    assert_eq!(paths.iter().filter(|p| **p == "/long").count(), 2);
    assert_eq!(
        Args::parse_from(["herd-loadgen", "127.0.0.1:1", "1", "1"]).path(0),
        "/"
    );
}

#[test]
fn keep_alive_sends_many_requests_on_one_connection() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let h = std::thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        let mut reader = BufReader::new(s.try_clone().unwrap());
        let mut s = s;
        for i in 0..3 {
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap() > 0 && !line.ends_with("\r\n\r\n") {}
            let body = format!("n{i}");
            let close = if i == 2 { "Connection: close\r\n" } else { "" };
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n{close}\r\n");
            s.write_all((head + &body).as_bytes()).unwrap();
        }
    });
    let mut c = KeepAlive::connect(addr, Duration::from_secs(5)).unwrap();
    assert_eq!(c.request("/"), Ok(b"n0".to_vec()));
    assert_eq!(c.request("/long"), Ok(b"n1".to_vec()));
    assert_eq!(
        c.request("/"),
        Err(Failure::Eof),
        "a closing answer ends the connection"
    );
    h.join().unwrap();
}

#[test]
fn the_open_loop_sends_every_scheduled_request() {
    let (addr, h) = serve(20, b"HTTP/1.0 200 OK\r\n\r\nok");
    let args = Args::parse_from([
        "herd-loadgen",
        &addr.to_string(),
        "200",
        "0.1",
        "--threads",
        "2",
        "--shares",
    ]);
    let seen = open_loop(&args, Duration::from_secs(5), Instant::now());
    assert_eq!(seen.counts.ok, 20);
    assert_eq!(seen.counts.total(), 20);
    assert_eq!(seen.counts.bodies, HashMap::from([(b"ok".to_vec(), 20)]));
    assert_eq!(seen.latency.all.len(), 20);
    assert!(seen.timeline.is_none(), "no timeline unless asked for");
    h.join().unwrap();
}

#[test]
fn an_answer_other_than_2xx_is_a_failure_by_status() {
    let (addr, h) = serve(2, b"HTTP/1.0 503 Service Unavailable\r\n\r\nno server");
    assert_eq!(
        one(addr, Duration::from_secs(5), "/"),
        Err(Failure::Status(503))
    );
    let mut counts = Counts::default();
    counts.record(one(addr, Duration::from_secs(5), "/"), false);
    counts.record(Ok(b"fine".to_vec()), false);
    counts.record(Err(Failure::Status(502)), false);
    assert_eq!((counts.ok, counts.http_errors(), counts.total()), (1, 2, 3));
    assert_eq!(counts.http_status_json(), r#"{"502":1,"503":1}"#);
    h.join().unwrap();
}

#[test]
fn status_lines_give_their_code() {
    assert_eq!(status_code(b"HTTP/1.1 204 No Content\r\n"), Ok(204));
    assert_eq!(status_code(b"HTTP/1.0 503\r\n"), Ok(503));
    assert_eq!(status_code(b"HTTP/1.1 2x4 Odd\r\n"), Err(Failure::Other));
    assert_eq!(status_code(b"HTTP/1.1"), Err(Failure::Other));
    assert_eq!(status_code(b"SSH-2.0"), Err(Failure::Eof));
    assert_eq!(status_code(b""), Err(Failure::Eof));
}

#[test]
fn keep_alive_counts_an_error_status_as_a_failure() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let h = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut buf = [0u8; 256];
        let _ = s.read(&mut buf);
        s.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 3\r\n\r\nbad")
            .unwrap();
    });
    let mut c = KeepAlive::connect(addr, Duration::from_secs(5)).unwrap();
    assert_eq!(c.request("/"), Err(Failure::Status(502)));
    h.join().unwrap();
}

#[test]
fn the_timeline_has_every_request_at_its_scheduled_offset() {
    let (addr, h) = serve(10, b"HTTP/1.0 503 Service Unavailable\r\n\r\nbusy");
    let args = Args::parse_from([
        "herd-loadgen",
        &addr.to_string(),
        "100",
        "0.1",
        "--threads",
        "3",
        "--timeline",
        "unused.csv",
    ]);
    let seen = open_loop(&args, Duration::from_secs(5), Instant::now());
    let mut records = seen.timeline.unwrap();
    records.sort_by_key(|r| r.start_us);
    let starts: Vec<u64> = records.iter().map(|r| r.start_us).collect();
    assert_eq!(starts, (0..10).map(|i| i * 10_000).collect::<Vec<_>>());
    assert!(records
        .iter()
        .all(|r| r.failure == Some(Failure::Status(503)) && r.latency_us >= 1));
    assert_eq!(seen.counts.http_errors(), 10);
    h.join().unwrap();
}

#[test]
fn the_closed_loop_timeline_counts_from_the_start() {
    let (addr, h) = serve(3, b"HTTP/1.0 200 OK\r\n\r\nok");
    let args = Args::parse_from([
        "herd-loadgen",
        &addr.to_string(),
        "0",
        "0.3",
        "--concurrency",
        "1",
        "--timeline",
        "unused.csv",
    ]);
    let start = Instant::now() + Duration::from_millis(50);
    let seen = closed_loop(&args, 1, Duration::from_millis(500), start);
    let records = seen.timeline.unwrap();
    assert!(records.len() >= 3, "{records:?}");
    // Counted from the start, 50 ms after the call: well under 25 ms (a busy machine may take
    // a few to run the client thread), where counting from the call would give 50.
    assert!(
        records[0].start_us < 25_000,
        "sent at the start, not before: {records:?}"
    );
    assert!(records[..3].iter().all(|r| r.failure.is_none()));
    assert!(records.windows(2).all(|w| w[0].start_us <= w[1].start_us));
    h.join().unwrap();
}
