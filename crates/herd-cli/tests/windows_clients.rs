//! The client commands against a real `herd run` on Windows, run under Wine by
//! scripts/check-windows.sh: `status` (table and JSON), `scale`, `upgrade` and `stop` over the
//! control pipe, and a program herd did not start fetching the sockets with
//! `herd::Sockets::from_control` and serving on them.
#![cfg(windows)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use serde_json::Value;

mod windows_support;

use windows_support::{answer, client, Herd, SpawnUnderWine, TIMEOUT};

/// With `HERD_TEST_WORKER` set, this test binary is the worker herd runs: it answers every
/// connection on `http` with its pid.
#[test]
fn worker() {
    if std::env::var_os("HERD_TEST_WORKER").is_none() {
        return;
    }
    let mut sockets = herd::Sockets::from_env().expect("sockets from herd");
    let listener = sockets.take_tcp_listener("http").unwrap().expect("http");
    let pid = std::process::id();
    for mut stream in listener.incoming().flatten() {
        let _ = writeln!(stream, "worker pid {pid}");
    }
}

/// The pids of the ready workers herd's `status --json` lists.
fn ready_pids(status: &Value) -> BTreeSet<u64> {
    let workers = status["workers"].as_array().unwrap();
    let ready = workers.iter().filter(|w| w["state"] == "ready");
    ready.filter_map(|w| w["pid"].as_u64()).collect()
}

#[test]
fn status_scale_upgrade_and_stop_talk_to_a_running_herd() {
    let herd = Herd::start(&["-w", "2"]);
    for _ in 0..2 {
        herd.wait_for("worker_ready");
    }
    let status: Value = serde_json::from_str(&client(&herd.name, &["status", "--json"])).unwrap();
    assert_eq!(
        (status["desired"].as_u64(), status["ready"].as_u64()),
        (Some(2), Some(2))
    );
    let before = ready_pids(&status);
    let table = client(&herd.name, &["status"]);
    let header = format!("herd '{}' pid {}, ", herd.name, herd.child.id());
    assert!(table.starts_with(&header), "{table}");

    assert_eq!(
        client(&herd.name, &["scale", "3"]),
        "scaled from 2 to 3 workers\n"
    );
    herd.wait_for("worker_ready");
    assert_eq!(herd.answers(3, 3).len(), 3);

    assert_eq!(
        client(&herd.name, &["upgrade"]),
        "upgraded: every worker now runs generation 2\n"
    );
    // Upgraded: the ready workers are new ones (the old ones may still be stopping).
    let status: Value = serde_json::from_str(&client(&herd.name, &["status", "--json"])).unwrap();
    assert_eq!(status["ready"].as_u64(), Some(3), "{status}");
    assert!(ready_pids(&status).is_disjoint(&before), "{status}");

    assert_eq!(client(&herd.name, &["stop", "--fast"]), "stopped\n");
    herd.stop_waited();
}

/// With `HERD_TEST_FETCH` set to a pipe, this test binary is a program herd did not start: it
/// fetches the socket `http` from the herd there and answers connections with
/// `fetched by PID` until it has answered one.
#[test]
fn fetching_program() {
    let Some(pipe) = std::env::var_os("HERD_TEST_FETCH") else {
        return;
    };
    let mut sockets = herd::Sockets::from_control(Path::new(&pipe)).expect("sockets from herd");
    let listener = sockets.take_tcp_listener("http").unwrap().expect("http");
    println!("ready");
    let (mut stream, _) = listener.accept().unwrap();
    let _ = writeln!(stream, "fetched by {}", std::process::id());
}

#[test]
fn a_program_herd_did_not_start_fetches_its_sockets_and_serves() {
    let herd = Herd::start(&["-w", "1"]);
    let user = herd_sys::windows::sid::Sid::current_user().unwrap();
    let pipe =
        herd_cli::control::pipe_name::resolve(None, None, &herd.name, user.as_str()).unwrap();
    let mut program = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "fetching_program",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("HERD_TEST_FETCH", &pipe)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn_under_wine()
        .unwrap();
    // What the program says, should it fail (seen once under Wine: it never answered).
    let mut stderr = program.stderr.take().unwrap();
    let said = std::thread::spawn(move || {
        let mut said = String::new();
        let _ = stderr.read_to_string(&mut said);
        said
    });
    let (tell, told) = mpsc::channel();
    let stdout = BufReader::new(program.stdout.take().unwrap());
    std::thread::spawn(move || {
        // libtest's "test fetching_program ... " leads the line.
        let ready = (stdout.lines().map_while(Result::ok)).any(|l| l.ends_with("ready"));
        let _ = tell.send(ready);
    });
    assert_eq!(
        told.recv_timeout(TIMEOUT),
        Ok(true),
        "the program fetched the sockets"
    );
    // herd's worker shares the socket: ask until the program has answered.
    let expected = format!("fetched by {}", program.id());
    let deadline = Instant::now() + TIMEOUT;
    while answer(&herd.addr).trim() != expected {
        if let Ok(Some(exit)) = program.try_wait() {
            let said = said.join().unwrap_or_default();
            panic!("the program exited ({exit}) before it answered: {said}");
        }
        assert!(Instant::now() < deadline, "the program never answered");
    }
    let _ = program.wait();
    assert_eq!(client(&herd.name, &["stop", "--fast"]), "stopped\n");
    herd.stop_waited();
}

