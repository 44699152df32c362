//! Socket activation: herd adopts the sockets systemd passes it, and reports its state to
//! systemd's notify socket. The test plays systemd's part.

use std::os::unix::net::UnixDatagram;
use std::process::Command;

use crate::util::*;

/// Binds 127.0.0.1:0, puts it at fd 3 with LISTEN_FDS/LISTEN_FDNAMES/LISTEN_PID for its own pid,
/// and execs the rest of its arguments: what systemd does for a .socket unit.
pub const SYSTEMD: &str = r#"
import os, socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(128)
os.write(2, f"systemd-play port={s.getsockname()[1]}\n".encode())
if s.fileno() != 3:
    os.dup2(s.fileno(), 3)
os.set_inheritable(3, True)
os.environ.update(LISTEN_FDS="1", LISTEN_FDNAMES="web", LISTEN_PID=str(os.getpid()))
os.execv(sys.argv[1], sys.argv[1:])
"#;

/// Reads datagrams from the fake service manager's socket until one contains `needle`.
pub fn expect(notify: &UnixDatagram, needle: &str) -> String {
    let mut buf = [0u8; 4096];
    let mut seen = Vec::new();
    loop {
        let n = notify
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no {needle:?} from herd ({e}); got {seen:?}"));
        let message = String::from_utf8_lossy(&buf[..n]).into_owned();
        if message.contains(needle) {
            return message;
        }
        seen.push(message);
    }
}

#[test]
fn herd_runs_as_a_socket_activated_service() {
    let dir = tempfile::tempdir().unwrap();
    let notify_path = dir.path().join("systemd-notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(TIMEOUT)).unwrap();
    let herd = Herd::start_with(|_| {
        let mut cmd = Command::new("python3");
        cmd.args([
            "-c",
            SYSTEMD,
            HERD,
            "--log-format",
            "json",
            "run",
            "-w",
            "2",
            "--ready",
            "notify",
        ])
        .args(["-b", "systemd", "--", "python3", &example("hello.py")])
        .env("NOTIFY_SOCKET", &notify_path);
        cmd
    });
    let port = herd
        .wait_text("systemd-play port=")
        .rsplit('=')
        .next()
        .unwrap()
        .to_string();
    let addr = herd.address("web");
    assert_eq!(addr, format!("127.0.0.1:{port}"));

    let ready = expect(&notify, "READY=1");
    assert!(ready.contains("STATUS=2 workers ready"), "{ready}");
    assert!(get(&addr, "/").unwrap().starts_with("hello from pid"));
    // Workers talk to herd, never to herd's service manager.
    let worker = herd.started(1)[0].1;
    let env = environ(worker);
    assert!(
        !env.iter().any(|v| v.contains("systemd-notify.sock")),
        "{env:?}"
    );

    let (code, _, stderr) = herd.ctl(&["upgrade"]);
    assert_eq!(code, 0, "{stderr}");
    let reloading = expect(&notify, "RELOADING=1");
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    let ready = expect(&notify, "READY=1");
    assert!(ready.contains("STATUS=generation 2"), "{ready}");

    let (code, _, _) = herd.ctl(&["stop"]);
    assert_eq!(code, 0);
    expect(&notify, "STOPPING=1");
}

/// A herd whose workers never became ready is still starting to its service manager, also
/// across a re-exec: it hears no RELOADING=1 that nothing would end (were the exec to fail) and
/// no READY=1 before the workers are ready.
#[test]
fn a_reexec_before_the_workers_are_ready_tells_the_service_manager_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let notify_path = dir.path().join("systemd-notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    let herd = Herd::start_with(|_| {
        let mut cmd = herd_json();
        cmd.args([
            "run",
            "-w",
            "1",
            "--ready",
            "notify",
            "-b",
            "web=127.0.0.1:0",
        ])
        .args(["--", "python3", "-c", "import time; time.sleep(600)"])
        .env("NOTIFY_SOCKET", &notify_path);
        cmd
    });
    herd.started(1);
    let (code, out) = crate::reexec::reexec(&herd);
    assert_eq!(code, 0, "{out}");
    herd.wait_for_event("reexecuted", &[]);
    // Served by the new image's loop, after everything it reports as it starts.
    assert_eq!(herd.status()["workers"].as_array().map(Vec::len), Some(1));
    notify.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 4096];
    let mut heard = Vec::new();
    while let Ok(n) = notify.recv(&mut buf) {
        heard.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert!(
        !heard
            .iter()
            .any(|m| m.contains("RELOADING=1") || m.contains("READY=1")),
        "{heard:?}"
    );
}

