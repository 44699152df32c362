//! --starting-nice: a worker that starts while others serve warms up in SCHED_IDLE (auto, on
//! Linux) or at a nice value, and once it is ready its threads and children get herd's
//! priority back.

use serde_json::Value;

use crate::util::*;

/// The nice value of thread `tid` of process `pid` (field 19 of `/proc/PID/task/TID/stat`).
pub(crate) fn nice_of(pid: u32, tid: u32) -> i64 {
    stat_field(pid, tid, 19)
}

/// herd with one worker running `command`, `--ready notify` and `extra` options, serving
/// `http` on a free loopback port.
pub(crate) fn one_worker(extra: &[&str], command: &[&str]) -> Herd {
    let mut args = vec!["run", "-w", "1", "--ready", "notify"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["-b", "http=127.0.0.1:0", "--"]);
    args.extend_from_slice(command);
    Herd::start(&args)
}

/// The nice value of herd's own main thread.
pub(crate) fn herd_nice(herd: &Herd) -> i64 {
    nice_of(herd.pid(), herd.pid())
}

/// herd with `--min-ready 0 --starting-nice 19` and one `python3` worker running `script`
/// from `tests/workers`, once that worker is ready.
pub(crate) fn starting_nice_19(script: &str) -> Herd {
    let herd = one_worker(
        &["--min-ready", "0", "--starting-nice", "19"],
        &["/usr/bin/python3", &worker(script)],
    );
    one_ready(&herd);
    herd
}

/// Field `n` of `/proc/PID/task/TID/stat` (19: the nice value, 41: the policy).
fn stat_field(pid: u32, tid: u32, n: usize) -> i64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    // Fields from 3 (the state) on.
    after_name
        .split_whitespace()
        .nth(n - 3)
        .unwrap()
        .parse()
        .unwrap()
}

/// The scheduling policy of every thread of `pid` (0: SCHED_OTHER, 3: SCHED_BATCH, 5:
/// SCHED_IDLE), by thread id.
pub(crate) fn policies(pid: u32) -> Vec<(u32, i64)> {
    let mut all: Vec<(u32, i64)> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_str().unwrap().parse().unwrap())
        .map(|tid| (tid, stat_field(pid, tid, 41)))
        .collect();
    all.sort();
    all
}

/// What a `gated.py` worker printed: pid, thread, child and its FIFO, once it has printed
/// `n` such lines in all.
pub(crate) fn gated(herd: &Herd, n: usize) -> Value {
    let line = herd.wait_for(&format!("{n} gated workers"), |lines| {
        let gated = texts(lines, |t| t.contains("gated "));
        gated.get(n - 1).map(|t| t.to_string())
    });
    let json = &line[line.find("gated ").unwrap() + "gated ".len()..];
    // The first value only: another process's output may follow on the same line.
    let mut values = serde_json::Deserializer::from_str(json).into_iter::<Value>();
    values.next().unwrap().unwrap()
}

/// Lets a `gated.py` worker send READY=1.
pub(crate) fn open_gate(facts: &Value) {
    std::fs::write(facts["gate"].as_str().unwrap(), b"go").unwrap();
}

/// Worker `pid` (whose `facts` these are) saw nice 19 as it started, or, on a loaded machine
/// where its warm-up budget (a few times the first worker's start-up) ended before it looked,
/// herd said it raised it then.
fn started_at_19_or_raised_in_time(herd: &Herd, pid: u32, facts: &Value) {
    if facts["nice_at_start"] != 19 {
        herd.wait_for_event("warm_up_over", &[("pid", pid.into())]);
    }
}

pub(crate) fn facts(addr: &str) -> Value {
    serde_json::from_str(&get(addr, "/").unwrap()).unwrap()
}

/// Waits until `herd`'s first worker is ready; its status.
pub(crate) fn one_ready(herd: &Herd) -> Value {
    wait_status(herd, "a ready worker", |s| s["ready"] == 1)
}

/// Upgrades `herd` and waits until its one worker is the successor (see [`only_generation_2`]);
/// the successor's pid.
pub(crate) fn upgraded(herd: &Herd) -> u32 {
    let (code, _, stderr) = herd.ctl(&["upgrade"]);
    assert_eq!(code, 0, "the upgrade succeeds: {stderr}");
    worker_pids(&only_generation_2(herd))[0]
}

/// Waits until the one worker left is of generation 2: the old one, stopping, could still take
/// a test's connection and reset it as it exits.
pub(crate) fn only_generation_2(herd: &Herd) -> Value {
    wait_status(herd, "only a worker of generation 2", |s| {
        s["workers"].as_array().is_some_and(|w| w.len() == 1) && s["generation"] == 2
    })
}

