//! `herd attach -- COMMAND` on Windows, run under Wine by scripts/check-windows.sh: COMMAND
//! gets the sockets as a worker does and serves, `herd attach` is listed in `herd status`,
//! relays COMMAND's exit code, and stops with herd (COMMAND's stop request, then
//! TerminateProcess after --grace); a program that attaches itself with the library stops on
//! that herd's stop event; bad input fails with one line.
#![cfg(windows)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use serde_json::Value;

mod windows_support;

use windows_support::{answer, assert_fails, Herd, SpawnUnderWine, HERD, TIMEOUT};

/// With `HERD_TEST_WORKER` set, this test binary is the worker herd runs: it answers every
/// connection on `http` with its pid, and exits when asked to stop.
#[test]
fn worker() {
    if std::env::var_os("HERD_TEST_WORKER").is_none() {
        return;
    }
    let stop = herd::stop_requested().unwrap().expect("a stop request");
    std::thread::spawn(move || {
        stop.wait();
        std::process::exit(0);
    });
    let mut sockets = herd::Sockets::from_env().expect("sockets from herd");
    let listener = sockets.take_tcp_listener("http").unwrap().expect("http");
    let pid = std::process::id();
    for mut stream in listener.incoming().flatten() {
        let _ = writeln!(stream, "worker pid {pid}");
    }
}

/// With `HERD_TEST_ATTACHED` set, this test binary is COMMAND under `herd attach`: it takes
/// `http` as a worker does, says "ready" and answers `attached pid PID`; asked to stop, it
/// exits with code 3 (`serve`) or ignores it (`ignore`); with `exit`, it exits with code 42 at
/// once.
#[test]
fn attached_command() {
    let Some(mode) = std::env::var_os("HERD_TEST_ATTACHED") else {
        return;
    };
    if mode == "exit" {
        std::process::exit(42);
    }
    let mut sockets = herd::Sockets::from_env().expect("sockets from herd attach");
    let listener = sockets.take_tcp_listener("http").unwrap().expect("http");
    let stop = herd::stop_requested().unwrap().expect("a stop request");
    if mode == "serve" {
        std::thread::spawn(move || {
            stop.wait();
            std::process::exit(3);
        });
    }
    println!("ready");
    let pid = std::process::id();
    for mut stream in listener.incoming().flatten() {
        let _ = writeln!(stream, "attached pid {pid}");
    }
}

/// With `HERD_TEST_REATTACH` set to a pipe, this test binary is a program that attaches to the
/// herd there again and again from one process (as one that fetches its sockets anew would):
/// for each line `N` on its standard input it attaches N times, then says `attached`; it
/// exits when its input ends.
#[test]
fn reattaching_program() {
    let Some(pipe) = std::env::var_os("HERD_TEST_REATTACH") else {
        return;
    };
    let options = herd::fetch::FetchOptions {
        attach: true,
        ..Default::default()
    };
    for line in std::io::stdin().lines() {
        let times: usize = line.unwrap().trim().parse().unwrap();
        for _ in 0..times {
            herd::fetch::fetch(Path::new(&pipe), &options).expect("attached");
        }
        println!("attached");
    }
}

/// With `HERD_TEST_ATTACH_TO` set to a herd's pipe, this test binary is a program that
/// attaches itself to that herd with the library, says `self-attached` and exits once asked
/// to stop. As herd's worker, slot 0 takes its stop request before it attaches, any other
/// slot after.
#[test]
fn self_attaching_program() {
    let Some(pipe) = std::env::var_os("HERD_TEST_ATTACH_TO") else {
        return;
    };
    let taken_first = herd::worker_slot() == Some(0);
    let stop = taken_first.then(|| herd::stop_requested().unwrap().expect("herd's worker"));
    let options = herd::fetch::FetchOptions::default();
    herd::fetch::attach(Path::new(&pipe), &options).expect("attached");
    let stop = stop.unwrap_or_else(|| herd::stop_requested().unwrap().expect("attached"));
    println!("self-attached");
    stop.wait();
}

