//! The client's classification of failures: by errno and by the protocol, never by text.

use std::io::Write;
use std::os::unix::net::{UnixDatagram, UnixListener};

use super::*;
use crate::control::protocol::ErrorCode;
use crate::control::results::{ScaleResult, StopResult};

#[test]
fn connect_failures_are_told_apart_by_errno() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.sock");
    assert!(matches!(
        Client::connect(&missing, None),
        Err(ClientError::NotRunning {
            why: Vacancy::NoSocket,
            ..
        })
    ));
    // A socket file nobody listens on: a herd that was killed.
    let stale = dir.path().join("stale.sock");
    drop(UnixListener::bind(&stale).unwrap());
    assert!(matches!(
        connect_nonblocking(&stale),
        Err(ClientError::NotRunning {
            why: Vacancy::NobodyListening,
            ..
        })
    ));
    // A datagram socket is not a herd's control socket.
    let datagram = dir.path().join("dgram.sock");
    let _bound = UnixDatagram::bind(&datagram).unwrap();
    assert!(matches!(
        Client::connect(&datagram, None),
        Err(ClientError::NotHerd { .. })
    ));
    let long = dir.path().join("x".repeat(200));
    assert!(matches!(
        Client::connect(&long, None),
        Err(ClientError::PathTooLong { .. })
    ));
    assert!(matches!(
        connect_nonblocking(&long),
        Err(ClientError::PathTooLong { .. })
    ));
    let e = ClientError::from_connect(&missing, io::Error::from_raw_os_error(libc::EACCES));
    assert!(matches!(e, ClientError::PermissionDenied { .. }), "{e}");
    assert!(e.to_string().contains("--control-allow-user"), "{e}");
    // A directory the caller may not search is named as the cause (as root, none is: root
    // searches every directory).
    if herd_sys::process::effective_uid() != 0 {
        use std::os::unix::fs::PermissionsExt;
        let closed = dir.path().join("closed");
        std::fs::create_dir(&closed).unwrap();
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o000)).unwrap();
        let behind = closed.join("h.sock");
        let e = ClientError::from_connect(&behind, io::Error::from_raw_os_error(libc::EACCES));
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(
            e.to_string()
                .contains("may not search a directory on its way"),
            "{e}"
        );
    }
    // A path that is no socket at all is said to be one, not a herd that is not running.
    let file = dir.path().join("file");
    std::fs::write(&file, "").unwrap();
    for (path, kind) in [
        (dir.path(), "a directory"),
        (file.as_path(), "a regular file"),
    ] {
        let e = Client::connect(path, None).unwrap_err();
        assert!(
            e.to_string()
                .contains(&format!("is {kind}, not a herd's control socket")),
            "{e}"
        );
    }
}

#[test]
fn answers_are_decoded_by_their_code() {
    let path = Path::new("/h.sock");
    let ok: ScaleResult = decode_answer(
        br#"{"version":1,"ok":true,"result":{"previous":1,"workers":3}}"#,
        path,
    )
    .unwrap();
    assert_eq!((ok.previous, ok.workers, ok.min), (1, 3, None));
    let refused = decode_answer::<StopResult>(
        br#"{"version":1,"ok":false,"error":{"code":"permission_denied","message":"no"}}"#,
        path,
    );
    assert!(
        matches!(&refused, Err(ClientError::Refused { error, .. }) if error.code == ErrorCode::PermissionDenied),
        "{refused:?}"
    );
    assert!(matches!(
        decode_answer::<StopResult>(b"", path),
        Err(ClientError::Closed { .. })
    ));
    for strange in [
        &b"HTTP/1.1 400 Bad Request"[..],
        br#"{"version":1,"ok":false}"#,
        br#"{"version":1,"ok":true,"result":{"stopped":"yes"}}"#,
        br#"{"version":1,"ok":false,"error":{"code":"teapot","message":""}}"#,
    ] {
        let e = decode_answer::<StopResult>(strange, path).unwrap_err();
        assert!(matches!(e, ClientError::NotHerd { .. }), "{e:?}");
    }
}

