//! herd.exe under hostile conditions, run under Wine by scripts/check-windows.sh: a worker
//! flooding the notify pipe with megabytes of garbage, herd's standard output and error
//! closed, clients that come while the workers are still starting, Ctrl-C pressed twice.
#![cfg(windows)]

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use herd_sys::windows::console;
use serde_json::Value;

mod windows_support;

use windows_support::{client, status_until, Herd, SpawnUnderWine, HERD, TIMEOUT};

/// With `HERD_TEST_WORKER` set, this test binary is the worker herd runs: with
/// `HERD_TEST_FLOOD` it first floods the notify pipe and then says `READY=1`; it answers
/// each connection on `http` with its pid and stops when herd asks.
#[test]
fn worker() {
    if std::env::var_os("HERD_TEST_WORKER").is_none() {
        return;
    }
    let mut sockets = herd::Sockets::from_env().expect("sockets from herd");
    let stop = herd::stop_requested().expect("the stop event");
    if std::env::var_os("HERD_TEST_FLOOD").is_some() {
        flood_notify_pipe();
        herd::notify::ready().expect("READY=1 after the flood");
    }
    // A worker that ignores its stop request: only a kill ends it.
    let stop = stop.filter(|_| std::env::var_os("HERD_TEST_IGNORE_STOP").is_none());
    let listener = sockets.take_tcp_listener("http").unwrap().expect("http");
    let pid = std::process::id();
    windows_support::serve_until_stopped(listener, stop, |mut stream| {
        let _ = writeln!(stream, "worker pid {pid}");
    });
}

/// How many messages of each kind the flood sends.
const FLOOD: usize = 40;

/// Sends [`FLOOD`] messages of 256 KiB of garbage, as many lines of 64 KiB, and as many short
/// malformed ones, each on a connection of its own, as a broken or hostile worker might.
fn flood_notify_pipe() {
    let pipe = std::env::var("NOTIFY_SOCKET").expect("NOTIFY_SOCKET");
    let garbage: Vec<u8> = (0..256 << 10).map(|i| (i * 7 % 251) as u8).collect();
    let mut long_line = vec![b'S'; 64 << 10];
    long_line.extend_from_slice(b"=1\n");
    let messages: [&[u8]; 3] = [&garbage, &long_line, b"\x00\xffREADY\x01=\n\n"];
    for message in messages {
        for _ in 0..FLOOD {
            send_raw(&pipe, message);
        }
    }
}

/// Writes `message` on a connection of its own to `pipe`; herd may cut it and close.
fn send_raw(pipe: &str, message: &[u8]) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match OpenOptions::new().write(true).open(pipe) {
            Ok(mut connection) => {
                let _ = connection.write_all(message);
                return;
            }
            // ERROR_PIPE_BUSY: every instance is taken; herd makes another soon.
            Err(e) if e.raw_os_error() == Some(231) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("cannot open the notify pipe {pipe}: {e}"),
        }
    }
}

fn dropped(events: &[Value]) -> usize {
    events
        .iter()
        .filter(|e| e["event"] == "notify_dropped")
        .count()
}

#[test]
fn a_worker_flooding_the_notify_pipe_leaves_herd_serving_and_its_log_bounded() {
    let mut herd = Herd::start(&[
        "-w",
        "1",
        "--ready",
        "notify",
        "--ready-timeout",
        "60s",
        "--env",
        "HERD_TEST_FLOOD=1",
    ]);
    // 3 * 40 messages dropped, ~12 MB; the READY=1 after them still counts.
    let mut events = herd.events_until("worker_ready");
    let status = status_until(&herd.name, "one ready worker", |s| s["ready"] == 1);
    assert_eq!(status["running"], 1, "{status}");
    herd.answers(1, 3);
    herd.ask_to_stop();
    events.extend(herd.events_until("stopped"));
    let logged = dropped(&events);
    // 5 lines per 10 s: the flood takes a few seconds.
    assert!(
        (1..=15).contains(&logged),
        "{logged} notify_dropped lines for {} messages: {events:?}",
        3 * FLOOD
    );
    assert!(herd.child.wait().unwrap().success());
}

/// The worker library's `hello` example, built by scripts/check-windows.sh.
fn hello_exe() -> std::path::PathBuf {
    let me = std::env::current_exe().unwrap();
    let debug = me.parent().and_then(|deps| deps.parent()).unwrap();
    let hello = debug.join("examples").join("hello.exe");
    assert!(hello.exists(), "{} is missing", hello.display());
    hello
}

/// `hello`'s answer to a GET on `addr`.
fn get(addr: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
}