#[test]
fn a_worker_started_while_others_serve_warms_up_in_sched_idle_then_its_tree_is_raised() {
    if !root_or_skip("raising a worker back from SCHED_IDLE needs CAP_SYS_NICE") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().to_str().unwrap();
    let command = [
        "/usr/bin/python3",
        &worker("gated.py"),
        dir,
        "--batch-thread",
    ];
    let herd = one_worker(&["--min-ready", "0"], &command);
    let first = gated(&herd, 1);
    // herd's first worker starts at herd's priority: nobody serves yet.
    let pid = first["pid"].as_u64().unwrap() as u32;
    assert_eq!(policies(pid)[0], (pid, 0));
    open_gate(&first);
    one_ready(&herd);
    let control = herd.control();
    let upgrade = std::thread::spawn(move || ctl_at(&control, &["upgrade"]));
    let new = gated(&herd, 2);
    let pid = new["pid"].as_u64().unwrap() as u32;
    let thread = new["thread"].as_u64().unwrap() as u32;
    let child = new["child"].as_u64().unwrap() as u32;
    // Starting while the first one serves: every thread in SCHED_IDLE but the one that chose
    // SCHED_BATCH for itself, and the child it started too.
    let chose = |policies: Vec<(u32, i64)>, expected: i64| {
        assert!(policies.len() >= 2, "{policies:?}");
        for (tid, policy) in policies {
            let want = if tid == thread { 3 } else { expected };
            assert_eq!(policy, want, "thread {tid} of {pid}");
        }
    };
    let (starting, child_starting) = (policies(pid), policies(child));
    let lowered = |p: &[(u32, i64)]| {
        p.iter()
            .all(|&(t, policy)| policy == if t == thread { 3 } else { 5 })
    };
    if !(lowered(&starting) && lowered(&child_starting)) {
        // On a loaded machine the warm-up budget (a few times the first worker's start-up)
        // can end before the test looks: then herd raised the worker already, and says so.
        herd.wait_for_event("warm_up_over", &[("pid", pid.into())]);
    } else {
        chose(starting, 5);
        assert_eq!(child_starting, [(child, 5)]);
    }
    open_gate(&new);
    let (code, _, stderr) = upgrade.join().unwrap();
    assert_eq!(code, 0, "{stderr}");
    only_generation_2(&herd);
    // Ready: SCHED_OTHER again for every thread herd lowered, the child's included; the
    // thread that chose SCHED_BATCH keeps it.
    chose(policies(pid), 0);
    assert_eq!(policies(child), [(child, 0)]);
}

#[test]
fn a_scale_up_beside_a_serving_worker_warms_up_in_sched_idle_then_gets_herds_priority() {
    if !root_or_skip("raising a worker back from SCHED_IDLE needs CAP_SYS_NICE") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (herd, _, scale, new) = gated_then_scaled_up(dir.path().to_str().unwrap(), &[]);
    let pid = new["pid"].as_u64().unwrap() as u32;
    // It starts beside the first worker, which serves.
    lowered_or_raised_in_time(&herd, pid);
    open_gate(&new);
    let (code, _, stderr) = scale.join().unwrap();
    assert_eq!(code, 0, "{stderr}");
    // Ready: it runs at herd's priority again.
    herd.wait_for_event("worker_ready", &[("pid", pid.into())]);
    wait_at_herds_priority(pid);
}

/// herd with one `gated.py` worker (FIFOs in `dir`, then `options`) and `--min-ready 0`, once it
/// is ready, then `herd scale 2` on a thread of its own (its answer), and the second worker once
/// gated: herd, the first worker's facts, the scale, the second's facts.
pub(crate) fn gated_then_scaled_up(
    dir: &str,
    options: &[&str],
) -> (
    Herd,
    Value,
    std::thread::JoinHandle<(i32, String, String)>,
    Value,
) {
    let script = worker("gated.py");
    let command = [&["/usr/bin/python3", script.as_str(), dir], options].concat();
    let herd = one_worker(&["--min-ready", "0"], &command);
    let first = gated(&herd, 1);
    open_gate(&first);
    one_ready(&herd);
    let control = herd.control();
    let scale = std::thread::spawn(move || ctl_at(&control, &["scale", "2"]));
    let second = gated(&herd, 2);
    (herd, first, scale, second)
}

/// Worker `pid` runs in SCHED_IDLE, unless on a loaded machine its warm-up budget ended before
/// the test looked (herd says so then: the wait fails if it never does).
pub(crate) fn lowered_or_raised_in_time(herd: &Herd, pid: u32) {
    if policies(pid)[0] != (pid, 5) {
        herd.wait_for_event("warm_up_over", &[("pid", pid.into())]);
    }
}

