//! Every bad input: one line naming the input and the fix, a documented exit code, and nothing
//! left behind.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;

use crate::util::*;

#[test]
fn malformed_bind_specs() {
    for (spec, needle) in [
        ("8080", "write :8080"),
        (":0,fast", "unknown option 'fast'"),
        (":99999", "out of range"),
        ("::1:80", "need brackets"),
        ("udp://:0,backlog=4", "stream sockets"),
        ("sctp://h:1", "unknown scheme"),
    ] {
        let stderr = assert_fails(&["run", "-b", spec, "--", "true"], USAGE, needle);
        assert!(
            stderr.contains(spec),
            "the message names the input: {stderr}"
        );
    }
}

#[test]
fn an_error_too_long_for_the_log_is_cut_not_lost() {
    // A config value of 2 MB, quoted back in the error: more than herd's log queue holds.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("big.toml");
    std::fs::write(
        &config,
        format!("workers = \"{}\"\n", "a".repeat(2_000_000)),
    )
    .unwrap();
    let stderr = assert_fails(
        &["run", "--config", config.to_str().unwrap()],
        USAGE,
        "workers: 'aaaa",
    );
    // Cut in its middle: the end still says what is wrong with the value.
    assert!(stderr.contains("aaa [herd: "), "{}", stderr.len());
    assert!(
        stderr.ends_with("aaa' is not a number of workers\n"),
        "{}",
        &stderr[stderr.len() - 80..]
    );
    assert!(stderr.len() <= 128 * 1024, "{}", stderr.len());
}

#[test]
fn zero_workers() {
    assert_fails(
        &["run", "-w", "0", "-b", ":0", "--", "true"],
        USAGE,
        "at least 1 worker",
    );
}

#[test]
fn missing_command() {
    assert_fails(&["run", "-b", ":0"], USAGE, "<COMMAND>");
    assert_fails(&["run", "-b", "127.0.0.1:0", "--"], USAGE, "<COMMAND>");
}

#[test]
fn missing_bind() {
    assert_fails(&["run", "--", "true"], USAGE, "--bind");
}

#[test]
fn command_not_found() {
    assert_fails(
        &["run", "-b", "127.0.0.1:0", "--", "no-such-herd-command"],
        USAGE,
        "'no-such-herd-command' was not found in PATH",
    );
}

#[test]
fn command_not_executable() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("app.py");
    std::fs::write(&script, "print('hi')\n").unwrap();
    let script = script.display().to_string();
    assert_fails(
        &["run", "-b", "127.0.0.1:0", "--", &script],
        USAGE,
        "is not executable",
    );
}

#[test]
fn command_that_cannot_be_executed_fails_at_once() {
    // Executable bit, but neither a binary nor a script with "#!": execve fails with ENOEXEC.
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("bogus");
    write_executable(&bogus, [0u8, 1, 2, 3]);
    let sock = dir.path().join("s.sock");
    let spec = format!("unix:{}", sock.display());
    let (code, stderr) = herd_output(&[
        "--log-level",
        "error",
        "run",
        "-w",
        "3",
        "-b",
        &spec,
        "--",
        &bogus.display().to_string(),
    ]);
    assert_eq!(code, FAILURE, "{stderr}");
    assert!(
        stderr.contains("cannot execute") && stderr.contains("Exec format error"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(!sock.exists(), "socket file left behind");
}

#[test]
fn unknown_template_name_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("t.sock");
    let spec = format!("web=unix:{}", sock.display());
    assert_fails(
        &["run", "-b", &spec, "--", "sleep", "{fd:nope}"],
        USAGE,
        "no socket is named 'nope'",
    );
    assert_fails(
        &["run", "-b", &spec, "--", "echo", "{slot}"],
        USAGE,
        "unknown template",
    );
    assert!(!sock.exists(), "socket file left behind");
}

#[test]
fn duplicate_socket_names() {
    assert_fails(
        &[
            "run",
            "-b",
            "a=127.0.0.1:0",
            "-b",
            "a=127.0.0.1:0",
            "--",
            "true",
        ],
        USAGE,
        "'a' is given to more than one --bind or --shm",
    );
}

#[test]
fn address_in_use() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let stderr = assert_fails(
        &["run", "-b", &addr, "--", "true"],
        FAILURE,
        "already in use",
    );
    assert!(stderr.contains(&addr), "{stderr}");
}

