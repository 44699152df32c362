//! `herd run` on Windows, run under Wine by scripts/check-windows.sh: workers share one socket,
//! a killed worker is replaced while the port keeps answering, a `stop` line stops herd, the
//! library's hello example serves under it, the help is the Unix one, and bad input and what
//! Windows cannot do yet fail with one line.
#![cfg(windows)]

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use herd_sys::windows::process::{self, Process};

#[path = "golden/help.rs"]
mod golden;
mod windows_support;

use golden::assert_help_is_golden;
use windows_support::{answer, ask, assert_fails, Herd, SpawnUnderWine, TIMEOUT};

/// With `HERD_TEST_WORKER` set, this test binary is the worker herd runs: it takes the socket
/// `http` and answers every connection with its pid, then its `HERD_TEST_GREETING`,
/// `HERD_TEST_INHERITED`, its working directory and the connection's `TCP_NODELAY`, a line
/// each.
#[test]
fn worker() {
    if std::env::var_os("HERD_TEST_WORKER").is_none() {
        return;
    }
    // Its first act, before anything of herd's: a child of its own (a launcher's program).
    let grandchild = std::env::var_os("HERD_TEST_GRANDCHILD").map(|_| start_sleeper());
    let mut sockets = herd::Sockets::from_env().expect("sockets from herd");
    // herd asks a worker to stop through its stop event: this one stops at once.
    if let Some(stop) = herd::stop_requested().expect("the stop event") {
        std::thread::spawn(move || {
            stop.wait();
            std::process::exit(0);
        });
    }
    let listener = sockets
        .take_tcp_listener("http")
        .expect("a TCP listener")
        .expect("named http");
    let pid = std::process::id();
    let greeting = std::env::var("HERD_TEST_GREETING").unwrap_or_default();
    let inherited = std::env::var("HERD_TEST_INHERITED").unwrap_or_default();
    let dir = std::env::current_dir().unwrap();
    for mut stream in listener.incoming().flatten() {
        let nodelay = stream.nodelay().unwrap_or(false);
        let _ = write!(
            stream,
            "worker pid {pid}\ngreeting {greeting}\ninherited {inherited}\ndir {}\nnodelay {nodelay}\n",
            dir.display()
        );
        if let Some(pid) = grandchild {
            let _ = writeln!(stream, "grandchild {pid}");
        }
    }
}

/// With `HERD_TEST_SLEEPER` set, this test binary sleeps long: a worker's own child.
#[test]
fn sleeper() {
    if std::env::var_os("HERD_TEST_SLEEPER").is_some() {
        std::thread::sleep(Duration::from_secs(120));
    }
}

/// Starts this test binary as [`sleeper`]; its pid.
fn start_sleeper() -> u32 {
    let me = std::env::current_exe().unwrap();
    let mut child = Command::new(me)
        .args(["--exact", "sleeper", "--test-threads", "1"])
        .env("HERD_TEST_SLEEPER", "1")
        .env_remove("HERD_TEST_WORKER")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn_under_wine()
        .expect("the sleeper starts");
    let pid = child.id();
    std::thread::spawn(move || child.wait());
    pid
}

#[test]
fn workers_share_one_socket_and_every_one_answers() {
    let herd = Herd::start(&["-w", "3"]);
    let pids = herd.answers(3, 60);
    assert_eq!(pids.len(), 3, "{pids:?}");
    herd.stop();
}

#[test]
fn a_killed_worker_is_replaced_and_the_port_keeps_answering() {
    let herd = Herd::start(&["-w", "2"]);
    let before = herd.answers(2, 10);
    let victim = *before.iter().next().unwrap();
    let out = Command::new("taskkill")
        .args(["/F", "/PID", &victim.to_string()])
        .output_under_wine()
        .unwrap();
    assert!(out.status.success(), "taskkill failed");
    let deadline = Instant::now() + TIMEOUT;
    while before.contains(&ask(&herd.addr)) {
        assert!(Instant::now() < deadline, "no replacement for {victim}");
    }
    herd.stop();
}

/// The worker library's hello example, built for Windows beside this test binary (by
/// scripts/check-windows.sh's `cargo build -p herd --examples`).
fn hello_exe() -> OsString {
    let me = std::env::current_exe().unwrap();
    let debug = me.parent().and_then(|deps| deps.parent()).unwrap();
    let hello = debug.join("examples").join("hello.exe");
    assert!(
        hello.exists(),
        "{} is missing: build it with `cargo build -p herd --examples` for this target",
        hello.display()
    );
    hello.into_os_string()
}

