//! A pause of herd itself (SIGSTOP, a freezer cgroup: `docker pause`, `systemctl freeze`) is
//! not its workers' fault: no watchdog or readiness timeout that ran out only while herd could
//! not read the workers' notifications fails them, no upgrade is aborted for it, and a client
//! whose request herd got before it stopped waits for it to resume.
//!
//! Each test stops herd for a bounded time with `SIGSTOP` and resumes it with `SIGCONT`: the
//! pause is the stimulus under test, not a wait for something to happen, so it is a sleep.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::util::*;

/// Stops herd, and once it is stopped, lets it be for `pause`; then resumes it.
fn pause(herd: &Herd, pause: Duration) {
    kill(herd.pid(), libc::SIGSTOP);
    wait_until("herd to be stopped", || match proc_state(herd.pid()) {
        Some('T') => Ok(()),
        state => Err(state),
    });
    std::thread::sleep(pause);
    kill(herd.pid(), libc::SIGCONT);
}

/// A herd of two probe.py workers that send `WATCHDOG=1` three times per `--watchdog`, once
/// both are ready; their pids.
fn watched(watchdog: &str) -> (Herd, Vec<u32>) {
    let herd = Herd::start(&[
        "run",
        "-w",
        "2",
        "--ready",
        "notify",
        "--watchdog",
        watchdog,
        "-b",
        "127.0.0.1:0",
        "--",
        "python3",
        &worker("probe.py"),
    ]);
    let status = wait_status(&herd, "2 ready workers", |s| settled(s, 2));
    let mut pids = worker_pids(&status);
    pids.sort_unstable();
    (herd, pids)
}

/// herd's `worker_killed` events so far.
fn kills(herd: &Herd) -> Vec<Value> {
    events(&herd.lines())
        .filter(|e| e["event"] == "worker_killed")
        .cloned()
        .collect()
}

/// The live workers' pids in a fresh `herd status` (answered on a turn after every turn
/// before it, so whatever herd decided on its resume is done).
fn live_pids(herd: &Herd) -> Vec<u32> {
    let mut pids = worker_pids(&herd.status());
    pids.sort_unstable();
    pids
}

#[test]
fn a_pause_of_herd_longer_than_the_watchdog_kills_no_worker() {
    let (herd, before) = watched("1s");
    // The workers ping on while herd is stopped: their pings wait in the notify socket.
    pause(&herd, Duration::from_millis(2500));
    assert_eq!(live_pids(&herd), before, "the same workers serve on");
    assert_eq!(kills(&herd), Vec::<Value>::new(), "no worker was killed");
    let resumed = herd.wait_for_event("resumed", &[]);
    assert!(resumed["stalled"].as_str().is_some(), "{resumed}");
    // herd goes on supervising: a worker that truly stops pinging is still caught.
    kill(before[0], libc::SIGSTOP);
    let killed = herd.wait_for_event("worker_killed", &[("pid", before[0].into())]);
    assert_eq!(killed["message"], "killing worker: watchdog timeout");
    let status = wait_status(&herd, "a replacement", |s| {
        settled(s, 2) && !worker_pids(s).contains(&before[0])
    });
    assert!(worker_pids(&status).contains(&before[1]), "{status}");
    assert_eq!(kills(&herd).len(), 1, "only the silent worker was killed");
}

#[test]
fn a_freeze_of_herd_and_its_workers_longer_than_the_watchdog_kills_no_worker() {
    // As a freezer cgroup freezes them all: nothing is sent while frozen. herd resumes first
    // (the worst order: the workers' deadlines passed, and no ping waits), the workers 300 ms
    // later; with --watchdog 2s each has at least 1.3 s left after the resume to ping.
    let (herd, before) = watched("2s");
    kill(herd.pid(), libc::SIGSTOP);
    for &pid in &before {
        kill(pid, libc::SIGSTOP);
    }
    std::thread::sleep(Duration::from_secs(4));
    kill(herd.pid(), libc::SIGCONT);
    std::thread::sleep(Duration::from_millis(300));
    for &pid in &before {
        // Not asserted: a worker herd wrongly killed on its resume is gone (the check below
        // says so).
        // SAFETY: kill with a valid signal number, to a worker of this test's herd.
        unsafe { libc::kill(pid as i32, libc::SIGCONT) };
    }
    herd.wait_for_event("resumed", &[]);
    // No kill may come later either: a worker whose pings after its resume went unheard
    // would be killed within a watchdog's length (2 s) of the resume. That absence takes a
    // bounded look.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(live_pids(&herd), before, "the same workers serve on");
    assert_eq!(kills(&herd), Vec::<Value>::new(), "no worker was killed");
}

