//! `--worker-output` and `herd logs` on Windows, under Wine: herd reads each worker's stdout
//! and stderr through pipes, writes whole lines tagged with who wrote them, and keeps the
//! recent ones for `herd logs` over the control pipe.
#![cfg(windows)]

use std::io::Write;
use std::process::Command;

use serde_json::Value;

mod windows_support;

use windows_support::{Herd, HERD, TIMEOUT};

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
    let out = Command::new(HERD)
        .args(["--name", &herd.name, "logs", "--json", "--worker", "1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let kept: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let hello = kept
        .iter()
        // The test harness writes `test worker ... ` before it on the same line.
        .find(|l| {
            l["line"]
                .as_str()
                .is_some_and(|t| t.ends_with("hello on stdout from 1"))
        })
        .unwrap_or_else(|| panic!("worker 1's stdout line is kept: {kept:?}"));
    assert_eq!(hello["stream"], "stdout");
    assert!(kept.iter().all(|l| l["worker"] == 1), "{kept:?}");
    herd.stop();
}