#[test]
fn the_hello_example_serves_from_every_worker_under_herd() {
    let herd = Herd::start_command("http=127.0.0.1:0", &["-w", "2"], &[hello_exe()]);
    let deadline = Instant::now() + TIMEOUT;
    let mut seen = BTreeSet::new();
    while seen.len() < 2 {
        assert!(Instant::now() < deadline, "only {seen:?} answered");
        let mut stream = TcpStream::connect(&herd.addr).unwrap();
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).unwrap();
        assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply:?}");
        let body = reply.split("\r\n\r\n").nth(1).unwrap_or_default();
        let (pid, slot) = body
            .strip_prefix("hello from pid ")
            .and_then(|rest| rest.trim_end().split_once(", worker "))
            .unwrap_or_else(|| panic!("unexpected body {body:?}"));
        seen.insert((pid.parse::<u32>().unwrap(), slot.to_string()));
    }
    let slots: BTreeSet<&str> = seen.iter().map(|(_, slot)| slot.as_str()).collect();
    assert_eq!(slots, BTreeSet::from(["0", "1"]), "{seen:?}");
    herd.stop();
}

#[test]
fn workers_get_the_environment_and_directory_asked_for() {
    let dir = std::env::temp_dir().join(format!("herd-chdir-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let shown = dir.to_str().unwrap();
    let herd = Herd::start(&[
        "-w",
        "1",
        "--env",
        "HERD_TEST_GREETING=hello",
        "--chdir",
        shown,
    ]);
    let answer = answer(&herd.addr);
    assert!(answer.contains("\ngreeting hello\n"), "{answer}");
    let worker_dir = answer
        .lines()
        .find_map(|l| l.strip_prefix("dir "))
        .unwrap_or_else(|| panic!("no dir in {answer:?}"));
    let normal = |p: &str| p.trim_end_matches('\\').to_lowercase();
    assert_eq!(normal(worker_dir), normal(shown), "{answer}");
    herd.stop();
    let _ = std::fs::remove_dir(&dir);
}

/// A relative program path is taken in `--chdir`'s directory, as on Unix (where `./app`
/// with `--chdir DIR` runs `DIR/app`); before, Windows looked for it in herd's own directory
/// and failed with "File not found".
#[test]
fn a_relative_program_is_found_in_the_chdir_directory() {
    let mut command = windows_support::this_test_as_worker();
    let me = std::path::PathBuf::from(&command[0]);
    let dir = me.parent().unwrap().to_str().unwrap().to_string();
    command[0] = format!(r".\{}", me.file_name().unwrap().to_str().unwrap()).into();
    let run = ["-w", "1", "--chdir", &dir, "-b", "http=127.0.0.1:0"];
    let herd = Herd::start_named(&windows_support::unique_name(), &run, &command);
    herd.wait_for("worker_ready");
    ask(&herd.addr);
    herd.stop();
}

#[test]
fn any_address_is_dual_stack() {
    let herd = Herd::start_on("http=:0", &["-w", "1"]);
    let port = herd.addr.rsplit(':').next().unwrap().to_string();
    assert!(herd.addr.starts_with("[::]:"), "{}", herd.addr);
    for address in [format!("127.0.0.1:{port}"), format!("[::1]:{port}")] {
        ask(&address);
    }
    herd.stop();
}

#[test]
fn socket_options_reach_the_socket() {
    let herd = Herd::start_on("http=[::]:0,v6only,nodelay,backlog=16", &["-w", "1"]);
    let port = herd.addr.rsplit(':').next().unwrap().to_string();
    let over_v6 = answer(&format!("[::1]:{port}"));
    assert!(over_v6.contains("\nnodelay true\n"), "{over_v6}");
    assert!(
        TcpStream::connect(format!("127.0.0.1:{port}")).is_err(),
        "v6only let IPv4 in"
    );
    herd.stop();
}

#[test]
fn a_cleared_environment_keeps_only_what_is_asked_for() {
    let herd = Herd::start(&["-w", "1", "--clear-env", "--env", "HERD_TEST_WORKER=1"]);
    let cleared = answer(&herd.addr);
    assert!(cleared.contains("\ninherited \n"), "{cleared}");
    let herd_inherits = Herd::start(&["-w", "1"]);
    let inherited = answer(&herd_inherits.addr);
    assert!(inherited.contains("\ninherited yes\n"), "{inherited}");
    herd.stop();
    herd_inherits.stop();
}

#[test]
fn workers_die_with_a_killed_herd() {
    let mut herd = Herd::start(&["-w", "2"]);
    herd.answers(2, 4);
    let out = Command::new("taskkill")
        .args(["/F", "/PID", &herd.child.id().to_string()])
        .output_under_wine()
        .unwrap();
    assert!(out.status.success(), "taskkill failed: {out:?}");
    let _ = herd.child.wait();
    // Only herd and its workers hold the socket: once they are all gone, nothing answers.
    let deadline = Instant::now() + TIMEOUT;
    while TcpStream::connect(&herd.addr).is_ok() {
        assert!(Instant::now() < deadline, "the workers outlived herd");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A worker that starts a process before anything else (as a `cmd /c` or `py.exe` launcher
/// does) is in herd's Job Object from its first instruction: that process dies with herd too.
#[test]
fn what_a_worker_starts_first_dies_with_a_killed_herd() {
    let mut herd = Herd::start(&["-w", "1", "--env", "HERD_TEST_GRANDCHILD=1"]);
    let grandchild = grandchild_of(&herd.addr);
    let out = Command::new("taskkill")
        .args(["/F", "/PID", &herd.child.id().to_string()])
        .output_under_wine()
        .unwrap();
    assert!(out.status.success(), "taskkill failed: {out:?}");
    let _ = herd.child.wait();
    let ended = process::wait(&grandchild, Some(TIMEOUT)).unwrap();
    if !ended {
        let _ = process::terminate(&grandchild, 1);
    }
    assert!(ended, "the worker's first child outlived herd");
}

/// The sleeper that the worker answering at `addr` started as its first act.
fn grandchild_of(addr: &str) -> Process {
    let answer = answer(addr);
    let grandchild: u32 = answer
        .lines()
        .find_map(|l| l.strip_prefix("grandchild "))
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no grandchild in {answer:?}"));
    Process::open(grandchild).expect("the worker's child runs")
}

/// What a worker started ends with the worker, while herd runs on, as its process group's
/// processes do on Unix: when herd kills the worker (`herd signal KILL`, as after
/// `--ready-timeout`, `--watchdog` or `--grace`) and when the worker exits by itself (here
/// on its stop request). Before, it ran on until herd exited: a `cmd /c` or `py.exe`
/// launcher's program outlived the worker herd had replaced.
#[test]
fn what_a_worker_started_ends_with_the_worker() {
    let herd = Herd::start(&["-w", "1", "--env", "HERD_TEST_GRANDCHILD=1"]);
    for signal in ["KILL", "TERM"] {
        let grandchild = grandchild_of(&herd.addr);
        windows_support::client(&herd.name, &["signal", signal]);
        let ended = process::wait(&grandchild, Some(TIMEOUT)).unwrap();
        if !ended {
            let _ = process::terminate(&grandchild, 1);
        }
        assert!(
            ended,
            "the worker's child outlived the worker (herd signal {signal})"
        );
    }
    herd.stop();
}

#[test]
fn a_name_no_client_could_reach_is_refused() {
    for name in ["", "..", "a\\b", "a:b"] {
        let out = Command::new(windows_support::HERD)
            .args(["--name", name, "run", "-b", "127.0.0.1:0", "--", "x"])
            .output_under_wine()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{name:?}: {stderr}");
        assert!(stderr.contains("--name"), "{name:?}: {stderr}");
    }
}

#[test]
fn bad_input_fails_with_one_line() {
    assert_fails(&["run", "--", "x"], 2, "--bind <SPEC>");
    assert_fails(&["run", "-b", "127.0.0.1:0"], 2, "<COMMAND>");
    assert_fails(
        &["run", "-w", "0", "-b", ":0", "--", "x"],
        2,
        "at least 1 worker",
    );
    assert_fails(&["run", "-b", "nowhere", "--", "x"], 2, "nowhere");
    // Refused at start, not retried in every slot for ever.
    assert_fails(
        &[
            "run", "--shm", "a=4096", "--shm", "a=4096", "-b", ":0", "--", "x",
        ],
        2,
        "given to more than one --bind or --shm",
    );
    assert_fails(
        &[
            "run",
            "--chdir",
            r"Z:\no-such-dir-for-herd",
            "-b",
            ":0",
            "--",
            "x",
        ],
        2,
        "--chdir",
    );
    // A port another program holds: said in words (Wine has no text for WSAEADDRINUSE).
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().to_string();
    assert_fails(&["run", "-b", &port, "--", "x"], 1, "already in use");
    assert_fails(
        &["run", "-b", "127.0.0.1:0", "--", "no-such-program-for-herd"],
        1,
        "cannot start 'no-such-program-for-herd'",
    );
}

#[test]
fn what_windows_cannot_do_yet_is_refused_with_its_reason() {
    assert_fails(
        &["run", "--user", "www", "-b", ":0", "--", "x"],
        2,
        "--user is not available on Windows: ",
    );
    assert_fails(&["status"], 1, "no herd named ");
    // Refused before it looks for a herd: its stdout is a pipe here.
    assert_fails(&["top"], 2, "use 'herd status --watch'");
    assert_fails(
        &["reexec"],
        2,
        "'herd reexec' is not available on Windows: ",
    );
    assert_fails(
        &["run", "-b", "unix:/tmp/x", "--", "x"],
        2,
        "Unix sockets are Unix-only",
    );
    assert_fails(
        &["run", "--stop-signal", "INT", "-b", ":0", "--", "x"],
        2,
        "--stop-signal is not available on Windows: Windows has no signals",
    );
}

#[test]
fn the_help_is_the_unix_help() {
    assert_help_is_golden(&["--help"], "help.txt");
    assert_help_is_golden(&["run", "--help"], "run-help.txt");
}