/// A herd of 2 probe.py workers, each `READY=1` about `delay` after its start (a shell sleeps
/// first), with `args` added to `herd run`.
fn slow_to_ready(delay: &str, args: &[&str]) -> Herd {
    let mut all = vec!["run", "-w", "2", "--ready", "notify"];
    all.extend_from_slice(args);
    let script = format!("sleep {delay}; exec python3 \"$0\"");
    let probe = worker("probe.py");
    all.extend_from_slice(&["-b", "127.0.0.1:0", "--", "sh", "-c", &script, &probe]);
    Herd::start(&all)
}

#[test]
fn an_upgrade_paused_past_the_ready_timeout_goes_on() {
    let herd = slow_to_ready("0.3", &["--ready-timeout", "3s"]);
    wait_status(&herd, "2 ready workers", |s| settled(s, 2));
    herd.signal(libc::SIGHUP);
    herd.wait_for_event("worker_started", &[("generation", 2.into())]);
    // The new worker sends READY=1 about 0.4 s after its start, while herd is stopped; herd
    // resumes after the 3 s --ready-timeout.
    pause(&herd, Duration::from_secs(4));
    let ended = herd.wait_event("the upgrade's end", |e| {
        e["event"] == "upgrade_finished" || e["event"] == "upgrade_aborted"
    });
    assert_eq!(ended["event"], "upgrade_finished", "{ended}");
    assert_eq!(kills(&herd), Vec::<Value>::new(), "no worker was killed");
}

#[test]
fn herd_upgrade_waits_for_a_herd_paused_mid_upgrade() {
    let herd = slow_to_ready("1", &[]);
    wait_status(&herd, "2 ready workers", |s| settled(s, 2));
    let client = Command::new(env!("CARGO_BIN_EXE_herd"))
        .env("HERD_CONTROL", herd.control())
        .arg("upgrade")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // herd got the request: stop it for 1.5 s, while its new workers start (the client looks
    // at herd's state every 0.5 s).
    herd.wait_for_event("upgrade_started", &[]);
    pause(&herd, Duration::from_millis(1500));
    let out = wait_output(client);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.starts_with("upgraded"), "{stdout}");
    let waited = format!(
        "herd: the herd at {} (pid {}) is stopped (by SIGSTOP, Ctrl-Z or a debugger) with the \
         request delivered; waiting for it to resume ('kill -CONT {}')\n",
        herd.control(),
        herd.pid(),
        herd.pid()
    );
    assert_eq!(stderr, waited, "said once");
}

/// A new worker paused by someone (`kill -STOP`, a debugger) serves nothing: the upgrade does
/// not stop the old worker for it, and ends at its timeout with the old worker serving. It
/// succeeded before, stopping the only worker that served: with the default `--ready
/// delay=1s`, a stopped process is ready a second after its start, and available after
/// `--min-ready`.
#[test]
fn an_upgrade_onto_a_paused_worker_keeps_the_old_one_serving() {
    let herd = Herd::start(&[
        "run",
        "-w",
        "1",
        "--min-ready",
        "2s",
        "-b",
        "127.0.0.1:0",
        "--",
        "python3",
        &worker("probe.py"),
    ]);
    let old = worker_pids(&wait_status(&herd, "1 available worker", |s| {
        settled(s, 1) && s["available"] == 1
    }))[0];
    let client = Command::new(env!("CARGO_BIN_EXE_herd"))
        .env("HERD_CONTROL", herd.control())
        .args(["upgrade", "--timeout", "5s"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = herd.wait_for_event("worker_started", &[("generation", 2.into())]);
    let new = started["pid"].as_u64().unwrap() as u32;
    kill(new, libc::SIGSTOP);
    herd.wait_for_event("worker_paused", &[("pid", new.into())]);
    let out = wait_output(client);
    let said = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{said}");
    assert!(
        said.contains(&format!("new worker {new} is paused")),
        "{said}"
    );
    herd.wait_for_event("upgrade_aborted", &[]);
    let status = herd.status();
    assert!(worker_pids(&status).contains(&old), "{status}");
    assert_eq!(status["generation"], 1, "{status}");
}

/// `child`'s output once it exits, within the tests' timeout (its output is a few lines,
/// which its pipes hold until it is read).
fn wait_output(mut child: std::process::Child) -> std::process::Output {
    let status = wait_child(&mut child, TIMEOUT, libc::SIGKILL).expect("the client exits");
    let read = |pipe: Option<&mut dyn std::io::Read>| {
        let mut bytes = Vec::new();
        pipe.unwrap().read_to_end(&mut bytes).unwrap();
        bytes
    };
    std::process::Output {
        status,
        stdout: read(child.stdout.as_mut().map(|p| p as &mut dyn std::io::Read)),
        stderr: read(child.stderr.as_mut().map(|p| p as &mut dyn std::io::Read)),
    }
}
