//! --starting-nice at saturation: a start-up starved in SCHED_IDLE trickles (SCHED_OTHER at
//! nice 10 below herd's) until it is ready or half its ready time has passed since it started,
//! then gets herd's priority; across a re-exec too, and without taking a nice value a thread
//! of the worker chose itself.

use serde_json::Value;

use crate::util::*;
use crate::warm_up::{herd_nice, nice_of, one_ready, one_worker, policies, upgraded};

#[test]
fn at_saturation_a_starved_worker_trickles_then_gets_herds_priority() {
    if !root_or_skip("raising a worker back from SCHED_IDLE needs CAP_SYS_NICE") {
        return;
    }
    let hogs = CpuHogs::start();
    // Each start-up needs 0.4 s of CPU: the first, at full priority among the hogs, takes at
    // least that, so the warm-up budget (twice the slowest) is at least 0.8 s.
    let herd = one_worker(
        &["--min-ready", "0", "--ready-timeout", "60s"],
        &["/usr/bin/python3", &worker("burns_cpu.py"), "0.4"],
    );
    one_ready(&herd);
    if herd_nice(&herd) + 10 > 19 {
        eprintln!("skipped: herd runs at nice 10 or above, where no worker trickles");
        return;
    }
    let pid = upgraded(&herd);
    // In SCHED_IDLE beside the hogs it got no CPU: herd saw it wait and moved it to nice 10
    // (below herd's) in SCHED_OTHER (a tenth of a hog's share), long before its budget ended.
    let trickle = herd.wait_for_event("warm_up_trickle", &[("pid", pid.into())]);
    let below = herd_nice(&herd) + 10;
    assert_eq!(trickle["nice"], below, "{trickle}");
    let nice = nice_of(pid, pid);
    if nice == below {
        assert_eq!(policies(pid)[0].1, 0, "out of SCHED_IDLE");
    } else {
        assert_eq!(nice, herd_nice(&herd), "trickled, then raised already");
    }
    // It gets herd's priority back once ready, or once its longest budget (5 s) is over.
    herd.wait_for_event("worker_ready", &[("pid", pid.into())]);
    assert_eq!(nice_of(pid, pid), herd_nice(&herd));
    assert_eq!(policies(pid)[0].1, 0);
    drop(hogs);
}

/// A log event's time, in seconds since midnight (UTC).
fn seconds_of_day(event: &Value) -> f64 {
    let stamp = event["timestamp"].as_str().unwrap();
    let time = stamp.split_once('T').unwrap().1.trim_end_matches('Z');
    let parts: Vec<f64> = time.split(':').map(|p| p.parse().unwrap()).collect();
    parts[0] * 3600.0 + parts[1] * 60.0 + parts[2]
}

#[test]
fn a_worker_starved_late_trickles_only_until_half_its_ready_time_from_its_start() {
    if !root_or_skip("raising a worker back from SCHED_IDLE needs CAP_SYS_NICE") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // The first start-up takes 1.2 s: the warm-up budget is its longest, half of 4 s.
    let herd = one_worker(
        &["--min-ready", "0", "--ready-timeout", "4s"],
        &[
            "/usr/bin/python3",
            &worker("starved_late.py"),
            dir.path().to_str().unwrap(),
        ],
    );
    one_ready(&herd);
    if herd_nice(&herd) + 10 > 19 {
        eprintln!("skipped: herd runs at nice 10 or above, where no worker trickles");
        return;
    }
    let control = herd.control();
    let upgrade = std::thread::spawn(move || ctl_at(&control, &["upgrade"]));
    // The successor sleeps 1 s, then needs CPU: the machine is saturated by then, and it is
    // starved more than 1 s after it started.
    herd.wait_for("the successor's start", |lines| {
        (!texts(lines, |t| t.contains("late ")).is_empty()).then_some(())
    });
    let hogs = CpuHogs::start();
    let started = herd.wait_event("the successor started", |e| {
        e["event"] == "worker_started" && e["generation"] == 2
    });
    let pid = started["pid"].as_u64().unwrap();
    herd.wait_for_event("warm_up_trickle", &[("pid", pid.into())]);
    // Its trickle ends 2 s after it started, as its budget would have: it has the other 2 s
    // at herd's priority (it used to trickle 2 s from the moment it was starved, and to get
    // herd's priority only an instant before its --ready-timeout).
    let over = herd.wait_for_event("warm_up_over", &[("pid", pid.into())]);
    let after = seconds_of_day(&over) - seconds_of_day(&started);
    assert!(
        after < 2.5,
        "trickled until {after:.2} s after its start: {over}"
    );
    let (code, _, stderr) = upgrade.join().unwrap();
    assert_eq!(code, 0, "the upgrade succeeds: {stderr}");
    drop(hogs);
}

