//! Who may use the control socket, and clients that misbehave: hostile connections, missing
//! herds, forged notifications.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;

use serde_json::Value;

use crate::util::*;

#[test]
fn control_socket_modes_and_access() {
    // The default location: a private directory under XDG_RUNTIME_DIR.
    let runtime = tempfile::tempdir().unwrap();
    let herd = Herd::start_with(|_| {
        let mut cmd = herd_json();
        cmd.env("XDG_RUNTIME_DIR", runtime.path()).args([
            "run",
            "--name",
            "web",
            "-b",
            "127.0.0.1:0",
            "--",
            "sleep",
            "1000",
        ]);
        cmd.env_remove("HERD_CONTROL");
        cmd
    });
    herd.started(1);
    let dir = runtime.path().join("herd");
    let sock = dir.join("web.sock");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&sock), 0o600);
    // The control and notify sockets' files are sticky: the cleaners of /tmp and of
    // $XDG_RUNTIME_DIR skip such files (without them nobody could reach herd).
    let sticky =
        |p: std::path::PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o1000;
    let files = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| sticky(e.unwrap().path()));
    let want = if cfg!(target_os = "linux") { 0o1000 } else { 0 };
    assert_eq!(files.collect::<Vec<_>>(), [want, want]);

    // A second herd with the same name is refused; the first one's socket stays.
    let (code, stderr) = {
        let out = std::process::Command::new(HERD)
            .env("XDG_RUNTIME_DIR", runtime.path())
            .env_remove("HERD_CONTROL")
            .args(["run", "--name", "web", "-b", "127.0.0.1:0", "--", "true"])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("another herd is already using"), "{stderr}");
    assert!(sock.exists());

    if !root_or_skip("the foreign-uid part needs root to switch users") {
        return;
    }
    // Open the path up, as a careless admin might: the credential check still refuses.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    let as_user = |uid: u32| {
        let out = std::process::Command::new(HERD)
            .args(["status", "--json", "--control"])
            .arg(&sock)
            .uid(uid)
            .gid(uid)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stderr) = as_user(65534);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("permission_denied") && stderr.contains("uid 65534 is not allowed"),
        "{stderr}"
    );
    herd.wait_for_event("control_denied", &[("uid", 65534.into())]);
    // --control-allow-uid/gid: access::control_allow_uid_and_gid_admit_those_users_and_no_other.
}

#[test]
fn hostile_clients_cannot_stall_the_supervisor() {
    let herd = sleepers(&["-w", "1"]);
    herd.started(1);
    let control = herd.control();
    let ask = |line: &[u8]| -> Value {
        let mut s = UnixStream::connect(&control).unwrap();
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        s.write_all(line).unwrap();
        let mut answer = String::new();
        BufReader::new(&s).read_line(&mut answer).unwrap();
        serde_json::from_str(&answer).unwrap()
    };
    let code = |v: &Value| v["error"]["code"].as_str().unwrap_or("").to_string();
    assert_eq!(code(&ask(b"garbage\n")), "bad_request");
    assert_eq!(
        code(&ask(b"{\"version\":7,\"command\":\"status\"}\n")),
        "unsupported_version"
    );
    assert_eq!(
        code(&ask(b"{\"version\":1,\"command\":\"dance\"}\n")),
        "unknown_command"
    );
    assert_eq!(
        code(&ask(
            b"{\"version\":1,\"command\":\"scale\",\"workers\":-1}\n"
        )),
        "invalid_argument"
    );
    assert_eq!(ask(b"{\"version\":1,\"command\":\"status\"}\n")["ok"], true);

    // Idle connections, a half-written request, and a 10 MB line.
    let idle: Vec<UnixStream> = (0..500)
        .map(|_| UnixStream::connect(&control).unwrap())
        .collect();
    let mut half = UnixStream::connect(&control).unwrap();
    half.write_all(b"{\"version\":1,\"comm").unwrap();
    let mut big = UnixStream::connect(&control).unwrap();
    big.set_read_timeout(Some(TIMEOUT)).unwrap();
    let writer = {
        let mut big = big.try_clone().unwrap();
        std::thread::spawn(move || {
            let chunk = vec![b'x'; 1 << 20];
            for _ in 0..10 {
                if big.write_all(&chunk).is_err() {
                    break; // herd closed the connection: expected
                }
            }
        })
    };
    let mut answer = String::new();
    BufReader::new(&big).read_line(&mut answer).unwrap();
    assert!(answer.contains("request_too_large"), "{answer}");
    let mut rest = Vec::new();
    let _ = big.read_to_end(&mut rest);
    writer.join().unwrap();

    // Through all of it, status answers at once.
    let status = herd.status();
    assert_eq!(status["running"], 1);
    drop(idle);
}

