//! The socket-passing conventions besides systemd's: inetd's fd 0 (`--bind ...,stdin`),
//! einhorn's and Server::Starter's variables (`--compat`), each with a program written for it.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;

use crate::util::*;

fn interop(file: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(file)
        .display()
        .to_string()
}

/// Asks `ask` until two different processes have answered (each answer names its pid); a
/// failed request is retried (a JVM on a busy machine may not accept within a read timeout),
/// and shown with herd's log if no two processes answer within a minute.
fn two_processes_answer(herd: &Herd, ask: impl Fn() -> std::io::Result<String> + Sync) {
    let mut answers = BTreeSet::new();
    let mut failure = String::new();
    let limit = std::time::Duration::from_secs(60);
    wait_until_within("two processes to answer", limit, || {
        std::thread::scope(|scope| {
            let round: Vec<_> = (0..4).map(|_| scope.spawn(&ask)).collect();
            for answer in round {
                match answer.join().unwrap() {
                    Ok(body) => answers.insert(body.trim().to_string()),
                    Err(e) => {
                        failure = format!("; a request failed: {e}");
                        false
                    }
                };
            }
        });
        match answers.len() {
            2.. => Ok(()),
            _ => Err(format!(
                "only {answers:?}{failure}; herd logged{}",
                last_lines(&herd.lines())
            )),
        }
    });
}

#[test]
fn java_inherited_channel_takes_the_socket_on_stdin() {
    // Compiled once here: the single-file launcher would compile it again in every worker.
    let classes = tempfile::tempdir().unwrap();
    let javac = std::process::Command::new("javac")
        .arg("-d")
        .arg(classes.path())
        .arg(interop("InheritedServer.java"))
        .status()
        .expect("javac is installed by scripts/setup.sh (default-jdk-headless)");
    assert!(javac.success());
    let classes = classes.path().display().to_string();
    let herd = Herd::start(&[
        "run",
        "-w",
        "2",
        "--ready",
        "delay=300ms",
        "-b",
        "http=127.0.0.1:0,stdin",
        "--",
        "java",
        "-XX:TieredStopAtLevel=1",
        "-cp",
        &classes,
        "InheritedServer",
    ]);
    let addr = herd.address("http");
    two_processes_answer(&herd, || {
        let body = get(&addr, "/")?;
        assert!(body.starts_with("java pid "), "{body:?}");
        Ok(body)
    });
}

