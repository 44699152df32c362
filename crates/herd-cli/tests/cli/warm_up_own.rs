//! --starting-nice leaves a worker's own choice alone: one that set its own priority before
//! herd looked is not lowered, and a thread or child that chose its own keeps it once ready.

use crate::util::*;
use crate::warm_up::{
    facts, gated, herd_nice, nice_of, one_ready, one_worker, open_gate, policies, starting_nice_19,
    upgraded,
};

#[test]
fn a_worker_that_chose_nice_19_while_starting_across_a_reexec_keeps_it() {
    if !root_or_skip("raising a worker's priority back needs CAP_SYS_NICE") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().to_str().unwrap();
    let python = ["/usr/bin/nice", "-n", "19", "/usr/bin/python3"];
    let mut command = python.to_vec();
    let script = worker("gated.py");
    command.extend([script.as_str(), dir]);
    let herd = one_worker(&["--min-ready", "0", "--starting-nice", "19"], &command);
    // herd's first worker, which herd did not lower, is still starting during the re-exec.
    let first = gated(&herd, 1);
    let pid = first["pid"].as_u64().unwrap() as u32;
    let (code, _, stderr) = herd.ctl(&["reexec"]);
    assert_eq!(code, 0, "{stderr}");
    open_gate(&first);
    one_ready(&herd);
    // The new image raised nothing on readiness: the nice value is the worker's own choice.
    assert_eq!(nice_of(pid, pid), 19);
}

#[test]
fn a_worker_that_lowers_its_own_priority_keeps_it_once_ready() {
    if !root_or_skip("raising a worker's priority back needs CAP_SYS_NICE") {
        return;
    }
    let herd = one_worker(
        &[],
        &[
            "/usr/bin/nice",
            "-n",
            "19",
            "/usr/bin/python3",
            &worker("nice.py"),
        ],
    );
    let status = one_ready(&herd);
    let pid = worker_pids(&status)[0];
    assert_eq!(facts(&herd.address("http"))["nice_at_start"], 19);
    // herd did not lower it (its first worker): the nice value is the worker's own choice.
    assert_eq!(nice_of(pid, pid), 19);
}

#[test]
fn a_child_that_chose_its_own_nice_value_while_starting_keeps_it() {
    if !root_or_skip("raising a worker's priority back needs CAP_SYS_NICE") {
        return;
    }
    let me = std::process::id();
    if nice_of(me, me) >= 10 {
        // herd inherits it, and refuses a --starting-nice 10 that is not lower (`nice .ci/run`).
        eprintln!(
            "skipped: the test runs at nice {} (it needs below 10)",
            nice_of(me, me)
        );
        return;
    }
    let herd = one_worker(
        &["--min-ready", "0", "--starting-nice", "10"],
        &["/usr/bin/python3", &worker("nice.py"), "--child-nice", "3"],
    );
    one_ready(&herd);
    let own = herd_nice(&herd);
    assert!(own < 10, "herd runs at nice {own}");
    let pid = upgraded(&herd);
    let new = facts(&herd.address("http"));
    let (thread, child) = (
        new["thread"].as_u64().unwrap() as u32,
        new["child"].as_u64().unwrap() as u32,
    );
    // The child lowered itself from the starting 10 to 13 before READY=1: its own choice.
    let child_nice = nice_of(child, child);
    if child_nice != 13 {
        // On a loaded machine herd may have raised the worker at the end of its warm-up
        // budget, before the child lowered itself: by 3 from herd's value then.
        herd.wait_for_event("warm_up_over", &[("pid", pid.into())]);
        assert_eq!(child_nice, own + 3, "{new}");
    }
    // What herd lowered gets herd's nice back.
    assert_eq!(nice_of(pid, pid), own);
    assert_eq!(nice_of(pid, thread), own);
}

/// Sets the nice value of every thread of process `pid` to `nice` (`renice`).
fn renice_threads(pid: u32, nice: i64) {
    let tids: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_str().unwrap().to_string())
        .collect();
    let status = std::process::Command::new("renice")
        .args(["-n", &nice.to_string(), "-p"])
        .args(&tids)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn a_worker_not_at_herds_priority_when_herd_looks_is_neither_lowered_nor_raised() {
    if !root_or_skip("raising a worker's priority back needs CAP_SYS_NICE") {
        return;
    }
    let herd = starting_nice_19("nice.py");
    let own = herd_nice(&herd);
    if own > 16 {
        eprintln!("skipped: herd runs at nice {own} (the test needs below 17)");
        return;
    }
    // herd resolved the option at its nice value; its workers start at another from now on,
    // as a worker that set its own (`nice -n 2 prog`) before herd looked would run.
    renice_threads(herd.pid(), own + 2);
    let pid = upgraded(&herd);
    let new = facts(&herd.address("http"));
    // Not lowered to 19 as it started, nor raised to herd's resolved value once ready.
    assert_eq!(new["nice_at_start"], own + 2, "{new}");
    assert_eq!(nice_of(pid, pid), own + 2);
    let child = new["child"].as_u64().unwrap() as u32;
    assert_eq!(nice_of(child, child), own + 2);
}

#[test]
fn a_worker_started_by_chrt_batch_keeps_sched_batch_whoever_looks_first() {
    if !root_or_skip("raising a worker back from SCHED_IDLE needs CAP_SYS_NICE") {
        return;
    }
    // `chrt -b 0` sets SCHED_BATCH right after herd's exec: before herd looks (then herd
    // leaves it alone) or after herd lowered it to SCHED_IDLE (then the raise skips it).
    let herd = one_worker(
        &["--min-ready", "0"],
        &[
            "chrt",
            "-b",
            "0",
            "/usr/bin/python3",
            &crate::util::worker("nice.py"),
        ],
    );
    one_ready(&herd);
    let pid = upgraded(&herd);
    let child = facts(&herd.address("http"))["child"].as_u64().unwrap() as u32;
    for (tid, policy) in policies(pid).into_iter().chain(policies(child)) {
        assert_eq!(
            policy, 3,
            "thread {tid}: SCHED_BATCH, the worker's own choice"
        );
    }
}
