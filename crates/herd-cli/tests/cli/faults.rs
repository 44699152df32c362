//! Faults: workers killed at random under load, restart storms, a killed supervisor, workers
//! with children of their own, resource exhaustion, malformed environments.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::util::*;

#[test]
fn random_kills_under_load_lose_only_requests_in_flight() {
    let herd = Herd::start(&[
        "run",
        "-w",
        "4",
        "--ready",
        "notify",
        "-b",
        "http=127.0.0.1:0,nonblocking",
        "--",
        "python3",
        &example("hello.py"),
    ]);
    let addr = herd.address("http");
    wait_status(&herd, "4 ready workers", |s| s["ready"] == 4);

    let load = Load::start(&addr, 2, |_| true);
    // Every 100 ms for 6 s, SIGKILL one live worker, chosen in turn.
    let mut kills = 0;
    let end = Instant::now() + Duration::from_secs(6);
    let mut turn = 0;
    while Instant::now() < end {
        let pids = worker_pids(&herd.status());
        if !pids.is_empty() {
            turn += 1;
            let victim = pids[turn % pids.len()];
            // SAFETY: kill with a worker's pid.
            if unsafe { libc::kill(victim as i32, libc::SIGKILL) } == 0 {
                kills += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (served, failures) = load.finish();
    // A killed single-threaded worker holds at most one request: nothing waiting in the shared
    // queue may be lost.
    assert!(
        failures.len() <= kills,
        "{} failures for {kills} kills ({served} served): {:?}",
        failures.len(),
        &failures[..]
    );
    assert!(served > 100, "only {served} served");
    // Every slot is refilled, and backoff did not starve any: they are all ready soon.
    let status = wait_status(&herd, "4 ready workers after the chaos", |s| {
        s["ready"] == 4
    });
    let slots = BTreeSet::from_iter(worker_slots(&status));
    assert_eq!(slots, BTreeSet::from([0, 1, 2, 3]));
    assert!(get(&addr, "/").unwrap().starts_with("hello from pid"));
}

#[test]
fn a_killed_supervisor_takes_its_workers_and_a_new_one_starts_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let control = dir.path().join("control.sock").display().to_string();
    let sock = dir.path().join("app.sock").display().to_string();
    let spec = format!("web=unix:{sock}");
    let start = || {
        let (control, spec) = (control.clone(), spec.clone());
        Herd::start_with(move |_| {
            let mut cmd = herd_json();
            cmd.env("HERD_CONTROL", &control).args([
                "run",
                "-w",
                "2",
                "-b",
                &spec,
                "--",
                "python3",
                &example("hello.py"),
            ]);
            cmd
        })
    };
    let mut first = start();
    let pids: Vec<u32> = first.started(2).iter().map(|&(_, pid)| pid).collect();
    first.signal(libc::SIGKILL);
    first.wait_exit();
    wait_gone(&pids);
    // Its control and socket files are left behind, stale; a new herd replaces them.
    assert!(std::path::Path::new(&sock).exists());
    let second = start();
    second.wait_for_event("stale_socket_removed", &[]);
    second.started(2);
    let body = request(
        &mut std::os::unix::net::UnixStream::connect(&sock).unwrap(),
        "/",
    )
    .unwrap();
    assert!(body.starts_with("hello from pid"), "{body}");
    assert_eq!(status_at(&control)["pid"], second.pid());
}

#[test]
fn a_workers_own_children_stop_with_it() {
    let mut herd = Herd::start(&[
        "run",
        "-w",
        "1",
        "--grace",
        "5s",
        "-b",
        "127.0.0.1:0",
        "--",
        "sh",
        "-c",
        "sleep 1001 & sleep 1002 & wait",
    ]);
    let (_, worker) = herd.started(1)[0];
    let grandchildren = wait_until("the worker's two children", || {
        let c: Vec<u32> = children(worker).into_iter().map(|(pid, _)| pid).collect();
        if c.len() == 2 {
            Ok(c)
        } else {
            Err(format!("children {c:?}"))
        }
    });
    herd.signal(libc::SIGTERM);
    assert_eq!(herd.wait_exit().code(), Some(0));
    // The stop signal went to the worker's process group: its children are gone too.
    wait_gone(&grandchildren);
}

#[test]
fn a_crashed_workers_children_stop_and_free_the_port() {
    // Every worker leaves a child holding the socket (fd 3), then crashes.
    let mut herd = Herd::start(&[
        "run",
        "-w",
        "1",
        "-b",
        "web=127.0.0.1:0",
        "--",
        "sh",
        "-c",
        "sleep 60 & sleep 0.3; exit 1",
    ]);
    let addr = herd.address("web");
    herd.wait_events("3 crashes", 3, is_exit);
    let left = herd.wait_for_events("leftovers_stopping", 3, &[]);
    assert!(left[0]["message"]
        .as_str()
        .unwrap()
        .contains("stopping them (SIGKILL in 30s)"));
    stop_leaving_nothing(&mut herd, &addr);
}

#[test]
fn a_grandchild_already_reparented_to_herd_still_stops_with_its_workers_group() {
    // The worker's child starts `sleep` in the worker's group and exits: the sleep is
    // re-parented to herd (an orphan herd knows) while the worker still runs. When the worker
    // then crashes, herd has no child it does not know but that orphan, and must still find
    // the sleep in the worker's group.
    let mut herd = Herd::start(&[
        "run",
        "-w",
        "1",
        "-b",
        "web=127.0.0.1:0",
        "--",
        "sh",
        "-c",
        "(sleep 61 &); sleep 1.5; exit 1",
    ]);
    let addr = herd.address("web");
    let worker = herd.started(1)[0].1;
    herd.wait_events("the crash", 1, is_exit);
    let left = herd.wait_for_events("leftovers_stopping", 1, &[]);
    assert_eq!(left[0]["pid"].as_u64(), Some(u64::from(worker)), "{left:?}");
    stop_leaving_nothing(&mut herd, &addr);
}

/// Stops `herd` with `herd stop`: nothing any of its workers started outlives it, and the
/// port at `addr` is free at once.
fn stop_leaving_nothing(herd: &mut Herd, addr: &str) {
    let (code, stdout, stderr) = herd.ctl(&["stop"]);
    assert_eq!((code, stdout.trim()), (0, "stopped"), "{stderr}");
    assert_eq!(herd.wait_exit().code(), Some(0));
    let workers: Vec<u32> = events(&herd.lines())
        .filter(|e| is_start(e))
        .map(|e| e["pid"].as_u64().unwrap() as u32)
        .collect();
    assert_eq!(in_groups(&workers), Vec::<u32>::new());
    std::net::TcpListener::bind(addr).expect("the port must be free once herd has stopped");
}

#[test]
fn children_that_ignore_the_stop_signal_are_killed_and_herd_stop_waits_for_them() {
    // The worker's child ignores SIGTERM and keeps the socket; the worker crashes.
    let mut herd = Herd::start(&[
        "run",
        "-w",
        "1",
        "--grace",
        "2s",
        "-b",
        "web=127.0.0.1:0",
        "--",
        "sh",
        "-c",
        "(trap '' TERM; exec sleep 60) & sleep 0.3; exit 1",
    ]);
    let addr = herd.address("web");
    let (_, first) = herd.started(1)[0];
    herd.wait_for_event("leftovers_stopping", &[("pid", first.into())]);
    let leftovers = herd.status()["leftovers"].clone();
    assert_eq!(leftovers[0]["pid"], first, "status shows it: {leftovers}");
    assert!(leftovers[0]["kill_in_ms"].as_u64().unwrap() <= 2000);
    let first_worker = [("slot", 0.into()), ("pid", first.into())];
    herd.wait_for_event("leftovers_killed", &first_worker);
    herd.wait_for_event("leftovers_gone", &first_worker);
    assert_eq!(in_groups(&[first]), Vec::<u32>::new());

    // A stop while a worker's stubborn child runs: herd kills it before it says stopped.
    let stubborn = wait_until("a worker with its stubborn child", || {
        let status = herd.status();
        let Some(pid) = status["workers"][0]["pid"].as_u64() else {
            return Err(format!("status {status}"));
        };
        let group = in_groups(&[pid as u32]);
        if group.len() >= 2 {
            Ok(pid as u32)
        } else {
            Err(format!("worker {pid}'s group {group:?}"))
        }
    });
    let (code, stdout, stderr) = herd.ctl(&["stop", "--grace", "1s"]);
    assert_eq!((code, stdout.trim()), (0, "stopped"), "{stderr}");
    assert_eq!(herd.wait_exit().code(), Some(0));
    assert_eq!(in_groups(&[stubborn]), Vec::<u32>::new());
    std::net::TcpListener::bind(&addr).expect("the port must be free once herd has stopped");
}

#[test]
fn fork_failures_are_retried_without_spinning() {
    if !root_or_skip("needs root to run herd as another user with RLIMIT_NPROC") {
        return;
    }
    // A uid of its own, which no other test runs processes as: RLIMIT_NPROC counts every
    // process of the uid, so another test's worker exiting meanwhile would free a slot.
    const FORK_UID: u32 = 64_999;
    const UID: &str = "64999";
    // As an unprivileged user allowed 4 more tasks than it runs now, herd (2: the supervisor
    // and its log writer thread; RLIMIT_NPROC counts threads) can fork only 2 of 5 workers.
    let herd = herd_under_nproc(
        FORK_UID,
        4,
        &["-w", "5", "-b", "127.0.0.1:0", "--", "sleep", "1000"],
    );
    for failure in herd.wait_for_events("worker_start_failed", 3, &[]) {
        let message = failure["message"].as_str().unwrap_or("");
        assert!(
            message.starts_with("cannot start worker: cannot fork"),
            "{failure}"
        );
        // It names the limits to raise, not only the errno.
        assert!(
            message.contains("a process limit is reached") && message.contains("ulimit -u"),
            "{failure}"
        );
    }
    // herd keeps the workers it has, keeps answering, and backs off instead of spinning.
    std::thread::sleep(Duration::from_secs(2));
    let (code, stdout, stderr) = herd.ctl(&["--control-owner", UID, "status", "--json"]);
    assert_eq!(code, 0, "herd status failed: {stderr}");
    let status: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    // The limit leaves room for herd's own threads (its log writer, its sampler...) and a
    // worker or two: how many exactly depends on herd's threads, not on what is tested here.
    let running = status["running"].as_u64().unwrap();
    assert!((1..5).contains(&running), "{status}");
    assert!(
        !status["waiting"].as_array().unwrap().is_empty(),
        "{status}"
    );
    let errors = herd
        .lines()
        .iter()
        .filter(|l| matches!(l, Line::Event(e) if e["event"] == "worker_start_failed"))
        .count();
    assert!(errors < 40, "{errors} fork attempts in 2 s: herd spins");
}

#[test]
fn a_malformed_socket_activation_environment_is_a_clear_error() {
    for (env, needle) in [
        ("LISTEN_FDS=abc", "LISTEN_FDS=\"abc\" is not a count"),
        (
            "LISTEN_FDS=2 LISTEN_FDNAMES=a",
            "LISTEN_FDNAMES has 1 name but LISTEN_FDS=2",
        ),
        ("LISTEN_FDS=1", "promises fd 3"),
    ] {
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(format!(
                "exec env LISTEN_PID=$$ {env} \"$0\" run -b systemd -- true"
            ))
            .arg(HERD)
            .env(
                "HERD_CONTROL",
                tempfile::tempdir().unwrap().path().join("c.sock"),
            )
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{env}: {stderr}");
        assert!(
            stderr.contains(needle),
            "{env}: {needle:?} not in {stderr:?}"
        );
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
}

#[test]
fn a_killed_workers_successor_starts_before_herd_looks_at_what_it_left() {
    // The look at a group's leftovers reads every process on the system (slow with thousands
    // of workers): the replacement does not wait for it.
    let herd = Herd::start(&[
        "run",
        "-w",
        "1",
        "-b",
        "127.0.0.1:0",
        "--",
        "sh",
        "-c",
        "sleep 60 & wait",
    ]);
    let (_, first) = herd.started(1)[0];
    wait_until("the worker's child", || match children(first).len() {
        1 => Ok(()),
        n => Err(format!("{n} children")),
    });
    // SAFETY: kill sends a signal to the worker, a child of herd's that is still held.
    assert_eq!(unsafe { libc::kill(first as i32, libc::SIGKILL) }, 0);
    herd.wait_for_event("leftovers_stopping", &[("pid", first.into())]);
    let (_, second) = herd.started(2)[1];
    let lines = herd.lines();
    let order: Vec<&str> = events(&lines)
        .filter(|e| {
            (is_start(e) && e["pid"] == second)
                || (e["event"] == "leftovers_stopping" && e["pid"] == first)
        })
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["worker_started", "leftovers_stopping"]);
}

#[test]
fn a_worker_that_stops_itself_shows_as_paused_until_it_is_continued() {
    let herd = Herd::start(&[
        "run",
        "-w",
        "2",
        "-b",
        "127.0.0.1:0",
        "--",
        "sh",
        "-c",
        "[ \"$HERD_WORKER\" = 0 ] && kill -STOP $$; exec sleep 1000",
    ]);
    let paused = |s: &serde_json::Value| {
        s["workers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|w| w["paused"] == true)
            .map(|w| w["slot"].as_u64().unwrap())
            .collect::<Vec<_>>()
    };
    // Not ready by --ready's 1s, which counts only time a worker runs: it stays starting.
    let status = wait_status(&herd, "worker 0 paused, worker 1 ready", |s| {
        let workers = s["workers"].as_array().unwrap();
        let state = |slot: u64| {
            workers
                .iter()
                .find(|w| w["slot"] == slot)
                .map(|w| &w["state"])
        };
        workers.len() == 2
            && paused(s) == [0]
            && state(0).is_some_and(|st| st == "starting")
            && state(1).is_some_and(|st| st == "ready")
    });
    let pid = status["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["slot"] == 0)
        .unwrap()["pid"]
        .as_u64()
        .unwrap();
    let (code, table, _) = herd.ctl(&["status"]);
    assert!(
        table.contains("paused (SIGCONT resumes it, or its debugger)"),
        "{code} {table}"
    );
    // It serves nothing: the pool is degraded (exit 3), as /readyz says with --ready-min 2.
    assert_eq!(code, 3, "{table}");
    // SAFETY: kill with the pid of a worker of this test's herd.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGCONT) }, 0);
    wait_status(&herd, "worker 0 continued, then ready", |s| {
        paused(s).is_empty() && worker_pids(s).contains(&(pid as u32)) && settled(s, 2)
    });
    let (code, table, _) = herd.ctl(&["status"]);
    assert_eq!(code, 0, "{table}");
}
