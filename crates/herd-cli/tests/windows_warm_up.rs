//! `--starting-nice` on Windows, under Wine: an upgrade's successor starts in a low priority
//! class (set while it is still suspended) and gets `NORMAL_PRIORITY_CLASS` back once it is
//! ready; herd's first workers start in `NORMAL`. Each worker reports its own class
//! (`GetPriorityClass`) as it starts, as it says `READY=1` and as it answers.
#![cfg(windows)]

use std::io::Write;

use herd_sys::windows::priority;

mod windows_support;

use windows_support::{answer, client, Herd};

/// With `HERD_TEST_WORKER` set, this test binary is the worker herd runs. It reads its
/// priority class first thing, takes the socket `http` (the first generation then waits
/// 1.5 s), reads its class again and says `READY=1`,
/// then answers each connection with `worker pid N started C ready C now C`.
#[test]
fn worker() {
    if std::env::var_os("HERD_TEST_WORKER").is_none() {
        return;
    }
    let started = own_class();
    let mut sockets = herd::Sockets::from_env().expect("sockets from herd");
    let listener = sockets.take_tcp_listener("http").unwrap().unwrap();
    let stop = herd::stop_requested().expect("the stop event");
    // The first generation starts slowly: herd times its start-up at full priority, and a
    // successor's warm-up budget is twice that, so that it ends with readiness here.
    if std::env::var("HERD_GENERATION").as_deref() == Ok("1") {
        std::thread::sleep(std::time::Duration::from_millis(1500));
    }
    let ready = own_class();
    herd::notify::ready().expect("READY=1");
    windows_support::serve_until_stopped(listener, stop, |mut stream| {
        let (pid, now) = (std::process::id(), own_class());
        let _ = writeln!(
            stream,
            "worker pid {pid} started {started} ready {ready} now {now}"
        );
    });
}

fn own_class() -> u32 {
    priority::class_of(&herd_sys::windows::process::current()).expect("its priority class")
}

/// A worker's answer: its pid and its classes as it started, as it said `READY=1`, and now.
fn classes(addr: &str) -> (u32, [u32; 3]) {
    let answer = answer(addr);
    let words: Vec<&str> = answer.split_whitespace().collect();
    let number = |at: usize| words.get(at).and_then(|w| w.parse().ok());
    match (number(2), number(4), number(6), number(8)) {
        (Some(pid), Some(started), Some(ready), Some(now)) => (pid, [started, ready, now]),
        _ => panic!("unexpected answer {answer:?}"),
    }
}

/// Starts one worker with `--starting-nice option`, upgrades it: the classes of the first
/// worker and of its successor, and whether herd raised the successor before it was ready
/// (`warm_up_over`: its warm-up budget ran out).
fn first_and_successor(option: &str) -> ([u32; 3], [u32; 3], bool) {
    let herd = Herd::start(&[
        "-w",
        "1",
        "--ready",
        "notify",
        "--min-ready",
        "0",
        "--starting-nice",
        option,
    ]);
    herd.wait_for("worker_ready");
    let (first_pid, first) = classes(&herd.addr);
    client(&herd.name, &["upgrade"]);
    let events = herd.events_until("upgrade_finished");
    // Once the old worker is gone, only the successor answers.
    if !events.iter().any(|e| e["event"] == "worker_exited") {
        herd.wait_for("worker_exited");
    }
    let (pid, successor) = classes(&herd.addr);
    assert_ne!(
        pid, first_pid,
        "the successor answers once the upgrade is over"
    );
    let raised_early = events
        .iter()
        .any(|e| e["event"] == "warm_up_over" && e["pid"].as_u64() == Some(u64::from(pid)));
    herd.stop();
    (first, successor, raised_early)
}

#[test]
fn an_upgrades_successor_starts_idle_and_runs_normal_once_ready() {
    let (first, successor, raised_early) = first_and_successor("auto");
    let normal = priority::NORMAL;
    assert_eq!(first, [normal; 3], "a first worker keeps herd's class");
    assert!(
        !raised_early,
        "its budget (3 s) ran out before it was ready"
    );
    assert_eq!(successor[0], priority::IDLE, "{successor:?}");
    assert_eq!(successor[1], priority::IDLE, "until ready: {successor:?}");
    assert_eq!(successor[2], normal, "once ready: {successor:?}");
}

#[test]
fn a_nice_value_below_10_starts_below_normal_and_off_keeps_normal() {
    let (_, successor, _) = first_and_successor("5");
    assert_eq!(successor[0], priority::BELOW_NORMAL, "{successor:?}");
    assert_eq!(successor[2], priority::NORMAL, "{successor:?}");
    let (_, successor, _) = first_and_successor("off");
    assert_eq!(successor, [priority::NORMAL; 3]);
}
