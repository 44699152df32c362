//! The prefork example, run as a separate process (the test harness itself has threads, which
//! is exactly what prefork refuses).
#![cfg(unix)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(20);

/// The example binary, built (or found up to date) before the first use: `cargo test --test
/// prefork` does not build examples, and a stale one would test an older library.
fn example() -> PathBuf {
    static BUILT: std::sync::Once = std::sync::Once::new();
    let deps = std::env::current_exe().unwrap();
    let path = deps
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/prefork");
    BUILT.call_once(|| {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "-p", "herd", "--example", "prefork"])
            .status()
            .unwrap();
        assert!(status.success());
    });
    path
}

struct Server {
    child: Child,
    lines: mpsc::Receiver<String>,
    addr: String,
}

impl Server {
    fn start(workers: &str, extra: &[&str]) -> Server {
        let mut child = Command::new(example())
            .args(["127.0.0.1:0", workers])
            .args(extra)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut server = Server {
            child,
            lines,
            addr: String::new(),
        };
        let line = server.expect("listening on");
        server.addr = line.split_whitespace().nth(3).unwrap().to_string();
        server
    }

    fn expect(&self, needle: &str) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!("no {needle:?} from the prefork example"),
            }
        }
    }

    fn get(&self, path: &str) -> (u32, usize) {
        let mut stream = TcpStream::connect(&self.addr).unwrap();
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        write!(stream, "GET {path} HTTP/1.0\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let body = response
            .split("\r\n\r\n")
            .nth(1)
            .unwrap()
            .trim()
            .to_string();
        let rest = body.strip_prefix("prefork pid ").unwrap();
        let (pid, slot) = rest.split_once(", worker ").unwrap();
        (pid.parse().unwrap(), slot.parse().unwrap())
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill with our child's pid.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    fn wait(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the prefork example did not exit"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(false, |s| {
        !s.rsplit_once(')').unwrap().1.trim_start().starts_with('Z')
    })
}

/// Sends requests until every one of `n` children has answered (at least 40 requests).
fn all_answer(server: &Server, n: usize) -> BTreeSet<(u32, usize)> {
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + TIMEOUT;
    let mut requests = 0;
    while requests < 40
        || seen
            .iter()
            .map(|(_, slot)| slot)
            .collect::<BTreeSet<_>>()
            .len()
            < n
    {
        assert!(Instant::now() < deadline, "only {seen:?} answered");
        seen.insert(server.get("/"));
        requests += 1;
    }
    seen
}

#[test]
fn children_share_one_accept_queue_and_a_killed_child_is_replaced() {
    let server = Server::start("3", &[]);
    let seen = all_answer(&server, 3);
    let (victim, slot) = *seen.iter().next().unwrap();
    // SAFETY: kill with a child's pid.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    // A process killed while it waits in accept() can still take one queued connection on its
    // way out: let it be gone before connecting again.
    let deadline = Instant::now() + TIMEOUT;
    while alive(victim) {
        assert!(Instant::now() < deadline, "the killed child lingers");
        std::thread::sleep(Duration::from_millis(5));
    }
    loop {
        let (pid, s) = server.get("/");
        assert_ne!(pid, victim, "a killed child answered");
        if s == slot {
            break; // its successor serves in the same slot
        }
        assert!(Instant::now() < deadline, "slot {slot} was not refilled");
    }
}

