//! herd's side of systemd's protocols when systemd (or what plays it) misbehaves or asks for
//! more: a watchdog (`WATCHDOG_USEC`), a notify socket nobody reads, socket names that are not
//! text. The test plays systemd's part.

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};

use crate::util::*;

/// A herd with one sleeping worker on 127.0.0.1:0, `NOTIFY_SOCKET` at `notify` and the
/// extra environment `env`.
fn herd_with_notify(notify: &std::path::Path, env: &[(&str, &str)]) -> Herd {
    Herd::start_with(|_| {
        let mut cmd = herd_json();
        cmd.args(["run", "-w", "1", "-b", "web=127.0.0.1:0"])
            .args(["--", "python3", "-c", "import time; time.sleep(600)"])
            .env("NOTIFY_SOCKET", notify)
            .envs(env.iter().copied());
        cmd
    })
}

/// With `WatchdogSec=`, systemd gives herd `WATCHDOG_USEC` and kills it when no `WATCHDOG=1`
/// comes within that time: herd sends one at least every half of it, from its loop.
#[test]
fn herd_keeps_its_service_managers_watchdog_fed() {
    let dir = tempfile::tempdir().unwrap();
    let notify_path = dir.path().join("systemd-notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(TIMEOUT)).unwrap();
    let herd = herd_with_notify(&notify_path, &[("WATCHDOG_USEC", "200000")]);
    herd.wait_for_event("worker_started", &[]);
    // Not the first alone: herd pings on and on while nothing else happens.
    for _ in 0..5 {
        crate::systemd::expect(&notify, "WATCHDOG=1");
    }
    let (code, _, stderr) = herd.ctl(&["stop"]);
    assert_eq!(code, 0, "{stderr}");
}

/// A service manager that stopped reading its notify socket fills the socket's queue; herd
/// then gives up on its messages instead of blocking in a send for good, and keeps answering
/// its control socket and its signals.
#[test]
fn a_notify_socket_nobody_reads_does_not_freeze_herd() {
    let dir = tempfile::tempdir().unwrap();
    let notify_path = dir.path().join("systemd-notify.sock");
    let _never_read = UnixDatagram::bind(&notify_path).unwrap();
    // Pings every 10ms fill the queue (net.unix.max_dgram_qlen datagrams) within seconds.
    let mut herd = herd_with_notify(&notify_path, &[("WATCHDOG_USEC", "1")]);
    let warning = herd.wait_for_event("system_error", &[]);
    let message = warning["message"].as_str().unwrap_or("");
    assert!(
        message.contains("not reading its notify socket"),
        "{warning}"
    );
    let status = herd.status();
    assert_eq!(status["desired"], 1, "{status}");
    herd.signal(libc::SIGTERM);
    assert!(herd.wait_exit().success());
}

/// A `LISTEN_FDNAMES` that is not UTF-8 is refused, not taken for an unset one (which would
/// name the socket "unknown").
#[test]
fn socket_names_that_are_not_text_are_refused() {
    let script = r#"
import os, socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(8)
os.dup2(s.fileno(), 3)
os.environb[b"LISTEN_FDNAMES"] = b"caf\xe9"
os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()))
os.execv(sys.argv[1], sys.argv[1:])
"#;
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new("python3")
        .args(["-c", script, HERD, "run", "-w", "1", "-b", "systemd"])
        .args(["--", "sleep", "600"])
        .env("HERD_CONTROL", dir.path().join("control.sock"))
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    let status = wait_child(&mut child, TIMEOUT, libc::SIGQUIT);
    let stderr = reader.join().unwrap();
    assert_eq!(status.and_then(|s| s.code()), Some(FAILURE), "{stderr}");
    assert!(
        stderr.contains(r#"LISTEN_FDNAMES="caf\xE9" is not valid UTF-8"#),
        "{stderr}"
    );
}

