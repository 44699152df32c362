use super::*;
use std::os::unix::fs::PermissionsExt;

#[test]
fn einhorns_ruby_and_json_acks_count() {
    // Einhorn::Client::Transport.serialize_message({'command' => 'worker:ack', 'pid' => 7})
    let ruby = b"---%0Acommand: worker:ack%0Apid: 7%0A\n";
    assert_eq!(count_acks(ruby), 1);
    let json = b"{\"command\":\"worker:ack\",\"pid\":7}\n";
    assert_eq!(count_acks(json), 1);
    let quoted = b"---%0Acommand: 'worker:ack'%0Apid: 7%0A\n";
    assert_eq!(count_acks(quoted), 1);
    assert_eq!(count_acks(&[json.as_slice(), ruby].concat()), 2);
}

#[test]
fn other_commands_and_garbage_do_not() {
    for text in [
        b"{\"command\":\"worker:ping\",\"pid\":7}\n".as_slice(),
        b"---%0Acommand: ehlo%0Auser: me%0A\n",
        b"{\"command\":\"worker:ack\"",
        b"command: worker:acknowledged\n",
        b"\xff\xfe%0A%25%\n",
        b"",
    ] {
        assert_eq!(count_acks(text), 0, "{}", String::from_utf8_lossy(text));
    }
}

#[test]
fn failed_accepts_pause_longer_up_to_a_second_and_are_said_once() {
    let mut backoff = AcceptBackoff::default();
    let ms = |(pause, first): (Duration, bool)| (pause.as_millis(), first);
    assert_eq!(ms(backoff.failed()), (100, true));
    assert_eq!(ms(backoff.failed()), (200, false));
    assert_eq!(ms(backoff.failed()), (400, false));
    assert_eq!(ms(backoff.failed()), (800, false));
    assert_eq!(ms(backoff.failed()), (1000, false));
    assert_eq!(ms(backoff.failed()), (1000, false));
    backoff.succeeded();
    assert_eq!(ms(backoff.failed()), (100, true));
}

#[test]
fn each_ack_counts_once_however_its_bytes_arrive() {
    let text = b"{\"command\":\"worker:ack\"}\n---%0Acommand: worker:ack%0A\n{\"command\":\"x\"}\n";
    for size in [1, 2, 3, 7, text.len()] {
        let mut lines = AckLines::default();
        let mut done = false;
        for chunk in text.chunks(size) {
            done = lines.push(chunk);
            // A complete line is looked at once: only the unfinished one is kept.
            assert!(!lines.partial.contains(&b'\n'));
        }
        assert!(done, "chunks of {size}");
        assert_eq!(lines.finish(), 2, "chunks of {size}");
    }
}

#[test]
fn an_ack_without_its_newline_counts_at_the_end() {
    let mut lines = AckLines::default();
    assert!(!lines.push(b"{\"command\":\"worker:ack\",\"pid\":7}"));
    assert_eq!(lines.finish(), 1);
}

#[test]
fn the_socket_appears_with_mode_0600_and_leaves_no_staging_behind() {
    let dir = std::env::temp_dir().join(format!("herd-einhorn-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.join("control.1.ack");
    let listener = bind_private(&path, &path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    if cfg!(target_os = "linux") {
        assert_eq!(mode & 0o1000, 0o1000, "sticky, kept from cleaners");
    }
    drop(std::os::unix::net::UnixStream::connect(&path).unwrap());
    drop(listener);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "staging left behind"
    );
    std::fs::remove_dir(&dir).unwrap();
}

/// A socket an older herd handed over, which may not refuse fds, does once it is served.
#[test]
fn a_handed_over_socket_refuses_fds_once_served() {
    let send_fd = |path: &Path| {
        let conn = std::os::unix::net::UnixStream::connect(path).unwrap();
        herd_sys::fdpass::send_with_fds(conn.as_fd(), b"x", &[conn.as_fd()])
    };
    let dir = tempfile::tempdir().unwrap();
    let probe = dir.path().join("probe");
    let listener = std::os::unix::net::UnixListener::bind(&probe).unwrap();
    herd_sys::fdpass::refuse_fds(listener.as_fd());
    if send_fd(&probe).is_ok() {
        return; // this kernel lets fds through (SO_PASSRIGHTS is Linux 6.16+)
    }
    let path = dir.path().join("control.1.ack");
    let plain = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let file = SocketFile::created(&path).unwrap();
    let socket = EinhornSocket::restore(OwnedFd::from(plain), file);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (acks, _) = mpsc::channel(1);
        let served = socket.serve(acks).unwrap();
        let err = send_fd(&path).expect_err("the handed-over socket took an fd");
        assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");
        served.abort();
    });
}

