//! `/healthz`, `/readyz`, `--ready-min` and `--drain-delay`: what probes see as workers come
//! and go, and a graceful stop that first tells load balancers.

use std::io::{Read, Write};

use serde_json::Value;

use crate::util::*;

/// Sends `method path` to `addr`; returns the status code and the body.
fn probe(addr: &str, method: &str, path: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let request = format!("{method} {path} HTTP/1.1\r\nHost: test\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let code = head.split(' ').nth(1).and_then(|c| c.parse().ok());
    (
        code.unwrap_or_else(|| panic!("{response}")),
        body.to_string(),
    )
}

/// Polls `GET path` until it answers `code` with `body`.
fn wait_probe(addr: &str, path: &str, code: u16, body: &str) {
    wait_until(
        &format!("{path} to answer {code} {body:?}"),
        || match probe(addr, "GET", path) {
            (c, b) if c == code && b == body => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
}

/// The address of the `--health` endpoint herd logged.
fn health_address(herd: &Herd) -> String {
    let event = herd.wait_for_event("health_ready", &[]);
    event["address"].as_str().unwrap().to_string()
}

#[test]
fn health_alone_serves_the_probes_and_readyz_follows_the_ready_workers() {
    // Ready 2 s after they start: long enough to see each worker not ready yet.
    let herd = sleepers(&[
        "-w",
        "2",
        "--ready-min",
        "2",
        "--ready",
        "delay=2s",
        "--health",
        "127.0.0.1:0",
    ]);
    let health = health_address(&herd);
    assert_eq!(probe(&health, "GET", "/healthz"), (200, "ok\n".into()));
    let (code, body) = probe(&health, "GET", "/readyz");
    assert_eq!(code, 503, "{body}");
    assert!(body.ends_with(" of 2 ready workers needed\n"), "{body}");
    wait_probe(&health, "/readyz", 200, "ok\n");
    // HEAD answers without the body; other methods and paths are refused as such.
    assert_eq!(probe(&health, "HEAD", "/readyz"), (200, String::new()));
    assert_eq!(probe(&health, "POST", "/healthz").0, 405);
    assert_eq!(probe(&health, "GET", "/metrics").0, 404, "no --metrics");
    // A worker dies: not ready until its successor is.
    let victim = herd.started(2)[0].1;
    // SAFETY: kill with a worker's pid.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    wait_probe(&health, "/readyz", 503, "1 of 2 ready workers needed\n");
    wait_probe(&health, "/readyz", 200, "ok\n");
    // Scaled below --ready-min: not ready; back up: ready again.
    let (code, _, stderr) = herd.ctl(&["scale", "1"]);
    assert_eq!(code, 0, "{stderr}");
    wait_probe(&health, "/readyz", 503, "1 of 2 ready workers needed\n");
    herd.ctl(&["scale", "2"]);
    wait_probe(&health, "/readyz", 200, "ok\n");
    assert_eq!(probe(&health, "GET", "/healthz"), (200, "ok\n".into()));
}

/// herd with two hello.py workers, `--drain-delay DELAY`, metrics (and so probes), ready.
fn hello_draining(delay: &str) -> (Herd, String, String) {
    let herd = Herd::start(&[
        "run",
        "-w",
        "2",
        "--ready",
        "notify",
        "--drain-delay",
        delay,
        "--metrics",
        "127.0.0.1:0",
        "-b",
        "http=127.0.0.1:0,nonblocking",
        "--",
        "python3",
        &example("hello.py"),
    ]);
    let metrics = metrics_address(&herd);
    wait_status(&herd, "2 ready workers", |s| settled(s, 2));
    let http = herd.address("http");
    wait_probe(&metrics, "/readyz", 200, "ok\n");
    (herd, metrics, http)
}

#[test]
fn a_drain_keeps_serving_while_readyz_says_no_until_a_second_sigterm() {
    let (mut herd, metrics, http) = hello_draining("1h");
    let load = Load::start(&http, 4, |body| body.contains("pid"));
    herd.signal(libc::SIGTERM);
    let draining = herd.wait_for_event("draining", &[]);
    assert_eq!(draining["signal"], "SIGTERM");
    assert_eq!(
        probe(&metrics, "GET", "/readyz"),
        (503, "draining\n".into())
    );
    assert_eq!(probe(&metrics, "GET", "/healthz"), (200, "ok\n".into()));
    let status: Value = herd.status();
    assert_eq!(status["stopping"], false, "{status}");
    let left = status["draining_ms"].as_u64().expect("draining_ms");
    assert!(left > 3_500_000 && left <= 3_600_000, "{status}");
    // No herd to send work to, as /readyz says.
    let (code, table, stderr) = herd.ctl(&["status"]);
    assert_eq!(code, 3, "{table}");
    assert!(table.contains(", draining (59m"), "{table}");
    assert!(stderr.contains("stopping: draining for 59m"), "{stderr}");
    // New clients are still served during the drain, beside the load's.
    for _ in 0..20 {
        let body = get(&http, "/").expect("served while draining");
        assert!(body.contains("pid"), "{body}");
    }
    load.finish_without_failures(10);
    assert!(
        !herd
            .lines()
            .iter()
            .any(|l| matches!(l, Line::Event(e) if e["event"] == "stopping")),
        "stopped before the delay was over"
    );
    // A second SIGTERM skips the rest of the delay.
    herd.signal(libc::SIGTERM);
    herd.wait_for_event("stopping", &[("signal", "SIGTERM".into())]);
    assert_eq!(herd.wait_exit().code(), Some(0));
}

#[test]
fn herd_stop_waits_out_the_delay_and_stop_fast_skips_it() {
    let (mut herd, metrics, _) = hello_draining("1s");
    let (code, _, stderr) = herd.ctl(&["stop"]);
    assert_eq!(code, 0, "{stderr}");
    let draining = herd.wait_for_event("draining", &[("signal", "herd stop".into())]);
    let stopping = herd.wait_for_event("stopping", &[("signal", "herd stop".into())]);
    assert_eq!(draining["delay"], "1s", "{draining}");
    assert_eq!(stopping["signal"], "herd stop");
    assert_eq!(herd.wait_exit().code(), Some(0));
    drop(metrics);

    let (mut herd, metrics, _) = hello_draining("1h");
    let control = herd.control();
    let first = std::thread::spawn(move || ctl_at(&control, &["stop"]));
    herd.wait_for_event("draining", &[]);
    assert_eq!(
        probe(&metrics, "GET", "/readyz"),
        (503, "draining\n".into())
    );
    let (code, _, stderr) = herd.ctl(&["stop", "--fast"]);
    assert_eq!(code, 0, "{stderr}");
    herd.wait_for_event("stopping_at_once", &[]);
    let (code, _, stderr) = first.join().unwrap();
    assert_eq!(code, 0, "the first herd stop hears the end too: {stderr}");
    assert_eq!(herd.wait_exit().code(), Some(0));
}

#[test]
fn bad_health_values_are_refused_in_one_line() {
    let run = |extra: &[&str]| {
        let mut args = vec!["run", "-b", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--", "true"]);
        args.iter().map(|a| a.to_string()).collect::<Vec<_>>()
    };
    let cases: &[(&[&str], &str)] = &[
        (&["--drain-delay", "-1"], "cannot be negative"),
        (&["--drain-delay=-5s"], "cannot be negative"),
        (&["--drain-delay", "400days"], "at most 365 days"),
        (&["--drain-delay", "soon"], "is not a duration"),
        (
            &["--ready-min", "-1"],
            "--ready-min '-1': the value must be positive",
        ),
        (
            &["--ready-min", "99999999999"],
            "--ready-min '99999999999' is too large",
        ),
        (
            &["-w", "2", "--ready-min", "3"],
            "--ready-min 3: the pool has at most 2 workers",
        ),
        (
            &["-w", "1..4", "--ready-min", "5"],
            "--ready-min 5: the pool has at most 4",
        ),
        (
            &["-w", "1..8", "--ready-min", "2"],
            "--ready-min 2: autoscaling may keep the pool at 1 workers (--workers 1..8)",
        ),
        (&["--health", "nowhere"], "--health"),
    ];
    for (extra, needle) in cases {
        let args = run(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_fails(&args, USAGE, needle);
    }
}

#[test]
fn saturation_counts_busy_workers_over_the_pools_maximum() {
    // Of at most 2 workers, slot 0 spins on a CPU and slot 1 sleeps: about half saturated.
    let herd = Herd::start(&[
        "run",
        "-w",
        "2",
        "--metrics",
        "127.0.0.1:0",
        "-b",
        "127.0.0.1:0",
        "--",
        "sh",
        "-c",
        "if [ {worker} = 0 ]; then while :; do :; done; else exec sleep 1000; fi",
    ]);
    let metrics = metrics_address(&herd);
    wait_status(&herd, "2 ready workers", |s| settled(s, 2));
    let saturation = wait_until("a busy worker in herd_pool_saturation", || {
        let text = get(&metrics, "/metrics").map_err(|e| e.to_string())?;
        let line = text
            .lines()
            .find(|l| l.starts_with("herd_pool_saturation "));
        let value: f64 = line
            .and_then(|l| l.split(' ').nth(1)?.parse().ok())
            .ok_or_else(|| format!("no herd_pool_saturation in:\n{text}"))?;
        match value {
            v if v > 0.01 => Ok(v),
            v => Err(format!("herd_pool_saturation {v}")),
        }
    });
    assert!(
        saturation <= 0.5 + 1e-9,
        "one busy worker of 2: {saturation}"
    );
}

#[test]
fn the_service_manager_hears_stopping_when_the_drain_begins() {
    let dir = tempfile::tempdir().unwrap();
    let notify_path = dir.path().join("systemd-notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut herd = Herd::start_with(|_| {
        let mut cmd = herd_json();
        cmd.args([
            "run",
            "-w",
            "1",
            "--ready",
            "delay=0s",
            "--drain-delay",
            "1h",
        ])
        .args(["-b", "127.0.0.1:0", "--", "sleep", "1000"])
        .env("NOTIFY_SOCKET", &notify_path);
        cmd
    });
    crate::systemd::expect(&notify, "READY=1");
    herd.signal(libc::SIGTERM);
    herd.wait_for_event("draining", &[]);
    crate::systemd::expect(&notify, "STOPPING=1");
    let stopped = herd.lines().into_iter().any(|l| match l {
        Line::Event(e) => e["event"] == "stopping",
        Line::Text(_) => false,
    });
    assert!(
        !stopped,
        "STOPPING=1 came with the drain, not with the stop"
    );
    herd.signal(libc::SIGTERM);
    assert_eq!(herd.wait_exit().code(), Some(0));
}

#[test]
fn a_crowd_on_the_probes_stalls_neither_herd_nor_the_metrics() {
    let herd = sleepers(&[
        "-w",
        "1",
        "--health",
        "127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
    ]);
    let health = health_address(&herd);
    let metrics = metrics_address(&herd);
    // Every slot of --health held by clients that never send a request, refilled as herd
    // closes them, and more waiting.
    let crowd = IdleCrowd::start(&health, 80);
    // A huge request head (no end in sight) is refused, not read for ever.
    let mut huge = std::net::TcpStream::connect(&metrics).unwrap();
    huge.set_read_timeout(Some(TIMEOUT)).unwrap();
    let _ = huge.write_all(&vec![b'x'; 64 * 1024]);
    let mut rest = Vec::new();
    let _ = huge.read_to_end(&mut rest);
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.starts_with("HTTP/1.1 414 "), "{rest}");
    // herd and the metrics listener answer at once, and so do the probes: an idle client
    // makes way for them.
    let started = std::time::Instant::now();
    assert_eq!(probe(&metrics, "GET", "/healthz"), (200, "ok\n".into()));
    assert!(get(&metrics, "/metrics").unwrap().ends_with("# EOF\n"));
    let (code, _, stderr) = herd.ctl(&["status", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    for _ in 0..10 {
        let started = std::time::Instant::now();
        assert_eq!(probe(&health, "GET", "/healthz"), (200, "ok\n".into()));
        let took = started.elapsed();
        assert!(took < std::time::Duration::from_secs(1), "{took:?}");
    }
    crowd.stop();
}

/// Clients that connect and never send a request, reconnected as they are closed.
struct IdleCrowd {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl IdleCrowd {
    fn start(addr: &str, size: usize) -> IdleCrowd {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let (addr, stopped) = (addr.to_string(), std::sync::Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let mut idle: Vec<std::net::TcpStream> = Vec::new();
            while !stopped.load(Ordering::Relaxed) {
                // A closed connection reads as end of file; an open idle one would block.
                let open = |s: &std::net::TcpStream| {
                    let peeked = s.peek(&mut [0u8; 1]);
                    matches!(peeked, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
                };
                idle.retain(open);
                while idle.len() < size {
                    match std::net::TcpStream::connect(&addr) {
                        Ok(stream) => {
                            stream.set_nonblocking(true).unwrap();
                            idle.push(stream);
                        }
                        Err(_) => break,
                    }
                }
                // Pacing, not synchronisation: refill every few milliseconds.
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        });
        IdleCrowd { stop, thread }
    }

    fn stop(self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap();
    }
}

#[test]
fn a_takeover_on_the_old_herds_health_port_is_told_to_choose_another() {
    let old = sleepers(&["-w", "1", "--ready", "delay=0s", "--health", "127.0.0.1:0"]);
    old.started(1);
    let health = health_address(&old);
    let control = old.control();
    let args = [
        "run",
        "--takeover",
        &control,
        "-w",
        "1",
        "--health",
        &health,
        "--",
        "sleep",
        "1000",
    ];
    // Was: "... already in use by herd (pid N): stop it or choose another port; choose
    // another address", twice the same advice, and not why a takeover needs another port.
    let (code, stderr) = herd_output(&args);
    assert_eq!(code, FAILURE, "{stderr}");
    let error = stderr.lines().last().unwrap_or_default();
    assert!(
        error.starts_with("herd: error: cannot serve health on"),
        "{stderr}"
    );
    assert!(error.contains("a takeover binds --health anew"), "{stderr}");
    assert!(!error.contains("choose another address"), "{stderr}");
    // The old herd is untouched.
    wait_probe(&health, "/readyz", 200, "ok\n");
}

#[test]
fn a_takeover_does_not_wait_out_the_old_herds_drain_delay() {
    let mut old = sleepers(&["-w", "1", "--drain-delay", "1h"]);
    old.started(1);
    let control = old.control();
    let new = crate::takeover::takeover(&control, &["-w", "1", "--", "sleep", "1000"]);
    new.wait_for_event("takeover_complete", &[]);
    // The new herd serves the sockets already: the old one stops at once, without a drain.
    assert_eq!(old.wait_exit().code(), Some(0));
    assert!(
        !old.lines()
            .iter()
            .any(|l| matches!(l, Line::Event(e) if e["event"] == "draining")),
        "the old herd drained"
    );
}

#[test]
fn a_reexec_keeps_the_health_socket_and_is_refused_while_draining() {
    let herd = sleepers(&[
        "-w",
        "1",
        "--ready",
        "delay=0s",
        "--drain-delay",
        "1h",
        "--health",
        "127.0.0.1:0",
    ]);
    let health = health_address(&herd);
    wait_probe(&health, "/readyz", 200, "ok\n");
    let (code, _, stderr) = herd.ctl(&["reexec"]);
    assert_eq!(code, 0, "{stderr}");
    // The same address, still served, by the new image.
    assert_eq!(probe(&health, "GET", "/healthz"), (200, "ok\n".into()));
    wait_probe(&health, "/readyz", 200, "ok\n");
    // While a stop waits out its delay, the state would lose it: refused.
    herd.signal(libc::SIGTERM);
    herd.wait_for_event("draining", &[]);
    let (code, _, stderr) = herd.ctl(&["reexec"]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("cannot re-execute while herd is draining before it stops"),
        "{stderr}"
    );
    // SIGUSR2 too, and its log line says what was refused.
    herd.signal(libc::SIGUSR2);
    let refusals = herd.wait_for_events("reexec_refused", 2, &[]);
    for refusal in &refusals {
        let message = refusal["message"].as_str().unwrap_or("");
        assert!(
            message.starts_with("cannot re-execute while herd is draining"),
            "{refusal}"
        );
    }
    // Nor is a pool about to stop upgraded or scaled.
    let (code, _, stderr) = herd.ctl(&["upgrade"]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("herd is draining before it stops"),
        "{stderr}"
    );
    let (code, _, stderr) = herd.ctl(&["scale", "2"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("herd is stopping"), "{stderr}");
    herd.signal(libc::SIGHUP);
    herd.wait_for_event("upgrade_refused", &[]);
    assert_eq!(probe(&health, "GET", "/readyz"), (503, "draining\n".into()));
}

#[test]
fn a_health_address_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let args = [
        "run",
        "--health",
        &address,
        "-b",
        "127.0.0.1:0",
        "--",
        "true",
    ];
    assert_fails(&args, FAILURE, "cannot serve health on");
}
