//! The herd under test: started, followed through its log (JSON events and workers' text),
//! signalled, and killed with its workers when dropped.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::*;

/// One line herd (or a worker) wrote to stderr.
#[derive(Clone, Debug)]
pub enum Line {
    /// One of herd's JSON log events.
    Event(Value),
    /// Anything else: a worker's own output.
    Text(String),
}

/// The workers' own lines among `lines` that `wanted` keeps, in order.
pub fn texts(lines: &[Line], wanted: impl Fn(&str) -> bool) -> Vec<&String> {
    (lines.iter())
        .filter_map(|l| match l {
            Line::Text(t) if wanted(t) => Some(t),
            _ => None,
        })
        .collect()
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

    /// Starts `herd --log-format json ARGS...` with `stdout` as its standard output (else it
    /// writes to nowhere).
    pub fn start_with_stdout(args: &[&str], stdout: Stdio) -> Herd {
        let mut cmd = herd_json();
        cmd.args(args);
        Herd::spawn_to(cmd, tempfile::tempdir().unwrap(), stdout)
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

    fn spawn(cmd: Command, dir: tempfile::TempDir) -> Herd {
        Herd::spawn_to(cmd, dir, Stdio::null())
    }

    fn spawn_to(mut cmd: Command, dir: tempfile::TempDir, stdout: Stdio) -> Herd {
        // A private control socket, unless the test chose the environment itself.
        if !cmd.get_envs().any(|(key, _)| key == "HERD_CONTROL") {
            cmd.env("HERD_CONTROL", dir.path().join("control.sock"));
        }
        cmd.stdin(Stdio::null())
            .stdout(stdout)
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
    pub fn wait_for<T>(&self, what: &str, find: impl FnMut(&[Line]) -> Option<T>) -> T {
        self.wait_for_within(what, TIMEOUT, find)
    }

    /// [`Herd::wait_for`] for up to `timeout`: for what takes several starts in a row, each of
    /// which a busy machine may stretch to its warm-up budget (about 5 s).
    pub fn wait_for_within<T>(
        &self,
        what: &str,
        timeout: std::time::Duration,
        mut find: impl FnMut(&[Line]) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
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
                let logged = last_lines(&lines);
                // Unlocked first: a panic holding the lock would poison it, and the log
                // reader's own panic would bury this message.
                drop(lines);
                panic!(
                    "timed out waiting for {what} ({}s); herd logged{logged}",
                    timeout.as_secs(),
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
