//! Stopping: graceful drains, the grace deadline, and the fast ways out.

use std::io::{Read, Write};
use std::path::Path;

use crate::util::*;

#[test]
fn sigterm_lets_a_slow_request_finish() {
    let herd = Herd::start_with(|dir| {
        let mut cmd = herd_json();
        cmd.args(["run", "-w", "2", "-b", "web=127.0.0.1:0", "-b"])
            .arg(format!("unix:{}/slow.sock", dir.display()))
            .args(["--", "python3", &worker("probe.py")]);
        cmd
    });
    let mut herd = herd;
    let addr = herd.address("web");
    let sock = herd.path("slow.sock");
    let pids: Vec<u32> = herd.started(2).iter().map(|&(_, pid)| pid).collect();
    let client = std::thread::spawn(move || get(&addr, "/sleep/1500"));
    // The request is in flight once the worker says so.
    herd.wait_text("busy");
    herd.signal(libc::SIGTERM);
    let body = client
        .join()
        .unwrap()
        .expect("the slow request must complete");
    let reply: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(pids.contains(&(reply["pid"].as_u64().unwrap() as u32)));
    assert_eq!(herd.wait_exit().code(), Some(0));
    wait_gone(&pids);
    assert!(!Path::new(&sock).exists(), "socket file left behind");
}

/// The herd library's example worker (`herd::stop_requested`: SIGTERM is caught) answers the
/// request it is reading when herd stops it, then exits by itself, long before `--grace`.
#[test]
fn hello_answers_the_request_in_flight_when_stopped() {
    hello_answers_the_request_in_flight_when_stopped_with("TERM");
}

/// With another `--stop-signal`, which herd names in `HERD_STOP_SIGNAL`, the library catches
/// that one too (it was not caught: SIGINT ended hello mid-request).
#[test]
fn hello_answers_the_request_in_flight_when_stopped_with_sigint() {
    hello_answers_the_request_in_flight_when_stopped_with("INT");
}

fn hello_answers_the_request_in_flight_when_stopped_with(stop_signal: &str) {
    let hello = rust_example("hello");
    let mut herd = Herd::start(&[
        "run",
        "-w",
        "1",
        "--ready",
        "notify",
        "--grace",
        "1h",
        "--stop-signal",
        stop_signal,
        "-b",
        "http=127.0.0.1:0",
        "--",
        &hello,
    ]);
    let addr = herd.address("http");
    // Ready: hello sends READY=1 after it caught SIGTERM.
    let pid = herd.wait_for_event("worker_ready", &[])["pid"]
        .as_u64()
        .unwrap() as u32;
    let mut client = std::net::TcpStream::connect(&addr).unwrap();
    client.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    // hello holds the connection (and reads the rest of the head) once it has a TCP socket
    // besides its listener.
    wait_until("hello to accept the connection", || {
        match tcp_sockets_of(pid) {
            n if n >= 2 => Ok(()),
            n => Err(format!("{n} TCP sockets")),
        }
    });
    herd.signal(libc::SIGTERM);
    // herd has sent the stop signal once its status says the worker is stopping.
    wait_status(&herd, "the worker to be stopping", |s| {
        s["workers"].as_array().is_some_and(|w| {
            w.iter()
                .any(|w| w["pid"] == pid && !w["stopping_reason"].is_null())
        })
    });
    client.write_all(b"\r\n").unwrap();
    let mut answer = String::new();
    client.read_to_string(&mut answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 200 OK")
            && answer.ends_with(&format!("hello from pid {pid}, worker 0\n")),
        "the whole answer, got {answer:?}"
    );
    let exit = herd.wait_for_event("worker_exited", &[("pid", pid.into())]);
    assert!(
        exit["message"].as_str().unwrap().contains("exit code 0"),
        "{exit}"
    );
    assert_eq!(herd.wait_exit().code(), Some(0));
}

/// How many TCP sockets process `pid` holds (its fds' socket inodes listed in `net/tcp`).
fn tcp_sockets_of(pid: u32) -> usize {
    let tcp = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap_or_default();
    let inodes: Vec<&str> = tcp
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(9))
        .collect();
    open_fds(pid)
        .into_iter()
        .filter_map(|fd| std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok())
        .filter_map(|link| {
            let link = link.to_string_lossy().into_owned();
            Some(
                link.strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_string(),
            )
        })
        .filter(|inode| inodes.contains(&inode.as_str()))
        .count()
}

