//! The one supervisor on Windows, under Wine: a graceful stop lets a request in flight finish,
//! `--grace` ends a worker that ignores its stop request, `--ready notify` and `--watchdog`
//! hear the workers over the notify pipe, `--shm` is shared by every worker, `--metrics`
//! serves herd's figures.
#![cfg(windows)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

mod windows_support;

use windows_support::{Herd, TIMEOUT};

/// With `HERD_TEST_WORKER` set, this test binary is the worker herd runs. It takes the socket
/// `http` and answers each connection with `worker pid N`, then (after `HERD_TEST_SLOW_MS`)
/// `hits N` when herd gave it the shared memory `hits` (a counter every worker adds to), and
/// `done`. It says `READY=1` with `HERD_TEST_NOTIFY` set; asked to stop, it finishes the
/// connection it answers and exits, unless `HERD_TEST_IGNORE_STOP` is set.
#[test]
fn worker() {
    let Some(listener) = windows_support::worker_listener() else {
        return;
    };
    let ignore = std::env::var_os("HERD_TEST_IGNORE_STOP").is_some();
    let stop = herd::stop_requested()
        .expect("the stop event")
        .filter(|_| !ignore);
    if std::env::var_os("HERD_TEST_NOTIFY").is_some() {
        herd::notify::ready().expect("READY=1");
    }
    let slow = std::env::var("HERD_TEST_SLOW_MS").map_or(0, |ms| ms.parse().unwrap());
    let hits = herd::shm("hits").ok();
    windows_support::serve_until_stopped(listener, stop, |mut stream| {
        let _ = writeln!(stream, "worker pid {}", std::process::id());
        std::thread::sleep(Duration::from_millis(slow));
        if let Some(counter) = hits.as_ref().and_then(|m| m.atomic_u64(0)) {
            let _ = writeln!(
                stream,
                "hits {}",
                counter.fetch_add(1, Ordering::SeqCst) + 1
            );
        }
        let _ = writeln!(stream, "done");
    });
}

/// A connection whose answer has begun: the worker has taken it.
fn begun(addr: &str) -> BufReader<TcpStream> {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut reader = BufReader::new(stream);
    let mut first = String::new();
    reader.read_line(&mut first).unwrap();
    assert!(first.starts_with("worker pid "), "{first:?}");
    reader
}

#[test]
fn a_graceful_stop_lets_the_request_in_flight_finish() {
    let mut herd = Herd::start(&["-w", "1", "--env", "HERD_TEST_SLOW_MS=1500"]);
    let mut in_flight = begun(&herd.addr);
    herd.ask_to_stop();
    herd.wait_for("stopping");
    let mut rest = String::new();
    in_flight.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "done\n");
    let exited = herd.wait_for("worker_exited");
    assert!(
        exited["message"].as_str().unwrap().contains("exit code 0"),
        "{exited}"
    );
    herd.stop_waited();
}

#[test]
fn grace_ends_a_worker_that_ignores_its_stop_request() {
    let mut herd = Herd::start(&[
        "-w",
        "1",
        "--grace",
        "1s",
        "--env",
        "HERD_TEST_IGNORE_STOP=1",
    ]);
    herd.ask_to_stop();
    herd.wait_for("stopping");
    // A second stop while the first waits out the grace says what Windows can do instead.
    herd.ask_to_stop();
    let again = herd.wait_for("already_stopping");
    let message = again["message"].as_str().unwrap();
    assert!(
        message.contains("Ctrl-C again or run `herd stop --fast`"),
        "{again}"
    );
    let killed = herd.wait_for("worker_killed");
    assert!(
        killed["message"]
            .as_str()
            .unwrap()
            .contains("did not stop in time"),
        "{killed}"
    );
    herd.stop_waited();
}

#[test]
fn workers_are_ready_when_they_say_so_over_the_notify_pipe() {
    let herd = Herd::start(&[
        "-w",
        "2",
        "--ready",
        "notify",
        "--env",
        "HERD_TEST_NOTIFY=1",
    ]);
    let ready: BTreeSet<u64> = (0..2)
        .map(|_| herd.wait_for("worker_ready")["slot"].as_u64().unwrap())
        .collect();
    assert_eq!(ready, BTreeSet::from([0, 1]));
    herd.stop();
}

#[test]
fn a_worker_that_never_says_ready_is_killed_and_replaced() {
    let herd = Herd::start(&["-w", "1", "--ready", "notify", "--ready-timeout", "1s"]);
    let killed = herd.wait_for("worker_killed");
    assert!(
        killed["message"].as_str().unwrap().contains("ready"),
        "{killed}"
    );
    herd.wait_for("worker_started");
    herd.stop();
}