#[test]
fn a_worker_that_chose_nice_10_while_starting_keeps_it_after_its_trickle() {
    if !root_or_skip("raising a worker back from SCHED_IDLE needs CAP_SYS_NICE") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let herd = one_worker(
        &["--min-ready", "0"],
        &[
            "/usr/bin/python3",
            &worker("starved_late.py"),
            dir.path().to_str().unwrap(),
            "--own-nice",
            "10",
        ],
    );
    one_ready(&herd);
    let own = herd_nice(&herd) + 10;
    if own + 1 > 19 {
        eprintln!("skipped: herd runs at nice 9 or above, where no other trickle is free");
        return;
    }
    // The successor runs at nice 10 below herd's by its own choice (`nice`'s default) before
    // the test saturates the machine and herd finds it starved. On a machine busy already (the
    // other tests), herd may find it starved before it chose: then the next upgrade tries again.
    let mut tried = Vec::new();
    for _ in 0..5 {
        let quiet = CpuHogs::quiet();
        let control = herd.control();
        let upgrade = std::thread::spawn(move || ctl_at(&control, &["upgrade"]));
        let pid: u32 = herd.wait_for("the successor's start", |lines| {
            let late = texts(lines, |t| t.contains("late ")).pop()?;
            let pid: u32 = late.rsplit(' ').next()?.trim().parse().ok()?;
            (!tried.contains(&pid)).then_some(pid)
        });
        tried.push(pid);
        let hogs = quiet.saturate();
        let trickle = herd.wait_for_event("warm_up_trickle", &[("pid", pid.into())]);
        let (code, _, stderr) = upgrade.join().unwrap();
        assert_eq!(code, 0, "the upgrade succeeds: {stderr}");
        drop(hogs);
        if trickled_before_it_chose(&herd.lines(), pid) {
            continue;
        }
        assert_eq!(trickle["nice"], own + 1, "not its own value: {trickle}");
        // Once ready (the status answers after the raise), it is out of SCHED_IDLE at its own
        // nice value still: the end of the trickle raised the threads at 11, not those at 10.
        wait_status(&herd, "the successor ready alone", |s| {
            settled(s, 1) && worker_pids(s) == [pid]
        });
        assert_eq!(policies(pid)[0].1, 0);
        assert_eq!(nice_of(pid, pid), own, "its own choice kept");
        return;
    }
    // A machine this busy never lets the successor choose before herd finds it starved: what
    // the test is about cannot happen here (CI saw it beside builds), which is no failure.
    eprintln!("skipped: in 5 upgrades, every successor was starved before it chose its nice value");
}

/// Whether herd's trickle of worker `pid` came before the worker said `late PID`, which it
/// says once it has chosen its own nice value.
fn trickled_before_it_chose(lines: &[Line], pid: u32) -> bool {
    let said = format!("late {pid}");
    let chose = lines
        .iter()
        .position(|l| matches!(l, Line::Text(t) if t.contains(&said)));
    let trickled = lines.iter().position(
        |l| matches!(l, Line::Event(e) if e["event"] == "warm_up_trickle" && e["pid"] == pid),
    );
    matches!((trickled, chose), (Some(t), Some(c)) if t < c)
}

