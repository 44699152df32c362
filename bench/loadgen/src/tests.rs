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
    let (latency, counts) = open_loop(&args, Duration::from_secs(5));
    assert_eq!(counts.ok, 20);
    assert_eq!(counts.total(), 20);
    assert_eq!(counts.bodies, HashMap::from([(b"ok".to_vec(), 20)]));
    assert_eq!(latency.all.len(), 20);
    h.join().unwrap();
}