/// An answer read in one parse straight into its result says why it is not herd's as one
/// whose result has another shape (read again as any JSON) does.
#[test]
fn why_an_answer_is_not_herds_is_told_whatever_its_result() {
    let path = Path::new("/h.sock");
    for (text, why) in [
        (
            r#"{"version":2,"ok":true,"result":{"previous":1,"workers":3}}"#,
            "protocol version 2",
        ),
        (
            r#"{"version":2,"ok":true,"result":{"previous":"x"}}"#,
            "protocol version 2",
        ),
        (
            r#"{"version":1,"ok":true,"result":{"previous":1,"workers":3,"previous":1}}"#,
            "\"previous\" twice",
        ),
        (
            r#"{"version":1,"ok":true,"result":{"previous":1,"previous":"x"}}"#,
            "\"previous\" twice",
        ),
        (
            r#"{"version":1,"ok":true,"result":{"previous":"x","workers":3}}"#,
            "invalid type",
        ),
    ] {
        match decode_answer::<ScaleResult>(text.as_bytes(), path) {
            Err(ClientError::NotHerd { why: told, .. }) => {
                assert!(told.contains(why), "{text}: {told}")
            }
            other => panic!("{text}: {other:?}"),
        }
    }
}

/// `text` is not herd's answer when read as `R`, and the reason given says `why`; serde_json
/// alone would take it (`taken`), so it is this reader that refuses it.
fn refused_as<R: serde::de::DeserializeOwned + std::fmt::Debug>(
    text: &str,
    taken: bool,
    why: &str,
) {
    let path = Path::new("/h.sock");
    if taken {
        let read = serde_json::from_str::<crate::control::protocol::Response<R>>(text);
        assert!(read.is_ok(), "serde_json takes {text}: {read:?}");
    }
    match decode_answer::<R>(text.as_bytes(), path) {
        Err(ClientError::NotHerd { why: told, .. }) => {
            assert!(told.contains(why), "{text}: {told}")
        }
        other => panic!("{text}: {other:?}"),
    }
}

