//! Test helpers: start the real `herd` binary, follow its JSON log, talk to its sockets, and
//! wait for events with deadlines that fail with what was seen.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The herd binary under test.
pub const HERD: &str = env!("CARGO_BIN_EXE_herd");

/// How long any single wait may take before the test fails.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// Whether this test runs as root, for the parts that need it (switching users, privileged
/// ports, mounts). Not root: with `HERD_REQUIRE_ROOT_TESTS=1` (scripts/test.sh sets it when
/// run as root, as CI is) the test fails, since a skip there would hide a broken setup;
/// otherwise the skip is printed in capitals with `why`, and the caller returns.
pub fn root_or_skip(why: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    assert!(
        std::env::var_os("HERD_REQUIRE_ROOT_TESTS").as_deref() != Some("1".as_ref()),
        "not root, and HERD_REQUIRE_ROOT_TESTS=1 forbids skipping: {why}"
    );
    eprintln!("SKIPPED (not root): {why}; HERD_REQUIRE_ROOT_TESTS=1 makes this a failure");
    false
}

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// `examples/NAME` in the repository.
pub fn example(name: &str) -> String {
    repo().join("examples").join(name).display().to_string()
}

/// A test worker script from `tests/workers`.
pub fn worker(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/workers")
        .join(name)
        .display()
        .to_string()
}

/// The herd library's example program `name`, built if `cargo test` did not build it already.
pub fn rust_example(name: &str) -> String {
    let dir = Path::new(HERD).parent().unwrap().join("examples");
    let path = dir.join(name);
    if !path.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "-p", "herd", "--example", name])
            .current_dir(repo())
            .status()
            .unwrap();
        assert!(status.success(), "cannot build example {name}");
    }
    path.display().to_string()
}

/// `herd --log-format json`, ready for more arguments.
pub fn herd_json() -> Command {
    let mut cmd = Command::new(HERD);
    cmd.args(["--log-format", "json"]);
    cmd
}

/// The arguments of a herd with one `sleep` worker on a TCP port, for tests about herd itself.
pub const ONE_SLEEPER: [&str; 8] = ["run", "-w", "1", "-b", "127.0.0.1:0", "--", "sleep", "1000"];

/// A copy of the herd binary in a directory of its own, for tests that replace the binary a
/// herd runs from; the directory goes when the returned guard drops.
pub fn herd_copy() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("herd");
    std::fs::copy(HERD, &copy).unwrap();
    (dir, copy)
}

/// The open-file limit of process `pid`, `SOFT:HARD` as `/proc/PID/limits` shows it.
pub fn nofile_limit(pid: u32) -> String {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let numbers: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
    numbers.join(":")
}

/// The processes whose parent is `parent`, with their states (`/proc/*/stat`).
pub fn children(parent: u32) -> Vec<(u32, char)> {
    proc_stats()
        .filter(|(_, fields)| fields.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(parent))
        .map(|(pid, fields)| (pid, fields[0].chars().next().unwrap_or('?')))
        .collect()
}

/// The live (not zombie) processes whose process group is one of `groups` (`/proc/*/stat`).
pub fn in_groups(groups: &[u32]) -> Vec<u32> {
    proc_stats()
        .filter(|(_, fields)| {
            let pgrp = fields.get(2).and_then(|p| p.parse::<u32>().ok());
            fields[0] != "Z" && pgrp.is_some_and(|g| groups.contains(&g))
        })
        .map(|(pid, _)| pid)
        .collect()
}

/// Every process in `/proc`, with the fields of its `stat` after the command name (the first
/// is the state, field 3 of proc(5)).
fn proc_stats() -> impl Iterator<Item = (u32, Vec<String>)> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_string_lossy().parse::<u32>().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (_, rest) = stat.rsplit_once(')')?;
            let fields: Vec<String> = rest.split_whitespace().map(String::from).collect();
            (!fields.is_empty()).then_some((pid, fields))
        })
}

