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
