//! `--worker-output` and `herd logs` on Windows, under Wine: herd reads each worker's stdout
//! and stderr through pipes, writes whole lines tagged with who wrote them, and keeps the
//! recent ones for `herd logs` over the control pipe.
#![cfg(windows)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use serde_json::Value;

mod windows_support;

use windows_support::{this_test_as_worker, unique_name, Herd, SpawnUnderWine, HERD, TIMEOUT};

/// With `HERD_TEST_WORKER` set, this test binary is the worker herd runs: it says hello on
/// its stdout and stderr, then answers each connection with `worker pid N` until asked to stop.
#[test]
fn worker() {
    if std::env::var_os("HERD_TEST_WORKER").is_none() {
        return;
    }
    let slot = std::env::var("HERD_WORKER").unwrap();
    println!("hello on stdout from {slot}");
    eprintln!("hello on stderr from {slot}");
    let mut sockets = herd::Sockets::from_env().expect("sockets from herd");
    let listener = sockets.take_tcp_listener("http").unwrap().unwrap();
    let stop = herd::stop_requested().expect("the stop event");
    windows_support::serve_until_stopped(listener, stop, |mut stream| {
        let _ = writeln!(stream, "worker pid {}", std::process::id());
    });
}

/// The next JSON line of herd's stderr for which `pred` holds.
fn wait_line(herd: &Herd, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let event = herd
            .next_line(deadline)
            .unwrap_or_else(|| panic!("no {what}"));
        if pred(&event) {
            return event;
        }
    }
}

#[test]
fn json_output_tags_each_line_and_herd_logs_shows_it() {
    let herd = Herd::start(&["-w", "2", "--worker-output", "json"]);
    let mut stderr_lines = Vec::new();
    for _ in 0..2 {
        let line = wait_line(&herd, "a worker's stderr line", |e| {
            e["line"]
                .as_str()
                .is_some_and(|l| l.starts_with("hello on stderr from"))
        });
        stderr_lines.push(line);
    }
    for line in &stderr_lines {
        assert_eq!(line["stream"], "stderr", "{line}");
        assert_eq!(line["generation"], 1, "{line}");
        let slot = line["worker"].as_u64().unwrap();
        assert_eq!(line["line"], format!("hello on stderr from {slot}"));
        assert!(line["pid"].as_u64().unwrap() > 0, "{line}");
    }
    // Its stdout comes through another pipe than its stderr, maybe later: asked again until
    // it is kept (or the timeout).
    let deadline = std::time::Instant::now() + TIMEOUT;
    let (kept, hello) = loop {
        let out = Command::new(HERD)
            .args(["--name", &herd.name, "logs", "--json", "--worker", "1"])
            .output_under_wine()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let kept: Vec<Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        // The test harness writes `test worker ... ` before it on the same line.
        let hello = kept.iter().position(|l| {
            l["line"]
                .as_str()
                .is_some_and(|t| t.ends_with("hello on stdout from 1"))
        });
        match hello {
            Some(i) => break (kept.clone(), kept[i].clone()),
            None if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(50))
            }
            None => panic!("worker 1's stdout line is kept: {kept:?}"),
        }
    };
    assert_eq!(hello["stream"], "stdout");
    assert!(kept.iter().all(|l| l["worker"] == 1), "{kept:?}");
    herd.stop();
}

#[test]
fn prefix_output_tags_each_line_on_herds_stdout() {
    let name = unique_name();
    let mut herd = Command::new(HERD)
        .args([
            "--name",
            &name,
            "run",
            "-w",
            "1",
            "--worker-output",
            "prefix",
        ])
        .args(["-b", "http=127.0.0.1:0", "--"])
        .args(this_test_as_worker())
        .env("HERD_TEST_WORKER", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn_under_wine()
        .unwrap();
    let mut lines = BufReader::new(herd.stdout.take().unwrap()).lines();
    let tagged = loop {
        let line = lines.next().expect("herd's stdout ended").unwrap();
        if line.ends_with("hello on stdout from 0") {
            break line;
        }
    };
    assert!(tagged.starts_with("[worker 0 pid "), "{tagged}");
    assert!(tagged.contains(" gen 1] "), "{tagged}");
    let stop = Command::new(HERD)
        .args(["--name", &name, "stop"])
        .output_under_wine()
        .unwrap();
    assert!(stop.status.success(), "{stop:?}");
    assert!(herd.wait().unwrap().success());
}

#[test]
fn logs_follow_prints_new_lines_until_herd_stops() {
    let herd = Herd::start(&["-w", "1", "--worker-output", "json"]);
    let first = herd.wait_for("worker_started")["pid"].as_u64().unwrap();
    wait_line(&herd, "the worker's stderr line", |e| {
        e["line"] == "hello on stderr from 0"
    });
    let mut follow = Command::new(HERD)
        .args(["--name", &herd.name, "logs", "-f", "--json"])
        .stdout(Stdio::piped())
        .spawn_under_wine()
        .unwrap();
    let mut out = BufReader::new(follow.stdout.take().unwrap()).lines();
    let mut next_from = |pid: u64| loop {
        let line: Value = serde_json::from_str(&out.next().unwrap().unwrap()).unwrap();
        if line["pid"] == pid && line["stream"] == "stderr" {
            return line;
        }
    };
    assert_eq!(next_from(first)["line"], "hello on stderr from 0");
    // A new worker's lines reach the follower as they come.
    let kill = Command::new(HERD)
        .args(["--name", &herd.name, "signal", "KILL"])
        .output_under_wine()
        .unwrap();
    assert!(kill.status.success(), "{kill:?}");
    let second = herd.wait_for("worker_started")["pid"].as_u64().unwrap();
    assert_eq!(next_from(second)["line"], "hello on stderr from 0");
    herd.stop();
    let status = follow.wait().unwrap();
    assert!(
        status.success(),
        "herd logs -f ends when herd stops: {status:?}"
    );
}