/// Runs a client command (`status`, `scale 3`, ...) against the control socket `control`;
/// returns its exit code, stdout and stderr.
pub fn ctl_at(control: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(HERD)
        .env("HERD_CONTROL", control)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Waits up to `limit` for `child` to exit. A thread blocks in `wait()` and the answer comes
/// over a channel, so nothing polls. On timeout the child gets `signal`, then SIGKILL if it
/// is still there 5 s later, and the result is `None`.
pub fn wait_child(child: &mut Child, limit: Duration, signal: i32) -> Option<ExitStatus> {
    let pid = child.id() as i32;
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::channel();
        scope.spawn(move || {
            let _ = tx.send(child.wait());
        });
        if let Ok(status) = rx.recv_timeout(limit) {
            return Some(status.unwrap());
        }
        // Not reaped yet (the waiter has not answered), so `pid` is still the child's (but
        // for the instant between that answer and this kill).
        // SAFETY: kill with our child's pid.
        unsafe { libc::kill(pid, signal) };
        if rx.recv_timeout(Duration::from_secs(5)).is_err() {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let _ = rx.recv();
        }
        None
    })
}

/// One line herd (or a worker) wrote to stderr.
#[derive(Clone, Debug)]
pub enum Line {
    /// One of herd's JSON log events.
    Event(Value),
    /// Anything else: a worker's own output.
    Text(String),
}

#[derive(Default)]
struct Log {
    lines: Mutex<Vec<Line>>,
    grew: Condvar,
    /// herd's lines at `INFO` and above that lack the stable `event` field (a bug).
    unnamed: Mutex<Vec<Value>>,
    /// Set once stderr reached EOF: herd and every worker have closed it.
    closed: std::sync::atomic::AtomicBool,
}

/// A running `herd`, killed (with its workers, through their parent-death signal) on drop.
pub struct Herd {
    child: Child,
    log: Arc<Log>,
    status: Option<ExitStatus>,
    /// A private temporary directory for socket files and scripts.
    pub dir: tempfile::TempDir,
}

impl Herd {
    /// Starts `herd --log-format json ARGS...`.
    pub fn start(args: &[&str]) -> Herd {
        let mut cmd = herd_json();
        cmd.args(args);
        Herd::spawn(cmd, tempfile::tempdir().unwrap())
    }

    /// Starts `program` (herd itself, a copy, or a program that execs it such as `prlimit`)
    /// with `--log-format json ARGS...` after its own arguments.
    pub fn start_via(mut program: Command, args: &[&str]) -> Herd {
        program.args(["--log-format", "json"]).args(args);
        Herd::spawn(program, tempfile::tempdir().unwrap())
    }

    /// Starts `build(dir)`, a command that runs herd with `--log-format json`.
    pub fn start_with(build: impl FnOnce(&Path) -> Command) -> Herd {
        let dir = tempfile::tempdir().unwrap();
        let cmd = build(dir.path());
        Herd::spawn(cmd, dir)
    }

    /// The control socket, private to this test (`HERD_CONTROL` in its temporary directory).
    pub fn control(&self) -> String {
        self.path("control.sock")
    }

    /// Runs a client command (`status`, `scale 3`, ...) against this herd; returns its exit
    /// code, stdout and stderr.
    pub fn ctl(&self, args: &[&str]) -> (i32, String, String) {
        self.wait_for_event("control_ready", &[]);
        ctl_at(&self.control(), args)
    }

    /// herd's notify socket (`NOTIFY_SOCKET` in its workers), named after herd's pid.
    pub fn notify_path(&self) -> String {
        self.path(&format!("control.{}.notify", self.pid()))
    }

    /// `herd status --json`, parsed.
    pub fn status(&self) -> Value {
        let (code, stdout, stderr) = self.ctl(&["status", "--json"]);
        assert_eq!(code, 0, "herd status failed: {stderr}");
        serde_json::from_str(&stdout).unwrap()
    }

