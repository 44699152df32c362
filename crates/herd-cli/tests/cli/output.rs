//! herd's output channels under stress: a stderr whose reader went away or stopped reading,
//! a client's closed or full stdout, a worker's control characters on the operator's terminal,
//! and the messages clients print.

use std::io::{BufRead, BufReader, Read};
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::*;

/// A pipe: (read end, write end), both close-on-exec.
fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 with a valid two-int array; on success both fds are new and ours.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both fds were just created by pipe2 and are owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// A pipe whose buffer is already full: a blocking write to it waits for a reader that never
/// comes, a non-blocking one fails with `EAGAIN`. Returns (read end, write end).
fn full_pipe(nonblocking: bool) -> (OwnedFd, OwnedFd) {
    use std::os::fd::AsRawFd;
    let (read, write) = pipe();
    let fd = write.as_raw_fd();
    // SAFETY: fcntl on an fd we own.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    assert_eq!(
        unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) },
        0
    );
    let chunk = [b'x'; 4096];
    loop {
        // SAFETY: writing from a valid buffer of the given length to an fd we own.
        let n = unsafe { libc::write(fd, chunk.as_ptr().cast(), chunk.len()) };
        if n < 0 {
            assert_eq!(
                std::io::Error::last_os_error().raw_os_error(),
                Some(libc::EAGAIN)
            );
            break;
        }
    }
    if !nonblocking {
        // SAFETY: fcntl on an fd we own.
        assert_eq!(unsafe { libc::fcntl(fd, libc::F_SETFL, flags) }, 0);
    }
    (read, write)
}