#[test]
fn adopting_by_name_and_its_errors() {
    let herd = Herd::start_with(|_| {
        let mut cmd = Command::new("python3");
        cmd.args([
            "-c",
            SYSTEMD,
            HERD,
            "--log-format",
            "json",
            "run",
            "-w",
            "1",
        ])
        .args([
            "-b",
            "http=fd:web",
            "-b",
            "admin=127.0.0.1:0",
            "--",
            "sleep",
            "1000",
        ]);
        cmd
    });
    assert!(herd.address("http").starts_with("127.0.0.1:"));
    herd.address("admin");

    assert_fails(
        &["run", "-b", "systemd", "--", "true"],
        1,
        "no sockets were passed to herd",
    );
    assert_fails(
        &["run", "-b", "fd:web,backlog=5", "--", "true"],
        2,
        "set them in the .socket unit",
    );
    let out = Command::new("python3")
        .args(["-c", SYSTEMD, HERD, "run", "-b", "fd:nope", "--", "true"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no socket named \"nope\" was passed to herd (passed: web)"),
        "{stderr}"
    );
}

/// Plays systemd with any fds: its first argument lists `KIND:NAME` items (`tcp`, a listening
/// TCP socket; `fresh` and `fresh_unix`, a TCP or Unix socket neither bound nor listening;
/// `bound`, a TCP socket bound but not listening; `connected`, one end of a socket pair; `file`,
/// a regular file), placed at fds
/// 3, 4, ... with the socket-activation variables; the rest is the command to exec.
const SYSTEMD_ANY: &str = r#"
import fcntl, os, socket, sys
keep, fds, names = [], [], []
for item in sys.argv[1].split(","):
    kind, name = item.split(":")
    if kind == "tcp":
        s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(16); keep.append(s)
    elif kind == "fresh":
        s = socket.socket(); keep.append(s)
    elif kind == "fresh_unix":
        s = socket.socket(socket.AF_UNIX); keep.append(s)
    elif kind == "bound":
        s = socket.socket(); s.bind(("127.0.0.1", 0)); keep.append(s)
    elif kind == "connected":
        s, peer = socket.socketpair(); keep += [s, peer]
    elif kind == "file":
        s = open("/etc/passwd"); keep.append(s)
    fds.append(fcntl.fcntl(s.fileno(), fcntl.F_DUPFD, 100)); names.append(name)
for i, fd in enumerate(fds):
    os.dup2(fd, 3 + i)
os.environ.update(LISTEN_FDS=str(len(fds)), LISTEN_FDNAMES=":".join(names),
                  LISTEN_PID=str(os.getpid()))
os.execv(sys.argv[2], sys.argv[2:])
"#;