/// The control pipe of the herd `name`.
fn pipe(name: &str) -> String {
    let user = herd_sys::windows::sid::Sid::current_user().unwrap();
    herd_cli::control::pipe_name::resolve(None, None, name, user.as_str()).unwrap()
}

fn self_attaching_role() -> [&'static str; 5] {
    let role = "self_attaching_program";
    [role, "--exact", "--nocapture", "--test-threads", "1"]
}

#[test]
fn a_program_that_attached_itself_stops_on_the_herds_stop_event() {
    let mut herd = Herd::start(&["-w", "1"]);
    herd.wait_for("worker_ready");
    let mut program = Command::new(std::env::current_exe().unwrap())
        .args(self_attaching_role())
        .env("HERD_TEST_ATTACH_TO", pipe(&herd.name))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn_under_wine()
        .unwrap();
    let attached = herd.wait_for("worker_attached");
    assert_eq!(attached["pid"].as_u64(), Some(u64::from(program.id())));
    let (tell, told) = mpsc::channel();
    let stdout = BufReader::new(program.stdout.take().unwrap());
    std::thread::spawn(move || {
        // libtest's "test self_attaching_program ... " leads the line; read on to the end.
        let mut lines = stdout.lines().map_while(Result::ok);
        let _ = tell.send(lines.any(|l| l.ends_with("self-attached")));
        lines.for_each(drop);
    });
    assert_eq!(told.recv_timeout(TIMEOUT), Ok(true), "it never attached");
    herd.ask_to_stop();
    let exited = herd.events_until("attached_worker_exited");
    assert!(
        !exited
            .iter()
            .any(|e| e["event"] == "attached_worker_killed"),
        "ended, not stopped: {exited:?}"
    );
    assert!(program.wait().unwrap().success());
    herd.stop_waited();
}

/// A worker of one herd that attaches itself to another with the library stops on the other's
/// stop event as well as on its own herd's: whether it took its stop request before
/// attaching or after.
#[test]
fn a_worker_attached_to_another_herd_by_the_library_stops_on_that_herds_event() {
    let mut other = Herd::start(&["-w", "1", "--grace", "20s"]);
    other.wait_for("worker_ready");
    let me = std::env::current_exe().unwrap().into_os_string();
    let command: Vec<std::ffi::OsString> = std::iter::once(me)
        .chain(self_attaching_role().iter().map(Into::into))
        .collect();
    let attach_to = format!("HERD_TEST_ATTACH_TO={}", pipe(&other.name));
    let own = Herd::start_command(
        "http=127.0.0.1:0",
        // JSON lines (with the panics of the slots' next workers, which find no herd).
        &["-w", "2", "--env", &attach_to, "--worker-output", "json"],
        &command,
    );
    let workers: Vec<u64> = (0..2)
        .map(|_| other.wait_for("worker_attached")["pid"].as_u64().unwrap())
        .collect();
    other.ask_to_stop();
    // Both exit (the slots' next workers find no herd to attach to, and fail).
    let mut left = workers;
    while !left.is_empty() {
        let exit = own.wait_for("worker_exited");
        let Some(at) = left
            .iter()
            .position(|pid| exit["pid"].as_u64() == Some(*pid))
        else {
            continue;
        };
        left.remove(at);
        assert!(
            exit["message"].as_str().unwrap().contains("exit code 0"),
            "stopped by the attached herd's event: {exit}"
        );
    }
    other.stop_waited();
    own.stop();
}