#[test]
fn workers_that_ignore_the_stop_signal_are_killed_after_grace() {
    // A `sleep` that ignores SIGTERM plays a worker that ignores the stop request.
    let mut herd = Herd::start(&[
        "run",
        "-w",
        "2",
        "--grace",
        "300ms",
        "-b",
        "127.0.0.1:0",
        "--",
        "sh",
        "-c",
        IGNORES_TERM,
    ]);
    let pids: Vec<u32> = herd.started(2).iter().map(|&(_, pid)| pid).collect();
    wait_ignoring_term(&pids);
    herd.signal(libc::SIGTERM);
    let kills = herd.wait_for_events("worker_killed", 2, &[]);
    for kill in &kills {
        assert_eq!(kill["message"], "killing worker: did not stop in time");
    }
    assert_eq!(herd.wait_exit().code(), Some(0));
    wait_gone(&pids);
}

/// A worker (`sh -c`) that becomes a `sleep` ignoring SIGTERM, the stop signal.
const IGNORES_TERM: &str = "trap '' TERM; exec sleep 1000";

/// Waits until each of `pids` ignores SIGTERM: a stop signal sent before the worker's `trap`
/// ran would end it at once.
fn wait_ignoring_term(pids: &[u32]) {
    for &pid in pids {
        wait_until("the worker to ignore SIGTERM", || {
            let ignored = status_field(pid, "SigIgn");
            match u64::from_str_radix(&ignored, 16) {
                Ok(mask) if mask & (1 << (libc::SIGTERM - 1)) != 0 => Ok(()),
                _ => Err(format!("SigIgn {ignored}")),
            }
        });
    }
}

/// Starts two workers that ignore the stop signal, with a grace period of an hour; returns
/// herd and the workers' pids.
fn start_stubborn() -> (Herd, Vec<u32>) {
    start_stubborn_with(&[])
}

/// [`start_stubborn`] with more options for herd.
fn start_stubborn_with(options: &[&str]) -> (Herd, Vec<u32>) {
    let mut args = vec!["run", "-w", "2", "--grace", "1h"];
    args.extend_from_slice(options);
    let herd = Herd::start(
        &[
            &args[..],
            &["-b", "127.0.0.1:0", "--", "sh", "-c", IGNORES_TERM],
        ]
        .concat(),
    );
    let pids: Vec<u32> = herd.started(2).iter().map(|&(_, pid)| pid).collect();
    wait_ignoring_term(&pids);
    (herd, pids)
}

#[test]
fn a_second_sigint_stops_at_once() {
    let (mut herd, pids) = start_stubborn();
    herd.signal(libc::SIGINT);
    herd.wait_for_event("stopping", &[]);
    herd.signal(libc::SIGINT);
    assert_eq!(herd.wait_exit().code(), Some(0));
    wait_gone(&pids);
}

#[test]
fn a_second_sigint_during_the_drain_delay_stops_at_once() {
    // It only skipped the drain: the workers then got their hour of grace, and only a third
    // Ctrl-C stopped herd.
    let (mut herd, pids) = start_stubborn_with(&["--drain-delay", "1h"]);
    herd.signal(libc::SIGINT);
    herd.wait_for_event("draining", &[("signal", "SIGINT".into())]);
    herd.signal(libc::SIGINT);
    assert_eq!(herd.wait_exit().code(), Some(0));
    wait_gone(&pids);
}

#[test]
fn a_second_graceful_stop_says_how_to_stop_at_once() {
    let (mut herd, pids) = start_stubborn();
    herd.signal(libc::SIGTERM);
    herd.wait_for_event("stopping", &[]);
    herd.signal(libc::SIGTERM);
    let again = herd.wait_for_event("already_stopping", &[]);
    let message = again["message"].as_str().unwrap_or_default();
    assert!(message.contains("`herd stop --fast`"), "{again}");
    herd.signal(libc::SIGQUIT);
    assert_eq!(herd.wait_exit().code(), Some(0));
    wait_gone(&pids);
}

