//! Test helpers: start the real `herd` binary, follow its JSON log, talk to its sockets, and
//! wait for events with deadlines that fail with what was seen. By concept: the herd under
//! test and its log (`herd.rs`), a fake herd's control server (`fake_herd.rs`), a FastCGI
//! client (`fastcgi.rs`), what `/proc` says of a process (`procfs.rs`), HTTP clients and load
//! (`http.rs`), waits with deadlines (`wait.rs`); the rest here.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod cpu_hogs;
mod fake_herd;
mod fastcgi;
mod herd;
mod http;
mod passing_fds;
mod procfs;
mod wait;

pub use cpu_hogs::CpuHogs;
pub use fake_herd::*;
pub use fastcgi::*;
pub use herd::*;
pub use http::*;
pub use passing_fds::*;
pub use procfs::*;
pub use wait::*;

/// The herd binary under test.
pub const HERD: &str = env!("CARGO_BIN_EXE_herd");

/// herd's exit code for a usage error (see docs: exit codes).
pub const USAGE: i32 = 2;
/// herd's exit code for an operation that failed.
pub const FAILURE: i32 = 1;

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

/// Writes `content` to `path` as an executable file (mode 755): a worker script, a program.
pub fn write_executable(path: &std::path::Path, content: impl AsRef<[u8]>) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, content).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Starts `herd run ARGS -b 127.0.0.1:0 -- sleep 1000`: `sleep` workers on a TCP port, for
/// tests about herd itself; `args` are what the test is about (`-w`, `--ready notify`, ...).
pub fn sleepers(args: &[&str]) -> Herd {
    let mut all = vec!["run"];
    all.extend_from_slice(args);
    all.extend(["-b", "127.0.0.1:0", "--", "sleep", "1000"]);
    Herd::start(&all)
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

/// Starts herd with one hello.py worker (it answers HTTP with its pid) and a socket named
/// http on 127.0.0.1, and waits until the worker has started.
pub fn hello_on_http() -> Herd {
    let herd = Herd::start(&[
        "run",
        "-w",
        "1",
        "-b",
        "http=127.0.0.1:0",
        "--",
        "python3",
        &example("hello.py"),
    ]);
    herd.started(1);
    herd
}

/// Starts herd with one `sleep 1000` worker on 127.0.0.1 and a metrics endpoint.
pub fn sleeper_with_metrics() -> Herd {
    sleepers(&["-w", "1", "--metrics", "127.0.0.1:0"])
}

/// Waits for herd to report its metrics endpoint; returns that endpoint's address.
pub fn metrics_address(herd: &Herd) -> String {
    herd.wait_for_event("metrics_ready", &[])["address"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Runs `herd ARGS` (text logs, errors only) for at most [`TIMEOUT`]: a herd that wrongly
/// starts is stopped, so the test fails instead of hanging. Returns the exit code (-1 if it
/// had to be stopped) and stderr.
pub fn herd_within(args: &[&str], cwd: Option<&std::path::Path>) -> (i32, String) {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(HERD);
    cmd.env("HERD_CONTROL", dir.path().join("control.sock"))
        .arg("--log-level")
        .arg("error")
        .args(args)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    if let Some(cwd) = cwd {
        cmd.current_dir(cwd);
    }
    let mut child = cmd.spawn().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    // SIGQUIT on timeout: herd kills its workers too.
    let code =
        wait_child(&mut child, TIMEOUT, libc::SIGQUIT).map_or(-1, |s| s.code().unwrap_or(-1));
    (code, reader.join().unwrap())
}

/// Like [`assert_fails`], for a herd that might wrongly start.
pub fn fails_within(args: &[&str], cwd: Option<&std::path::Path>, needles: &[&str]) {
    let (code, stderr) = herd_within(args, cwd);
    assert_eq!(code, USAGE, "{args:?}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "{args:?}: {stderr} lacks {needle:?}"
        );
    }
}

/// The slots of every worker in `status`, stopping ones included, in order.
pub fn worker_slots(status: &Value) -> Vec<u64> {
    let mut slots: Vec<u64> = status["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["slot"].as_u64().unwrap())
        .collect();
    slots.sort_unstable();
    slots
}

/// The pids of the workers in `status` that are not stopping.
pub fn worker_pids(status: &Value) -> Vec<u32> {
    status["workers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["state"] != "stopping")
        .map(|w| w["pid"].as_u64().unwrap() as u32)
        .collect()
}

/// Starts herd as `uid` (a uid no other test runs processes as: `RLIMIT_NPROC` counts every
/// process of the uid) with `herd --log-format json run ARGS`, allowed `headroom` more tasks
/// (`RLIMIT_NPROC` counts threads) than the uid runs now. herd's user owns the directory of
/// its control socket; the client (root here) names it with `--control-owner`, as it would
/// trust another user's server nowhere in /tmp otherwise (herd::trust).
pub fn herd_under_nproc(uid: u32, headroom: usize, args: &[&str]) -> Herd {
    use std::os::unix::process::CommandExt;
    let owner = uid.to_string();
    let running = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read_to_string(e.path().join("status")).is_ok_and(|s| {
                s.lines().any(|l| {
                    l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some(owner.as_str())
                })
            })
        })
        .count();
    let limit = running + headroom;
    Herd::start_with(|dir| {
        std::os::unix::fs::chown(dir, Some(uid), Some(uid)).unwrap();
        let mut cmd = Command::new("prlimit");
        cmd.arg(format!("--nproc={limit}:{limit}"))
            .arg(HERD)
            .args(["--log-format", "json", "run"])
            .args(args)
            .uid(uid)
            .gid(uid);
        cmd
    })
}