/// `herd --name NAME attach ARGS -- THIS_TEST_AS_COMMAND` in `mode`, once COMMAND is ready
/// (`exit`: at once).
fn attach(name: &str, args: &[&str], mode: &str) -> Child {
    let me = std::env::current_exe().unwrap();
    let role = [
        "--exact",
        "attached_command",
        "--nocapture",
        "--test-threads",
        "1",
    ];
    let mut attach = Command::new(HERD)
        .args(["--name", name, "attach"])
        .args(args)
        .arg("--")
        .arg(me)
        .args(role)
        .env("HERD_TEST_ATTACHED", mode)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn_under_wine()
        .unwrap();
    if mode == "exit" {
        return attach;
    }
    let (tell, told) = mpsc::channel();
    let stdout = BufReader::new(attach.stdout.take().unwrap());
    std::thread::spawn(move || {
        // libtest's "test attached_command ... " leads the line.
        let ready = (stdout.lines().map_while(Result::ok)).any(|l| l.ends_with("ready"));
        let _ = tell.send(ready);
    });
    assert_eq!(
        told.recv_timeout(TIMEOUT),
        Ok(true),
        "COMMAND never got ready"
    );
    attach
}

/// `herd --name NAME status --json`.
fn status(name: &str) -> Value {
    let out = Command::new(HERD)
        .args(["--name", name, "status", "--json"])
        .stdin(Stdio::null())
        .output_under_wine()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Asks until COMMAND answers.
fn answered_by_command(herd: &Herd) -> String {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let answer = answer(&herd.addr);
        if answer.starts_with("attached pid ") {
            return answer;
        }
        assert!(Instant::now() < deadline, "COMMAND never answered");
    }
}

