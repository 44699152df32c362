//! What a hostile pass over herd.exe found, run under Wine by scripts/check-windows.sh: many
//! workers started at once, workers that never read their sockets, inputs that can never
//! work, `herd signal KILL` while stopping, the messages a Windows user reads.
#![cfg(windows)]

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod windows_support;

use windows_support::{client, status_json, Herd, SpawnUnderWine, HERD, TIMEOUT};

/// With `HERD_TEST_WORKER` set, this test binary is the worker herd runs: it answers each
/// connection on `http` with its pid and stops when herd asks.
#[test]
fn worker() {
    if std::env::var_os("HERD_TEST_WORKER").is_none() {
        return;
    }
    if std::env::var_os("HERD_TEST_NEVER_READ").is_some() {
        // Never reads its sockets from stdin: waits to be asked to stop.
        let stop = herd::stop_requested().expect("the stop event");
        stop.expect("a stop event").wait();
        return;
    }
    let mut sockets = herd::Sockets::from_env().expect("sockets from herd");
    let stop = herd::stop_requested().expect("the stop event");
    let listener = sockets.take_tcp_listener("http").unwrap().expect("http");
    let pid = std::process::id();
    windows_support::serve_until_stopped(listener, stop, |mut stream| {
        let _ = writeln!(stream, "worker pid {pid}");
    });
}

/// How long a control request may take while herd starts many workers.
const ANSWER_WITHIN: Duration = Duration::from_secs(3);

/// `herd --name NAME ARGS` and how long it took; it must succeed.
fn timed(name: &str, args: &[&str]) -> Duration {
    let asked = Instant::now();
    let out = Command::new(HERD)
        .args(["--name", name])
        .args(args)
        .stdin(Stdio::null())
        .output_under_wine()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "herd {args:?}: {stderr}");
    asked.elapsed()
}

#[test]
fn herd_answers_and_stops_while_it_starts_many_workers() {
    let herd = Herd::start(&["-w", "1"]);
    herd.wait_for("worker_ready");
    // The client's own start under Wine: what the answer may take on top of it.
    let idle = timed(&herd.name, &["status", "--json"]);
    client(&herd.name, &["scale", "64"]);
    herd.wait_for("worker_started");
    let busy = timed(&herd.name, &["status", "--json"]);
    let status = status_json(&herd.name);
    let live = status["workers"].as_array().unwrap().len();
    assert!(live < 64, "every worker had started before status answered");
    assert!(
        busy < idle + ANSWER_WITHIN,
        "status took {busy:?} while workers started (idle: {idle:?})"
    );
    let stopped = timed(&herd.name, &["stop", "--fast"]);
    assert!(stopped < TIMEOUT, "stop --fast took {stopped:?}");
    herd.stop_waited();
}

#[test]
fn a_worker_that_never_reads_its_sockets_holds_only_itself() {
    // 250 sockets are more than a pipe holds (Wine: 64 KiB): writing them waits for a reader.
    let mut run: Vec<String> = ["-w", "1", "--env", "HERD_TEST_NEVER_READ=1", "-b"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    run.push("http=127.0.0.1:0".into());
    for i in 1..250 {
        run.push("-b".into());
        run.push(format!("s{i}=127.0.0.1:0"));
    }
    let run: Vec<&str> = run.iter().map(String::as_str).collect();
    let name = windows_support::unique_name();
    let herd = Herd::start_named(&name, &run, &windows_support::this_test_as_worker());
    herd.wait_for("worker_started");
    let answered = timed(&herd.name, &["status", "--json"]);
    assert!(answered < TIMEOUT, "status took {answered:?}");
    let stopped = timed(&herd.name, &["stop", "--fast"]);
    assert!(stopped < TIMEOUT, "stop --fast took {stopped:?}");
    herd.stop_waited();
}