    fn spawn(mut cmd: Command, dir: tempfile::TempDir) -> Herd {
        // A private control socket, unless the test chose the environment itself.
        if !cmd.get_envs().any(|(key, _)| key == "HERD_CONTROL") {
            cmd.env("HERD_CONTROL", dir.path().join("control.sock"));
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // A binary the test just wrote can be "busy" for an instant: another test thread's
        // child may hold the write fd between its fork and exec (a known Unix race).
        let mut tries = 0;
        let mut child = loop {
            match cmd.spawn() {
                Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && tries < 100 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(10));
                }
                other => break other.expect("cannot start herd"),
            }
        };
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Log::default());
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let parsed = match serde_json::from_str::<Value>(&line) {
                    Ok(v) if v.is_object() => {
                        if lacks_event(&v) {
                            sink.unnamed.lock().unwrap().push(v.clone());
                        }
                        Line::Event(v)
                    }
                    _ => Line::Text(line),
                };
                sink.lines.lock().unwrap().push(parsed);
                sink.grew.notify_all();
            }
            let _guard = sink.lines.lock().unwrap();
            sink.closed.store(true, std::sync::atomic::Ordering::SeqCst);
            sink.grew.notify_all();
        });
        Herd {
            child,
            log,
            status: None,
            dir,
        }
    }

    /// herd's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A path inside the test's temporary directory.
    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// Everything logged so far.
    pub fn lines(&self) -> Vec<Line> {
        self.log.lines.lock().unwrap().clone()
    }

    /// Waits until `find` returns something for the lines logged so far; a timeout shows the
    /// last lines. Fails too if herd logged a line at `INFO` or above without an `event`.
    pub fn wait_for<T>(&self, what: &str, mut find: impl FnMut(&[Line]) -> Option<T>) -> T {
        let deadline = Instant::now() + TIMEOUT;
        let mut lines = self.log.lines.lock().unwrap();
        loop {
            let unnamed = self.log.unnamed.lock().unwrap().clone();
            assert!(
                unnamed.is_empty(),
                "herd logged lines without an event: {unnamed:#?}"
            );
            if let Some(found) = find(&lines) {
                return found;
            }
            let now = Instant::now();
            if now >= deadline {
                panic!(
                    "timed out waiting for {what} ({}s); herd logged{}",
                    TIMEOUT.as_secs(),
                    last_lines(&lines)
                );
            }
            lines = self.log.grew.wait_timeout(lines, deadline - now).unwrap().0;
        }
    }

    /// Waits for the first event named `name` that has every field of `fields`.
    pub fn wait_for_event(&self, name: &str, fields: &[(&str, Value)]) -> Value {
        let what = describe_event(name, fields);
        self.wait_event(&what, |e| is_event(e, name, fields))
    }

    /// Waits for `n` events named `name` that have every field of `fields`.
    pub fn wait_for_events(&self, name: &str, n: usize, fields: &[(&str, Value)]) -> Vec<Value> {
        let what = format!("{n} x {}", describe_event(name, fields));
        self.wait_events(&what, n, |e| is_event(e, name, fields))
    }

    /// Waits for the first event for which `pred` holds.
    pub fn wait_event(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.wait_for(what, |lines| events(lines).find(|e| pred(e)).cloned())
    }

    /// Waits for `n` events for which `pred` holds.
    pub fn wait_events(&self, what: &str, n: usize, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        self.wait_for(what, |lines| {
            let found: Vec<Value> = events(lines).filter(|e| pred(e)).cloned().collect();
            (found.len() >= n).then_some(found)
        })
    }

    /// Waits for a line of worker output containing `needle`.
    pub fn wait_text(&self, needle: &str) -> String {
        self.wait_for(&format!("output {needle:?}"), |lines| {
            lines.iter().find_map(|l| match l {
                Line::Text(t) if t.contains(needle) => Some(t.clone()),
                _ => None,
            })
        })
    }

    /// The address of the socket named `name`, from herd's "listening" event.
    pub fn address(&self, name: &str) -> String {
        let event = self.wait_for_event("listening", &[("name", name.into())]);
        event["address"].as_str().unwrap().to_string()
    }

    /// Waits until `n` workers have started in total; returns (slot, pid) of each start.
    pub fn started(&self, n: usize) -> Vec<(u64, u32)> {
        self.wait_events(&format!("{n} worker starts"), n, is_start)
            .iter()
            .map(|e| {
                (
                    e["slot"].as_u64().unwrap(),
                    e["pid"].as_u64().unwrap() as u32,
                )
            })
            .collect()
    }

    /// Sends `signal` to herd.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill with a pid we own and a valid signal number.
        assert_eq!(unsafe { libc::kill(self.pid() as i32, signal) }, 0);
    }

    /// Waits for herd to exit, and for its log to be read to the end.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let Some(status) = wait_child(&mut self.child, TIMEOUT, libc::SIGQUIT) else {
            panic!("herd did not exit; it logged{}", last_lines(&self.lines()));
        };
        self.status = Some(status);
        self.wait_for("the end of herd's stderr", |_| {
            self.log
                .closed
                .load(std::sync::atomic::Ordering::SeqCst)
                .then_some(())
        });
        status
    }
}

