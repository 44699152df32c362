//! Seeing the pool: `herd status`'s exit status for a degraded pool, `herd status --watch`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;

use crate::util::*;

/// herd's exit status for a degraded pool.
const DEGRADED: i32 = 3;

#[test]
fn herd_status_exits_3_while_fewer_workers_are_ready_than_wanted() {
    // Never ready: `sleep` sends no READY=1.
    let short = sleepers(&["-w", "1", "--ready", "notify"]);
    short.started(1);
    let (code, table, stderr) = short.ctl(&["status"]);
    assert_eq!(code, DEGRADED, "{stderr}");
    assert_eq!(stderr, "herd: degraded: 0 of 1 workers ready\n");
    assert!(table.contains("starting"), "{table}");
    // The JSON says it in its fields; its exit status is that herd answered.
    let (code, json, _) = short.ctl(&["status", "--json"]);
    assert_eq!(code, 0);
    assert!(json.contains("\"ready\": 0"), "{json}");

    let healthy = sleeper_on_http();
    healthy.wait_for_event("worker_ready", &[]);
    let (code, _, stderr) = healthy.ctl(&["status"]);
    assert_eq!((code, stderr.as_str()), (0, ""));
}

#[test]
fn herd_status_watch_prints_every_second_until_ctrl_c_or_herd_is_gone() {
    let herd = sleepers(&["-w", "1", "--ready", "notify"]);
    herd.started(1);
    herd.wait_for_event("control_ready", &[]);
    // Ctrl-C: the last status's code (degraded).
    let (mut watch, lines) = start_watch(&herd);
    wait_separators(&lines, 2);
    Command::new("kill")
        .args(["-INT", &watch.id().to_string()])
        .status()
        .unwrap();
    let status = wait_child(&mut watch, TIMEOUT, libc::SIGKILL).expect("watch to exit");
    assert_eq!(status.code(), Some(DEGRADED));
    // herd gone: one line and exit 1.
    let (mut watch, lines) = start_watch(&herd);
    wait_separators(&lines, 1);
    assert_eq!(herd.ctl(&["stop"]).0, 0);
    let status = wait_child(&mut watch, TIMEOUT, libc::SIGKILL).expect("watch to exit");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut watch.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(FAILURE), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("no herd"), "{stderr}");
}

/// A paused herd (SIGSTOP, a debugger) is not gone: `--watch` says how to resume it and waits,
/// then goes on; it ended with "the herd ... is stopped" and exit 1.
#[test]
fn herd_status_watch_waits_for_a_paused_herd() {
    let herd = sleeper_on_http();
    herd.wait_for_event("worker_ready", &[]);
    let (mut watch, lines) = start_watch(&herd);
    wait_separators(&lines, 1);
    let pid = herd.pid() as i32;
    // SAFETY: kill sends a signal to the herd this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let note = format!("herd (pid {pid}) is paused");
    let next = |what: &str| loop {
        match lines.recv_timeout(TIMEOUT) {
            Ok(line) if line.contains(what) => return line,
            Ok(_) => {}
            Err(e) => panic!("{e}: waiting for a line with {what:?}"),
        }
    };
    let said = next(&note);
    assert!(said.contains(&format!("'kill -CONT {pid}'")), "{said}");
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    next("1 of 1 workers ready");
    assert!(watch.try_wait().unwrap().is_none(), "the watch ended");
    Command::new("kill")
        .args(["-INT", &watch.id().to_string()])
        .status()
        .unwrap();
    let status = wait_child(&mut watch, TIMEOUT, libc::SIGKILL).expect("watch to exit");
    assert_eq!(status.code(), Some(0));
}

/// `herd status --watch | head -1`: once its reader has gone, the watch ends (quietly, with the
/// last status's code), as the README's Client output says. It printed every second into the
/// broken pipe forever, EPIPE taken for "written", and the shell's pipeline never ended.
#[test]
fn herd_status_watch_ends_when_its_reader_goes() {
    let herd = sleepers(&["-w", "1", "--ready", "notify"]);
    herd.started(1);
    herd.wait_for_event("control_ready", &[]);
    let mut watch = Command::new(HERD)
        .env("HERD_CONTROL", herd.control())
        .args(["status", "--watch"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(watch.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("--- "), "{first}");
    // The read end is closed: the next status's write fails with EPIPE.
    let status = wait_child(&mut watch, TIMEOUT, libc::SIGKILL)
        .expect("herd status --watch to end once its reader is gone");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut watch.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(DEGRADED), "{stderr}");
    assert!(stderr.contains("degraded"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

/// Starts `herd status --watch` piped; its stdout's lines come over the channel.
fn start_watch(herd: &Herd) -> (std::process::Child, mpsc::Receiver<String>) {
    let mut child = Command::new(HERD)
        .env("HERD_CONTROL", herd.control())
        .args(["status", "--watch"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    (child, rx)
}

/// Waits for `n` statuses, each after its `--- TIME` line, with no terminal escapes.
fn wait_separators(lines: &mpsc::Receiver<String>, n: usize) {
    let mut seen = Vec::new();
    while seen
        .iter()
        .filter(|l: &&String| l.starts_with("--- "))
        .count()
        < n
    {
        match lines.recv_timeout(TIMEOUT) {
            Ok(line) => seen.push(line),
            Err(e) => panic!("{e}: waiting for {n} statuses, saw {seen:#?}"),
        }
    }
    assert!(seen.iter().all(|l| !l.contains('\x1b')), "{seen:#?}");
    let separators = seen.iter().filter(|l| l.starts_with("--- ")).count();
    assert_eq!(separators, n, "{seen:#?}");
}