#[test]
fn clients_explain_a_missing_herd() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(HERD)
        .env("HERD_CONTROL", dir.path().join("nothing.sock"))
        .arg("status")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("no herd is running at"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1);
}

#[test]
fn forged_and_oversized_notifications_are_dropped() {
    let herd = sleepers(&["-w", "1", "--ready", "notify"]);
    herd.started(1);
    herd.wait_for_event("control_ready", &[]);
    let notify = std::os::unix::net::UnixDatagram::unbound().unwrap();
    let path = herd.notify_path();
    notify.send_to(b"READY=1", &path).unwrap();
    notify.send_to(&vec![b'x'; 8192], &path).unwrap();
    let me = std::process::id();
    let dropped = herd.wait_for_events("notify_dropped", 2, &[]);
    let why: Vec<&str> = dropped
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect();
    let forged = format!(
        "notify socket: dropped a message: pid {me} is not a worker nor a descendant of one"
    );
    assert!(why.contains(&forged.as_str()), "{why:?}");
    assert!(
        why.contains(&"notify socket: dropped a message: longer than 4096 bytes"),
        "{why:?}"
    );
    let status = herd.status();
    assert_eq!(
        status["workers"][0]["state"], "starting",
        "a forged READY=1 counts for nothing"
    );
}

