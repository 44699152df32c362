//! Recycling on Windows, under Wine: `--max-lifetime` and `--max-memory` (the working set)
//! replace a worker by a successor first, as on Unix, and `herd status` shows each worker's
//! memory.
#![cfg(windows)]

use std::io::Write;

mod windows_support;

use windows_support::{ask, status_until, Herd};

/// With `HERD_TEST_WORKER` set, this test binary is the worker herd runs. It takes the socket
/// `http` and answers each connection with `worker pid N`, keeping `HERD_TEST_LEAK_KB` KiB of
/// written memory per connection; asked to stop, it finishes the connection it answers.
#[test]
fn worker() {
    let Some(listener) = windows_support::worker_listener() else {
        return;
    };
    let stop = herd::stop_requested().expect("the stop event");
    let leak: usize = std::env::var("HERD_TEST_LEAK_KB").map_or(0, |kb| kb.parse().unwrap());
    let mut kept: Vec<Vec<u8>> = Vec::new();
    windows_support::serve_until_stopped(listener, stop, |mut stream| {
        kept.push(vec![7u8; leak * 1024]);
        let _ = writeln!(stream, "worker pid {}", std::process::id());
    });
}

#[test]
fn lifetimes_recycle_each_worker_after_its_successor_is_ready() {
    let herd = Herd::start(&[
        "-w",
        "2",
        "--max-lifetime",
        "2s,jitter=2s",
        "--min-ready",
        "0",
    ]);
    let first = herd.answers(2, 2);
    let recycle = herd.wait_for("recycle");
    assert_eq!(recycle["reason"], "lifetime", "{recycle}");
    let old = recycle["pid"].as_u64().unwrap() as u32;
    assert!(first.contains(&old), "{recycle} {first:?}");
    let why = recycle["why"].as_str().unwrap();
    assert!(
        why.contains("past --max-lifetime 2s plus its jitter"),
        "{why}"
    );
    let recycled = herd.wait_for("recycled");
    assert_eq!(recycled["pid"], recycle["pid"]);
    let status = status_until(&herd.name, "a recycle listed", |s| {
        s["recycles"].as_array().is_some_and(|r| !r.is_empty())
    });
    let listed = &status["recycles"][0];
    assert_eq!(
        (listed["reason"].as_str(), listed["pid"].as_u64()),
        (Some("lifetime"), Some(u64::from(old)))
    );
    assert!(listed["successor"].is_u64(), "{status}");
    herd.stop();
}

#[test]
fn a_worker_over_max_memory_is_recycled_by_its_working_set() {
    let herd = Herd::start(&[
        "-w",
        "1",
        "--max-memory",
        "40M",
        "--env",
        "HERD_TEST_LEAK_KB=1024",
    ]);
    let leaking = ask(&herd.addr);
    let status = status_until(&herd.name, "the worker's memory sampled", |s| {
        s["workers"][0]["memory_bytes"]
            .as_u64()
            .is_some_and(|b| b > 0)
    });
    assert_eq!(status["memory_kind"], "working_set");
    for _ in 0..48 {
        ask(&herd.addr);
    }
    let recycle = herd.wait_for("recycle");
    assert_eq!(recycle["reason"], "memory", "{recycle}");
    assert_eq!(recycle["pid"].as_u64(), Some(u64::from(leaking)));
    let why = recycle["why"].as_str().unwrap();
    assert!(
        why.contains("above --max-memory 40 MiB for 2 samples"),
        "{why}"
    );
    herd.wait_for("recycled");
    assert_ne!(ask(&herd.addr), leaking, "its successor answers");
    herd.stop();
}
