//! Autoscaling: `--workers MIN..MAX` follows the accept queue, and signals stay within its
//! bounds.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::util::*;

#[test]
fn signals_scale_within_the_autoscaling_bounds() {
    let herd = sleepers(&["-w", "2..4"]);
    herd.started(2);
    herd.signal(libc::SIGTTOU);
    let refused = herd.wait_for_event("scale_refused", &[]);
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("autoscaling keeps 2..4"),
        "{refused}"
    );
    assert_eq!(herd.status()["desired"], 2);
}

#[test]
fn autoscaling_follows_the_accept_queue_up_and_back_down() {
    let herd = Herd::start(&[
        "run",
        "--workers",
        "1..4",
        "--ready",
        "notify",
        "-b",
        "http=127.0.0.1:0,nonblocking",
        "--",
        "python3",
        &worker("probe.py"),
    ]);
    let addr = herd.address("http");
    wait_status(&herd, "1 ready worker", |s| settled(s, 1));
    // 8 clients with slow requests: connections wait in the queue, so herd adds workers.
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (stop, addr) = (stop.clone(), addr.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let _ = get(&addr, "/sleep/100");
                }
            })
        })
        .collect();
    let grown = wait_status(&herd, "autoscaling up", |s| {
        s["desired"].as_u64() >= Some(3)
    });
    let decision = &grown["autoscale"]["last_decision"];
    assert!(
        decision["reason"]
            .as_str()
            .unwrap()
            .contains("waiting in the accept queue"),
        "{grown}"
    );
    assert!(
        grown["desired"].as_u64() <= Some(4),
        "never above max: {grown}"
    );
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    // Idle again: one worker goes after the idle period.
    let peak = herd.status()["desired"].as_u64().unwrap();
    let shrunk = wait_status(&herd, "autoscaling down", |s| {
        s["desired"].as_u64() < Some(peak)
    });
    assert!(
        shrunk["autoscale"]["last_decision"]["reason"]
            .as_str()
            .unwrap()
            .contains("queue empty"),
        "{shrunk}"
    );
    let (_, table, _) = herd.ctl(&["status"]);
    assert!(table.contains("autoscaling 1..4"), "{table}");

    // New bounds at runtime; a fixed number turns autoscaling off.
    let (code, stdout, _) = herd.ctl(&["scale", "2..2"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("autoscaling between 2 and 2"), "{stdout}");
    wait_status(&herd, "the new bounds", |s| settled(s, 2));
    herd.ctl(&["scale", "1"]);
    wait_status(&herd, "a fixed pool", |s| {
        settled(s, 1) && s["autoscale"].is_null()
    });
}