/// One FastCGI request (`FCGI_RESPONDER`, no parameters, empty body): the `FCGI_STDOUT` it gets.
fn fastcgi_request(addr: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    let record = |kind: u8, content: &[u8]| {
        let mut r = vec![1, kind, 0, 1, 0, content.len() as u8, 0, 0];
        r.extend_from_slice(content);
        r
    };
    let mut request = record(1, &[0, 1, 0, 0, 0, 0, 0, 0]);
    request.extend(record(4, &[]));
    request.extend(record(5, &[]));
    stream.write_all(&request)?;
    let mut out = Vec::new();
    loop {
        let mut header = [0u8; 8];
        stream.read_exact(&mut header)?;
        let length = usize::from(u16::from_be_bytes([header[4], header[5]]));
        let mut content = vec![0u8; length + usize::from(header[6])];
        stream.read_exact(&mut content)?;
        match header[1] {
            6 => out.extend_from_slice(&content[..length]),
            3 => break,
            _ => {}
        }
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    assert!(body.starts_with("fcgi pid "), "{text:?}");
    Ok(body)
}

#[test]
fn a_fastcgi_program_accepts_on_stdin_as_under_supervisord_also_after_a_reexec() {
    let program = interop("fcgi_stdin.py");
    let herd = Herd::start(&[
        "run",
        "-w",
        "2",
        "--ready",
        "delay=300ms",
        "-b",
        "fcgi=127.0.0.1:0,stdin",
        "--",
        "python3",
        &program,
    ]);
    let addr = herd.address("fcgi");
    two_processes_answer(&herd, || fastcgi_request(&addr));
    // A re-exec keeps the option: the next generation gets the socket on fd 0 too.
    let (code, _, stderr) = herd.ctl(&["reexec"]);
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = herd.ctl(&["upgrade"]);
    assert_eq!(code, 0, "{stderr}");
    two_processes_answer(&herd, || fastcgi_request(&addr));
}

#[test]
fn only_one_socket_can_be_stdin() {
    assert_fails(
        &[
            "run",
            "-b",
            "a=127.0.0.1:0,stdin",
            "-b",
            "b=127.0.0.1:0,stdin",
            "--",
            "true",
        ],
        2,
        "both ask for the worker's stdin",
    );
}

#[test]
fn starlet_takes_its_socket_from_server_starter_port() {
    let app = interop("starlet_app.psgi");
    let herd = Herd::start(&[
        "run",
        "-w",
        "2",
        "--ready",
        "delay=300ms",
        "--compat",
        "server-starter",
        "-b",
        "http=127.0.0.1:0",
        "--",
        "plackup",
        "-s",
        "Starlet",
        "--max-workers",
        "1",
        &app,
    ]);
    let addr = herd.address("http");
    two_processes_answer(&herd, || {
        let body = get(&addr, "/")?;
        assert!(body.starts_with("starlet pid "), "{body:?}");
        Ok(body)
    });
}

#[test]
fn an_einhorn_worker_takes_einhorn_fd_0() {
    let worker = interop("einhorn_worker.rb");
    let herd = Herd::start(&[
        "run",
        "-w",
        "2",
        "--ready",
        "delay=300ms",
        "--compat",
        "einhorn",
        "-b",
        "http=127.0.0.1:0",
        "--",
        "ruby",
        &worker,
    ]);
    let addr = herd.address("http");
    two_processes_answer(&herd, || {
        let body = get(&addr, "/")?;
        assert!(body.starts_with("einhorn pid "), "{body:?}");
        Ok(body)
    });
}

#[test]
fn an_unknown_convention_is_refused_with_the_known_ones() {
    assert_fails(
        &[
            "run",
            "-b",
            "127.0.0.1:0",
            "--compat",
            "inetd",
            "--",
            "true",
        ],
        2,
        "unknown convention 'inetd'; known: einhorn, server-starter",
    );
}

#[test]
fn einhorns_ack_counts_as_ready_also_after_a_reexec() {
    let worker = interop("einhorn_worker.rb");
    let mut herd = Herd::start(&[
        "run",
        "-w",
        "2",
        "--ready",
        "notify",
        "--min-ready",
        "0",
        "--compat",
        "einhorn",
        "-b",
        "http=127.0.0.1:0",
        "--",
        "ruby",
        &worker,
    ]);
    let status = wait_status(&herd, "2 workers ready by their ack", |s| settled(s, 2));
    let pid = worker_pids(&status)[0];
    let sock = environ(pid)
        .into_iter()
        .find_map(|v| v.strip_prefix("EINHORN_SOCK_PATH=").map(str::to_string))
        .expect("EINHORN_SOCK_PATH");
    let mode = std::fs::metadata(&sock).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );

    // The socket is handed over: the next generation acknowledges to the new image.
    let (code, _, stderr) = herd.ctl(&["reexec"]);
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = herd.ctl(&["upgrade"]);
    assert_eq!(code, 0, "{stderr}");
    wait_status(&herd, "generation 2 ready", |s| {
        settled(s, 2)
            && s["workers"]
                .as_array()
                .unwrap()
                .iter()
                .all(|w| w["generation"] == 2)
    });

    herd.signal(libc::SIGTERM);
    herd.wait_exit();
    assert!(!Path::new(&sock).exists(), "{sock} is left behind");
}

#[test]
fn einhorn_sockets_of_herds_that_are_gone_are_removed() {
    let worker = interop("einhorn_worker.rb");
    let mut stale = String::new();
    let herd = Herd::start_with(|dir| {
        // A herd killed with SIGKILL leaves its socket; no process has this pid.
        let path = dir.join("control.999999999.ack");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        stale = path.display().to_string();
        let mut herd = herd_json();
        herd.args([
            "run", "--ready", "notify", "--compat", "einhorn", "-w", "1", "-b",
        ])
        .args(["http=127.0.0.1:0", "--", "ruby", &worker]);
        herd
    });
    wait_status(&herd, "a ready worker", |s| settled(s, 1));
    assert!(!Path::new(&stale).exists(), "{stale} is still there");
}

