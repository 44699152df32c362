//! Every address form and option binds as documented, and Unix socket files are handled with
//! care.

use std::net::{TcpStream, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use crate::util::*;

#[test]
fn every_address_form_binds() {
    let abstract_name = format!("herd-test-{}", std::process::id());
    let mut herd = Herd::start_with(|dir| {
        let mut cmd = herd_json();
        cmd.args(["run", "-w", "1"])
            .args(["-b", ":0"])
            .args(["-b", "udp://127.0.0.1:0"])
            .args(["-b", "v6=[::1]:0,v6only"])
            .args(["-b", &format!("unix:@{abstract_name}")])
            .args([
                "-b",
                &format!("unix:{}/m.sock,mode=600,backlog=16", dir.display()),
            ])
            .args(["-b", "fast=127.0.0.1:0,nodelay,nonblocking"])
            .args(["--", "sleep", "1000"]);
        cmd
    });
    let events = herd.wait_for_events("listening", 6, &[]);
    let names: Vec<&str> = events.iter().map(|e| e["name"].as_str().unwrap()).collect();
    let addrs: Vec<&str> = events
        .iter()
        .map(|e| e["address"].as_str().unwrap())
        .collect();
    let fds: Vec<u64> = events.iter().map(|e| e["fd"].as_u64().unwrap()).collect();
    assert_eq!(fds, [3, 4, 5, 6, 7, 8]);

    // :PORT is dual-stack: reachable over IPv4 and IPv6.
    let port = addrs[0].strip_prefix("[::]:").expect(addrs[0]);
    assert_eq!(names[0], format!("tcp-{port}"));
    TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
    TcpStream::connect(format!("[::1]:{port}")).unwrap();

    let udp = addrs[1].strip_prefix("udp://").unwrap();
    assert!(names[1].starts_with("udp-"), "{names:?}");
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .send_to(b"x", udp)
        .unwrap();

    assert!(addrs[2].starts_with("[::1]:"), "{addrs:?}");
    TcpStream::connect(addrs[2]).unwrap();

    assert_eq!(names[3], format!("unix-{abstract_name}"));
    {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(&abstract_name).unwrap();
        UnixStream::connect_addr(&addr).unwrap();
    }

    let file = herd.path("m.sock");
    assert_eq!(names[4], "unix-m.sock");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    if cfg!(target_os = "linux") {
        assert_eq!(mode & 0o1000, 0o1000, "sticky: kept from /tmp's cleaners");
    }
    UnixStream::connect(&file).unwrap();

    // nonblocking lives on the shared open file description: the worker sees it.
    let (_, pid) = herd.started(1)[0];
    assert_ne!(fd_flags(pid, 8) & libc::O_NONBLOCK as u32, 0);
    assert_eq!(fd_flags(pid, 3) & libc::O_NONBLOCK as u32, 0);

    herd.signal(libc::SIGTERM);
    assert_eq!(herd.wait_exit().code(), Some(0));
    assert!(!Path::new(&file).exists(), "socket file left behind");
}

#[test]
fn a_stale_socket_file_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stale.sock");
    drop(UnixListener::bind(&path).unwrap()); // the file stays; nobody listens
    let spec = format!("unix:{}", path.display());
    let mut herd = Herd::start(&[
        "run",
        "-w",
        "1",
        "-b",
        &spec,
        "--",
        "python3",
        &example("hello.py"),
    ]);
    herd.wait_for_event("stale_socket_removed", &[]);
    herd.address("unix-stale.sock");
    let mut stream = UnixStream::connect(&path).unwrap();
    let body = request(&mut stream, "/").unwrap();
    assert!(body.starts_with("hello from pid"), "{body}");
    herd.signal(libc::SIGTERM);
    assert_eq!(herd.wait_exit().code(), Some(0));
    assert!(!path.exists());
}

#[test]
fn a_live_socket_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.sock");
    let _live = UnixListener::bind(&path).unwrap();
    let spec = format!("unix:{}", path.display());
    assert_fails(
        &["run", "-b", &spec, "--", "true"],
        1,
        "in use by a running server",
    );
    assert!(path.exists(), "the live server's file must stay");
}

#[test]
fn a_non_socket_file_is_never_touched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.txt");
    std::fs::write(&path, "precious").unwrap();
    let spec = format!("unix:{}", path.display());
    assert_fails(&["run", "-b", &spec, "--", "true"], 1, "is not a socket");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
}