/// `BARRIER=1` (`sd_notify_barrier`, which `systemd-notify` sends after its message) is
/// answered by closing the fd it carries, and is no one's to drop: its sender, let go by that
/// close, may be gone before herd looks at whose it was (herd warned once in a while under
/// `systemd-notify --ready`). Sent from outside the pool, so that herd would always have said
/// it dropped it.
#[test]
fn a_notify_barrier_is_answered_and_never_said_dropped() {
    let herd = sleepers(&["-w", "1", "--ready", "notify"]);
    herd.started(1);
    herd.wait_for_event("control_ready", &[]);
    // The barrier with a pipe's write end; its close (POLLHUP) is herd's answer. Then a
    // message herd drops, processed after the barrier: once it is said, the barrier was seen.
    let sender = r#"
import os, select, socket, sys
r, w = os.pipe()
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.connect(sys.argv[1])
socket.send_fds(s, [b"BARRIER=1"], [w])
os.close(w)
p = select.poll()
p.register(r, select.POLLHUP)
print("closed" if p.poll(30000) else "still open", flush=True)
s.send(b"x" * 8192)
"""#;
    let out = std::process::Command::new("python3")
        .args(["-c", sender])
        .arg(herd.notify_path())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(said.trim(), "closed", "{stderr}");
    let last = "notify socket: dropped a message: longer than 4096 bytes";
    herd.wait_event(last, |e| e["message"] == last);
    let dropped: Vec<String> = events(&herd.lines())
        .filter(|e| is_event(e, "notify_dropped", &[]))
        .map(|e| e["message"].to_string())
        .collect();
    assert_eq!(dropped.len(), 1, "only the oversized message: {dropped:?}");
}

/// `herd ARGS` against a fake herd answering as `mode` says, at a socket in `dir`: checked to
/// fail (exit 1) with nothing on stdout and one line on stderr, which it returns.
fn status_fails_in_one_line(dir: &std::path::Path, mode: &str, args: &[&str]) -> String {
    let path = dir.join(format!("{}-{}.sock", &mode[2..], args.len()));
    let _fake = FakeHerd::start(mode, &path);
    let (code, stdout, stderr) = ctl_at(path.to_str().unwrap(), args);
    assert_eq!(
        (code, stdout.as_str()),
        (FAILURE, ""),
        "{mode} {args:?}: {stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{mode} {args:?}: {stderr}");
    stderr
}

#[test]
fn a_server_that_floods_its_answer_fails_herd_status_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    for mode in ["--endless", "--huge"] {
        let stderr = status_fails_in_one_line(dir.path(), mode, &["status"]);
        assert!(
            stderr.contains("unexpected answer from")
                && stderr.contains("more than 16 MiB without a line end"),
            "{mode}: {stderr}"
        );
    }
}

/// A refusal of 2 MiB is cut, and an error code with a line end and a terminal escape is shown
/// escaped, each on one line (herd status exited 1 saying nothing, its error line too long for
/// the queue to stderr; the code's line end split the error in two).
#[test]
fn a_server_that_answers_a_long_or_hostile_refusal_fails_herd_status_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    for (mode, says) in [
        ("--long-refusal", "more bytes)"),
        ("--hostile-code", r"unknown variant `busy\n\x1b[2J`"),
    ] {
        let stderr = status_fails_in_one_line(dir.path(), mode, &["status"]);
        assert!(
            !stderr.contains('\x1b') && stderr.len() < 70 << 10,
            "{mode}: {stderr}"
        );
        assert!(stderr.contains(says), "{mode}: {stderr}");
    }
}

/// A success whose result is an array is no status: `herd status --json` fails in one line
/// instead of printing it and exiting 0 (it took any JSON for a status).
#[test]
fn a_status_of_another_shape_fails_herd_status_json_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    for args in [&["status", "--json"][..], &["status"]] {
        let stderr = status_fails_in_one_line(dir.path(), "--array-result", args);
        assert!(
            stderr.contains("unexpected answer from"),
            "{args:?}: {stderr}"
        );
    }
}

/// A result that is an array is no command's result, whatever it holds: every client fails in
/// one line (serde_json read a struct from an array member by member, so `herd scale` said
/// "scaled from 1 to 3 workers", `herd stop` "stopped", `herd attach` ran its command, `herd
/// logs` printed a log line sent as an array, all with exit 0).
#[test]
fn a_result_of_another_json_type_fails_every_client_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (&["scale", "3"][..], "expected struct ScaleResult"),
        (&["upgrade"], "expected struct UpgradeResult"),
        (&["stop"], "expected struct StopResult"),
        (&["signal", "HUP"], "expected struct SignalResult"),
        (&["reexec"], "expected struct ReexecResult"),
        (&["status"], "expected struct Status"),
        (&["status", "--watch"], "expected struct Status"),
        (&["status", "--json"], "expected a status (a JSON object)"),
        (
            &["attach", "--", "/bin/echo", "ran"],
            "expected struct SocketsResult",
        ),
        (&["logs"], "expected struct LogFrame"),
    ];
    for (i, (args, says)) in cases.into_iter().enumerate() {
        // A socket of its own for each: the fake herd's path is named by the count of args.
        let own = dir.path().join(i.to_string());
        std::fs::create_dir(&own).unwrap();
        let stderr = status_fails_in_one_line(&own, "--arrays", args);
        let told = if args[0] == "logs" {
            "herd sent a line that is not a log line: invalid type: sequence"
        } else {
            "unexpected answer from"
        };
        assert!(
            stderr.contains(told) && stderr.contains(says),
            "{args:?}: {stderr}"
        );
    }
}

/// `herd logs --worker N` asks herd for its status only to say that the slot is not in the
/// pool: not with `-n 0`, which asks for no line, nor for a follower whose stdout's reader is
/// gone (`herd logs -f --worker N | head -0`), which ends without printing anything. Without
/// `-n 0`, a slot with no line is looked up.
#[test]
fn herd_logs_asks_for_no_status_it_does_not_need() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.sock");
    let asked = dir.path().join("asked");
    let _fake = FakeHerd::start_recording(&path, &asked);
    let logs = |args: &[&str], reader_gone: bool| {
        let mut command = std::process::Command::new(HERD);
        command
            .env("HERD_CONTROL", &path)
            .arg("logs")
            .args(args)
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        if reader_gone {
            let (reader, writer) = std::io::pipe().unwrap();
            drop(reader);
            command.stdout(writer);
        } else {
            command.stdout(std::process::Stdio::piped());
        }
        let out = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let commands = std::fs::read_to_string(&asked).unwrap_or_default();
        let _ = std::fs::remove_file(&asked);
        (out.status.code(), commands, stderr)
    };
    let (code, commands, stderr) = logs(&["--worker", "3", "-n", "0"], false);
    assert_eq!((code, commands.as_str()), (Some(0), "logs\n"), "{stderr}");
    let (code, commands, stderr) = logs(&["--worker", "3", "-f"], true);
    assert_eq!((code, commands.as_str()), (Some(0), "logs\n"), "{stderr}");
    // A slot with no line, lines asked for: herd's status says whether it is in the pool.
    let (_, commands, stderr) = logs(&["--worker", "3"], false);
    assert_eq!(commands, "logs\nstatus\n", "{stderr}");
}

/// An answer that names `ok` twice is refused in the client's words for any member named
/// twice (it said serde's "duplicate field `ok`").
#[test]
fn an_answer_naming_ok_twice_fails_herd_stop_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let stderr = status_fails_in_one_line(dir.path(), "--ok-twice", &["stop"]);
    assert!(
        stderr.contains("unexpected answer from") && stderr.contains(r#"it names "ok" twice"#),
        "{stderr}"
    );
}

/// A crowd of silent connections (leaked by a careless script, or hostile) cannot keep `herd
/// status`, `herd upgrade` or `herd stop` out: with 1000 open, the one that has waited longest
/// for a request is closed for a newcomer (they were refused `busy` until the crowd idled out
/// after 30 s, for as long as it was renewed).
#[test]
fn silent_connections_cannot_lock_out_herd_stop() {
    let (soft, hard) = herd_sys::process::nofile_limit().unwrap();
    if soft < 2000 && hard > soft {
        herd_sys::process::set_nofile_limit(hard.min(4096), hard).unwrap();
    }
    let mut herd = sleepers(&["-w", "1"]);
    wait_status(&herd, "the worker ready", |s| s["ready"] == 1);
    let control = herd.control();
    let silent: Vec<UnixStream> = (0..1100)
        .map(|_| UnixStream::connect(&control).unwrap())
        .collect();
    let (code, out, err) = herd.ctl(&["status"]);
    assert_eq!(code, 0, "herd status: {out}{err}");
    let (code, out, err) = herd.ctl(&["upgrade"]);
    assert_eq!(code, 0, "herd upgrade: {out}{err}");
    let (code, out, err) = herd.ctl(&["stop"]);
    assert_eq!(code, 0, "herd stop: {out}{err}");
    assert!(herd.wait_exit().success());
    // The oldest gave way, closed by herd without a word.
    let mut first = &silent[0];
    first.set_read_timeout(Some(TIMEOUT)).unwrap();
    assert_eq!(first.read(&mut [0u8; 64]).unwrap(), 0);
}

/// A socket sent along a request whose close would wait (a TCP connection with unsent data
/// its peer never reads, and a long `SO_LINGER`) cannot stall herd: closing the last copy of
/// such a socket waits for as long as its sender chose, and herd, which closed what came with
/// a request (or with the connection of a uid it refused, behind `--control-allow-uid`) on its
/// event loop, answered nothing for that long. The kernel refuses fds on the control socket
/// where it can (Linux 6.16+), which is tested here; elsewhere, herd closes the connections it
/// turns away on a thread of its own.
#[test]
fn a_socket_sent_along_a_request_cannot_stall_the_supervisor() {
    use std::os::unix::io::AsFd;
    if !kernel_refuses_fds() {
        eprintln!("skipped: this kernel lets fds through (SO_PASSRIGHTS is Linux 6.16+)");
        return;
    }

    let herd = sleepers(&["-w", "1"]);
    herd.started(1);
    let peer = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut tcp = std::net::TcpStream::connect(peer.local_addr().unwrap()).unwrap();
    tcp.set_nonblocking(true).unwrap();
    while tcp.write(&[0u8; 65536]).is_ok() {}
    tcp.set_nonblocking(false).unwrap();
    socket2::SockRef::from(&tcp)
        .set_linger(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    let client = UnixStream::connect(herd.control()).unwrap();
    let request = b"{\"version\":1,\"command\":\"status\"}\n";
    let sent = herd_sys::fdpass::send_with_fds(client.as_fd(), request, &[tcp.as_fd()]);
    let refused = sent.as_ref().err().and_then(|e| e.raw_os_error()) == Some(libc::EPERM);
    let mut peer = Some(peer);
    if refused {
        // Ours is the last copy: its close would wait, unless the peer goes first.
        peer = None;
    }
    drop(tcp);
    // herd answers at once all the same.
    let mut asker = UnixStream::connect(herd.control()).unwrap();
    asker
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    asker.write_all(request).unwrap();
    let mut answer = String::new();
    let read = BufReader::new(&asker).read_line(&mut answer);
    // The peer's end goes: a close that waits for it ends.
    drop(peer);
    assert!(refused, "the control socket took an fd: {sent:?}");
    read.unwrap();
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["ok"], true, "{answer}");
}