/// `herd stop --grace` caps what the workers still stopping have left: those scaled down
/// before (an hour of grace), and on a second stop while stopping, those of the first.
#[test]
fn a_stops_grace_caps_every_worker_still_stopping() {
    let (herd, pids) = start_stubborn();
    let (code, _, stderr) = herd.ctl(&["scale", "1"]);
    assert_eq!(code, 0, "{stderr}");
    let first = ctl_later_at(herd.control(), &["stop", "--grace", "1h"]);
    herd.wait_for_event("stopping", &[]);
    let (code, _, stderr) = herd.ctl(&["stop", "--grace", "100ms"]);
    assert_eq!(code, 0, "{stderr}");
    let again = herd.wait_for_event("already_stopping", &[]);
    assert!(
        again["message"]
            .as_str()
            .unwrap_or_default()
            .contains("have 100ms at most"),
        "{again}"
    );
    wait_gone(&pids);
    assert_eq!(first.join().unwrap().0, 0);
}

#[test]
fn sigquit_stops_at_once() {
    let (mut herd, pids) = start_stubborn();
    herd.signal(libc::SIGQUIT);
    assert_eq!(herd.wait_exit().code(), Some(0));
    wait_gone(&pids);
}

/// A paused (SIGSTOPped) worker or attached process cannot act on the stop signal until it is
/// continued: herd sends SIGCONT after it, as systemd does, so the stop does not sit out the
/// grace period (an hour here) and end in SIGKILL.
#[test]
fn paused_workers_and_attached_processes_are_continued_on_stop() {
    use std::os::unix::process::ExitStatusExt;
    let mut herd = sleepers(&["-w", "1", "--grace", "1h"]);
    let worker = herd.started(1)[0].1;
    let mut attached = std::process::Command::new(HERD)
        .env("HERD_CONTROL", herd.control())
        .args(["attach", "--", "sleep", "1001"])
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = attached.id();
    herd.wait_for_event("worker_attached", &[("pid", pid.into())]);
    let (code, _, stderr) = herd.ctl(&["signal", "STOP"]);
    assert_eq!(code, 0, "{stderr}");
    // SAFETY: kill with our child's pid, not reaped yet.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGSTOP) }, 0);
    wait_until("both to pause", || {
        match (proc_state(worker), proc_state(pid)) {
            (Some('T'), Some('T')) => Ok(()),
            states => Err(states),
        }
    });

    herd.signal(libc::SIGTERM);
    assert_eq!(herd.wait_exit().code(), Some(0));
    let status = wait_child(&mut attached, TIMEOUT, libc::SIGKILL).unwrap();
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
    assert!(!alive(worker));
    assert!(
        !events(&herd.lines()).any(|e| [
            "worker_killed",
            "attached_worker_killed",
            "leftovers_killed"
        ]
        .contains(&e["event"].as_str().unwrap_or(""))),
        "nothing was killed: the stop signal did it"
    );
}

/// A server that reads each request and closes the connection without an answer, and keeps
/// listening: a herd that did not stop.
fn closes_without_answering(listener: std::os::unix::net::UnixListener) {
    use std::io::BufRead;
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut line = String::new();
            let _ = std::io::BufReader::new(&stream).read_line(&mut line);
        }
    });
}

#[test]
fn a_stop_closed_unanswered_by_a_server_still_listening_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("closes.sock");
    closes_without_answering(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let (code, stdout, stderr) = ctl_at(path.to_str().unwrap(), &["stop"]);
    assert_ne!(code, 0, "{stdout}");
    assert!(!stdout.contains("stopped"), "{stdout}");
    assert!(stderr.contains("closed"), "{stderr}");
}