#[test]
fn more_accounts_may_be_let_in_on_the_control_pipe() {
    // Wine runs every process as one user, so it cannot show another account let in or
    // refused: this shows that the descriptor with the Users group (S-1-5-32-545) is taken and
    // herd's own user still gets in; a name that is no account is refused in one line.
    let herd = Herd::start(&["-w", "1", "--control-allow-user", "S-1-5-32-545"]);
    herd.wait_for("worker_ready");
    assert!(client(&herd.name, &["status"]).contains("ready"));
    client(&herd.name, &["stop", "--fast"]);
    herd.stop_waited();
    windows_support::assert_fails(
        &[
            "run",
            "--control-allow-user",
            "no-such-account-herd",
            "-b",
            ":0",
            "--",
            "x",
        ],
        2,
        "--control-allow-user no-such-account-herd: no such account",
    );
}

/// Two `herd stop --fast` at once against a herd that stops in milliseconds: a client that
/// reached herd says it stopped (also when herd exited before answering it), one that came
/// too late says that no herd runs (exit 1); never another error.
#[test]
fn two_stops_at_once_each_report_the_stop_or_no_herd() {
    let herd = Herd::start(&["-w", "1"]);
    herd.wait_for("worker_ready");
    let stop = || {
        Command::new(windows_support::HERD)
            .args(["--name", &herd.name, "stop", "--fast"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn_under_wine()
            .unwrap()
    };
    let (first, second) = (stop(), stop());
    let mut stopped = 0;
    for out in [first.wait_with_output(), second.wait_with_output()] {
        let out = out.unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        match out.status.code() {
            Some(0) if stdout == "stopped\n" => stopped += 1,
            Some(1) if stderr.contains(&format!("no herd named {} is running", herd.name)) => {}
            other => panic!("{other:?}: {stdout} {stderr}"),
        }
    }
    assert!(stopped >= 1, "no client reported the stop");
    herd.stop_waited();
}

#[test]
fn herd_status_exits_3_while_fewer_workers_are_ready_than_wanted() {
    // This test's worker never sends READY=1: with --ready notify it never counts as ready.
    let herd = Herd::start(&["-w", "1", "--ready", "notify"]);
    herd.wait_for("worker_started");
    let out = Command::new(windows_support::HERD)
        .args(["--name", &herd.name, "status"])
        .stdin(Stdio::null())
        .output_under_wine()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert_eq!(stderr, "herd: degraded: 0 of 1 workers ready\n");
    assert!(String::from_utf8_lossy(&out.stdout).contains("starting"));
    // The JSON says it in its fields and exits 0.
    let status: Value = serde_json::from_str(&client(&herd.name, &["status", "--json"])).unwrap();
    assert_eq!(
        (status["ready"].as_u64(), status["desired"].as_u64()),
        (Some(0), Some(1))
    );
    client(&herd.name, &["stop", "--fast"]);
    herd.stop_waited();
}

#[test]
fn herd_status_watch_prints_every_second_until_herd_is_gone() {
    let herd = Herd::start(&["-w", "1"]);
    herd.wait_for("worker_ready");
    let mut watch = Command::new(windows_support::HERD)
        .args(["--name", &herd.name, "status", "--watch"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn_under_wine()
        .unwrap();
    let (tx, lines) = mpsc::channel();
    let stdout = BufReader::new(watch.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // Piped: each status after a `--- TIME` line, no terminal escapes.
    let mut seen = Vec::new();
    while seen
        .iter()
        .filter(|l: &&String| l.starts_with("herd '"))
        .count()
        < 2
    {
        let line = lines.recv_timeout(TIMEOUT).expect("two statuses");
        assert!(!line.contains('\x1b'), "{line:?}");
        seen.push(line);
    }
    assert_eq!(
        seen.iter().filter(|l| l.starts_with("--- ")).count(),
        2,
        "{seen:#?}"
    );
    client(&herd.name, &["stop", "--fast"]);
    herd.stop_waited();
    let (tx, exited) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(watch.wait_with_output());
    });
    let out = exited
        .recv_timeout(TIMEOUT)
        .expect("watch to exit")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("no herd named"), "{stderr}");
}
