//! `herd run`: workers share the sockets, get exactly what the protocol promises, and are
//! supervised.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::*;

/// Parses hello.py's "hello from pid X, worker Y".
fn hello_pid_slot(body: &str) -> (u32, String) {
    let rest = body.trim().strip_prefix("hello from pid ").unwrap();
    let (pid, slot) = rest.split_once(", worker ").unwrap();
    (pid.parse().unwrap(), slot.to_string())
}

#[test]
fn four_workers_share_one_accept_queue() {
    let herd = Herd::start(&[
        "run",
        "-w",
        "4",
        "-b",
        "http=127.0.0.1:0",
        "--",
        "python3",
        &example("hello.py"),
    ]);
    let addr = herd.address("http");
    let mut answered: BTreeMap<u32, String> = BTreeMap::new();
    let mut requests = 0;
    // 200 sequential connections at least, and until every worker has answered.
    wait_until("every worker to answer", || {
        let (pid, slot) = hello_pid_slot(&get(&addr, "/").unwrap());
        answered.insert(pid, slot);
        requests += 1;
        if requests >= 200 && answered.len() == 4 {
            Ok(())
        } else {
            Err(format!("{requests} requests answered by {answered:?}"))
        }
    });
    let slots: BTreeSet<&str> = answered.values().map(String::as_str).collect();
    assert_eq!(slots, BTreeSet::from(["0", "1", "2", "3"]));
    let started: BTreeSet<u32> = herd.started(4).iter().map(|&(_, pid)| pid).collect();
    assert_eq!(started, answered.keys().copied().collect());
}

#[test]
fn python_systemd_accepts_the_sockets() {
    let herd = Herd::start_with(|dir| {
        let mut cmd = herd_json();
        let unix = format!("local=unix:{}/py.sock", dir.display());
        cmd.args(["run", "-w", "2", "-b", "web=127.0.0.1:0", "-b"])
            .arg(unix)
            .args(["--", "/usr/bin/python3", &worker("systemd_worker.py")]);
        cmd
    });
    let addr = herd.address("web");
    let reply: serde_json::Value = serde_json::from_str(&get(&addr, "/").unwrap()).unwrap();
    assert_eq!(
        reply["fds"],
        serde_json::json!({"3": "web", "4": "local"}),
        "{reply}"
    );
    assert_eq!(
        reply["seen"]["LISTEN_PID"],
        reply["pid"].to_string(),
        "{reply}"
    );
    assert_eq!(reply["seen"]["LISTEN_FDS"], "2");
    assert_eq!(reply["seen"]["LISTEN_FDNAMES"], "web:local");
    assert_eq!(reply["unix_family"], true);
}

#[test]
fn workers_inherit_exactly_their_sockets_and_default_signals() {
    // herd itself inherits a stray fd 7 without CLOEXEC and a NOTIFY_SOCKET of its own: neither
    // may reach a worker.
    let herd = Herd::start_with(|dir| {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg("exec 7</dev/null; exec \"$0\" \"$@\"")
            .arg(HERD)
            .args([
                "--log-format",
                "json",
                "run",
                "-w",
                "1",
                "-b",
                "web=127.0.0.1:0",
                "-b",
            ])
            .arg(format!("unix:{}/x.sock", dir.display()))
            .args(["--", "sleep", "1000"])
            .env("NOTIFY_SOCKET", "/nonexistent/notify");
        cmd
    });
    let (_, pid) = herd.started(1)[0];
    // Right after exec, the program's dynamic loader briefly opens its libraries: wait until it
    // is done. A leaked fd never goes away, and the deadline reports what was seen.
    let expected = BTreeSet::from([0, 1, 2, 3, 4]);
    let mut seen = BTreeSet::new();
    let settled = (0..2000).any(|_| {
        seen = open_fds(pid);
        seen == expected || {
            std::thread::sleep(std::time::Duration::from_millis(10));
            false
        }
    });
    assert!(settled, "worker fds: {seen:?}, expected {expected:?}");
    for fd in [0, 1, 2, 3, 4] {
        assert_eq!(
            fd_flags(pid, fd) & libc::O_CLOEXEC as u32,
            0,
            "fd {fd} is CLOEXEC"
        );
    }
    let link = |fd| std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).unwrap();
    assert_eq!(link(0).to_str().unwrap(), "/dev/null");
    assert!(link(3).to_str().unwrap().starts_with("socket:"));
    assert!(link(4).to_str().unwrap().starts_with("socket:"));

    for field in ["SigBlk", "SigIgn", "SigCgt"] {
        assert_eq!(status_field(pid, field), "0000000000000000", "{field}");
    }
    let env = environ(pid);
    for expected in [
        format!("LISTEN_PID={pid}"),
        "LISTEN_FDS=2".to_string(),
        "LISTEN_FDNAMES=web:unix-x.sock".to_string(),
        "HERD_WORKER=0".to_string(),
        "HERD_GENERATION=1".to_string(),
        format!("HERD_CONTROL={}", herd.control()),
        format!("NOTIFY_SOCKET={}", herd.notify_path()),
    ] {
        assert!(env.contains(&expected), "{expected} missing from {env:?}");
    }
    assert!(
        !env.iter().any(|v| v.contains("/nonexistent/notify")),
        "herd's own NOTIFY_SOCKET leaked: {env:?}"
    );

    // Its own process group, so that herd can stop the worker and any children it forks.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    assert_eq!(fields[2], pid.to_string(), "pgid");
}