impl Drop for Herd {
    /// A fast stop (SIGQUIT: herd SIGKILLs every worker's process group, so processes the
    /// workers forked die too), then SIGKILL if herd does not exit. SIGKILL alone would leave
    /// the workers' own children behind: `PR_SET_PDEATHSIG` reaches the workers only.
    fn drop(&mut self) {
        if self.status.is_some() {
            return;
        }
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // SAFETY: kill with our child's pid, not reaped yet.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGQUIT) };
        wait_child(&mut self.child, Duration::from_secs(5), libc::SIGKILL);
    }
}

/// The JSON events among `lines`.
pub fn events(lines: &[Line]) -> impl Iterator<Item = &Value> {
    lines.iter().filter_map(|l| match l {
        Line::Event(e) => Some(e),
        Line::Text(_) => None,
    })
}

/// Whether `e` is the event named `name` and has every field of `fields` (names and values).
pub fn is_event(e: &Value, name: &str, fields: &[(&str, Value)]) -> bool {
    e["event"] == name && fields.iter().all(|(field, value)| e[*field] == *value)
}

/// `name {field: value, ...}`, for failure messages.
fn describe_event(name: &str, fields: &[(&str, Value)]) -> String {
    let fields: Vec<String> = fields.iter().map(|(f, v)| format!("{f}: {v}")).collect();
    format!("event {name} {{{}}}", fields.join(", "))
}

/// Whether `v`, a JSON line, is one of herd's log lines at `INFO` or above without an `event`.
fn lacks_event(v: &Value) -> bool {
    let level = v["level"].as_str().unwrap_or("");
    v.get("timestamp").is_some()
        && v.get("message").is_some()
        && matches!(level, "INFO" | "WARN" | "ERROR")
        && v.get("event").is_none()
}

/// The last lines of `lines`, one per line, for failure messages.
pub fn last_lines(lines: &[Line]) -> String {
    const SHOWN: usize = 60;
    let skipped = lines.len().saturating_sub(SHOWN);
    let mut text = if skipped > 0 {
        format!(" ({skipped} earlier lines not shown):")
    } else {
        ":".to_string()
    };
    for line in &lines[skipped..] {
        match line {
            Line::Event(e) => text += &format!("\n  {e}"),
            Line::Text(t) => text += &format!("\n  {t}"),
        }
    }
    text
}

/// Whether `e` is herd's `worker_started` event.
pub fn is_start(e: &Value) -> bool {
    e["event"] == "worker_started"
}

/// Whether `e` is herd's `worker_exited` event.
pub fn is_exit(e: &Value) -> bool {
    e["event"] == "worker_exited"
}

/// Sends `GET path` over a new TCP connection to `addr` and returns the response body.
pub fn get(addr: &str, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    request(&mut stream, path)
}

