//! Windows, run under Wine: sockets shared with `WSADuplicateSocketW`, the prefork example,
//! restarts, and bad input.
#![cfg(windows)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(30);

fn example() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join("win_prefork.exe")
}

/// Connects and returns the answering worker's pid.
fn ask(addr: &str) -> u32 {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
        .trim()
        .strip_prefix("worker pid ")
        .unwrap()
        .parse()
        .unwrap()
}

struct Parent {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    addr: String,
}

impl Parent {
    fn start(workers: &str) -> Parent {
        let mut child = Command::new(example())
            .args(["127.0.0.1:0", workers])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let line = lines
            .recv_timeout(TIMEOUT)
            .expect("the parent says where it listens");
        let addr = line.rsplit(' ').next().unwrap().to_string();
        Parent {
            child,
            stdin,
            lines,
            addr,
        }
    }

    /// Asks until `n` different workers have answered.
    fn answers(&self, n: usize, at_least: usize) -> BTreeSet<u32> {
        let deadline = Instant::now() + TIMEOUT;
        let mut pids = BTreeSet::new();
        let mut asked = 0;
        while pids.len() < n || asked < at_least {
            assert!(Instant::now() < deadline, "only {pids:?} answered");
            pids.insert(ask(&self.addr));
            asked += 1;
        }
        pids
    }

    fn stop(mut self) {
        let mut stdin = self.stdin.take().unwrap();
        stdin.write_all(b"stop\n").unwrap();
        drop(stdin);
        let line = self
            .lines
            .recv_timeout(TIMEOUT)
            .expect("the parent says it stopped");
        assert_eq!(line, "win_prefork: stopped");
        assert!(self.child.wait().unwrap().success());
    }
}

impl Drop for Parent {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

#[test]
fn workers_share_one_listener_and_every_one_answers() {
    let parent = Parent::start("3");
    let pids = parent.answers(3, 60);
    assert_eq!(pids.len(), 3, "{pids:?}");
    parent.stop();
}

#[test]
fn a_killed_worker_is_restarted_and_the_port_keeps_answering() {
    let parent = Parent::start("2");
    let before = parent.answers(2, 10);
    let victim = *before.iter().next().unwrap();
    let status = Command::new("taskkill")
        .args(["/F", "/PID", &victim.to_string()])
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "taskkill: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let pid = ask(&parent.addr);
        if !before.contains(&pid) {
            break; // the replacement answers
        }
        assert!(Instant::now() < deadline, "no replacement for {victim}");
    }
    parent.stop();
}

#[test]
fn the_library_hands_sockets_to_a_worker_it_spawns() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let mut command = Command::new(example());
    command.arg("--worker").stderr(Stdio::null());
    let mut worker = herd::windows::spawn(
        &mut command,
        &[herd::windows::Shared::Tcp("http", &listener)],
    )
    .unwrap();
    // The parent keeps its own copy: both can accept. The worker answers some connections.
    drop(listener);
    let pid = ask(&addr);
    assert_eq!(pid, worker.id());
    let _ = worker.kill();
    let _ = worker.wait();
}

#[test]
fn forged_and_truncated_handoffs_fail_clearly() {
    // A blob that did not come from WSADuplicateSocketW.
    let err = herd_sys::wsa::from_blob(&[0u8; herd_sys::wsa::BLOB_LEN]).unwrap_err();
    assert!(err.raw_os_error().is_some(), "{err}");
    assert!(herd_sys::wsa::from_blob(&[1, 2, 3])
        .unwrap_err()
        .to_string()
        .contains("628"));

    // A worker given a forged or truncated hand-off says why and exits.
    let forged = herd::share::encode(&[herd::share::Entry {
        name: "http".into(),
        kind: herd::share::Kind::TcpListener,
        blob: vec![0; herd_sys::wsa::BLOB_LEN],
    }])
    .unwrap();
    for (input, needle) in [
        (forged.clone(), "cannot rebuild socket \"http\""),
        (forged[..20].to_vec(), "truncated"),
        (
            b"GET / HTTP/1.0\r\n".to_vec(),
            "does not start with \"HERD\"",
        ),
    ] {
        let mut child = Command::new(example())
            .arg("--worker")
            .env("HERD_SOCKETS", "stdin")
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&input).unwrap();
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(needle), "{needle:?} not in {stderr:?}");
    }
}