#[test]
fn a_signal_sent_before_herd_has_read_its_command_line_does_not_end_it() {
    // herd reads a re-exec's state (handed over on an fd) before its command line and config
    // file: that read waits here on a FIFO the test writes once herd holds SIGHUP back.
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("state");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.unwrap().success());
    let mut herd = Herd::start_with(|_| {
        let mut cmd = std::process::Command::new("sh");
        cmd.args(["-c", "exec \"$@\" 3<\"$HERD_TEST_FIFO\"", "sh", HERD])
            .args([
                "--log-format",
                "json",
                "run",
                "-b",
                "127.0.0.1:0",
                "--",
                "true",
            ])
            .env("HERD_TEST_FIFO", &fifo)
            .env("HERD_REEXEC_STATE", "3");
        cmd
    });
    // Read and write: on Linux, such an open of a FIFO never waits (herd's shell opens it to
    // read, and sees its end once this one is closed).
    let mut state = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .unwrap();
    // Held back from herd's first instruction (was: only once its command line and config
    // were read, so that a SIGHUP, SIGUSR2 or SIGUSR1 sent meanwhile ended herd, started
    // with `&` or as a service, and a SIGTTIN stopped it).
    let hup = 1u64 << (libc::SIGHUP - 1);
    wait_until("SIGHUP held back while herd reads its state", || {
        let exe = std::fs::read_link(format!("/proc/{}/exe", herd.pid())).ok()?;
        let blocked = u64::from_str_radix(&status_field(herd.pid(), "SigBlk"), 16).unwrap();
        (exe == std::path::Path::new(HERD) && blocked & hup != 0).then_some(())
    });
    herd.signal(libc::SIGHUP);
    // Not unwrapped: without the fix herd is gone, and its exit below says how.
    let _ = state.write_all(b"not a state");
    drop(state);
    // herd goes on, and fails on the state it was given: not ended by the signal.
    let status = herd.wait_exit();
    assert_eq!(status.code(), Some(1), "{status:?}");
}

/// `herd signal` while herd stops reaches no worker (they are stopping): it says so and how to
/// hurry the stop, exit 1. Was: "sent SIGKILL to 0 worker(s)", exit 0, and "no worker runs in
/// slot 0" with --worker, to one trying to end a stop stuck in its grace period.
#[test]
fn a_signal_while_herd_stops_says_it_reaches_no_worker() {
    let (mut herd, pids) = start_stubborn();
    herd.signal(libc::SIGTERM);
    herd.wait_for_event("stopping", &[]);
    for args in [
        &["signal", "KILL"][..],
        &["signal", "KILL", "--worker", "0"],
    ] {
        let (code, stdout, stderr) = herd.ctl(args);
        assert_eq!((code, stdout.as_str()), (FAILURE, ""), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains("herd is stopping: its workers are stopping and get no other signal")
                && stderr.contains("'herd stop --fast' ends them at once"),
            "{stderr}"
        );
    }
    herd.signal(libc::SIGQUIT);
    assert_eq!(herd.wait_exit().code(), Some(0));
    wait_gone(&pids);
}

/// A herd killed (SIGKILL) while a stop waits for its workers: `herd stop` said "stopped" and
/// exited 0 (the killed herd's socket, left behind, answered nothing, as an exited herd's
/// does), while what its workers left could still hold the port.
#[test]
fn a_stop_whose_herd_is_killed_meanwhile_fails() {
    let herd = Herd::start(&[
        "run",
        "-w",
        "1",
        "--grace",
        "60s",
        "-b",
        "127.0.0.1:0",
        "--",
        "sh",
        "-c",
        "trap '' TERM; exec sleep 1000",
    ]);
    herd.started(1);
    herd.wait_for_event("control_ready", &[]);
    let mut stop = std::process::Command::new(HERD)
        .env("HERD_CONTROL", herd.control())
        .arg("stop")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    herd.wait_for_event("stopping", &[]);
    // SAFETY: kill with this test's herd's pid.
    assert_eq!(unsafe { libc::kill(herd.pid() as i32, libc::SIGKILL) }, 0);
    let status = wait_child(&mut stop, std::time::Duration::from_secs(30), libc::SIGKILL);
    let mut stderr = String::new();
    stop.stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{stderr}");
    assert!(
        stderr.contains("ended before it confirmed the stop"),
        "{stderr}"
    );
}

/// `herd ARGS` at `control`, on a thread: what it said, once it ends.
fn ctl_later_at(
    control: String,
    args: &'static [&'static str],
) -> std::thread::JoinHandle<(i32, String, String)> {
    std::thread::spawn(move || ctl_at(&control, args))
}