#[test]
fn address_in_use_releases_earlier_sockets() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("first.sock");
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let first = format!("unix:{}", sock.display());
    assert_fails(
        &["run", "-b", &first, "-b", &addr, "--", "true"],
        FAILURE,
        "already in use",
    );
    assert!(
        !sock.exists(),
        "the socket bound before the failure was left behind"
    );
}

#[test]
fn privileged_port_needs_privilege() {
    let floor: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .map_or(1024, |s| s.trim().parse().unwrap_or(1024));
    if floor <= 1 {
        eprintln!("skipped: every port is unprivileged here (ip_unprivileged_port_start={floor})");
        return;
    }
    let port = (floor - 1).to_string();
    let spec = format!("127.0.0.1:{port}");
    // Sticky, as /tmp: open to all, and no warning that others may replace the socket.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let mut cmd = std::process::Command::new(HERD);
    cmd.args(["run", "-b", &spec, "--", "true"])
        .env("HERD_CONTROL", dir.path().join("control.sock"));
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } == 0 {
        cmd.uid(65534).gid(65534); // std drops supplementary groups too
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(FAILURE), "{stderr}");
    assert!(
        stderr.contains("permission denied") && stderr.contains("CAP_NET_BIND_SERVICE"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn host_that_does_not_resolve() {
    assert_fails(
        &["run", "-b", "no-such-host.invalid:80", "--", "true"],
        FAILURE,
        "cannot resolve host 'no-such-host.invalid'",
    );
}

#[test]
fn unix_path_too_long() {
    let path = format!("unix:/tmp/{}", "x".repeat(120));
    assert_fails(
        &["run", "-b", &path, "--", "true"],
        USAGE,
        "the limit is 107",
    );
    assert!(!Path::new(&path[5..]).exists());
}

#[test]
fn bad_durations_and_signals() {
    assert_fails(
        &["run", "--grace", "soon", "-b", ":0", "--", "true"],
        USAGE,
        "'soon' is not a duration",
    );
    assert_fails(
        &["run", "--stop-signal", "NOPE", "-b", ":0", "--", "true"],
        USAGE,
        "'NOPE' is not a signal",
    );
}

#[test]
fn help_documents_the_model() {
    let (code, _) = herd_output(&["--version"]);
    assert_eq!(code, 0);
    let out = std::process::Command::new(HERD)
        .args(["run", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "unix:@NAME",
        "backlog=N",
        "{fd:NAME}",
        "LISTEN_PID",
        "--grace",
        "--stop-signal",
        "Exit status",
        "--takeover",
        "fd:NAME",
        "USR2",
    ] {
        assert!(help.contains(needle), "--help lacks {needle:?}");
    }
}

#[test]
fn a_first_generation_failing_in_one_slot_stops_the_others() {
    // {worker} in the program path gives each slot its own program: one cannot be executed.
    for bogus_slot in [0, 1] {
        let mut herd = Herd::start_with(|dir| {
            for slot in [0, 1] {
                let path = dir.join(format!("w-{slot}"));
                let content: &[u8] = if slot == bogus_slot {
                    &[0, 1, 2, 3]
                } else {
                    b"#!/bin/sh\nexec sleep 1000\n"
                };
                write_executable(&path, content);
            }
            let mut cmd = herd_json();
            cmd.args(["run", "-w", "2", "-b", "127.0.0.1:0", "--"])
                .arg(format!("{}/w-{{worker}}", dir.display()));
            cmd
        });
        assert_eq!(
            herd.wait_exit().code(),
            Some(FAILURE),
            "bogus slot {bogus_slot}"
        );
        let started: Vec<u32> = events(&herd.lines())
            .filter(|e| is_start(e))
            .map(|e| e["pid"].as_u64().unwrap() as u32)
            .collect();
        wait_gone(&started);
        if bogus_slot == 0 {
            assert!(
                started.is_empty(),
                "no spawn may follow the failure: {started:?}"
            );
        }
        assert!(
            herd.lines()
                .iter()
                .any(|l| matches!(l, Line::Text(t) if t.contains("cannot execute"))),
            "{:?}",
            herd.lines()
        );
    }
}

#[test]
fn command_that_is_a_fifo_is_refused_without_hanging() {
    // An executable FIFO: reading its first bytes to check its format would wait for a writer.
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("app");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.unwrap().success());
    std::fs::set_permissions(&fifo, std::fs::Permissions::from_mode(0o755)).unwrap();
    /// Kills herd if the test fails while it runs.
    struct Guard(std::process::Child);
    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut herd = Guard(
        std::process::Command::new(HERD)
            .env("HERD_CONTROL", dir.path().join("control.sock"))
            .args(["run", "-b", "127.0.0.1:0", "--"])
            .arg(&fifo)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let status = wait_until("herd to refuse the FIFO", || {
        herd.0.try_wait().unwrap().ok_or("herd still runs")
    });
    let mut stderr = String::new();
    let pipe = herd.0.stderr.as_mut().unwrap();
    std::io::Read::read_to_string(pipe, &mut stderr).unwrap();
    assert_eq!(status.code(), Some(USAGE), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("is not a regular file"), "{stderr}");
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    let probe = TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap().port()
}

#[test]
fn metrics_on_herds_own_address_names_it() {
    // Was: "cannot serve metrics on 127.0.0.1:P (--metrics): address 127.0.0.1:P is already
    // in use: stop the other server or choose another port", exit 1: the other server was
    // herd's own --bind.
    let addr = format!("127.0.0.1:{}", free_port());
    let stderr = assert_fails(
        &["run", "-b", &addr, "--metrics", &addr, "--", "true"],
        USAGE,
        &format!("--metrics '{addr}': this herd serves {addr} already, with its socket"),
    );
    assert!(!stderr.contains("stop the other server"), "{stderr}");
    assert!(
        stderr.contains("give --metrics a port of its own"),
        "{stderr}"
    );
    // Every interface's port holds 127.0.0.1's too.
    let port = free_port();
    assert_fails(
        &[
            "run",
            "-b",
            &format!(":{port}"),
            "--metrics",
            &format!("127.0.0.1:{port}"),
            "--",
            "true",
        ],
        USAGE,
        "give --metrics a port of its own",
    );
    // --health on the metrics address: --metrics serves the probes already.
    let addr = format!("127.0.0.1:{}", free_port());
    let stderr = assert_fails(
        &[
            "run",
            "-b",
            "127.0.0.1:0",
            "--metrics",
            &addr,
            "--health",
            &addr,
            "--",
            "true",
        ],
        USAGE,
        "with --metrics; --metrics serves /healthz and /readyz too: drop --health",
    );
    assert!(!stderr.contains("stop the other server"), "{stderr}");
}

#[test]
fn a_datagram_socket_in_use_at_the_path_is_named() {
    // Was: "cannot probe the socket file PATH: Protocol wrong type for socket (os error 91)",
    // which says neither what is there nor what to do.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dgram.sock");
    let _bound = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    let shown = path.display().to_string();
    let unix = format!("unix:{shown}");
    for args in [
        &[
            "run",
            "--control",
            &shown,
            "-b",
            "127.0.0.1:0",
            "--",
            "true",
        ][..],
        &["run", "-b", &unix, "--", "true"],
    ] {
        assert_fails(
            args,
            FAILURE,
            &format!(
                "{shown} is a socket of another kind (datagram or seqpacket) that a program \
                 is bound to; herd never removes a socket in use: choose another path"
            ),
        );
    }
    assert!(path.exists(), "the socket in use was left alone");
}