/// `herd status --json` at `control`, or `None` if it fails or takes longer than `limit`.
fn status_within(control: &str, limit: Duration) -> Option<Value> {
    let mut child = Command::new(HERD)
        .env("HERD_CONTROL", control)
        .args(["status", "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let done = wait_child(&mut child, limit, libc::SIGKILL).map(|s| s.code());
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    match done {
        Some(Some(0)) => serde_json::from_str(&out).ok(),
        _ => None,
    }
}

/// A herd of two `sleep` workers with `stderr` as its stderr, killed on drop.
struct Bare {
    child: Child,
    control: String,
    _dir: tempfile::TempDir,
}

impl Bare {
    fn start(stderr: Stdio) -> Bare {
        let dir = tempfile::tempdir().unwrap();
        let control = dir.path().join("control.sock").display().to_string();
        let child = Command::new(HERD)
            .env("HERD_CONTROL", &control)
            .args(["run", "-w", "2", "-b", "127.0.0.1:0", "--", "sleep", "1000"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        Bare {
            child,
            control,
            _dir: dir,
        }
    }

    /// Polls status (each answer within 5 s) until `pred` holds.
    fn wait_status(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        wait_until(what, || {
            match status_within(&self.control, Duration::from_secs(5)) {
                Some(status) if pred(&status) => Ok(status),
                other => Err(other),
            }
        })
    }

    /// Kills one worker and waits for its slot's replacement; the killed one must be reaped.
    fn kill_a_worker_and_see_it_replaced(&self) {
        let before = self.wait_status("two ready workers", |s| settled(s, 2));
        let victim = before["workers"][0]["pid"].as_u64().unwrap() as u32;
        // SAFETY: kill with a worker's pid, which herd has not reaped yet.
        assert_eq!(unsafe { libc::kill(victim as i32, libc::SIGKILL) }, 0);
        self.wait_status("the killed worker replaced", |s| {
            settled(s, 2)
                && s["workers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|w| w["pid"] != victim)
        });
        wait_gone(&[victim]);
    }

    /// `herd stop`, then herd's own exit code.
    fn stop(&mut self) -> i32 {
        let (code, stdout, stderr) = ctl_at(&self.control, &["stop"]);
        assert_eq!((code, stdout.as_str()), (0, "stopped\n"), "{stderr}");
        wait_child(&mut self.child, TIMEOUT, libc::SIGQUIT)
            .expect("herd did not exit after stop")
            .code()
            .unwrap_or(-1)
    }
}

impl Drop for Bare {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            // SAFETY: kill with our child's pid: a fast stop.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGQUIT) };
            wait_child(&mut self.child, Duration::from_secs(5), libc::SIGKILL);
        }
    }
}

#[test]
fn herd_keeps_supervising_when_its_stderr_reader_goes_away() {
    // `herd run ... 2>&1 | head -3`.
    let (read, write) = pipe();
    let mut herd = Bare::start(Stdio::from(write));
    let mut reader = BufReader::new(std::fs::File::from(read));
    for _ in 0..3 {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0);
    }
    drop(reader);
    herd.wait_status("two ready workers", |s| settled(s, 2));
    // Every line from now on meets a closed pipe.
    herd.kill_a_worker_and_see_it_replaced();
    let status = herd.wait_status("lost lines counted", |s| {
        s["log_lines_dropped"].as_u64().unwrap_or(0) > 0
    });
    assert_eq!(status["running"], 2);
    let (code, stdout, _) = ctl_at(&herd.control, &["scale", "3"]);
    assert_eq!((code, stdout.as_str()), (0, "scaled from 2 to 3 workers\n"));
    herd.wait_status("three ready workers", |s| settled(s, 3));
    assert_eq!(herd.stop(), 0);
}

#[test]
fn a_stderr_nobody_reads_never_freezes_the_supervisor() {
    // Blocking (a stuck log shipper), and non-blocking as another process may have left a
    // shared stderr (EAGAIN).
    for nonblocking in [false, true] {
        a_full_stderr_never_freezes_the_supervisor(nonblocking);
    }
}

fn a_full_stderr_never_freezes_the_supervisor(nonblocking: bool) {
    let (_unread, write) = full_pipe(nonblocking);
    let mut herd = Bare::start(Stdio::from(write));
    herd.wait_status("two ready workers", |s| settled(s, 2));
    let (code, stdout, stderr) = ctl_at(&herd.control, &["scale", "3"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "scaled from 2 to 3 workers\n");
    herd.wait_status("three ready workers", |s| settled(s, 3));
    let (code, _, stderr) = ctl_at(&herd.control, &["scale", "2"]);
    assert_eq!(code, 0, "{stderr}");
    herd.kill_a_worker_and_see_it_replaced();
    // The lines still queued for the stuck pipe hold herd back a bounded time only.
    let stopping = Instant::now();
    assert_eq!(herd.stop(), 0);
    assert!(stopping.elapsed() < Duration::from_secs(10));
}

#[test]
fn clients_exit_quietly_when_their_stdout_is_closed_and_fail_in_one_line_when_it_is_full() {
    let herd = Bare::start(Stdio::null());
    herd.wait_status("two ready workers", |s| settled(s, 2));
    let run = |args: &[&str], stdout: Stdio| {
        let out = Command::new(HERD)
            .env("HERD_CONTROL", &herd.control)
            .args(args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let closed = || {
        // `herd status --json | head -c 10` whose reader has already gone.
        let (read, write) = pipe();
        drop(read);
        Stdio::from(write)
    };
    let full = || {
        Stdio::from(
            std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .unwrap(),
        )
    };
    // herd check panicked on both (println!).
    let config = example("herd.toml");
    let check = ["check", "--config", &config];
    for args in [
        &["status", "--json"][..],
        &["status"],
        &["scale", "2"],
        &check,
    ] {
        assert_eq!(run(args, closed()), (0, String::new()), "{args:?}");
        let (code, stderr) = run(args, full());
        assert_eq!(code, 1, "{args:?}: {stderr}");
        // A change says it was done (`a_change_that_cannot_be_printed_says_it_was_done`).
        let done = match args[0] {
            "scale" => "scaled from 2 to 2 workers, but cannot write that",
            _ => "cannot write",
        };
        assert_eq!(
            stderr,
            format!("herd: error: {done} to stdout: No space left on device (os error 28)\n"),
            "{args:?}"
        );
    }
}

#[test]
fn a_workers_control_characters_are_escaped_in_the_status_table() {
    let script = "import os, socket, time\n\
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n\
        a = os.environ['NOTIFY_SOCKET']\n\
        s.sendto(b'READY=1\\nSTATUS=ok\\x1b[2J\\x1b]0;owned\\x07\\rfake\\xc2\\x9b\\xe2\\x80\\xa8ls\\xe2\\x80\\xa9ps\\xe2\\x81\\xa7rli', '\\0' + a[1:] if a[0] == '@' else a)\n\
        time.sleep(1000)\n";
    let herd = Herd::start(&[
        "run",
        "-w",
        "1",
        "--ready",
        "notify",
        "-b",
        "127.0.0.1:0",
        "--",
        "python3",
        "-c",
        script,
    ]);
    let raw = "ok\x1b[2J\x1b]0;owned\x07\rfake\u{9b}\u{2028}ls\u{2029}ps\u{2067}rli";
    wait_status(&herd, "the worker's STATUS=", |s| {
        s["workers"][0]["status"] == raw
    });
    let (code, table, stderr) = herd.ctl(&["status"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        !table
            .chars()
            .any(|c| (c.is_control() && c != '\n')
                || matches!(c, '\u{2028}' | '\u{2029}' | '\u{2067}')),
        "{table:?}"
    );
    assert!(
        table.contains(
            "ok\\x1b[2J\\x1b]0;owned\\x07\\rfake\\u{9b}\\u{2028}ls\\u{2029}ps\\u{2067}rli"
        ),
        "{table}"
    );
}

#[test]
fn usage_errors_point_to_the_subcommands_own_help() {
    assert_fails(
        &["--name", "x", "scale", "lots"],
        2,
        "; try 'herd scale --help'",
    );
    assert_fails(&["status", "--bogus"], 2, "; try 'herd status --help'");
    assert_fails(&["bogus"], 2, "; try 'herd --help'");
    assert_fails(&[], 2, "a command is required");
}

#[test]
fn a_stop_during_an_upgrade_says_herd_is_stopping() {
    let probe = worker("probe.py");
    let herd = Herd::start_with(|dir| {
        let script = dir.join("worker.sh");
        write_executable(&script, format!("#!/bin/sh\nexec python3 {probe}\n"));
        let mut cmd = herd_json();
        cmd.args([
            "run",
            "-w",
            "1",
            "--ready",
            "notify",
            "--ready-timeout",
            "60s",
        ])
        .args(["-b", "web=127.0.0.1:0", "--"])
        .arg(script);
        cmd
    });
    wait_status(&herd, "a ready worker", |s| settled(s, 1));
    // The new generation never becomes ready: the upgrade stays in progress.
    std::fs::write(
        herd.path("worker.sh"),
        format!("#!/bin/sh\nPROBE_READY=0 exec python3 {probe}\n"),
    )
    .unwrap();
    let upgrade = Command::new(HERD)
        .env("HERD_CONTROL", herd.control())
        .arg("upgrade")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_status(&herd, "the upgrade under way", |s| {
        s["upgrading_to"] == 2 && s["running"] == 2
    });
    let (code, stdout, stderr) = herd.ctl(&["stop"]);
    assert_eq!((code, stdout.as_str()), (0, "stopped\n"), "{stderr}");
    let out = upgrade.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("herd: error: herd is stopping") && !stderr.contains("keep serving"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

/// A command that changes something and cannot print what it did (`> /dev/full`, `1>&-`)
/// fails (exit 1) saying that it was done, so that nobody asks again: a second `herd scale
/// +1` would add another worker. Was: "cannot write to stdout: No space left on device" alone.
#[test]
fn a_change_that_cannot_be_printed_says_it_was_done() {
    let herd = sleeper_on_http();
    herd.wait_for_event("worker_ready", &[]);
    let mut scale = Command::new(HERD);
    scale
        .args(["scale", "+1"])
        .env("HERD_CONTROL", herd.control())
        .stdout(std::fs::File::create("/dev/full").unwrap());
    let out = scale.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(FAILURE), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(
            "herd: error: scaled from 1 to 2 workers, but cannot write that to stdout: No space"
        ),
        "{stderr}"
    );
    assert_eq!(herd.status()["desired"], 2);
}
