//! Faults: workers killed at random under load, restart storms, a killed supervisor, workers
//! with children of their own, resource exhaustion, malformed environments.

use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::*;

fn worker_pids(status: &Value) -> Vec<u32> {
    status["workers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["state"] != "stopping")
        .map(|w| w["pid"].as_u64().unwrap() as u32)
        .collect()
}

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
    let slots: BTreeSet<u64> = status["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["slot"].as_u64().unwrap())
        .collect();
    assert_eq!(slots, BTreeSet::from([0, 1, 2, 3]));
    assert!(get(&addr, "/").unwrap().starts_with("hello from pid"));
}

fn fd_count(pid: u32) -> usize {
    open_fds(pid).len()
}

fn rss_kib(pid: u32) -> u64 {
    status_field(pid, "VmRSS")
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn a_thousand_restarts_leak_nothing() {
    let herd = Herd::start(&["run", "-w", "2", "-b", "127.0.0.1:0", "--", "sleep", "1000"]);
    herd.started(2);
    // Warm up: let herd reach its steady allocations.
    let restart = |n: usize| {
        let status = wait_status(&herd, "a live worker", |s| !worker_pids(s).is_empty());
        let victim = worker_pids(&status)[0];
        // SAFETY: kill with a worker's pid.
        unsafe { libc::kill(victim as i32, libc::SIGKILL) };
        herd.wait_events("the restart", n, is_start);
    };
    let mut starts = 2;
    for _ in 0..50 {
        starts += 1;
        restart(starts);
    }
    let (fds, rss) = (fd_count(herd.pid()), rss_kib(herd.pid()));
    for _ in 0..1000 {
        starts += 1;
        restart(starts);
    }
    wait_until("no zombie children", || {
        let zombies: Vec<u32> = children(herd.pid())
            .into_iter()
            .filter(|&(_, state)| state == 'Z')
            .map(|(pid, _)| pid)
            .collect();
        if zombies.is_empty() {
            Ok(())
        } else {
            Err(format!("zombies {zombies:?}"))
        }
    });
    // A control connection of the last status request may still be closing: wait for the
    // count to settle; a leaked fd never goes away.
    let mut now = 0;
    let settled = (0..500).any(|_| {
        now = fd_count(herd.pid());
        now <= fds || {
            std::thread::sleep(Duration::from_millis(10));
            false
        }
    });
    assert!(
        settled,
        "herd holds {now} fds after 1000 restarts, {fds} before"
    );
    let grown = rss_kib(herd.pid()).saturating_sub(rss);
    assert!(
        grown < 1024,
        "herd's memory grew by {grown} KiB over 1000 restarts"
    );
    assert_eq!(herd.status()["running"], 2);
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
    let (code, stdout, stderr) = herd.ctl(&["stop"]);
    assert_eq!((code, stdout.trim()), (0, "stopped"), "{stderr}");
    assert_eq!(herd.wait_exit().code(), Some(0));
    // Nothing any worker started outlives herd, and the port is free at once.
    let workers: Vec<u32> = events(&herd.lines())
        .filter(|e| is_start(e))
        .map(|e| e["pid"].as_u64().unwrap() as u32)
        .collect();
    assert_eq!(in_groups(&workers), Vec::<u32>::new());
    std::net::TcpListener::bind(&addr).expect("the port must be free once herd has stopped");
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
    let running = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read_to_string(e.path().join("status")).is_ok_and(|s| {
                s.lines()
                    .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some(UID))
            })
        })
        .count();
    let limit = (running + 4).to_string();
    let herd = Herd::start_with(|dir| {
        // herd's user owns the directory of its control socket; the client (root here) names
        // it with --control-owner, as it would trust another user's server nowhere in /tmp
        // otherwise (herd::trust).
        std::os::unix::fs::chown(dir, Some(FORK_UID), Some(FORK_UID)).unwrap();
        let mut cmd = std::process::Command::new("prlimit");
        cmd.arg(format!("--nproc={limit}:{limit}"))
            .arg(HERD)
            .args([
                "--log-format",
                "json",
                "run",
                "-w",
                "5",
                "-b",
                "127.0.0.1:0",
                "--",
                "sleep",
                "1000",
            ])
            .uid(FORK_UID)
            .gid(FORK_UID);
        cmd
    });
    for failure in herd.wait_for_events("worker_start_failed", 3, &[]) {
        let message = failure["message"].as_str().unwrap_or("");
        assert!(
            message.starts_with("cannot start worker: cannot fork"),
            "{failure}"
        );
    }
    // herd keeps the workers it has, keeps answering, and backs off instead of spinning.
    std::thread::sleep(Duration::from_secs(2));
    let (code, stdout, stderr) = herd.ctl(&["--control-owner", UID, "status", "--json"]);
    assert_eq!(code, 0, "herd status failed: {stderr}");
    let status: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(status["running"], 2, "{status}");
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
            "LISTEN_FDNAMES has 1 names but LISTEN_FDS=2",
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
fn running_out_of_fds_is_survived() {
    // herd with at most 64 fds, then 80 clients hold control connections open.
    let mut prlimit = std::process::Command::new("prlimit");
    prlimit.arg("--nofile=64:64").arg(HERD);
    let sleepers = ["run", "-w", "2", "-b", "127.0.0.1:0", "--", "sleep", "1000"];
    let herd = Herd::start_via(prlimit, &sleepers);
    herd.started(2);
    herd.wait_for_event("control_ready", &[]);
    let control = herd.control();
    let held: Vec<_> = (0..80)
        .filter_map(|_| std::os::unix::net::UnixStream::connect(&control).ok())
        .collect();
    herd.wait_for_event("control_accept_failed", &[]);
    // A worker killed now cannot be restarted yet; the log says why, not "cannot fork".
    let victim = herd.started(2)[0].1;
    // SAFETY: kill with a worker's pid.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    let failure = herd.wait_for_event("worker_start_failed", &[]);
    let message = failure["message"].as_str().unwrap();
    assert!(
        message.contains("herd is out of file descriptors") && !message.contains("cannot fork"),
        "{message}"
    );
    // It backs off (100 ms) instead of spinning, and keeps its workers.
    std::thread::sleep(Duration::from_millis(500));
    let warnings = herd
        .lines()
        .iter()
        .filter(|l| matches!(l, Line::Event(e) if e["event"] == "control_accept_failed"))
        .count();
    assert!(
        warnings <= 20,
        "{warnings} accept failures in about half a second: spinning"
    );
    drop(held);
    let status = wait_until("herd to answer again", || {
        let out = std::process::Command::new(HERD)
            .env("HERD_CONTROL", &control)
            .args(["status", "--json"])
            .output()
            .unwrap();
        if out.status.success() {
            Ok(serde_json::from_slice::<Value>(&out.stdout).unwrap())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    });
    assert!(status["running"].as_u64().unwrap() >= 1, "{status}");
    // The killed worker's slot is refilled once fds are free again.
    herd.wait_events("the restart", 3, is_start);
    wait_status(&herd, "2 running workers", |s| s["running"] == 2);
}

#[test]
fn metrics_clients_cannot_starve_supervision() {
    // herd with 128 fds (soft = hard: nothing to raise), then 300 idle clients on --metrics.
    let herd = Herd::start_with(|_| {
        let mut cmd = std::process::Command::new("prlimit");
        cmd.arg("--nofile=128:128").arg(HERD).args([
            "--log-format",
            "json",
            "run",
            "-w",
            "2",
            "--metrics",
            "127.0.0.1:0",
            "-b",
            "127.0.0.1:0",
            "--",
            "sleep",
            "1000",
        ]);
        cmd
    });
    let victim = herd.started(2)[0].1;
    let metrics = metrics_address(&herd);
    herd.status();
    let before = open_fds(herd.pid()).len();
    let held: Vec<std::net::TcpStream> = (0..300)
        .filter_map(|_| std::net::TcpStream::connect(&metrics).ok())
        .collect();
    assert!(held.len() >= 200, "only {} connections", held.len());
    // herd takes a few (an eighth of its fds), and leaves the rest in the kernel's queue.
    // (`before` may count an fd or two that were about to close.)
    let cap = 128 / 8;
    wait_until("herd to take its share of the connections", || {
        let open = open_fds(herd.pid()).len();
        if open + 4 >= before + cap {
            Ok(())
        } else {
            Err(format!("{open} fds open, {before} before"))
        }
    });
    // Supervision goes on: a killed worker is restarted, the control socket answers.
    // SAFETY: kill with a worker's pid.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    herd.wait_events("the restart", 3, is_start);
    let status = herd.status();
    assert_eq!(status["workers"].as_array().unwrap().len(), 2, "{status}");
    let open = open_fds(herd.pid()).len();
    assert!(
        open <= before + cap + 4,
        "herd holds {open} fds, {before} before the clients came"
    );
    drop(held);
    // Once they are gone, scrapes are served again.
    let text = wait_until("a scrape", || get(&metrics, "/metrics"));
    assert!(text.contains("herd_workers_running 2"), "{text}");
    let (code, _, stderr) = herd.ctl(&["stop"]);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn herd_raises_its_fd_limit_and_workers_keep_theirs() {
    let mut prlimit = std::process::Command::new("prlimit");
    prlimit.arg("--nofile=256:4096").arg(HERD);
    let herd = Herd::start_via(prlimit, &ONE_SLEEPER);
    let worker = herd.started(1)[0].1;
    assert_eq!(
        nofile_limit(herd.pid()),
        "4096:4096",
        "herd raised its own soft limit"
    );
    assert_eq!(
        nofile_limit(worker),
        "256:4096",
        "the worker keeps the one herd was started with"
    );
    // The same after a re-exec: the new image starts from the original limit.
    let (code, _, stderr) = herd.ctl(&["reexec"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(nofile_limit(herd.pid()), "4096:4096");
    // SAFETY: kill with a worker's pid.
    unsafe { libc::kill(worker as i32, libc::SIGKILL) };
    let next = herd.started(2)[1].1;
    assert_eq!(nofile_limit(next), "256:4096");
}

/// Starts herd with two `shutdown_socket.py` workers (given `extra` arguments) that say
/// READY=1, on a socket named http on 127.0.0.1.
fn shutdown_socket_herd(extra: &[&str]) -> Herd {
    let script = worker("shutdown_socket.py");
    let mut args = vec![
        "run",
        "-w",
        "2",
        "--ready",
        "notify",
        "-b",
        "http=127.0.0.1:0",
        "--",
        "python3",
        &script,
    ];
    args.extend_from_slice(extra);
    Herd::start(&args)
}

/// Waits for herd to report that it made a shut-down socket listen again; returns that event.
fn wait_repair(herd: &Herd, what: &str) -> Value {
    herd.wait_event(what, |e| e["event"] == "socket_restored")
}

/// The pid (as text) of the worker that says it shut the socket down.
fn culprit_pid(herd: &Herd) -> String {
    herd.wait_text("shut the socket down")
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string()
}

#[test]
fn a_socket_shut_down_by_a_worker_listens_again() {
    let marker = tempfile::tempdir().unwrap();
    let marker = marker.path().join("shut-down");
    let herd = Herd::start(&[
        "run",
        "-w",
        "2",
        "--ready",
        "notify",
        "--metrics",
        "127.0.0.1:0",
        "-b",
        "http=127.0.0.1:0",
        "--",
        "python3",
        &worker("shutdown_socket.py"),
        marker.to_str().unwrap(),
    ]);
    let addr = herd.address("http");
    let metrics = metrics_address(&herd);
    // One worker shuts the shared socket down and exits: herd names it and repairs the socket.
    let culprit = culprit_pid(&herd);
    let event = wait_repair(&herd, "the repair");
    assert_eq!(event["socket"], "http", "{event}");
    assert_eq!(event["address"], addr.as_str(), "{event}");
    let named = event["culprit"].as_str().unwrap();
    assert!(named.contains(&format!("(pid {culprit})")), "{event}");
    // The port answers again, on the same address, and the workers settle.
    wait_until("the port to answer", || get(&addr, "/"));
    wait_status(&herd, "2 ready workers", |s| settled(s, 2));
    for _ in 0..20 {
        get(&addr, "/").expect("every request is answered once repaired");
    }
    let text = get(&metrics, "/metrics").unwrap();
    assert!(text.contains("herd_sockets_restored_total 1"), "{text}");
    // Logged once.
    let repairs = events(&herd.lines())
        .filter(|e| e["event"] == "socket_restored")
        .count();
    assert_eq!(repairs, 1);
}

#[test]
fn a_worker_that_keeps_shutting_the_socket_down_is_suspected_and_its_victims_do_not_back_off() {
    let marker = tempfile::tempdir().unwrap();
    let marker = marker.path().join("shut-down");
    let herd = shutdown_socket_herd(&["--stay", marker.to_str().unwrap()]);
    let addr = herd.address("http");
    let culprit: u32 = culprit_pid(&herd).parse().unwrap();
    // Nobody exited cleanly: herd does not blame a crashed victim, it names the workers that
    // still run, the culprit among them.
    let event = wait_repair(&herd, "the first repair");
    let named = event["culprit"].as_str().unwrap();
    assert!(
        named.contains("likely one that still runs, one of: ")
            && named.contains(&format!("(pid {culprit})")),
        "{event}"
    );
    // The other slot's workers crash on each shut-down socket (accept() fails): restarted at
    // once every time, no crash-loop backoff.
    let victims = herd.wait_events("two crashed victims", 2, |e| {
        is_exit(e) && e["pid"] != culprit
    });
    for exit in &victims {
        let message = exit["message"].as_str().unwrap();
        assert!(
            message.ends_with("; restarting it") && !message.contains("backoff"),
            "{exit}"
        );
    }
    assert!(alive(culprit));
    wait_until("the port to answer", || get(&addr, "/"));
}

#[test]
fn an_upgrade_survives_workers_that_shut_the_socket_down_on_stop() {
    // Old workers shut the shared socket down as they stop (Sanic's way): the new generation
    // must keep serving, and the upgrade must finish instead of waiting for its timeout.
    let herd = shutdown_socket_herd(&["--on-stop"]);
    let addr = herd.address("http");
    wait_status(&herd, "2 ready workers", |s| settled(s, 2));
    let (code, stdout, stderr) = herd.ctl(&["upgrade", "--timeout", "15s"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    wait_repair(&herd, "the repair");
    wait_status(&herd, "2 ready workers of generation 2", |s| {
        settled(s, 2) && s["generation"] == 2
    });
    for _ in 0..20 {
        get(&addr, "/").expect("the new generation answers");
    }
}