/// Where the kernel lets fds through (before Linux 6.16; here a socket that never refused
/// them), a socket sent along an ack whose release waits (a TCP connection with unsent
/// data its peer never reads, and a long `SO_LINGER`) is released on a closing thread: the
/// ack is read and the connection closed at once, where a plain `read` past it waited in
/// herd's loop for as long as the sender chose.
#[test]
fn a_socket_sent_along_an_ack_is_released_off_the_loop() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let listener = std::os::unix::net::UnixListener::bind(dir.path().join("e.ack")).unwrap();
    let client = std::os::unix::net::UnixStream::connect(dir.path().join("e.ack")).unwrap();
    let (server, _) = listener.accept().unwrap();
    let peer = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut tcp = std::net::TcpStream::connect(peer.local_addr().unwrap()).unwrap();
    tcp.set_nonblocking(true).unwrap();
    while tcp.write(&[0u8; 65536]).is_ok() {}
    socket2::SockRef::from(&tcp)
        .set_linger(Some(Duration::from_secs(60)))
        .unwrap();
    let ack = b"{\"command\":\"worker:ack\",\"pid\":7}\n";
    herd_sys::fdpass::send_with_fds(client.as_fd(), ack, &[tcp.as_fd()]).unwrap();
    drop((tcp, client));
    let (done, read) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let pid = runtime.block_on(async {
            server.set_nonblocking(true).unwrap();
            let (acks, mut pids) = mpsc::channel(4);
            read_acks(UnixStream::from_std(server).unwrap(), acks).await;
            pids.recv().await
        });
        let _ = done.send(pid);
    });
    let pid = read.recv_timeout(Duration::from_secs(10));
    // The peer goes: a release still waiting ends.
    drop(peer);
    assert_eq!(pid, Ok(Some(std::process::id())));
}

/// The directory herd made for a `--user` herd's sockets, swapped for another at its name
/// between herd's look and the bind (something with root's rights removed it, another
/// user made theirs): einhorn's socket is refused, and nothing is left in either.
#[test]
fn einhorns_socket_bound_as_its_directory_is_swapped_is_refused() {
    use crate::supervisor::notify_dir::{NotifyDir, WorkerUser};
    if !Path::new("/proc/self/fd").is_dir() {
        return;
    }
    let base = tempfile::tempdir().unwrap();
    let me = herd_sys::process::effective_uid();
    let dir = NotifyDir::create(base.path(), WorkerUser { uid: me, gids: &[] }).unwrap();
    let path = dir.einhorn();
    let (parent, moved) = (path.parent().unwrap(), base.path().join("moved"));
    let bound = dir.within(&path, |at, path| {
        std::fs::rename(parent, &moved).unwrap();
        std::fs::create_dir(parent).unwrap();
        EinhornSocket::bind_at(at, path)
    });
    assert!(bound.is_err());
    assert_eq!(
        std::fs::read_dir(&moved).unwrap().count(),
        0,
        "herd's is empty"
    );
    assert_eq!(
        std::fs::read_dir(parent).unwrap().count(),
        0,
        "the other is empty"
    );
    std::fs::remove_dir(parent).unwrap();
    std::fs::rename(&moved, parent).unwrap();
}

#[test]
fn unescaping_undoes_einhorns_escaping() {
    assert_eq!(unescape(b"a%250Ab%0Ac%2525%"), "a%0Ab\nc%25%");
}
