//! What the Windows tests of `herd run` share: herd started with a JSON log that the test
//! follows event by event, workers asked over loopback, a name of its own for each herd.
// Each test binary uses a part of it.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Wine's `CreateProcess` fails now and then with `ERROR_INTERNAL_ERROR` (1359) before the
/// program runs at all (twice in full `.ci/run`s, never twice in a row): a Windows test's
/// process is started once more when it does. A workaround for Wine, not for herd.
pub trait SpawnUnderWine {
    /// [`Command::spawn`], once more after a 1359.
    fn spawn_under_wine(&mut self) -> std::io::Result<Child>;
    /// [`Command::output`], once more after a 1359.
    fn output_under_wine(&mut self) -> std::io::Result<std::process::Output>;
}

impl SpawnUnderWine for Command {
    fn spawn_under_wine(&mut self) -> std::io::Result<Child> {
        match self.spawn() {
            Err(e) if e.raw_os_error() == Some(WINE_INTERNAL_ERROR) => self.spawn(),
            started => started,
        }
    }

    fn output_under_wine(&mut self) -> std::io::Result<std::process::Output> {
        match self.output() {
            Err(e) if e.raw_os_error() == Some(WINE_INTERNAL_ERROR) => self.output(),
            ran => ran,
        }
    }
}

/// `ERROR_INTERNAL_ERROR`, which Wine's `CreateProcess` returns now and then.
const WINE_INTERNAL_ERROR: i32 = 1359;

/// The herd binary under test.
pub const HERD: &str = env!("CARGO_BIN_EXE_herd");
/// How long anything a test waits for may take.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// A worker's whole answer.
pub fn answer(addr: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

/// The answering worker's pid.
pub fn ask(addr: &str) -> u32 {
    let answer = answer(addr);
    let pid = answer
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("worker pid "));
    pid.and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected answer {answer:?}"))
}

/// A running herd, its log followed.
pub struct Herd {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    events: mpsc::Receiver<Value>,
    /// Where its socket `http` listens.
    pub addr: String,
    /// Its `--name`.
    pub name: String,
}

impl Herd {
    /// `herd run OPTIONS -b http=127.0.0.1:0 -- THIS_TEST_AS_WORKER`, once it listens.
    pub fn start(options: &[&str]) -> Herd {
        Herd::start_on("http=127.0.0.1:0", options)
    }

    /// `herd run OPTIONS -b BIND -- THIS_TEST_AS_WORKER`, once it listens.
    pub fn start_on(bind: &str, options: &[&str]) -> Herd {
        Herd::start_command(bind, options, &this_test_as_worker())
    }

    /// `herd run OPTIONS -b BIND -- COMMAND`, once it listens.
    pub fn start_command(bind: &str, options: &[&str], command: &[OsString]) -> Herd {
        let mut run: Vec<&str> = options.to_vec();
        run.extend(["-b", bind]);
        Herd::start_named(&unique_name(), &run, command)
    }

    /// `herd --name OLD run --takeover OLD OPTIONS -- THIS_TEST_AS_WORKER` for the herd `old`,
    /// once it listens on the socket `http` taken over.
    pub fn take_over(old: &Herd, options: &[&str]) -> Herd {
        let mut run = vec!["--takeover", old.name.as_str()];
        run.extend_from_slice(options);
        Herd::start_named(&old.name, &run, &this_test_as_worker())
    }

    /// `herd --name NAME run RUN -- COMMAND`, once it listens on `http`.
    pub fn start_named(name: &str, run: &[&str], command: &[OsString]) -> Herd {
        Herd::start_flagged(name, run, command, 0)
    }