/// Sends `GET path` on `stream` and returns the response body.
pub fn request(stream: &mut (impl Read + Write), path: &str) -> std::io::Result<String> {
    // One write: a server may answer (and close) as soon as it has read the request head.
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    match response.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.") => Ok(body.to_string()),
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not an HTTP response: {response:?}"),
        )),
    }
}

/// The state of process `pid` (`R`, `S`, `T`, `Z`, ..., field 3 of proc(5)), `None` if there
/// is no such process.
pub fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
    Some(state.and_then(|s| s.chars().next()).unwrap_or('?'))
}

/// Whether `pid` is a live (not zombie) process.
pub fn alive(pid: u32) -> bool {
    !matches!(proc_state(pid), None | Some('Z') | Some('X'))
}

/// Waits until none of `pids` is alive.
pub fn wait_gone(pids: &[u32]) {
    wait_until("processes to exit", || {
        let live: Vec<u32> = pids.iter().copied().filter(|&p| alive(p)).collect();
        if live.is_empty() {
            Ok(())
        } else {
            Err(format!("still alive: {live:?}"))
        }
    });
}

/// What a `wait_until` check returns: `Some`/`Ok` with what was waited for, or `None`/`Err`
/// with what was seen instead (shown if the wait times out).
pub trait Check<T> {
    /// The value waited for, or a description of what was seen.
    fn found(self) -> Result<T, String>;
}

impl<T> Check<T> for Option<T> {
    fn found(self) -> Result<T, String> {
        self.ok_or_else(|| "None".to_string())
    }
}

impl<T, E: std::fmt::Debug> Check<T> for Result<T, E> {
    fn found(self) -> Result<T, String> {
        self.map_err(|seen| format!("{seen:?}"))
    }
}

/// Polls `check` until it returns something, failing after [`TIMEOUT`] with what the last
/// check saw (return `Err(what you saw)` rather than `None` to have it shown).
pub fn wait_until<T, C: Check<T>>(what: &str, check: impl FnMut() -> C) -> T {
    wait_until_within(what, TIMEOUT, check)
}

/// [`wait_until`] with a deadline of `limit`.
pub fn wait_until_within<T, C: Check<T>>(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> C,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        let seen = match check().found() {
            Ok(found) => return found,
            Err(seen) => seen,
        };
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what} ({limit:?}); the last check saw: {seen}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
#[should_panic(expected = "timed out waiting for 4 answers (30ms); the last check saw: \"3 of 4\"")]
fn a_wait_that_times_out_says_what_it_last_saw() {
    wait_until_within("4 answers", Duration::from_millis(30), || {
        Err::<(), _>("3 of 4")
    });
}

/// The set of fd numbers open in `pid`.
pub fn open_fds(pid: u32) -> BTreeSet<i32> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_str().unwrap().parse().unwrap())
        .collect()
}

/// The `flags:` field (octal) of `/proc/PID/fdinfo/FD`.
pub fn fd_flags(pid: u32, fd: i32) -> u32 {
    let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).unwrap();
    let flags = info
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .unwrap()
        .trim();
    u32::from_str_radix(flags, 8).unwrap()
}

