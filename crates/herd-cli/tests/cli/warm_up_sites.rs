//! --starting-nice by where a worker starts: a restart after an unexpected exit replaces
//! capacity the pool lost and starts at herd's priority; a scale-up beside serving workers is
//! lowered, into a slot that had workers before too.

use serde_json::Value;

use crate::util::*;
use crate::warm_up::{
    gated, gated_then_scaled_up, lowered_or_raised_in_time, open_gate, policies,
    wait_at_herds_priority,
};

/// herd with two `gated.py` workers (FIFOs in `dir`) and `--min-ready 0`, once both are ready;
/// their facts. The second is a scale-up: two workers starting at once could print their
/// `gated` lines into one.
fn two_ready_gated(dir: &str) -> (Herd, Vec<Value>) {
    let (herd, first, scale, second) = gated_then_scaled_up(dir, &[]);
    open_gate(&second);
    let (code, _, stderr) = scale.join().unwrap();
    assert_eq!(code, 0, "{stderr}");
    wait_status(&herd, "two ready workers", |s| s["ready"] == 2);
    (herd, vec![first, second])
}

fn pid_of(facts: &Value) -> u32 {
    facts["pid"].as_u64().unwrap() as u32
}

/// Whether herd's log says worker `pid` ended a warm-up (so it had been lowered).
fn warmed_up(herd: &Herd, pid: u32) -> bool {
    let lines = herd.lines();
    let over = events(&lines).any(|e| is_event(e, "warm_up_over", &[("pid", pid.into())]));
    over
}

#[test]
fn a_restart_beside_serving_workers_starts_at_herds_priority() {
    if !root_or_skip("raising a worker back from SCHED_IDLE needs CAP_SYS_NICE") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (herd, first) = two_ready_gated(dir.path().to_str().unwrap());
    // SIGKILLed from outside: its slot restarts at once, beside the other worker, which serves.
    let killed = pid_of(&first[0]);
    // SAFETY: a plain kill(2) of a worker this test started through herd.
    assert_eq!(unsafe { libc::kill(killed as i32, libc::SIGKILL) }, 0);
    let restart = gated(&herd, 3);
    let pid = pid_of(&restart);
    // Held at its gate, not ready: had herd lowered it, it would be in SCHED_IDLE (5) now, or
    // its budget would have ended (`warm_up_over`, below).
    assert_eq!(
        policies(pid)[0],
        (pid, 0),
        "the restart runs in SCHED_OTHER"
    );
    open_gate(&restart);
    herd.wait_for_event("worker_ready", &[("pid", pid.into())]);
    assert!(
        !warmed_up(&herd, pid),
        "the restart never warmed up lowered"
    );
}

#[test]
fn a_scale_up_into_a_slot_scaled_away_before_warms_up_in_sched_idle() {
    if !root_or_skip("raising a worker back from SCHED_IDLE needs CAP_SYS_NICE") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (herd, _) = two_ready_gated(dir.path().to_str().unwrap());
    let in_slot_1 = herd.wait_for_event("worker_started", &[("slot", 1.into())])["pid"].clone();
    let (code, _, stderr) = herd.ctl(&["scale", "1"]);
    assert_eq!(code, 0, "{stderr}");
    herd.wait_for_event("worker_exited", &[("pid", in_slot_1)]);
    // Slot 1 had a worker, which exited: the scale-up into it is no restart.
    let control = herd.control();
    let scale = std::thread::spawn(move || ctl_at(&control, &["scale", "2"]));
    let new = gated(&herd, 3);
    let pid = pid_of(&new);
    // Beside the worker that serves.
    lowered_or_raised_in_time(&herd, pid);
    open_gate(&new);
    let (code, _, stderr) = scale.join().unwrap();
    assert_eq!(code, 0, "{stderr}");
    herd.wait_for_event("worker_ready", &[("pid", pid.into())]);
    wait_at_herds_priority(pid);
}

#[test]
fn a_successor_whose_slot_loses_its_serving_worker_gets_herds_priority_at_once() {
    if !root_or_skip("raising a worker back from SCHED_IDLE needs CAP_SYS_NICE") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (herd, _) = two_ready_gated(dir.path().to_str().unwrap());
    let control = herd.control();
    let upgrade = std::thread::spawn(move || ctl_at(&control, &["upgrade"]));
    // The first successor (one starts at a time), held at its gate beside the old workers.
    let successor = gated(&herd, 3);
    let pid = pid_of(&successor);
    let started = herd.wait_for_event("worker_started", &[("pid", pid.into())]);
    let slot = started["slot"].clone();
    let old = herd.wait_for_event(
        "worker_started",
        &[("slot", slot), ("generation", 1.into())],
    );
    let old = old["pid"].as_u64().unwrap() as i32;
    // SAFETY: a plain kill(2) of a worker this test started through herd.
    assert_eq!(unsafe { libc::kill(old, libc::SIGKILL) }, 0);
    let over = herd.wait_for_event("warm_up_over", &[("pid", pid.into())]);
    if over["reason"] == "slot_lost" {
        // herd says it, then raises it.
        wait_at_herds_priority(pid);
    } else {
        // On a loaded machine its budget can end, or it can be starved, before the kill lands:
        // raised then, before the slot lost its worker (the log is in order, timestamps too).
        let exited = herd.wait_for_event("worker_exited", &[("pid", old.into())]);
        let (at, lost) = (over["timestamp"].as_str(), exited["timestamp"].as_str());
        assert!(
            at <= lost,
            "raised only after its slot was lost: {over} {exited}"
        );
        eprintln!("skipped: the successor's warm-up ended before the kill: {over}");
    }
    open_gate(&successor);
    open_gate(&gated(&herd, 4));
    let (code, _, stderr) = upgrade.join().unwrap();
    assert_eq!(code, 0, "the upgrade succeeds: {stderr}");
}

#[test]
fn a_process_a_lowered_worker_left_behind_gets_herds_priority_once_it_is_ready() {
    if !root_or_skip("raising a process back from SCHED_IDLE needs CAP_SYS_NICE") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (herd, _, scale, second) =
        gated_then_scaled_up(dir.path().to_str().unwrap(), &["--orphan"]);
    let (pid, orphan) = (pid_of(&second), second["orphan"].as_u64().unwrap() as u32);
    let born_lowered = second["orphan_policy"] == 5;
    // Else on a loaded machine the scale-up's warm-up ended before the orphan was born.
    if !born_lowered {
        herd.wait_for_event("warm_up_over", &[("pid", pid.into())]);
    }
    // Its shell is gone: the worker's own raise does not reach it. Adopted, it stays lowered
    // while the worker warms up (unless that ended early on a loaded machine).
    herd.wait_for_event("orphan_adopted", &[("pid", orphan.into())]);
    let (left, worker) = (policies(orphan)[0].1, policies(pid)[0].1);
    assert!(left == 5 || worker == 0, "orphan {left}, worker {worker}");
    open_gate(&second);
    let (code, _, stderr) = scale.join().unwrap();
    assert_eq!(code, 0, "{stderr}");
    wait_at_herds_priority(pid);
    if born_lowered {
        herd.wait_for_event("orphan_raised", &[("pid", orphan.into())]);
    }
    wait_at_herds_priority(orphan);
}