/// A socket passed to herd that no `--bind` adopts (here `extra`, beside `-b fd:web`) is
/// named in a warning and closed: herd held it open before, silently, so that its clients
/// waited in a queue no worker served instead of being refused.
#[test]
fn a_passed_socket_no_bind_adopts_is_named_and_closed() {
    let script = r#"
import os, socket, sys
socks = []
for fd in (3, 4):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    socks.append(s)
for i, s in enumerate(socks):
    os.dup2(s.fileno(), 100 + i)
for i, s in enumerate(socks):
    os.dup2(100 + i, 3 + i)
    os.close(100 + i)
    os.write(2, f"systemd-play fd{3 + i}={s.getsockname()[1]}\n".encode())
    s.detach()
os.environ.update(LISTEN_FDS="2", LISTEN_FDNAMES="web:extra", LISTEN_PID=str(os.getpid()))
os.execv(sys.argv[1], sys.argv[1:])
"#;
    let herd = Herd::start_with(|_| {
        let mut cmd = Command::new("python3");
        cmd.args(["-c", script, HERD, "--log-format", "json", "run", "-w", "1"])
            .args(["-b", "fd:web", "--", "sleep", "600"]);
        cmd
    });
    let extra_port = herd.wait_text("systemd-play fd4=");
    let extra_port = extra_port.rsplit('=').next().unwrap().trim().to_string();
    let warning = herd.wait_event("the unadopted socket's warning", |e| {
        e["event"] == "setup_note"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.contains("no --bind adopts"))
    });
    let message = warning["message"].as_str().unwrap();
    assert!(
        message.contains(r#""extra" (fd 4)"#) && !message.contains(r#""web""#),
        "{warning}"
    );
    herd.wait_for_event("worker_started", &[]);
    let refused = std::net::TcpStream::connect(format!("127.0.0.1:{extra_port}"));
    assert_eq!(
        refused.map_err(|e| e.kind()).err(),
        Some(std::io::ErrorKind::ConnectionRefused),
        "herd still holds the socket nobody adopted"
    );
    let (code, _, stderr) = herd.ctl(&["stop"]);
    assert_eq!(code, 0, "{stderr}");
}

/// A wrapper that runs herd without `exec` passes systemd's sockets on under its own pid in
/// `LISTEN_PID`: herd held them open, silently, their clients waiting for no worker. Now a
/// warning says so and how to fix it, and `--bind systemd` refuses with the same reason.
#[test]
fn sockets_passed_to_a_wrapper_are_named_with_the_fix() {
    let wrapper = r#"
import os, socket, subprocess, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(8)
os.dup2(s.fileno(), 3)
os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()))
passed = () if os.environ.get("PASS_NONE") else (3,)
sys.exit(subprocess.call(sys.argv[1:], pass_fds=passed))
"#;
    let wrapped = |binds: &'static [&'static str]| {
        Herd::start_with(move |_| {
            let mut cmd = Command::new("python3");
            cmd.args([
                "-c",
                wrapper,
                HERD,
                "--log-format",
                "json",
                "run",
                "-w",
                "1",
            ])
            .args(binds)
            .args(["--", "sleep", "600"]);
            cmd
        })
    };
    let herd = wrapped(&["-b", "127.0.0.1:0"]);
    let warning = herd.wait_event("the wrapper's sockets' warning", |e| {
        e["event"] == "setup_note"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.contains("herd holds 1 socket(s) passed to pid"))
    });
    assert!(
        warning["message"]
            .as_str()
            .unwrap()
            .contains("run herd with exec"),
        "{warning}"
    );
    let (code, _, stderr) = herd.ctl(&["stop"]);
    assert_eq!(code, 0, "{stderr}");

    // The variables alone, no fd passed: herd's own sockets are never taken for the wrapper's.
    let herd = Herd::start_with(|_| {
        let mut cmd = Command::new("python3");
        cmd.env("PASS_NONE", "1")
            .args([
                "-c",
                wrapper,
                HERD,
                "--log-format",
                "json",
                "run",
                "-w",
                "1",
            ])
            .args([
                "-b",
                "127.0.0.1:0",
                "-b",
                "127.0.0.1:0",
                "--",
                "sleep",
                "600",
            ]);
        cmd
    });
    herd.wait_for_event("worker_started", &[]);
    assert!(
        events(&herd.lines()).all(|e| !e["message"]
            .as_str()
            .unwrap_or_default()
            .contains("passed to pid")),
        "a warning about herd's own sockets"
    );
    let (code, _, stderr) = herd.ctl(&["stop"]);
    assert_eq!(code, 0, "{stderr}");

    let mut refused = wrapped(&["-b", "systemd"]);
    assert_eq!(refused.wait_exit().code(), Some(1));
    let said = refused.wait_text("must run it with exec");
    assert!(
        said.contains("LISTEN_FDS=1 passes its sockets to pid"),
        "{said}"
    );
}