/// The environment of `pid`, as `KEY=VALUE` strings.
pub fn environ(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/environ"))
        .unwrap()
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// A field of `/proc/PID/status` (`SigBlk`, `SigIgn`, ...).
pub fn status_field(pid: u32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap()
        .trim()
        .to_string()
}

/// Runs herd to completion with `args` (text logs); returns its exit code and stderr.
pub fn herd_output(args: &[&str]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let control = dir.path().join("control.sock").display().to_string();
    let (code, _, stderr) = ctl_at(&control, args);
    (code, stderr)
}

/// Asserts that `herd ARGS` fails with exit code `code` and exactly one line on stderr that
/// contains `needle`.
pub fn assert_fails(args: &[&str], code: i32, needle: &str) -> String {
    let (got, stderr) = herd_output(args);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(got, code, "exit code for {args:?}; stderr:\n{stderr}");
    assert_eq!(lines.len(), 1, "one line for {args:?}; stderr:\n{stderr}");
    assert!(
        lines[0].starts_with("herd: error: ") && lines[0].contains(needle),
        "stderr for {args:?} should contain {needle:?}:\n{stderr}"
    );
    stderr
}

/// `herd status --json` against the control socket at `control`, parsed.
pub fn status_at(control: &str) -> Value {
    let (code, stdout, stderr) = ctl_at(control, &["status", "--json"]);
    assert_eq!(code, 0, "herd status: {stderr}");
    serde_json::from_str(&stdout).unwrap()
}

/// Clients that open a new connection per request, back to back, until [`Load::finish`].
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    served: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    failures: std::sync::Arc<Mutex<Vec<String>>>,
    clients: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    /// Starts `clients` clients sending `GET /` to `addr`; an answer that fails `ok` counts
    /// as a failure.
    pub fn start(addr: &str, clients: usize, ok: fn(&str) -> bool) -> Load {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let clients = (0..clients)
            .map(|_| {
                let (stop, served, failures, addr) = (
                    stop.clone(),
                    served.clone(),
                    failures.clone(),
                    addr.to_string(),
                );
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match get(&addr, "/") {
                            Ok(body) if ok(&body) => {
                                served.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(body) => failures
                                .lock()
                                .unwrap()
                                .push(format!("bad answer {body:?}")),
                            Err(e) => failures.lock().unwrap().push(e.to_string()),
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            served,
            failures,
            clients,
        }
    }

    /// Stops the clients; returns how many requests were served and every failure.
    pub fn finish(self) -> (usize, Vec<String>) {
        use std::sync::atomic::Ordering;
        self.stop.store(true, Ordering::Relaxed);
        for c in self.clients {
            c.join().unwrap();
        }
        let failures = std::mem::take(&mut *self.failures.lock().unwrap());
        (self.served.load(Ordering::Relaxed), failures)
    }

    /// Stops the clients and asserts that no request failed and more than `at_least` were
    /// served.
    pub fn finish_without_failures(self, at_least: usize) {
        let (served, failures) = self.finish();
        assert!(
            failures.is_empty(),
            "{} of {served} requests failed: {:?}",
            failures.len(),
            &failures[..]
        );
        assert!(served > at_least, "only {served} requests were served");
    }
}

/// Polls `herd status` until `pred` holds; a timeout shows the last status.
pub fn wait_status(herd: &Herd, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let status = herd.status();
        if pred(&status) {
            return status;
        }
        if Instant::now() >= deadline {
            panic!(
                "timed out waiting for {what} ({}s); the last status: {status}; herd logged{}",
                TIMEOUT.as_secs(),
                last_lines(&herd.lines())
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether `status` shows exactly `workers` workers wanted, running and ready.
pub fn settled(status: &Value, workers: u64) -> bool {
    status["ready"] == workers && status["running"] == workers && status["desired"] == workers
}

/// Starts herd with one `sleep 1000` worker and a socket named http on 127.0.0.1, and waits
/// until the worker has started.
pub fn sleeper_on_http() -> Herd {
    let herd = Herd::start(&[
        "run",
        "-w",
        "1",
        "-b",
        "http=127.0.0.1:0",
        "--",
        "sleep",
        "1000",
    ]);
    herd.started(1);
    herd
}

/// Starts herd with one `sleep 1000` worker on 127.0.0.1 and a metrics endpoint.
pub fn sleeper_with_metrics() -> Herd {
    Herd::start(&[
        "run",
        "-w",
        "1",
        "--metrics",
        "127.0.0.1:0",
        "-b",
        "127.0.0.1:0",
        "--",
        "sleep",
        "1000",
    ])
}

/// Waits for herd to report its metrics endpoint; returns that endpoint's address.
pub fn metrics_address(herd: &Herd) -> String {
    herd.wait_for_event("metrics_ready", &[])["address"]
        .as_str()
        .unwrap()
        .to_string()
}