#[test]
fn templates_are_expanded_per_worker() {
    let herd = Herd::start(&[
        "run",
        "-w",
        "2",
        "-b",
        "a=127.0.0.1:0",
        "-b",
        "b=127.0.0.1:0",
        "--",
        "sh",
        "-c",
        "echo \"argv: $1 $2 $3 $4\" >&2; exec sleep 1000",
        "sh",
        "{fd:b}",
        "{worker}",
        "{{x}}",
        "g{generation}",
    ]);
    herd.wait_text("argv: 4 0 {x} g1");
    herd.wait_text("argv: 4 1 {x} g1");
    let (code, _, stderr) = herd.ctl(&["upgrade"]);
    assert_eq!(code, 0, "{stderr}");
    herd.wait_text("argv: 4 0 {x} g2");
    herd.wait_text("argv: 4 1 {x} g2");
}

#[test]
fn a_killed_worker_is_replaced_in_its_slot() {
    let herd = Herd::start(&[
        "run",
        "-w",
        "2",
        "-b",
        "http=127.0.0.1:0",
        "--",
        "python3",
        &example("hello.py"),
    ]);
    let addr = herd.address("http");
    let victim = herd
        .started(2)
        .into_iter()
        .find(|&(slot, _)| slot == 1)
        .unwrap()
        .1;
    // SAFETY: kill with a worker's pid and SIGKILL.
    assert_eq!(unsafe { libc::kill(victim as i32, libc::SIGKILL) }, 0);
    let exit = herd.wait_event("the exit", |e| is_exit(e) && e["pid"] == victim);
    assert!(
        exit["message"]
            .as_str()
            .unwrap()
            .contains("killed by SIGKILL"),
        "{exit}"
    );
    let successor = herd.wait_event("a successor", |e| {
        is_start(e) && e["slot"] == 1 && e["pid"] != victim
    })["pid"]
        .as_u64()
        .unwrap() as u32;
    // Connections keep being served, and the successor serves them in slot 1.
    wait_until("the successor to answer", || {
        let (pid, slot) = hello_pid_slot(&get(&addr, "/").unwrap());
        assert_ne!(pid, victim);
        if pid == successor {
            assert_eq!(slot, "1");
            Ok(())
        } else {
            Err(format!("an answer from pid {pid}"))
        }
    });
}

#[test]
fn crash_loops_back_off_exponentially() {
    let mut herd = Herd::start(&[
        "run",
        "-w",
        "1",
        "-b",
        "127.0.0.1:0",
        "--",
        "sh",
        "-c",
        "exit 3",
    ]);
    let exits = herd.wait_events("4 crashes", 4, is_exit);
    let messages: Vec<&str> = exits
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert!(
        messages[0].ends_with("exit code 3; restarting it"),
        "{messages:?}"
    );
    assert!(
        messages[1].contains("restarting it in 100ms"),
        "{messages:?}"
    );
    assert!(
        messages[2].contains("restarting it in 200ms"),
        "{messages:?}"
    );
    assert!(
        messages[3].contains("restarting it in 400ms"),
        "{messages:?}"
    );
    herd.signal(libc::SIGTERM);
    assert_eq!(herd.wait_exit().code(), Some(0));
}

#[test]
fn a_stop_cancels_pending_restarts() {
    // Slot 0 crash-loops; slot 1 takes 3s to stop, so herd is still stopping when slot 0's
    // backoff runs out: its restart must not happen.
    let mut herd = Herd::start(&[
        "run",
        "-w",
        "2",
        "-b",
        "127.0.0.1:0",
        "--",
        "sh",
        "-c",
        "if [ \"$HERD_WORKER\" = 1 ]; then trap 'sleep 3; exit 0' TERM; sleep 1000 & wait; else exit 3; fi",
    ]);
    herd.wait_for_event("worker_exited", &[("restart_in", "800ms".into())]);
    let waiting = herd.status()["waiting"].clone();
    assert_eq!(waiting[0]["slot"], 0, "a restart is pending: {waiting}");
    let asked = Instant::now();
    herd.signal(libc::SIGTERM);
    assert_eq!(herd.wait_exit().code(), Some(0));
    assert!(
        asked.elapsed() > Duration::from_secs(2),
        "slot 1 should have taken 3s to stop: {:?}",
        asked.elapsed()
    );
    let lines = herd.lines();
    let all: Vec<&serde_json::Value> = events(&lines).collect();
    let stop = all
        .iter()
        .position(|e| e["event"] == "stopping")
        .expect("a stop event");
    assert!(
        !all[stop..]
            .iter()
            .any(|e| is_start(e) || e["event"] == "worker_start_failed"),
        "herd tried to start a worker while stopping: {:?}",
        &all[stop..]
    );
}

#[test]
fn rust_example_worker_serves_under_herd() {
    let hello = rust_example("hello");
    let herd = Herd::start(&["run", "-w", "2", "-b", "http=127.0.0.1:0", "--", &hello]);
    let addr = herd.address("http");
    let body = get(&addr, "/").unwrap();
    assert!(body.starts_with("hello from pid "), "{body}");
    assert!(
        body.contains(", worker 0") || body.contains(", worker 1"),
        "{body}"
    );
}

#[test]
fn workers_die_with_a_killed_supervisor() {
    let mut herd = sleepers(&["-w", "3"]);
    let pids: Vec<u32> = herd.started(3).iter().map(|&(_, pid)| pid).collect();
    herd.signal(libc::SIGKILL);
    herd.wait_exit();
    wait_gone(&pids);
}