#[test]
fn attached_command_serves_is_listed_and_stops_with_herd() {
    let mut herd = Herd::start(&["-w", "1"]);
    herd.wait_for("worker_ready");
    let mut attached = attach(&herd.name, &[], "serve");
    let event = herd.wait_for("worker_attached");
    assert_eq!(
        event["pid"].as_u64(),
        Some(u64::from(attached.id())),
        "{event}"
    );
    answered_by_command(&herd);

    let status = status(&herd.name);
    let listed = status["attached"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{status}");
    assert_eq!(listed[0]["pid"].as_u64(), Some(u64::from(attached.id())));
    assert_eq!(listed[0]["sockets"], serde_json::json!(["http"]));

    // herd's stop reaches COMMAND (its stop request), whose exit code herd attach relays.
    herd.ask_to_stop();
    herd.wait_for("attached_worker_exited");
    assert_eq!(attached.wait().unwrap().code(), Some(3));
    herd.stop_waited();
}

#[test]
fn a_command_that_ignores_the_stop_request_is_ended_after_the_grace_period() {
    let mut herd = Herd::start(&["-w", "1", "--grace", "1s"]);
    herd.wait_for("worker_ready");
    let mut attached = attach(&herd.name, &["--only", "http"], "ignore");
    herd.wait_for("worker_attached");
    answered_by_command(&herd);
    herd.ask_to_stop();
    herd.wait_for("attached_worker_killed");
    herd.wait_for("attached_worker_exited");
    assert_eq!(attached.wait().unwrap().code(), Some(1));
    let addr = herd.addr.clone();
    herd.stop_waited();
    port_closed(&addr);
}

#[test]
fn a_fast_stop_ends_the_attached_command_at_once() {
    let herd = Herd::start(&["-w", "1"]);
    herd.wait_for("worker_ready");
    let mut attached = attach(&herd.name, &[], "ignore");
    herd.wait_for("worker_attached");
    let out = Command::new(HERD)
        .args(["--name", &herd.name, "stop", "--fast"])
        .stdin(Stdio::null())
        .output_under_wine()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(attached.wait().unwrap().code(), Some(1));
    let addr = herd.addr.clone();
    herd.stop_waited();
    port_closed(&addr);
}

/// Nothing listens on `addr` any more (within [`TIMEOUT`]): COMMAND, which held a copy of
/// the socket, ended with `herd attach`.
fn port_closed(addr: &str) {
    let deadline = Instant::now() + TIMEOUT;
    while TcpStream::connect(addr).is_ok() {
        assert!(
            Instant::now() < deadline,
            "something still listens on {addr}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn a_process_attaching_again_and_again_is_held_once_and_leaks_nothing() {
    use herd_sys::windows::process::thread_count;
    let herd = Herd::start(&["-w", "1"]);
    herd.wait_for("worker_ready");
    let pipe = pipe(&herd.name);
    let role = [
        "--exact",
        "reattaching_program",
        "--nocapture",
        "--test-threads",
        "1",
    ];
    let mut program = Command::new(std::env::current_exe().unwrap())
        .args(role)
        .env("HERD_TEST_REATTACH", &pipe)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn_under_wine()
        .unwrap();
    let mut input = program.stdin.take().unwrap();
    let (tell, told) = mpsc::channel();
    let stdout = BufReader::new(program.stdout.take().unwrap());
    std::thread::spawn(move || {
        // libtest's "test reattaching_program ... " leads the first line.
        for line in stdout.lines().map_while(Result::ok) {
            if line.ends_with("attached") && tell.send(()).is_err() {
                return;
            }
        }
    });
    let mut attach = |times: usize| {
        writeln!(input, "{times}").unwrap();
        let attached = told.recv_timeout(TIMEOUT);
        assert_eq!(attached, Ok(()), "the program did not attach {times} times");
    };
    let herd_pid = status(&herd.name)["pid"].as_u64().unwrap();
    let herd_pid = u32::try_from(herd_pid).unwrap();
    attach(1);
    let before = thread_count(herd_pid).unwrap();
    attach(50);
    let after = thread_count(herd_pid).unwrap();
    // Each attach of a process already held once left a thread waiting for it to exit.
    assert!(
        after < before + 10,
        "herd's threads went from {before} to {after} over 50 attaches of one process"
    );
    let listed = status(&herd.name);
    let listed = listed["attached"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["pid"].as_u64(), Some(u64::from(program.id())));

    drop(input);
    herd.wait_for("attached_worker_exited");
    assert!(program.wait().unwrap().success());
    assert_eq!(status(&herd.name)["attached"], serde_json::json!([]));
    herd.stop();
}

#[test]
fn commands_exit_code_is_relayed_and_herd_forgets_it() {
    let herd = Herd::start(&["-w", "1"]);
    herd.wait_for("worker_ready");
    let mut attached = attach(&herd.name, &[], "exit");
    assert_eq!(attached.wait().unwrap().code(), Some(42));
    herd.wait_for("attached_worker_exited");
    let status = status(&herd.name);
    assert_eq!(status["attached"], serde_json::json!([]), "{status}");
    herd.stop();
}

#[test]
fn bad_attach_input_fails_with_one_line() {
    assert_fails(&["attach", "--", "x.exe"], 1, "no herd named ");
    assert_fails(
        &["attach", "--", "x.exe", "{fd:http}"],
        2,
        "templates in COMMAND",
    );
    let herd = Herd::start(&["-w", "1"]);
    // Ready, so that the worker takes Ctrl-C and the stop at the end is quick.
    herd.wait_for("worker_ready");
    let named = |args: &[&str], code: i32, needle: &str| {
        let out = Command::new(HERD)
            .args(["--name", &herd.name, "attach"])
            .args(args)
            .stdin(Stdio::null())
            .output_under_wine()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("herd: error"))
            .collect();
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert_eq!(lines.len(), 1, "{args:?}: {stderr}");
        assert!(lines[0].contains(needle), "{args:?}: {stderr}");
    };
    named(
        &["--only", "nope", "--", "x.exe"],
        1,
        "no socket is named \"nope\"",
    );
    named(
        &["--", "no-such-program.exe"],
        1,
        "cannot start 'no-such-program.exe'",
    );
    // The `herd attach` that could not start its program is not left listed.
    windows_support::status_until(&herd.name, "no attached process left", |s| {
        s["attached"].as_array().is_some_and(Vec::is_empty)
    });
    herd.stop();
}