#[test]
fn an_einhorn_ack_without_its_newline_on_a_connection_held_open_counts() {
    // The ack is counted when herd stops reading, after its 10 s read timeout.
    let worker = "import os, socket, time\n\
        s = socket.socket(socket.AF_UNIX)\n\
        s.connect(os.environ['EINHORN_SOCK_PATH'])\n\
        s.sendall(b'{{\"command\":\"worker:ack\"}}')\n\
        time.sleep(1000)\n";
    let herd = Herd::start(&[
        "run",
        "-w",
        "1",
        "--ready",
        "notify",
        "--compat",
        "einhorn",
        "-b",
        "http=127.0.0.1:0",
        "--",
        "python3",
        "-c",
        worker,
    ]);
    let started = std::time::Instant::now();
    wait_status(&herd, "the worker ready by its ack", |s| settled(s, 1));
    let waited = started.elapsed();
    assert!(waited < std::time::Duration::from_secs(15), "{waited:?}");
}

/// einhorn's socket's file removed (a clean-up of the runtime directory), the next upgrade's
/// workers still acknowledge: herd binds it again at its path (nobody heard them before, and
/// every upgrade failed until herd was restarted).
#[test]
fn an_upgrade_after_einhorns_sockets_file_was_removed_succeeds() {
    let worker = interop("einhorn_worker.rb");
    let mut herd = Herd::start(&[
        "run",
        "-w",
        "1",
        "--ready",
        "notify",
        "--ready-timeout",
        "10s",
        "--compat",
        "einhorn",
        "-b",
        "http=127.0.0.1:0",
        "--",
        "ruby",
        &worker,
    ]);
    let status = wait_status(&herd, "a worker ready by its ack", |s| settled(s, 1));
    let sock = environ(worker_pids(&status)[0])
        .into_iter()
        .find_map(|v| v.strip_prefix("EINHORN_SOCK_PATH=").map(str::to_string))
        .expect("EINHORN_SOCK_PATH");
    std::fs::remove_file(&sock).unwrap();
    let again = herd.wait_for_event("socket_file_removed", &[("socket", "einhorn".into())]);
    assert!(
        again["message"]
            .as_str()
            .unwrap()
            .contains("bound it again"),
        "{again}"
    );
    let mode = std::fs::metadata(&sock).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    for command in [&["upgrade"][..], &["reexec"], &["upgrade"]] {
        let (code, _, stderr) = herd.ctl(command);
        assert_eq!(code, 0, "{command:?}: {stderr}");
    }
    herd.signal(libc::SIGTERM);
    herd.wait_exit();
    assert!(!Path::new(&sock).exists(), "{sock} is left behind");
}

/// A connection to einhorn's ack socket cannot send herd an fd: herd would let go of it where
/// it reads or drops the connection, which can wait as long as the sender likes (a pipe whose
/// lock it holds). Also on the socket a re-exec hands over.
#[test]
fn einhorns_ack_socket_refuses_fds() {
    use std::os::unix::io::AsFd;
    if !kernel_refuses_fds() {
        eprintln!("skipped: this kernel lets fds through (SO_PASSRIGHTS is Linux 6.16+)");
        return;
    }
    let mut herd = Herd::start(&[
        "run",
        "--compat",
        "einhorn",
        "-w",
        "1",
        "-b",
        "127.0.0.1:0",
        "--",
        "sleep",
        "1000",
    ]);
    let pid = herd.started(1)[0].1;
    let ack = env_var(pid, "EINHORN_SOCK_PATH").expect("no EINHORN_SOCK_PATH");
    let send = |what: &str| {
        let conn = std::os::unix::net::UnixStream::connect(&ack).unwrap();
        let sent = herd_sys::fdpass::send_with_fds(conn.as_fd(), b"x", &[conn.as_fd()]);
        let err = sent.expect_err(&format!("{what}: herd's ack socket took an fd"));
        assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{what}: {err}");
    };
    send("bound");
    let (code, _, err) = herd.ctl(&["reexec"]);
    assert_eq!(code, 0, "{err}");
    send("handed over");
    herd.signal(libc::SIGTERM);
    assert!(herd.wait_exit().success());
}
