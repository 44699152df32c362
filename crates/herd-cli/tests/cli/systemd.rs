//! Socket activation: herd adopts the sockets systemd passes it, and reports its state to
//! systemd's notify socket. The test plays systemd's part.

use std::os::unix::net::UnixDatagram;
use std::process::Command;

use crate::util::*;

/// Binds 127.0.0.1:0, puts it at fd 3 with LISTEN_FDS/LISTEN_FDNAMES/LISTEN_PID for its own pid,
/// and execs the rest of its arguments: what systemd does for a .socket unit.
const SYSTEMD: &str = r#"
import os, socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(128)
print(f"systemd-play port={s.getsockname()[1]}", file=sys.stderr, flush=True)
if s.fileno() != 3:
    os.dup2(s.fileno(), 3)
os.set_inheritable(3, True)
os.environ.update(LISTEN_FDS="1", LISTEN_FDNAMES="web", LISTEN_PID=str(os.getpid()))
os.execv(sys.argv[1], sys.argv[1:])
"#;

/// Reads datagrams from the fake service manager's socket until one contains `needle`.
fn expect(notify: &UnixDatagram, needle: &str) -> String {
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