/// Plays a herd caught between binding its socket at `path` and listening on it: holds the
/// directory's lock (as herd does from its look at the path until it listens), has a socket
/// bound there that does not listen yet, and listens and lets go after a moment. Returns how
/// `herd ARGS`, started meanwhile, exited, and the socket.
fn a_herd_binding(path: &Path, args: &[&str]) -> (i32, String, socket2::Socket) {
    use socket2::{Domain, SockAddr, Socket, Type};
    let lock = std::fs::File::open(path.parent().unwrap()).unwrap();
    lock.lock().unwrap();
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
    socket.bind(&SockAddr::unix(path).unwrap()).unwrap();
    let other = std::process::Command::new(HERD)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    socket.listen(8).unwrap();
    drop(lock);
    // Without the lock the other herd runs on: stop it after a while.
    let mut other = other;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while other.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = other.kill();
    let out = other.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        socket,
    )
}

#[test]
fn two_herds_started_at_once_on_one_socket_path_never_both_run() {
    // The second used to take the first's socket, bound but not listening yet, for a stale
    // one: it removed it and ran, and the first ran on with no socket file.
    let dir = tempfile::tempdir().unwrap();
    let control = dir.path().join("herd.sock");
    let spec = "127.0.0.1:0";
    let args = ["run", "--control", control.to_str().unwrap(), "-w", "1"];
    let (code, stderr, _first) = a_herd_binding(
        &control,
        &[&args[..], &["-b", spec, "--", "sleep", "30"]].concat(),
    );
    assert_eq!(code, FAILURE, "{stderr}");
    assert!(
        stderr.contains("another herd is already using the control socket"),
        "{stderr}"
    );
    assert!(
        UnixStream::connect(&control).is_ok(),
        "the first herd's socket must stay"
    );
    let path = dir.path().join("app.sock");
    let spec = format!("unix:{}", path.display());
    let other = dir.path().join("other.sock");
    let args = [
        "run",
        "--control",
        other.to_str().unwrap(),
        "-w",
        "1",
        "-b",
        &spec,
        "--",
        "sleep",
        "30",
    ];
    let (code, stderr, _first) = a_herd_binding(&path, &args);
    assert_eq!(code, FAILURE, "{stderr}");
    assert!(stderr.contains("in use by a running server"), "{stderr}");
    assert!(
        UnixStream::connect(&path).is_ok(),
        "the first herd's socket must stay"
    );
    // Anyone who may read a directory (/tmp) may lock it, and hold the lock for good: that
    // delays a herd's start by 2s at most, then it goes on without.
    let started = std::time::Instant::now();
    let mut held = None;
    let herd = Herd::start_with(|dir| {
        let lock = std::fs::File::open(dir).unwrap();
        lock.lock().unwrap();
        held = Some(lock);
        let mut cmd = herd_json();
        cmd.args(["run", "-w", "1", "-b", "127.0.0.1:0", "--", "sleep", "30"]);
        cmd
    });
    herd.status();
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

#[test]
fn a_control_socket_in_a_missing_directory_says_how_to_fix_it() {
    // It said only "No such file or directory (os error 2)".
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing/herd.sock");
    let missing = missing.to_str().unwrap();
    let run = ["run", "-w", "1", "-b", "127.0.0.1:0", "--control"];
    let expected = format!(
        "cannot create the control socket {missing}: its directory does not exist: create it, \
         or pass another --control"
    );
    assert_fails(
        &[&run[..], &[missing, "--", "true"]].concat(),
        FAILURE,
        &expected,
    );
}

#[test]
fn a_socket_file_a_worker_removes_is_said_with_what_it_breaks() {
    let herd = Herd::start_with(|dir| {
        let sock = format!("{}/app.sock", dir.display());
        let mut cmd = herd_json();
        cmd.args(["run", "-w", "1", "-b", &format!("web=unix:{sock}")])
            .args(["--", "sh", "-c"])
            .arg(format!("rm \"$NOTIFY_SOCKET\" {sock}; exec sleep 1000"));
        cmd
    });
    let web = herd.wait_for_event("socket_file_removed", &[("socket", "web".into())]);
    let notify = herd.wait_for_event("socket_file_removed", &[("socket", "notify".into())]);
    assert_eq!(web["path"], herd.path("app.sock"));
    assert_eq!(notify["path"], herd.notify_path());
    let said = |e: &serde_json::Value| e["message"].as_str().unwrap().to_string();
    assert!(
        said(&web).contains("nobody can connect by that path"),
        "{web}"
    );
    assert!(
        said(&notify).contains("herd bound it again there"),
        "{notify}"
    );
    assert!(std::path::Path::new(&herd.notify_path()).exists());
}