/// herd's standard output and error are pipes nobody reads: every line herd writes fails,
/// and it goes on. (The worker is `hello`, which writes nothing: a worker that prints, such as
/// this test binary, inherits the same dead pipes and dies of it, as it would on Unix.)
#[test]
fn herd_with_its_output_closed_keeps_supervising() {
    let name = windows_support::unique_name();
    let mut child = Command::new(HERD)
        .args([
            "--name",
            &name,
            "run",
            "-w",
            "2",
            "-b",
            "http=127.0.0.1:0",
            "--",
        ])
        .arg(hello_exe())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn_under_wine()
        .unwrap();
    drop(child.stdout.take());
    drop(child.stderr.take());
    let ready = |s: &Value| s["ready"] == 2;
    let status = status_until(&name, "two ready workers", ready);
    let addr = status["sockets"][0]["address"]
        .as_str()
        .unwrap()
        .to_string();
    let first = status["workers"][0]["pid"].as_u64().unwrap();
    assert!(get(&addr).contains("hello from pid"));
    let killed = Command::new("taskkill")
        .args(["/F", "/PID", &first.to_string()])
        .output_under_wine()
        .unwrap();
    assert!(killed.status.success(), "taskkill failed: {killed:?}");
    let replaced = |s: &Value| {
        let workers = s["workers"].as_array().unwrap();
        s["ready"] == 2 && workers.iter().all(|w| w["pid"].as_u64() != Some(first))
    };
    let status = status_until(&name, "the killed worker replaced", replaced);
    assert!(status["log_lines_dropped"].as_u64() > Some(0), "{status}");
    assert!(get(&addr).contains("hello from pid"));
    assert_eq!(client(&name, &["stop"]), "stopped\n");
    let status = child.wait().unwrap();
    assert!(status.success(), "herd exited with {status}");
}

#[test]
fn status_and_stop_are_answered_while_the_workers_are_starting() {
    // The worker never says READY=1: it stays starting until --ready-timeout.
    let herd = Herd::start(&["-w", "2", "--ready", "notify", "--ready-timeout", "60s"]);
    herd.wait_for("worker_started");
    herd.wait_for("worker_started");
    let status = windows_support::status_json(&herd.name);
    assert_eq!(
        (status["running"].as_u64(), status["ready"].as_u64()),
        (Some(2), Some(0)),
        "{status}"
    );
    // The table's exit status says the pool is degraded.
    let out = Command::new(HERD)
        .args(["--name", &herd.name, "status"])
        .stdin(Stdio::null())
        .output_under_wine()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(table.contains("0 of 2 workers ready"), "{table}");
    assert_eq!(client(&herd.name, &["stop"]), "stopped\n");
    herd.stop_waited();
}

/// `CREATE_NEW_PROCESS_GROUP`: herd leads a group of its own, which Ctrl-C can be sent to.
const CREATE_NEW_PROCESS_GROUP: u32 = 0x200;

/// With `HERD_TEST_CTRL_SENDER` set, this test binary takes a console of its own, starts herd
/// in a process group of its own with workers that ignore their stop requests and a long
/// grace, and presses Ctrl-C twice: it says how herd ended.
#[test]
fn ctrl_sender() {
    if std::env::var_os("HERD_TEST_CTRL_SENDER").is_none() {
        return;
    }
    console::own_console().expect("a console");
    let run = [
        "-w",
        "2",
        "--grace",
        "60s",
        "--env",
        "HERD_TEST_IGNORE_STOP=1",
        "-b",
        "http=127.0.0.1:0",
    ];
    let name = windows_support::unique_name();
    let worker = windows_support::this_test_as_worker();
    let mut herd = Herd::start_flagged(&name, &run, &worker, CREATE_NEW_PROCESS_GROUP);
    herd.wait_for("worker_ready");
    herd.wait_for("worker_ready");
    console::send_ctrl_c(herd.child.id()).expect("the first Ctrl-C");
    herd.wait_for("stopping");
    // The workers ignore the request: without a second Ctrl-C herd would wait 60 s.
    let pressed = Instant::now();
    console::send_ctrl_c(herd.child.id()).expect("the second Ctrl-C");
    herd.wait_for("stopping_at_once");
    herd.wait_for("stopped");
    let code = herd.child.wait().unwrap().code();
    println!(
        "herd: exit {code:?}, {} s after the second Ctrl-C",
        pressed.elapsed().as_secs()
    );
}

#[test]
fn ctrl_c_stops_herd_gracefully_and_a_second_one_at_once() {
    let mut sender = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "ctrl_sender",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("HERD_TEST_CTRL_SENDER", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn_under_wine()
        .unwrap();
    let stdout = sender.stdout.take().unwrap();
    let said: Vec<String> = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        // libtest may have begun the line ("test ctrl_sender ... ").
        .filter_map(|l| l.find("herd: ").map(|at| l[at..].to_string()))
        .collect();
    assert!(sender.wait().unwrap().success(), "{said:?}");
    assert_eq!(said.len(), 1, "{said:?}");
    let seconds: u64 = said[0]
        .strip_prefix("herd: exit Some(0), ")
        .and_then(|rest| rest.strip_suffix(" s after the second Ctrl-C"))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{said:?}"));
    assert!(seconds < 30, "{said:?}");
}