    /// [`Herd::start_named`], herd created with the process creation flags `flags`
    /// (`CREATE_NEW_PROCESS_GROUP`...).
    pub fn start_flagged(name: &str, run: &[&str], command: &[OsString], flags: u32) -> Herd {
        use std::os::windows::process::CommandExt;
        let name = name.to_string();
        let mut herd = Command::new(HERD);
        herd.args(["--log-format", "json", "--name", &name, "run"])
            .args(run)
            .arg("--")
            .args(command)
            .env("HERD_TEST_WORKER", "1")
            .env("HERD_TEST_INHERITED", "yes")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .creation_flags(flags);
        let mut child = herd.spawn_under_wine().unwrap();
        let stdin = child.stdin.take();
        let (tx, events) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let event = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
                let _ = tx.send(event);
            }
        });
        let mut herd = Herd {
            child,
            stdin,
            events,
            addr: String::new(),
            name,
        };
        let listening = herd.wait_for("listening");
        assert_eq!(listening["name"], "http", "{listening}");
        herd.addr = listening["address"].as_str().unwrap().to_string();
        herd
    }

    /// The next log line whose `event` is `name`.
    pub fn wait_for(&self, name: &str) -> Value {
        let deadline = Instant::now() + TIMEOUT;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(event) if event["event"] == name => return event,
                Ok(event) => seen.push(event),
                Err(_) => panic!("no {name} event; saw {seen:?}"),
            }
        }
    }

    /// The next JSON line herd wrote to stderr (a log event or, with `--worker-output json`,
    /// a worker's line), or `None` if none came before `deadline`.
    pub fn next_line(&self, deadline: Instant) -> Option<Value> {
        let left = deadline.saturating_duration_since(Instant::now());
        self.events.recv_timeout(left).ok()
    }

    /// Every log line up to and including the next whose `event` is `name`.
    pub fn events_until(&self, name: &str) -> Vec<Value> {
        let deadline = Instant::now() + TIMEOUT;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(event) => {
                    let last = event["event"] == name;
                    seen.push(event);
                    if last {
                        return seen;
                    }
                }
                Err(_) => panic!("no {name} event; saw {seen:?}"),
            }
        }
    }

    /// The next log lines whose events are `names`, in whatever order they come.
    pub fn wait_for_each(&self, names: &[&str]) {
        let deadline = Instant::now() + TIMEOUT;
        let mut missing: Vec<&str> = names.to_vec();
        let mut seen = Vec::new();
        while !missing.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(event) => {
                    missing.retain(|name| event["event"] != *name);
                    seen.push(event);
                }
                Err(_) => panic!("no {missing:?} events; saw {seen:?}"),
            }
        }
    }

    /// Asks until `n` different workers have answered and at least `at_least` times.
    pub fn answers(&self, n: usize, at_least: usize) -> BTreeSet<u32> {
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

    /// Asks herd to stop (a `stop` line on its standard input), without waiting.
    pub fn ask_to_stop(&mut self) {
        let stdin = self.stdin.as_mut().expect("herd's standard input");
        stdin.write_all(b"stop\n").unwrap();
    }

    /// Stops herd and waits until it has exited cleanly.
    pub fn stop(mut self) {
        self.ask_to_stop();
        self.stop_waited();
    }

    /// Waits until herd, already stopping, has stopped and exited cleanly.
    pub fn stop_waited(mut self) {
        self.wait_for("stopped");
        assert!(self.child.wait().unwrap().success());
    }
}

impl Drop for Herd {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// The TCP listener named `http` that herd gave this process, when this test binary runs as
/// herd's worker (`HERD_TEST_WORKER` set); `None` when it runs as a test, whose `worker` test
/// then does nothing.
pub fn worker_listener() -> Option<std::net::TcpListener> {
    std::env::var_os("HERD_TEST_WORKER")?;
    let mut sockets = herd::Sockets::from_env().expect("sockets from herd");
    Some(sockets.take_tcp_listener("http").unwrap().unwrap())
}

/// This test binary, running its `worker` test: the worker herd runs.
pub fn this_test_as_worker() -> Vec<OsString> {
    let me = std::env::current_exe().unwrap().into_os_string();
    let worker = ["--exact", "worker", "--nocapture", "--test-threads", "1"];
    let mut command = vec![me];
    command.extend(worker.iter().map(OsString::from));
    command
}

/// A herd name no other test uses at the same time: herds of one name share a control pipe.
pub fn unique_name() -> String {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("test-{}-{n}", std::process::id())
}

/// `herd ARGS` fails with `code` and one line on stderr containing `needle`.
pub fn assert_fails(args: &[&str], code: i32, needle: &str) {
    let out = Command::new(HERD)
        .args(["--name", &unique_name()])
        .args(args)
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
}

/// `herd --name NAME status --json`, once it answers (within [`TIMEOUT`]).
pub fn status_json(name: &str) -> Value {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let out = Command::new(HERD)
            .args(["--name", name, "status", "--json"])
            .stdin(Stdio::null())
            .output_under_wine()
            .unwrap();
        if out.status.success() {
            return serde_json::from_slice(&out.stdout).unwrap();
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            Instant::now() < deadline,
            "herd status never answered: {stderr}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Asks `status --json` until `done` holds (within [`TIMEOUT`]); that status.
pub fn status_until(name: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let status = status_json(name);
        if done(&status) {
            return status;
        }
        assert!(Instant::now() < deadline, "never {what}: {status}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `herd --name NAME ARGS`, which must succeed: its stdout.
pub fn client(name: &str, args: &[&str]) -> String {
    let out = Command::new(HERD)
        .args(["--name", name])
        .args(args)
        .stdin(Stdio::null())
        .output_under_wine()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "herd {args:?}: {stderr}");
    String::from_utf8(out.stdout).unwrap()
}

/// A test worker's accept loop: answers each connection with `answer` and, once herd sets
/// `stop` (its stop event), returns between two connections, never holding one it took (it
/// polls accept and waits on the event in between; exiting from another thread could drop a
/// connection accept had just taken). Without `stop` it serves for ever.
pub fn serve_until_stopped(
    listener: std::net::TcpListener,
    stop: Option<herd::StopRequest>,
    mut answer: impl FnMut(TcpStream),
) {
    listener.set_nonblocking(stop.is_some()).unwrap();
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).unwrap();
                answer(stream);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => match &stop {
                Some(stop) if stop.wait_timeout(Duration::from_millis(5)) => return,
                _ => continue,
            },
            Err(_) => continue,
        }
    }
}