#[test]
fn a_worker_trickling_across_a_reexec_trickles_on() {
    if !root_or_skip("raising a worker back from SCHED_IDLE needs CAP_SYS_NICE") {
        return;
    }
    let hogs = CpuHogs::start();
    // Slot 0's worker is recycled after 1 s: its successor starts in SCHED_IDLE beside the
    // hogs, is starved at once and trickles; its start-up needs 1 s of CPU, about 10 s at
    // a tenth of a hog's share.
    let herd = one_worker(
        &["--min-ready", "0", "--max-lifetime", "1s"],
        &["/usr/bin/python3", &worker("burns_cpu.py"), "1"],
    );
    let first = herd.wait_for_event("worker_ready", &[]);
    let first = first["pid"].as_u64().unwrap();
    if herd_nice(&herd) + 10 > 19 {
        eprintln!("skipped: herd runs at nice 10 or above, where no worker trickles");
        return;
    }
    let successor = herd.wait_event("the recycle's successor started", |e| {
        e["event"] == "worker_started" && e["pid"].as_u64() != Some(first)
    });
    let pid = successor["pid"].as_u64().unwrap();
    herd.wait_for_event("warm_up_trickle", &[("pid", pid.into())]);
    let (code, _, stderr) = herd.ctl(&["reexec"]);
    assert_eq!(code, 0, "{stderr}");
    // The new image trickles it on, unsampled, and raises it once its warm-up there is over
    // (or once it is ready). Sampled again, it was soon found starved (a trickle waits most
    // of the time) and got herd's priority at once.
    let over = herd.wait_event("the successor ready or raised", |e| {
        is_event(e, "warm_up_over", &[("pid", pid.into())])
            || is_event(e, "worker_ready", &[("pid", pid.into())])
    });
    assert_ne!(over["reason"], "starved", "{over}");
    herd.wait_for_event("worker_ready", &[("pid", pid.into())]);
    assert_eq!(nice_of(pid as u32, pid as u32), herd_nice(&herd));
    assert_eq!(policies(pid as u32)[0].1, 0);
    drop(hogs);
}

#[test]
fn re_execs_in_a_row_do_not_lengthen_a_trickle_into_the_ready_timeout() {
    if !root_or_skip("raising a worker back from SCHED_IDLE needs CAP_SYS_NICE") {
        return;
    }
    let hogs = CpuHogs::start();
    // The recycle's successor needs 3 s of CPU: about 30 s at a tenth of a hog's share. Its
    // longest warm-up is 5 s (half its --ready-timeout, at most 5 s).
    let herd = one_worker(
        &["--min-ready", "0", "--max-lifetime", "1s"],
        &["/usr/bin/python3", &worker("burns_cpu.py"), "3"],
    );
    let first = herd.wait_for_event("worker_ready", &[]);
    let first = first["pid"].as_u64().unwrap();
    if herd_nice(&herd) + 10 > 19 {
        eprintln!("skipped: herd runs at nice 10 or above, where no worker trickles");
        return;
    }
    let started = herd.wait_event("the recycle's successor started", |e| {
        e["event"] == "worker_started" && e["pid"].as_u64() != Some(first)
    });
    let pid = started["pid"].as_u64().unwrap();
    herd.wait_for_event("warm_up_trickle", &[("pid", pid.into())]);
    // A re-exec every half second: each new image trickled it on for a whole 5 s from the
    // re-exec, so it never got herd's priority, and missed its --ready-timeout.
    let raised = |herd: &Herd| {
        events(&herd.lines())
            .find(|e| is_event(e, "warm_up_over", &[("pid", pid.into())]))
            .cloned()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(12);
    while raised(&herd).is_none() && std::time::Instant::now() < deadline {
        let (code, _, stderr) = herd.ctl(&["reexec"]);
        assert_eq!(code, 0, "{stderr}");
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let over = raised(&herd).expect("herd's priority back while re-executed");
    assert_eq!(over["reason"], "budget", "{over}");
    let after = seconds_of_day(&over) - seconds_of_day(&started);
    assert!(after < 6.5, "trickled until {after:.2} s after its start");
    assert_eq!(nice_of(pid as u32, pid as u32), herd_nice(&herd));
    drop(hogs);
}