/// A stop while an upgrade rolls (through a drain, then a second SIGTERM) says `STOPPING=1`
/// once, and no `READY=1` after it: the upgrade the stop abandons ends in a status only, where
/// herd sent `READY=1` ("the old workers serve") to a service manager that was stopping it.
#[test]
fn an_upgrade_a_stop_abandons_sends_no_ready_after_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let notify_path = dir.path().join("systemd-notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(TIMEOUT)).unwrap();
    // Generation 1 is ready at once; generation 2 never is.
    let worker = r#"
import os, socket, sys, time
if sys.argv[1] == "1":
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.sendto(b"READY=1", os.environ["NOTIFY_SOCKET"])
time.sleep(600)
"#;
    let mut herd = Herd::start_with(|_| {
        let mut cmd = herd_json();
        cmd.args([
            "run",
            "-w",
            "1",
            "-b",
            "web=127.0.0.1:0",
            "--ready",
            "notify",
        ])
        .args(["--drain-delay", "1h", "--grace", "1s"])
        .args(["--", "python3", "-c", worker, "{generation}"])
        .env("NOTIFY_SOCKET", &notify_path);
        cmd
    });
    crate::systemd::expect(&notify, "READY=1");
    herd.signal(libc::SIGHUP);
    herd.wait_for_event("upgrade_started", &[]);
    crate::systemd::expect(&notify, "RELOADING=1");
    herd.signal(libc::SIGTERM);
    herd.wait_for_event("draining", &[]);
    herd.signal(libc::SIGTERM);
    herd.wait_for_event("upgrade_abandoned", &[]);
    assert!(herd.wait_exit().success());
    let mut heard = Vec::new();
    let mut buf = [0u8; 4096];
    notify.set_nonblocking(true).unwrap();
    while let Ok(n) = notify.recv(&mut buf) {
        heard.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let stopping = heard.iter().filter(|m| m.contains("STOPPING=1")).count();
    assert_eq!(stopping, 1, "{heard:?}");
    let after: Vec<&String> = heard
        .iter()
        .skip_while(|m| !m.contains("STOPPING=1"))
        .collect();
    assert!(
        !after.iter().any(|m| m.contains("READY=1")),
        "READY=1 after STOPPING=1: {heard:?}"
    );
    assert!(
        after
            .iter()
            .any(|m| m.contains("STATUS=upgrade abandoned: herd is stopping")),
        "{heard:?}"
    );
}

/// A service manager whose queue is full when herd stores its sockets (`FDSTORE=`): the first
/// message waits its second and fails, and herd sends no more of them then (each waited its
/// second in turn, with herd's loop: a second per socket), saying how many it did not send.
#[test]
fn a_full_fd_store_queue_costs_one_wait_not_one_per_socket() {
    let dir = tempfile::tempdir().unwrap();
    let notify_path = dir.path().join("systemd-notify.sock");
    let _never_read = UnixDatagram::bind(&notify_path).unwrap();
    // Full once a fresh sender's first datagram does not go: a sender's own buffer may run out
    // first (net.unix.max_dgram_qlen is 512 on many hosts), and herd sends from fresh sockets.
    let mut fillers = Vec::new();
    let full = (0..1000).any(|_| {
        let filler = UnixDatagram::unbound().unwrap();
        filler.set_nonblocking(true).unwrap();
        let sent = (0..100_000)
            .take_while(|_| filler.send_to(b"X=1", &notify_path).is_ok())
            .count();
        fillers.push(filler);
        sent == 0
    });
    assert!(full, "the notify socket's queue never filled");
    let mut herd = Herd::start_with(|_| {
        let mut cmd = herd_json();
        cmd.args(["run", "-w", "1"])
            .args([
                "-b",
                "a=127.0.0.1:0",
                "-b",
                "b=127.0.0.1:0",
                "-b",
                "c=127.0.0.1:0",
            ])
            .args(["--", "python3", "-c", "import time; time.sleep(600)"])
            .env("NOTIFY_SOCKET", &notify_path)
            .env("FDSTORE", "8");
        cmd
    });
    let skipped = herd.wait_event("the fd store messages not sent", |e| {
        e["message"]
            .as_str()
            .is_some_and(|m| m.contains("to systemd's fd store not sent"))
    });
    let said = skipped["message"].as_str().unwrap_or("");
    assert!(said.starts_with("2 more message(s)"), "{skipped}");
    // Was: "herd sends them at its next change of sockets", which never came (herd stores at
    // its start only): the sockets not stored closed at the next crash.
    assert!(
        said.contains("herd stores only at its start") && said.contains("restart herd"),
        "{skipped}"
    );
    let lines = herd.lines();
    let failed = events(&lines)
        .filter(|e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.contains("cannot reach systemd's fd store"))
        })
        .count();
    assert_eq!(failed, 1, "one send tried and failed");
    herd.signal(libc::SIGTERM);
    assert!(herd.wait_exit().success());
}