#[test]
fn sigterm_drains_requests_in_flight() {
    let mut server = Server::start("2", &[]);
    let addr = server.addr.clone();
    let pids: Vec<u32> = all_answer(&server, 2)
        .into_iter()
        .map(|(pid, _)| pid)
        .collect();
    let slow = std::thread::spawn(move || {
        let mut stream = TcpStream::connect(&addr).unwrap();
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        write!(stream, "GET /sleep/800 HTTP/1.0\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).map(|_| response)
    });
    server.expect("busy");
    server.signal(libc::SIGTERM);
    let response = slow.join().unwrap().expect("the slow request completes");
    assert!(response.contains("prefork pid"), "{response}");
    assert!(server.wait().success());
    server.expect("prefork: stopped");
    for pid in pids {
        let deadline = Instant::now() + TIMEOUT;
        while alive(pid) {
            assert!(Instant::now() < deadline, "child {pid} outlived the stop");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

#[test]
fn a_stderr_nobody_reads_any_more_does_not_end_the_parent() {
    // Its note of a restart met a closed pipe: eprintln! panicked, and the parent was gone.
    let mut child = Command::new(example())
        .args(["127.0.0.1:0", "2"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("listening on") {
        line.clear();
        assert_ne!(stderr.read_line(&mut line).unwrap(), 0, "no 'listening on'");
    }
    let addr = line.split_whitespace().nth(3).unwrap().to_string();
    drop(stderr);
    let (_, lines) = mpsc::channel();
    let server = Server { child, lines, addr };
    let seen = all_answer(&server, 2);
    let (victim, _) = *seen.iter().next().unwrap();
    // SAFETY: kill with a child's pid.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    let deadline = Instant::now() + TIMEOUT;
    while alive(victim) {
        assert!(Instant::now() < deadline, "the killed child lingers");
        std::thread::sleep(Duration::from_millis(5));
    }
    // The parent notes the restart; it must live on and refill the slot.
    std::thread::sleep(Duration::from_millis(300));
    assert!(alive(server.child.id()), "the parent died");
    all_answer(&server, 2);
}

#[test]
fn ttin_and_ttou_scale() {
    let server = Server::start("1", &[]);
    all_answer(&server, 1);
    // Standard signals do not queue: send the next one once the last one took effect.
    server.signal(libc::SIGTTIN);
    all_answer(&server, 2);
    server.signal(libc::SIGTTIN);
    all_answer(&server, 3);
}

/// A child removed by SIGTTOU that does not stop (busy, ignoring the stop signal) is killed
/// after the grace period, as a stop does.
#[test]
fn a_child_scaled_away_that_does_not_stop_is_killed_after_the_grace() {
    let server = Server::start("2", &["--grace", "200"]);
    let slots: std::collections::BTreeMap<usize, u32> = all_answer(&server, 2)
        .into_iter()
        .map(|(pid, slot)| (slot, pid))
        .collect();
    // Both children busy for longer than the test may take: the second request goes to the
    // child that is still waiting in accept.
    let busy = |server: &Server| {
        let addr = server.addr.clone();
        std::thread::spawn(move || {
            let mut stream = TcpStream::connect(&addr).unwrap();
            stream.set_read_timeout(Some(TIMEOUT * 2)).unwrap();
            write!(stream, "GET /sleep/60000 HTTP/1.0\r\n\r\n").unwrap();
            let mut response = String::new();
            let _ = stream.read_to_string(&mut response);
            response
        });
        server.expect("busy");
    };
    busy(&server);
    busy(&server);
    // SIGTTOU removes the child of the last slot; it sleeps through SIGTERM.
    let retired = slots[&1];
    eprintln!(
        "BEFORE {:?}",
        std::fs::read_to_string(format!("/proc/{retired}/stat"))
    );
    server.signal(libc::SIGTTOU);
    let deadline = Instant::now() + TIMEOUT;
    while alive(retired) {
        assert!(
            Instant::now() < deadline,
            "the child {retired} scaled away still runs {TIMEOUT:?} later (grace 200 ms)"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!(
        "AFTER {:?} {:?}",
        std::fs::read_to_string(format!("/proc/{retired}/stat")),
        Instant::now() + TIMEOUT - deadline
    );
    assert!(alive(slots[&0]), "the other child was left alone");
    while let Ok(l) = server.lines.recv_timeout(Duration::from_millis(300)) {
        eprintln!("LINE {l}");
    }
    eprintln!("{slots:?}");
}

#[test]
fn refuses_to_fork_a_threaded_process() {
    let mut server = Server::start("2", &["--spawn-thread"]);
    let line = server.expect("prefork must run before the program starts any thread");
    assert!(line.contains("2 are running"), "{line}");
    assert_eq!(server.wait().code(), Some(1));
}