/// Waits until worker `pid` runs at herd's priority (SCHED_OTHER) again.
pub(crate) fn wait_at_herds_priority(pid: u32) {
    wait_until("the worker at herd's priority", || {
        let policy = policies(pid)[0];
        (policy == (pid, 0))
            .then_some(())
            .ok_or(format!("{policy:?}"))
    });
}

#[test]
fn a_worker_started_while_others_serve_warms_up_at_nice_19_then_gets_herds_priority() {
    if !root_or_skip("raising a worker's priority back needs CAP_SYS_NICE") {
        return;
    }
    let herd = starting_nice_19("nice.py");
    let addr = herd.address("http");
    let own = herd_nice(&herd);
    assert!(
        own < 19,
        "herd runs at nice {own}: nothing lower to start workers at"
    );
    // herd's first worker has nobody to leave the CPU to: herd's own priority.
    assert_eq!(facts(&addr)["nice_at_start"], own);
    let pid = upgraded(&herd);
    let new = facts(&addr);
    started_at_19_or_raised_in_time(&herd, pid, &new);
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
    one_ready(&herd);
    upgraded(&herd);
    let own = herd_nice(&herd);
    assert_eq!(facts(&herd.address("http"))["nice_at_start"], own);
}

/// One worker of `slow_warm_up.py`, which is ready only once it runs below nice 19, with
/// --starting-nice 19 and --ready-timeout 10s (a warm-up of 5 s).
fn slow_warm_up_herd() -> Herd {
    one_worker(
        &[
            "--ready-timeout",
            "10s",
            "--min-ready",
            "0",
            "--starting-nice",
            "19",
        ],
        &["/usr/bin/python3", &worker("slow_warm_up.py")],
    )
}

#[test]
fn a_worker_still_starting_after_its_warm_up_gets_herds_priority_in_time() {
    if !root_or_skip("raising a worker's priority back needs CAP_SYS_NICE") {
        return;
    }
    // The worker cannot finish starting at nice 19, as a starved one on a saturated machine:
    // it is ready only once herd gives it its priority back, at the end of its warm-up budget.
    let herd = slow_warm_up_herd();
    one_ready(&herd);
    let own = herd_nice(&herd);
    let pid = upgraded(&herd);
    let new = facts(&herd.address("http"));
    started_at_19_or_raised_in_time(&herd, pid, &new);
    assert_eq!(new["nice_at_ready"], own, "{new}");
}

#[test]
fn a_worker_that_left_its_own_group_still_gets_herds_priority_back() {
    if !root_or_skip("raising a worker's priority back needs CAP_SYS_NICE") {
        return;
    }
    let herd = starting_nice_19("leaves_its_group.py");
    let own = herd_nice(&herd);
    let pid = upgraded(&herd);
    let new = facts(&herd.address("http"));
    if new["pgid"] == new["pid"] {
        // It stays in its group when it did not start at nice 19: only when herd raised it
        // at the end of its warm-up budget before it looked (a loaded machine).
        herd.wait_for_event("warm_up_over", &[("pid", pid.into())]);
    }
    assert_eq!(nice_of(pid, pid), own);
}

#[test]
fn a_successor_whose_pool_loses_its_last_server_gets_herds_priority_at_once() {
    if !root_or_skip("raising a worker's priority back needs CAP_SYS_NICE") {
        return;
    }
    // Every start-up takes 1 s, so the warm-up budget is 2 s: the successor, at nice 19,
    // cannot finish before then unless herd raises it for another reason.
    let herd = one_worker(
        &[
            "--ready-timeout",
            "20s",
            "--min-ready",
            "0",
            "--starting-nice",
            "19",
        ],
        &[
            "/usr/bin/python3",
            &worker("slow_warm_up.py"),
            "--start-delay",
            "1",
        ],
    );
    let first = herd.wait_for_event("worker_ready", &[]);
    let first = first["pid"].as_u64().unwrap();
    let control = herd.control();
    let upgrade = std::thread::spawn(move || ctl_at(&control, &["upgrade"]));
    let successor = herd.wait_event("the upgrade's successor started", |e| {
        e["event"] == "worker_started" && e["pid"].as_u64() != Some(first)
    });
    let successor = successor["pid"].as_u64().unwrap();
    // The pool's only serving worker dies: the successor now starts beside no server.
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &first.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let over = herd.wait_for_event("warm_up_over", &[("pid", successor.into())]);
    if over["reason"] == "starved" {
        // On a loaded machine the successor can be starved at nice 19 before the kill lands:
        // raised then, before the pool emptied (the log is in order, timestamps too).
        let exited = herd.wait_for_event("worker_exited", &[("pid", first.into())]);
        let (at, emptied) = (over["timestamp"].as_str(), exited["timestamp"].as_str());
        assert!(
            at <= emptied,
            "starved after the pool emptied: {over} {exited}"
        );
        eprintln!("skipped: the successor was starved before the pool emptied");
    } else {
        assert_eq!(over["reason"], "pool_empty", "{over}");
    }
    herd.wait_for_event("worker_ready", &[("pid", successor.into())]);
    let _ = upgrade.join();
}