/// Every command's result, and every struct in an answer, is an object: one sent as an array
/// (which serde_json reads member by member, in field order) or as another JSON type is not
/// herd's answer, whatever the command (`herd scale` said "scaled" for `[1,3]`).
#[test]
fn a_result_of_another_json_type_is_not_herds() {
    use crate::control::results::*;
    let answer = |result: &str| format!(r#"{{"version":1,"ok":true,"result":{result}}}"#);
    let sequence = "invalid type: sequence";
    refused_as::<ScaleResult>(&answer("[1,3]"), true, sequence);
    refused_as::<ScaleResult>(&answer("[1,3,2,4]"), true, sequence);
    refused_as::<UpgradeResult>(&answer("[2]"), true, sequence);
    refused_as::<StopResult>(&answer("[true]"), true, sequence);
    refused_as::<SignalResult>(&answer("[9]"), true, sequence);
    refused_as::<ReexecResult>(&answer(r#"[7,"0.1.0"]"#), true, sequence);
    refused_as::<SocketsResult>(&answer("[[]]"), true, sequence);
    refused_as::<LogsResult>(&answer("[0]"), true, sequence);
    let status = r#"[1,"n","v",1,1,null,false,null,0,0,0,0,0,0,[],[],[],[],null,null,[],[]]"#;
    refused_as::<Status>(&answer(status), true, sequence);
    type Object = serde_json::Map<String, serde_json::Value>;
    refused_as::<Object>(&answer("[1,2,3]"), false, sequence);
    // Other JSON types, each refused as before, for every result.
    for other in ["1", r#""x""#, "true", "null"] {
        refused_as::<ScaleResult>(&answer(other), false, "invalid type");
        refused_as::<StopResult>(&answer(other), false, "invalid type");
        refused_as::<SocketsResult>(&answer(other), false, "invalid type");
        refused_as::<Status>(&answer(other), false, "invalid type");
        refused_as::<Object>(&answer(other), false, "invalid type");
    }
    refused_as::<StopResult>(r#"{"version":1,"ok":true}"#, false, "invalid type: null");
    // Inside a result, in the envelope, in a refusal: a struct is an object there too.
    let socket = r#"["a","tcp",null,null,"x"]"#;
    refused_as::<SocketsResult>(
        &answer(&format!("{{\"sockets\":[{socket}]}}")),
        true,
        sequence,
    );
    refused_as::<ScaleResult>(r#"[1,true,{"previous":1,"workers":3}]"#, true, sequence);
    refused_as::<StopResult>(
        r#"{"version":1,"ok":false,"error":["busy","later"]}"#,
        true,
        sequence,
    );
}

/// An envelope that names one of its members twice is refused in the words used for a member
/// named twice anywhere else, not in serde's ("duplicate field `ok`").
#[test]
fn an_envelope_naming_a_member_twice_says_so() {
    for (text, name) in [
        (
            r#"{"version":1,"ok":false,"ok":true,"result":{"stopped":true}}"#,
            "ok",
        ),
        (
            r#"{"version":1,"version":1,"ok":true,"result":{"stopped":true}}"#,
            "version",
        ),
        (
            r#"{"version":1,"ok":true,"result":{"stopped":true},"result":{"stopped":true}}"#,
            "result",
        ),
        (
            r#"{"version":1,"ok":false,"error":{"code":"busy","message":""},"error":null}"#,
            "error",
        ),
        // The first name given twice, as elsewhere, though the envelope's comes after it.
        (
            r#"{"version":1,"ok":true,"result":{"stopped":true,"stopped":true},"ok":true}"#,
            "stopped",
        ),
    ] {
        refused_as::<StopResult>(text, false, &format!("it names {name:?} twice"));
    }
}

/// An answer nested deeper than serde_json reads (128 levels) in a member its result does not
/// know is not herd's, with the reason a read as any JSON gives: the one parse skips that
/// member, but it cannot be checked for members named twice (one is hidden behind it here).
#[test]
fn an_answer_too_deep_to_check_for_members_named_twice_is_not_herds() {
    let path = Path::new("/h.sock");
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    for text in [
        format!(r#"{{"version":1,"ok":true,"result":{{"previous":1,"workers":3,"x":{deep}}}}}"#),
        format!(
            r#"{{"version":1,"ok":true,"result":{{"previous":1,"workers":3}},"x":{deep},"y":1,"y":2}}"#
        ),
    ] {
        let why = serde_json::from_str::<serde_json::Value>(&text).unwrap_err();
        match decode_answer::<ScaleResult>(text.as_bytes(), path) {
            Err(ClientError::NotHerd { why: told, .. }) => assert_eq!(told, why.to_string()),
            other => panic!("{text}: {other:?}"),
        }
    }
}

#[test]
fn a_request_gets_its_answer_and_a_refusal_its_code() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(&stream), &mut line).unwrap();
        assert_eq!(line, "{\"version\":1,\"command\":\"status\"}\n");
        stream
            .write_all(
                b"{\"version\":1,\"ok\":false,\"error\":{\"code\":\"busy\",\"message\":\"m\"}}\n",
            )
            .unwrap();
    });
    let mut client = Client::connect(&path, None).unwrap();
    let answer = client.call::<serde_json::Value>(Command::Status, Some(Duration::from_secs(5)));
    server.join().unwrap();
    match answer {
        Err(ClientError::Refused { error, .. }) => assert_eq!(error.code, ErrorCode::Busy),
        other => panic!("{other:?}"),
    }
}

/// Lines come out whole and in order however they arrive: many short ones in one read, one
/// split across reads, a long one; what comes without a line end before the peer closes is
/// no line (a re-exec cut it short: `herd logs -f` took it for a frame, and failed).
#[test]
fn lines_come_out_whole_and_in_order_however_they_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lines.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let long = "y".repeat(300_000);
    let sent = long.clone();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(&stream), &mut line).unwrap();
        let short: String = (0..20_000).map(|i| format!("{i}\n")).collect();
        stream.write_all(short.as_bytes()).unwrap();
        stream.write_all(b"split ").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        stream
            .write_all(format!("across reads\n{sent}\nthe rest").as_bytes())
            .unwrap();
    });
    let mut client = Client::connect(&path, None).unwrap();
    let first = client.exchange(Command::Status, Some(Duration::from_secs(5)));
    assert_eq!(first.unwrap(), b"0");
    let mut next = || {
        let line = client.next_line(Some(Duration::from_secs(5))).unwrap();
        line.map(|l| String::from_utf8(l).unwrap())
    };
    for i in 1..20_000 {
        assert_eq!(next().as_deref(), Some(i.to_string().as_str()));
    }
    assert_eq!(next().as_deref(), Some("split across reads"));
    assert_eq!(next().as_deref(), Some(long.as_str()));
    server.join().unwrap();
    assert_eq!(next(), None, "the rest, cut short, is no line");
}

/// A peer at a new socket in `dir` that answers the first connection with `head`, then
/// `size` bytes of `x` (then a newline if `line_end`), and closes; it stops early when the
/// client goes away.
fn flooding_peer(
    dir: &Path,
    head: &'static [u8],
    size: usize,
    line_end: bool,
) -> (PathBuf, std::thread::JoinHandle<usize>) {
    let path = dir.join(format!("flood-{}-{size}-{line_end}.sock", head.len()));
    let listener = UnixListener::bind(&path).unwrap();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let chunk = [b'x'; 1 << 16];
        let mut sent = 0;
        if stream.write_all(head).is_err() {
            return 0;
        }
        while sent < size {
            match stream.write(&chunk) {
                Ok(n) => sent += n,
                Err(_) => return sent,
            }
        }
        let _ = line_end && stream.write_all(b"\n").is_ok();
        sent
    });
    (path, server)
}

