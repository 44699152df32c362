//! --starting-nice: a worker that starts while others serve warms up at nice 19, and once it
//! is ready its process group (threads, children) gets herd's nice value back.

use serde_json::Value;

use crate::util::*;

/// The nice value of thread `tid` of process `pid` (field 19 of `/proc/PID/task/TID/stat`).
fn nice_of(pid: u32, tid: u32) -> i64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    // Fields from 3 (the state) on: the nice value is field 19.
    after_name
        .split_whitespace()
        .nth(19 - 3)
        .unwrap()
        .parse()
        .unwrap()
}

/// herd with one worker running `command`, `--ready notify` and `extra` options, serving
/// `http` on a free loopback port.
fn one_worker(extra: &[&str], command: &[&str]) -> Herd {
    let mut args = vec!["run", "-w", "1", "--ready", "notify"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["-b", "http=127.0.0.1:0", "--"]);
    args.extend_from_slice(command);
    Herd::start(&args)
}

fn facts(addr: &str) -> Value {
    serde_json::from_str(&get(addr, "/").unwrap()).unwrap()
}

/// Waits until the one worker left is of generation 2: the old one, stopping, could still take
/// a test's connection and reset it as it exits.
fn only_generation_2(herd: &Herd) -> Value {
    wait_status(herd, "only a worker of generation 2", |s| {
        s["workers"].as_array().is_some_and(|w| w.len() == 1) && s["generation"] == 2
    })
}

#[test]
fn a_worker_started_while_others_serve_warms_up_at_nice_19_then_gets_herds_priority() {
    if !root_or_skip("raising a worker's priority back needs CAP_SYS_NICE") {
        return;
    }
    let herd = one_worker(
        &["--min-ready", "0"],
        &["/usr/bin/python3", &worker("nice.py")],
    );
    wait_status(&herd, "a ready worker", |s| s["ready"] == 1);
    let addr = herd.address("http");
    let own = nice_of(herd.pid(), herd.pid());
    assert!(
        own < 19,
        "herd runs at nice {own}: nothing lower to start workers at"
    );
    // herd's first worker has nobody to leave the CPU to: herd's own priority.
    assert_eq!(facts(&addr)["nice_at_start"], own);
    let (code, _, stderr) = herd.ctl(&["upgrade"]);
    assert_eq!(code, 0, "{stderr}");
    let status = only_generation_2(&herd);
    let pid = worker_pids(&status)[0];
    let new = facts(&addr);
    assert_eq!(
        new["nice_at_start"], 19,
        "started while the first one served: {new}"
    );
    let (thread, child) = (
        new["thread"].as_u64().unwrap(),
        new["child"].as_u64().unwrap(),
    );
    // Ready: the worker, the thread and the child it started meanwhile run at herd's nice.
    assert_eq!(nice_of(pid, pid), own);
    assert_eq!(nice_of(pid, thread as u32), own);
    assert_eq!(nice_of(child as u32, child as u32), own);
}

#[test]
fn off_starts_every_worker_at_herds_priority() {
    let herd = one_worker(
        &["--min-ready", "0", "--starting-nice", "off"],
        &["/usr/bin/python3", &worker("nice.py")],
    );
    wait_status(&herd, "a ready worker", |s| s["ready"] == 1);
    let (code, _, stderr) = herd.ctl(&["upgrade"]);
    assert_eq!(code, 0, "{stderr}");
    only_generation_2(&herd);
    let own = nice_of(herd.pid(), herd.pid());
    assert_eq!(facts(&herd.address("http"))["nice_at_start"], own);
}

/// One worker of `slow_warm_up.py`, which is ready only once it runs below nice 19, with
/// --ready-timeout 10s (a warm-up of 5 s).
fn slow_warm_up_herd() -> Herd {
    one_worker(
        &["--ready-timeout", "10s", "--min-ready", "0"],
        &["/usr/bin/python3", &worker("slow_warm_up.py")],
    )
}

#[test]
fn a_worker_still_starting_after_its_warm_up_gets_herds_priority_in_time() {
    if !root_or_skip("raising a worker's priority back needs CAP_SYS_NICE") {
        return;
    }
    // The worker cannot finish starting at nice 19, as a starved one on a saturated machine:
    // it is ready only once herd gives it its priority back, after half of --ready-timeout
    // (5 s at most).
    let herd = slow_warm_up_herd();
    wait_status(&herd, "a ready worker", |s| s["ready"] == 1);
    let own = nice_of(herd.pid(), herd.pid());
    let (code, _, stderr) = herd.ctl(&["upgrade"]);
    assert_eq!(code, 0, "the upgrade succeeds: {stderr}");
    only_generation_2(&herd);
    let new = facts(&herd.address("http"));
    assert_eq!(new["nice_at_start"], 19, "{new}");
    assert_eq!(new["nice_at_ready"], own, "{new}");
}

#[test]
fn a_worker_that_left_its_own_group_still_gets_herds_priority_back() {
    if !root_or_skip("raising a worker's priority back needs CAP_SYS_NICE") {
        return;
    }
    let herd = one_worker(
        &["--min-ready", "0"],
        &["/usr/bin/python3", &worker("leaves_its_group.py")],
    );
    wait_status(&herd, "a ready worker", |s| s["ready"] == 1);
    let own = nice_of(herd.pid(), herd.pid());
    let (code, _, stderr) = herd.ctl(&["upgrade"]);
    assert_eq!(code, 0, "{stderr}");
    let status = only_generation_2(&herd);
    let pid = worker_pids(&status)[0];
    let new = facts(&herd.address("http"));
    assert_ne!(new["pgid"], new["pid"], "the worker left its group: {new}");
    assert_eq!(nice_of(pid, pid), own);
}

#[test]
fn a_worker_warming_up_across_a_reexec_still_gets_herds_priority_in_time() {
    if !root_or_skip("raising a worker's priority back needs CAP_SYS_NICE") {
        return;
    }
    let herd = slow_warm_up_herd();
    wait_status(&herd, "a ready worker", |s| s["ready"] == 1);
    // Slot 1's worker starts at nice 19 (slot 0's serves) and waits for herd's priority.
    let (code, _, stderr) = herd.ctl(&["scale", "2"]);
    assert_eq!(code, 0, "{stderr}");
    let status = wait_status(&herd, "two workers", |s| worker_pids(s).len() == 2);
    let warming = worker_pids(&status)[1];
    let (code, _, stderr) = herd.ctl(&["reexec"]);
    assert_eq!(code, 0, "{stderr}");
    // The new image ends its warm-up too: ready, not killed at --ready-timeout.
    let status = wait_status(&herd, "two ready workers", |s| s["ready"] == 2);
    assert!(
        worker_pids(&status).contains(&warming),
        "the warming worker became ready, not a successor: {status}"
    );
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
    let status = wait_status(&herd, "a ready worker", |s| s["ready"] == 1);
    let pid = worker_pids(&status)[0];
    assert_eq!(facts(&herd.address("http"))["nice_at_start"], 19);
    // herd did not lower it (its first worker): the nice value is the worker's own choice.
    assert_eq!(nice_of(pid, pid), 19);
}