#[test]
fn a_worker_warming_up_across_a_reexec_still_gets_herds_priority_in_time() {
    if !root_or_skip("raising a worker's priority back needs CAP_SYS_NICE") {
        return;
    }
    // Slot 0's worker is recycled after 1 s: its successor starts at nice 19 (slot 0's worker
    // still serves) and cannot finish starting there, so it waits for herd's priority.
    let herd = one_worker(
        &[
            "--ready-timeout",
            "10s",
            "--min-ready",
            "0",
            "--starting-nice",
            "19",
            "--max-lifetime",
            "1s",
        ],
        &["/usr/bin/python3", &worker("slow_warm_up.py")],
    );
    let first = herd.wait_for_event("worker_ready", &[]);
    let first = first["pid"].as_u64().unwrap();
    let successor = herd.wait_event("the recycle's successor started", |e| {
        e["event"] == "worker_started" && e["pid"].as_u64() != Some(first)
    });
    let warming = successor["pid"].as_u64().unwrap();
    let (code, _, stderr) = herd.ctl(&["reexec"]);
    assert_eq!(code, 0, "{stderr}");
    // The new image ends its warm-up too: ready, not killed at --ready-timeout.
    herd.wait_for_event("worker_ready", &[("pid", warming.into())]);
}

#[test]
fn a_herd_in_sched_batch_leaves_its_workers_in_sched_batch() {
    if !root_or_skip("raising a worker's priority back needs CAP_SYS_NICE") {
        return;
    }
    // herd runs in SCHED_BATCH (chrt), which its workers inherit: raising one from SCHED_IDLE
    // would give it SCHED_OTHER, so auto lowers the nice value instead.
    let mut chrt = std::process::Command::new("chrt");
    chrt.args(["--batch", "0", HERD]);
    let herd = Herd::start_via(
        chrt,
        &[
            "run",
            "-w",
            "1",
            "--ready",
            "notify",
            "--min-ready",
            "0",
            "-b",
            "http=127.0.0.1:0",
            "--",
            "/usr/bin/python3",
            &worker("nice.py"),
        ],
    );
    one_ready(&herd);
    let pid = upgraded(&herd);
    let new = facts(&herd.address("http"));
    let child = new["child"].as_u64().unwrap() as u32;
    // Ready: herd's class for every thread and the child, and herd's nice value again.
    for (tid, policy) in policies(pid).into_iter().chain(policies(child)) {
        assert_eq!(policy, 3, "thread {tid}: SCHED_BATCH, as herd");
    }
    started_at_19_or_raised_in_time(&herd, pid, &new);
    assert_eq!(nice_of(pid, pid), herd_nice(&herd));
}

#[test]
fn a_reexec_whose_image_lowers_otherwise_raises_a_worker_as_it_was_lowered() {
    if !root_or_skip("raising a worker back from SCHED_IDLE needs CAP_SYS_NICE") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().to_str().unwrap();
    // Slot 0's worker is recycled after 1 s: its successor starts in SCHED_IDLE (auto).
    let herd = one_worker(
        &["--min-ready", "0", "--max-lifetime", "1s"],
        &["/usr/bin/python3", &worker("gated.py"), dir],
    );
    open_gate(&gated(&herd, 1));
    let successor = gated(&herd, 2);
    let pid = successor["pid"].as_u64().unwrap() as u32;
    if policies(pid)[0].1 != 5 {
        // On a loaded machine its warm-up budget may have ended already: nothing to hand over.
        herd.wait_for_event("warm_up_over", &[("pid", pid.into())]);
        eprintln!("skipped: the successor's warm-up ended before the re-exec");
        return;
    }
    // herd moves to SCHED_BATCH: the new image resolves auto to nice 19, not SCHED_IDLE.
    let chrt = std::process::Command::new("chrt")
        .args(["-a", "-b", "-p", "0", &herd.pid().to_string()])
        .status()
        .unwrap();
    assert!(chrt.success());
    let (code, _, stderr) = herd.ctl(&["reexec"]);
    assert_eq!(code, 0, "{stderr}");
    open_gate(&successor);
    // Once the old worker is gone, the loop has long raised the new one.
    wait_status(&herd, "only the successor", |s| {
        worker_pids(s) == [pid] && s["ready"] == 1
    });
    // Raised out of SCHED_IDLE, as it was lowered, by an image that lowers to nice 19.
    let child = successor["child"].as_u64().unwrap() as u32;
    for (tid, policy) in policies(pid).into_iter().chain(policies(child)) {
        assert_eq!(policy, 0, "thread {tid}: SCHED_OTHER again");
    }
}
