//! `/healthz`, `/readyz`, `--ready-min` and `--drain-delay` on Windows, under Wine: the same
//! probes from herd.exe's thread of their own, and a stop (a `stop` line, as Ctrl-C and `herd
//! stop` ask) that first turns `/readyz` to 503 while the workers serve on.
#![cfg(windows)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

mod windows_support;

use windows_support::{answer, assert_fails, client, status_json, Herd, TIMEOUT};

/// With `HERD_TEST_WORKER` set, this test binary is the worker herd runs: it answers each
/// connection on the socket `http` with `worker pid N` and `done`, until asked to stop.
#[test]
fn worker() {
    let Some(listener) = windows_support::worker_listener() else {
        return;
    };
    let stop = herd::stop_requested().expect("the stop event");
    windows_support::serve_until_stopped(listener, stop, |mut stream| {
        let _ = writeln!(stream, "worker pid {}", std::process::id());
        let _ = writeln!(stream, "done");
    });
}

/// `GET path` at `addr`: the status code and the body.
fn probe(addr: &str, path: &str) -> (u16, String) {
    try_probe(addr, path, TIMEOUT).unwrap_or_else(|e| panic!("GET {path} at {addr}: {e}"))
}

/// `GET path` at `addr`, answered within `limit`: the status code and the body.
fn try_probe(addr: &str, path: &str, limit: Duration) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(limit))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let code = head.split(' ').nth(1).and_then(|c| c.parse().ok());
    Ok((
        code.unwrap_or_else(|| panic!("{response}")),
        body.to_string(),
    ))
}

/// Polls `GET path` until it answers `code` (within [`TIMEOUT`]); the body. Each try has 3 s,
/// as a prober's timeout: under Wine a connection from a Wine client made while herd starts
/// its workers is now and then left unanswered (see docs/windows.md), and the next one is
/// answered.
fn wait_probe(addr: &str, path: &str, code: u16) -> String {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match try_probe(addr, path, Duration::from_secs(3)) {
            Ok((got, body)) if got == code => return body,
            Ok(_) => {}
            Err(e) => eprintln!("health-stall: GET {path} at {addr} unanswered: {e}"),
        }
        assert!(Instant::now() < deadline, "{path} never answered {code}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn readyz_follows_the_workers_and_a_stop_drains_first() {
    let herd = Herd::start(&[
        "-w",
        "2",
        "--ready-min",
        "2",
        "--health",
        "127.0.0.1:0",
        "--drain-delay",
        "1h",
        "--metrics",
        "127.0.0.1:0",
    ]);
    let metrics = herd.wait_for("metrics_ready")["address"]
        .as_str()
        .unwrap()
        .to_string();
    let at = herd.wait_for("health_ready")["address"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(wait_probe(&at, "/readyz", 200), "ok\n");
    assert_eq!(probe(&at, "/healthz"), (200, "ok\n".to_string()));
    // --metrics serves the probes too, and the pool's saturation.
    assert_eq!(probe(&metrics, "/readyz"), (200, "ok\n".to_string()));
    let (code, text) = probe(&metrics, "/metrics");
    assert_eq!(code, 200, "{text}");
    assert!(text.contains("\nherd_pool_saturation "), "{text}");
    // Below --ready-min: not ready.
    client(&herd.name, &["scale", "1"]);
    assert_eq!(
        wait_probe(&at, "/readyz", 503),
        "1 of 2 ready workers needed\n"
    );
    client(&herd.name, &["scale", "2"]);
    wait_probe(&at, "/readyz", 200);
    // A stop (a `stop` line, as Ctrl-C asks) drains first: not ready, still serving.
    let mut herd = herd;
    herd.ask_to_stop();
    herd.wait_for("draining");
    assert_eq!(probe(&at, "/readyz"), (503, "draining\n".to_string()));
    for _ in 0..10 {
        let answer = answer(&herd.addr);
        assert!(answer.ends_with("done\n"), "{answer:?}");
    }
    let status = status_json(&herd.name);
    let left = status["draining_ms"].as_u64().expect("draining_ms");
    assert!(left > 3_000_000, "{status}");
    // A second stop request skips the rest of the delay.
    client(&herd.name, &["stop"]);
    herd.stop_waited();
}

#[test]
fn ready_min_above_the_pool_is_refused() {
    assert_fails(
        &[
            "run",
            "-w",
            "1..3",
            "--ready-min",
            "4",
            "-b",
            "127.0.0.1:0",
            "--",
            "x",
        ],
        2,
        "--ready-min 4: the pool has at most 3 workers",
    );
}