/// Runs `herd ARGS...` with the fds `passed` (see [`SYSTEMD_ANY`]); asserts that it fails with
/// exit code `code` and one line containing `needle`.
fn refused(passed: &str, args: &[&str], code: i32, needle: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new("python3")
        .args(["-c", SYSTEMD_ANY, passed, HERD, "run"])
        .args(args)
        .env("HERD_CONTROL", dir.path().join("control.sock"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A herd that wrongly starts runs until stopped: give it the usual deadline, then stop
    // it (its worker dies with it) and show what it said.
    let deadline = std::time::Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if std::time::Instant::now() >= deadline {
            // SAFETY: kill with our child's pid (herd, which python exec'd).
            unsafe { libc::kill(child.id() as i32, libc::SIGQUIT) };
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    let status = status.unwrap_or_else(|| panic!("herd started with {passed} {args:?}: {stderr}"));
    assert_eq!(status.code(), Some(code), "{passed} {args:?}: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line for {passed} {args:?}: {stderr}");
    assert!(
        lines[0].starts_with("herd: error: ") && lines[0].contains(needle),
        "{passed} {args:?} should say {needle:?}: {stderr}"
    );
}

/// Only sockets are adopted from systemd (a regular file is neither handed to workers nor
/// taken for shared memory), and each name must mean one socket.
#[test]
fn adopting_refuses_what_is_not_a_socket_and_duplicate_names() {
    let run = ["-w", "1", "--", "sleep", "1000"];
    let with = |binds: &[&'static str]| -> Vec<&'static str> {
        binds.iter().chain(run.iter()).copied().collect()
    };
    let not_a_socket = "fd 3 passed to herd as \"web\" is a regular file, not a socket";
    refused("file:web", &with(&["-b", "systemd"]), 1, not_a_socket);
    refused("file:web", &with(&["-b", "fd:web"]), 1, not_a_socket);
    refused(
        "tcp:http,file:web",
        &with(&["-b", "systemd"]),
        1,
        "fd 4 passed to herd as \"web\" is a regular file",
    );
    refused(
        "connected:web",
        &with(&["-b", "systemd"]),
        1,
        "fd 3 passed to herd as \"web\" is a connected socket, not a listening one",
    );
    for fresh in ["fresh:web", "fresh_unix:web"] {
        refused(
            fresh,
            &with(&["-b", "systemd"]),
            1,
            "fd 3 passed to herd as \"web\" is a socket that is neither bound nor listening",
        );
    }
    refused(
        "bound:web",
        &with(&["-b", "systemd"]),
        1,
        "fd 3 passed to herd as \"web\" is a socket bound to 127.0.0.1:",
    );
    refused(
        "tcp:x,tcp:x",
        &with(&["-b", "systemd"]),
        1,
        "2 sockets were passed to herd under the one name \"x\" (fds 3, 4)",
    );
    refused(
        "tcp:x,tcp:x",
        &with(&["-b", "a=fd:x"]),
        1,
        "fd:NAME cannot tell them apart",
    );
    refused(
        "tcp:http",
        &with(&["-b", "systemd", "-b", "http=127.0.0.1:0"]),
        2,
        "the name 'http' is given to two sockets, by --bind 'systemd' (passed by systemd) and \
         by --bind 'http=127.0.0.1:0'",
    );
    refused(
        "tcp:http",
        &with(&["-b", "systemd", "--shm", "http=4096"]),
        2,
        "the name 'http' is given to two sockets",
    );
}

#[test]
fn a_worker_that_changes_a_passed_sockets_mode_is_told_to_set_it_in_the_unit() {
    // herd's --bind options do not make a socket systemd passed: its .socket unit does.
    let herd = Herd::start_with(|_| {
        let mut cmd = Command::new("python3");
        cmd.args([
            "-c",
            SYSTEMD,
            HERD,
            "--log-format",
            "json",
            "run",
            "-w",
            "1",
        ])
        .args(["-b", "systemd", "--", "python3", "-c"])
        .arg("import os, time; os.set_blocking(3, False); time.sleep(1000)");
        cmd
    });
    let said = herd.wait_for_event("blocking_mode_changed", &[("socket", "web".into())]);
    let message = said["message"].as_str().unwrap();
    assert!(
        message.contains("(bound as systemd passed it)")
            && message.ends_with("set NonBlocking=yes in its .socket unit"),
        "{message}"
    );
}