#[test]
fn the_watchdog_kills_a_worker_that_stops_pinging() {
    let herd = Herd::start(&[
        "-w",
        "1",
        "--ready",
        "notify",
        "--watchdog",
        "1s",
        "--env",
        "HERD_TEST_NOTIFY=1",
    ]);
    herd.wait_for("worker_ready");
    let killed = herd.wait_for("worker_killed");
    assert!(
        killed["message"].as_str().unwrap().contains("watchdog"),
        "{killed}"
    );
    herd.stop();
}

#[test]
fn every_worker_adds_to_the_one_shared_memory() {
    let herd = Herd::start(&["-w", "2", "--shm", "hits=4096"]);
    let mut counts = BTreeSet::new();
    let mut pids = BTreeSet::new();
    let deadline = std::time::Instant::now() + TIMEOUT;
    // Until both workers have answered (which one takes a connection is the system's choice).
    while pids.len() < 2 || counts.len() < 10 {
        assert!(
            std::time::Instant::now() < deadline,
            "only {pids:?} answered"
        );
        let answer = windows_support::answer(&herd.addr);
        let field = |name: &str| {
            answer
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap_or_else(|| panic!("no {name} in {answer:?}"))
                .parse::<u64>()
                .unwrap()
        };
        pids.insert(field("worker pid "));
        counts.insert(field("hits "));
    }
    let asked = counts.len() as u64;
    assert_eq!(counts, (1..=asked).collect(), "every request counted once");
    herd.stop();
}

#[test]
fn metrics_are_served() {
    let herd = Herd::start(&["-w", "2", "--metrics", "127.0.0.1:0"]);
    let at = herd.wait_for("metrics_ready")["address"]
        .as_str()
        .unwrap()
        .to_string();
    herd.wait_for("worker_ready");
    let mut stream = TcpStream::connect(&at).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("\nherd_workers_desired 2\n"), "{reply}");
    // herd's own figures, under the Unix names (Windows' fixed handle limit for max_fds).
    assert!(reply.contains("\nprocess_max_fds 16777216\n"), "{reply}");
    assert!(
        reply.contains("\nprocess_resident_memory_bytes "),
        "{reply}"
    );
    herd.stop();
}

/// Connects in a loop until told to stop; how many answers were whole, and the failures.
fn load(addr: String, stop: Arc<std::sync::atomic::AtomicBool>) -> (usize, Vec<String>) {
    let (mut whole, mut failures) = (0, Vec::new());
    while !stop.load(Ordering::SeqCst) {
        let answer = TcpStream::connect(&addr).and_then(|mut stream| {
            stream.set_read_timeout(Some(TIMEOUT))?;
            let mut answer = String::new();
            stream.read_to_string(&mut answer).map(|_| answer)
        });
        match answer {
            Ok(answer) if answer.ends_with("done\n") => whole += 1,
            Ok(answer) => failures.push(format!("cut answer {answer:?}")),
            Err(e) => failures.push(e.to_string()),
        }
    }
    (whole, failures)
}

#[test]
fn upgrades_and_scaling_under_load_fail_no_connection() {
    let herd = Herd::start(&["-w", "2", "--env", "HERD_TEST_SLOW_MS=20"]);
    for _ in 0..2 {
        herd.wait_for("worker_ready");
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loader = {
        let (addr, stop) = (herd.addr.clone(), Arc::clone(&stop));
        std::thread::spawn(move || load(addr, stop))
    };
    for args in [
        &["upgrade"][..],
        &["scale", "4"],
        &["upgrade"],
        &["scale", "1"],
        &["upgrade"],
    ] {
        windows_support::client(&herd.name, args);
    }
    stop.store(true, Ordering::SeqCst);
    let (whole, failures) = loader.join().unwrap();
    assert!(
        failures.is_empty(),
        "{} failed: {failures:?}",
        failures.len()
    );
    assert!(whole > 10, "only {whole} answers");
    herd.stop();
}

#[test]
fn herd_signal_asks_a_worker_to_stop_or_kills_it_and_herd_restarts_it() {
    let herd = Herd::start(&["-w", "1"]);
    herd.wait_for("worker_ready");
    // What Unix users type: names and numbers for a stop request, or for a kill.
    let stop = "exit code 0";
    let kill = "exit code 1";
    let signals = [
        ("TERM", stop),
        ("15", stop),
        ("stop", stop),
        ("SIGINT", stop),
        ("2", stop),
        ("KILL", kill),
        ("9", kill),
    ];
    for (signal, how) in signals {
        let said = windows_support::client(&herd.name, &["signal", signal]);
        assert!(said.contains("1 worker"), "{said}");
        let exited = herd.wait_for("worker_exited");
        assert!(
            exited["message"].as_str().unwrap().contains(how),
            "{exited}"
        );
        herd.wait_for("worker_started");
    }
    herd.stop();
}