/// What a client must say of a peer whose answer is too long.
fn is_too_long(e: &ClientError) -> bool {
    matches!(e, ClientError::NotHerd { why, .. } if why.contains("more than 16 MiB without a line end"))
}

#[test]
fn an_endless_or_huge_answer_fails_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    // 64 MiB without a line end stands for an endless line; 32 MiB and a line end, a huge one.
    for (size, line_end) in [(64 << 20, false), (32 << 20, true)] {
        let (path, server) = flooding_peer(dir.path(), b"", size, line_end);
        let mut client = Client::connect(&path, None).unwrap();
        let e = (client.call::<serde_json::Value>(Command::Status, Some(Duration::from_secs(20))))
            .unwrap_err();
        assert!(is_too_long(&e), "{e}");
        assert!(
            e.to_string().starts_with("unexpected answer from"),
            "one clear line: {e}"
        );
        // The client read no more than the bound and a buffer, and hung up.
        drop(client);
        assert!(server.join().unwrap() < MAX_ANSWER + (1 << 20) + (8 << 20));
    }
    // An answer to `sockets`, then endless bytes instead of the fd it describes.
    let one_socket = b"{\"version\":1,\"ok\":true,\"result\":{\"sockets\":[{\"name\":\"a\",\"kind\":\"tcp\",\"family\":null,\"type\":null,\"address\":\"x\"}]}}\n";
    let (path, server) = flooding_peer(dir.path(), one_socket, 64 << 20, false);
    let mut client = Client::connect(&path, None).unwrap();
    let e = (client.sockets(Vec::new(), false, Some(Duration::from_secs(20)))).unwrap_err();
    assert!(
        e.to_string()
            .ends_with("it sent more than 16 MiB without the fds its answer describes"),
        "{e}"
    );
    drop(client);
    assert!(server.join().unwrap() < MAX_ANSWER + (1 << 20) + (8 << 20));
}

#[test]
fn a_trickling_answer_fails_at_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trickle.sock");
    let listener = UnixListener::bind(&path).unwrap();
    // One byte every 20 ms, far less than the timeout apart, for up to 10 s.
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        for _ in 0..500 {
            if stream.write_all(b" ").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let start = std::time::Instant::now();
    let mut client = Client::connect(&path, None).unwrap();
    let timeout = Some(Duration::from_millis(300));
    let e = client.call::<serde_json::Value>(Command::Status, timeout);
    let e = e.unwrap_err();
    assert!(
        matches!(e, ClientError::Timeout { after, .. } if after == Duration::from_millis(300)),
        "{e}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    drop(client);
    server.join().unwrap();
}

#[test]
fn the_async_client_bounds_an_endless_or_huge_answer() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for (size, line_end) in [(64 << 20, false), (32 << 20, true)] {
        let (path, server) = flooding_peer(dir.path(), b"", size, line_end);
        let e = runtime.block_on(async {
            let mut client = AsyncClient::connect_now(&path).unwrap();
            client.call::<serde_json::Value>(Command::Status).await
        });
        let e = e.unwrap_err();
        assert!(is_too_long(&e), "{e}");
        assert!(server.join().unwrap() < MAX_ANSWER + (1 << 20) + (8 << 20));
    }
}

/// What a peer sends is shown escaped and cut, on one line: an error code with a line end and
/// a terminal escape (quoted raw by serde_json's "unknown variant"), and a refusal of 2 MiB
/// (too long for the error's queue, which dropped the line: herd exited 1 saying nothing).
#[test]
fn what_a_peer_says_stays_on_one_short_line() {
    let path = Path::new("/h.sock");
    let code = br#"{"version":1,"ok":false,"error":{"code":"a\nherd: ok\u001b[2J","message":""}}"#;
    let e = decode_answer::<StopResult>(code, path)
        .unwrap_err()
        .to_string();
    assert!(!e.contains('\n') && !e.contains('\x1b'), "{e:?}");
    assert!(e.contains(r"a\nherd: ok\x1b[2J"), "{e:?}");
    let long = format!(
        r#"{{"version":1,"ok":false,"error":{{"code":"busy","message":"{}é"}}}}"#,
        "x".repeat(2 << 20)
    );
    let e = decode_answer::<StopResult>(long.as_bytes(), path)
        .unwrap_err()
        .to_string();
    assert!(e.len() < 70 << 10, "{}", e.len());
    assert!(
        e.ends_with(&format!("... ({} more bytes)", (2 << 20) + 2 - (64 << 10))),
        "{}",
        &e[e.len() - 40..]
    );
}
