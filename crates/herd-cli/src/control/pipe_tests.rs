//! The control pipe's server, with clients in this process (std's file API on the pipe, as the
//! worker library's client): run under Wine by scripts/check-windows.sh.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::windows::io::OwnedSocket;
use std::sync::Arc;

use herd_sys::windows::pipe::SecurePipe;

use super::pipe_server::{PipePeer, PipeServer};
use super::protocol::{ErrorCode, Request, Response, MAX_REQUEST};
use super::reply::Reply;

fn unique_pipe(test: &str) -> String {
    format!(r"\\.\pipe\herd-test\{}\{test}", std::process::id())
}

/// Answers every request with its peer's pid in the message; a `sockets` request also gets
/// `listener`'s socket.
async fn answer(request: Request, peer: PipePeer, listener: Option<OwnedSocket>) -> Reply {
    let response = Response::error(ErrorCode::Busy, format!("pid {}", peer.pid));
    match (request.command, listener) {
        (super::protocol::Command::Sockets { .. }, Some(socket)) => Reply {
            response,
            fds: vec![socket],
        },
        _ => Reply::from(response),
    }
}

/// Serves `name` in the background, answering every request with `handler`, while `client`
/// runs on a blocking thread; returns what the client returns.
fn serving<H, F, T>(name: &str, handler: H, client: impl FnOnce(String) -> T + Send + 'static) -> T
where
    H: Fn(Request, PipePeer) -> F + Clone + Send + 'static,
    F: std::future::Future<Output = Reply> + Send + 'static,
    T: Send + 'static,
{
    served_while(name, client, |name| {
        let server = PipeServer::bind(SecurePipe::new(name, &[]).unwrap()).unwrap();
        tokio::spawn(server.serve(handler));
    })
}

/// On a runtime of its own: `serve(name)` (which spawns the server), then `client(name)` on a
/// blocking thread; returns what the client returns.
fn served_while<T: Send + 'static>(
    name: &str,
    client: impl FnOnce(String) -> T + Send + 'static,
    serve: impl FnOnce(&str),
) -> T {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let name = name.to_string();
    runtime.block_on(async move {
        serve(&name);
        tokio::task::spawn_blocking(move || client(name))
            .await
            .unwrap()
    })
}

/// [`serving`] with [`answer`]: a `sockets` request also gets `listener`'s socket.
fn with_server<T: Send + 'static>(
    name: &str,
    listener: Option<&TcpListener>,
    client: impl FnOnce(String) -> T + Send + 'static,
) -> T {
    let socket: Arc<Option<OwnedSocket>> =
        Arc::new(listener.map(|l| l.try_clone().unwrap().into()));
    let handler = move |request, peer| {
        let socket = socket.as_ref().as_ref().map(|s| s.try_clone().unwrap());
        answer(request, peer, socket)
    };
    serving(name, handler, client)
}

/// Answers every request with a reply of 9 MiB: two do not fit in the reply budget together.
async fn nine_mib(_request: Request, _peer: PipePeer) -> Reply {
    Reply::from(Response::error(ErrorCode::Internal, "x".repeat(9 << 20)))
}

const STATUS: &[u8] = b"{\"version\":1,\"command\":\"status\"}\n";

fn ask(name: &str, line: &[u8]) -> serde_json::Value {
    let mut pipe = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(name)
        .unwrap();
    pipe.write_all(line).unwrap();
    let mut answer = String::new();
    BufReader::new(pipe).read_line(&mut answer).unwrap();
    serde_json::from_str(&answer).unwrap()
}

#[test]
fn a_request_is_answered_and_the_peer_is_the_real_client_pid() {
    let answer = with_server(&unique_pipe("answer"), None, |name| ask(&name, STATUS));
    let expected = format!("pid {}", std::process::id());
    assert_eq!(answer["error"]["message"], expected.as_str(), "{answer}");
}

#[test]
fn a_huge_or_garbage_line_gets_the_unix_errors() {
    let (huge, garbage) = with_server(&unique_pipe("bad"), None, |name| {
        let mut line = vec![b'x'; MAX_REQUEST + 1];
        line.push(b'\n');
        (ask(&name, &line), ask(&name, b"{not json\n"))
    });
    assert_eq!(huge["error"]["code"], "request_too_large", "{huge}");
    assert_eq!(garbage["error"]["code"], "bad_request", "{garbage}");
}

#[test]
fn a_second_server_on_the_same_name_is_refused() {
    let name = unique_pipe("twice");
    let refused = with_server(&name, None, |name| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = runtime.enter();
        PipeServer::bind(SecurePipe::new(&name, &[]).unwrap()).is_err()
    });
    assert!(refused);
}

#[test]
fn a_sockets_answer_is_rebuilt_into_a_working_listener() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let answer = with_server(&unique_pipe("sockets"), Some(&listener), |name| {
        ask(&name, b"{\"version\":1,\"command\":\"sockets\"}\n")
    });
    let hex = answer["shared"][0].as_str().unwrap();
    let block: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    assert_eq!(
        block.len(),
        628,
        "one WSAPROTOCOL_INFOW, as docs/control-protocol.md says"
    );
    let rebuilt = TcpListener::from(herd_sys::wsa::from_blob(&block).unwrap());
    assert_eq!(rebuilt.local_addr().unwrap(), address);
    drop(listener);
    let _client = TcpStream::connect(address).unwrap();
    let _ = rebuilt.accept().unwrap();
}

/// Opens the pipe `name`, retrying while every instance is busy, for at most 10 s.
fn open_within(name: &str) -> std::fs::File {
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(name)
        {
            Ok(pipe) => return pipe,
            Err(e) if std::time::Instant::now() >= give_up => {
                panic!("cannot open {name} within 10 s: {e}")
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    }
}

#[test]
fn without_a_next_instance_an_idle_client_blocks_no_other() {
    let name = unique_pipe("fallback");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let answer = runtime.block_on(async move {
        let pipe = SecurePipe::new(&name, &[]).unwrap();
        let first = pipe.first_instance().unwrap();
        tokio::spawn(async move {
            // The first client's next instance cannot be made; later ones can.
            let mut failed = false;
            let next_instance = move |pipe: &SecurePipe| match std::mem::replace(&mut failed, true)
            {
                false => Err(std::io::Error::other("no next instance, for the test")),
                true => pipe.next_instance(),
            };
            let handler = |request, peer, _process, _written| answer(request, peer, None);
            super::pipe_server::serve_instances(&pipe, first, next_instance, handler).await
        });
        tokio::task::spawn_blocking(move || {
            // It connects and says nothing.
            let _idle = open_within(&name);
            let mut other = open_within(&name);
            other.write_all(STATUS).unwrap();
            let mut answer = String::new();
            BufReader::new(other).read_line(&mut answer).unwrap();
            answer
        })
        .await
        .unwrap()
    });
    let expected = format!("pid {}", std::process::id());
    assert!(answer.contains(&expected), "{answer}");
}

/// A client that asks for a status of 9 MiB and reads 1 byte of it, then nothing: the pipe
/// server holds the rest within the reply budget (16 MiB), as the Unix socket's does. A second
/// such status does not fit beside it: it is answered `busy`, or (once the first has made no
/// progress for the budget's while) the first gives way and is cut off. Without the budget,
/// both are written whole.
#[test]
fn replies_left_unread_are_bounded_as_on_unix() {
    let (second, first) = serving(&unique_pipe("budget"), nine_mib, |name| {
        let mut first = open_within(&name);
        first.write_all(STATUS).unwrap();
        std::io::Read::read_exact(&mut first, &mut [0]).unwrap();
        let mut second = open_within(&name);
        second.write_all(STATUS).unwrap();
        let mut answer = String::new();
        BufReader::new(second).read_line(&mut answer).unwrap();
        let mut rest = Vec::new();
        let _ = BufReader::new(first).read_until(b'\n', &mut rest);
        (answer, rest)
    });
    let busy = second.contains("too many unread replies");
    let cut = !first.ends_with(b"\n");
    assert!(
        busy || cut,
        "both written whole: {} and {} bytes",
        second.len(),
        first.len()
    );
}

/// Opens the pipe `name`, trying again every millisecond while every instance is busy
/// (`ERROR_PIPE_BUSY`), for 10 s at most.
fn open_at_once(name: &str) -> std::fs::File {
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(name)
        {
            Ok(pipe) => return pipe,
            Err(e) if e.raw_os_error() == Some(231) && std::time::Instant::now() < give_up => {
                std::thread::sleep(std::time::Duration::from_millis(1))
            }
            Err(e) => panic!("cannot open {name}: {e}"),
        }
    }
}

/// With 1000 clients connected and silent, a newcomer is answered: the one that has waited
/// longest for a request gives way (its instance is disconnected), as on the Unix socket,
/// instead of the newcomer being told `busy` until the silent ones idle out.
#[test]
fn silent_clients_cannot_lock_out_a_newcomer() {
    let (answer, oldest) = with_server(&unique_pipe("crowd"), None, |name| {
        // Opened at once, each as soon as herd has its next instance, well within the 30 s
        // after which a silent client is closed anyway.
        let silent: Vec<std::fs::File> = (0..1000).map(|_| open_at_once(&name)).collect();
        let mut newcomer = open_within(&name);
        newcomer.write_all(STATUS).unwrap();
        let mut answer = String::new();
        BufReader::new(newcomer).read_line(&mut answer).unwrap();
        let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
        let oldest = std::io::Read::read(&mut &silent[0], &mut [0; 64]);
        (answer, oldest.map_err(|e| e.kind()))
    });
    let expected = format!("pid {}", std::process::id());
    assert_eq!(answer["error"]["message"], expected.as_str(), "{answer}");
    // Still connected, it would not have read at all; closed at its 30 s of silence, it would
    // have read `idle_timeout`.
    assert!(
        matches!(oldest, Ok(0) | Err(_)),
        "the oldest read something: {oldest:?}"
    );
}

/// A client that sends a status, then a stop, and leaves at once (a script piping both into
/// the pipe) has its stop carried out, as on the Unix socket: what it sent still counts after
/// an answer it will not read.
#[test]
fn a_stop_sent_after_a_status_by_a_client_that_left_is_carried_out() {
    let (seen, seen_by_server) = std::sync::mpsc::channel();
    // Tells, for each command the server carries out, whether it is a stop.
    let handler = move |request: Request, peer| {
        let stop = matches!(request.command, super::protocol::Command::Stop { .. });
        let _ = seen.send(stop);
        nine_mib(request, peer)
    };
    let stopped = serving(&unique_pipe("left"), handler, move |name| {
        let mut client = open_within(&name);
        let stop = b"{\"version\":1,\"command\":\"stop\"}\n";
        client.write_all(&[STATUS, stop].concat()).unwrap();
        drop(client);
        // The server runs meanwhile: each command it carries out is seen here.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        std::iter::from_fn(|| {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            seen_by_server.recv_timeout(left).ok()
        })
        .any(|stop| stop)
    });
    assert!(stopped, "the stop was not carried out");
}

/// A client whose reply gave way for another's (it read 1 byte of 9 MiB, then nothing) loses
/// its pipe instance at once, as a Unix connection is closed: a write of its reply may still
/// be pending, and without a disconnect that write would hold the instance and its buffer
/// until the client reads or closes, beyond the connection limit and the reply budget.
#[test]
fn a_client_whose_reply_gave_way_is_disconnected() {
    let evicted = serving(&unique_pipe("evicted"), nine_mib, |name| {
        let mut first = open_within(&name);
        first.write_all(STATUS).unwrap();
        std::io::Read::read_exact(&mut first, &mut [0]).unwrap();
        // Past the budget's 20 ms without progress, the first reply counts as stalled.
        std::thread::sleep(std::time::Duration::from_millis(200));
        let mut second = open_within(&name);
        second.write_all(STATUS).unwrap();
        let mut answer = Vec::new();
        BufReader::new(second)
            .read_until(b'\n', &mut answer)
            .unwrap();
        assert!(
            answer.len() > 9 << 20,
            "the second reply was not written whole"
        );
        first.write_all(STATUS).map_err(|e| e.raw_os_error())
    });
    // ERROR_NO_DATA or ERROR_PIPE_NOT_CONNECTED: the instance is gone.
    assert!(
        evicted.is_err(),
        "the evicted client's instance is still connected"
    );
}

/// Serves `name` with `handler` while no next instance can ever be made (so the first instance
/// is lent to each client in turn, and renewed once its client is gone), while `client` runs on
/// a blocking thread; returns what the client returns.
fn serving_one_instance<H, F, T>(
    name: &str,
    handler: H,
    client: impl FnOnce(String) -> T + Send + 'static,
) -> T
where
    H: Fn(Request, PipePeer) -> F + Clone + Send + 'static,
    F: std::future::Future<Output = Reply> + Send + 'static,
    T: Send + 'static,
{
    served_while(name, client, |name| {
        let pipe = SecurePipe::new(name, &[]).unwrap();
        let first = pipe.first_instance().unwrap();
        tokio::spawn(async move {
            let next_instance =
                |_: &SecurePipe| Err(std::io::Error::other("no next instance, for the test"));
            let handler = move |request, peer, _process, _written| handler(request, peer);
            super::pipe_server::serve_instances(&pipe, first, next_instance, handler).await
        });
    })
}

/// Answers every request with a reply of 200 KiB: more than the pipe's buffer (64 KiB) and
/// mio's (a 64 KiB chunk) take, so its last chunk is still being written when the request's
/// turn ends, until the client reads it.
async fn two_hundred_kib(_request: Request, _peer: PipePeer) -> Reply {
    Reply::from(Response::error(ErrorCode::Internal, "x".repeat(200 << 10)))
}

/// Sends a status on the pipe `name` and reads the answer's line (empty if the pipe ended
/// first).
fn ask_line(name: &str) -> Vec<u8> {
    let mut pipe = open_within(name);
    pipe.write_all(STATUS).unwrap();
    let mut answer = Vec::new();
    let _ = BufReader::new(pipe).read_until(b'\n', &mut answer);
    answer
}

/// With no next instance to be had, the one instance serves client after client: one that
/// asked, read its answer and left leaves nothing behind for the next.
#[test]
fn the_only_instance_serves_the_next_client_after_one_that_read_and_left() {
    let (first, second) = serving_one_instance(&unique_pipe("reused"), two_hundred_kib, |name| {
        (ask_line(&name), ask_line(&name))
    });
    assert_eq!(
        first.len(),
        second.len(),
        "the second was not answered whole"
    );
    assert!(second.ends_with(b"\n"));
}

/// With no next instance to be had, a client that asked and left without reading its answer
/// (whose write was still in flight, and failed) does not leave that failure to the next client
/// on the same instance: the next one is answered, not taken for gone.
#[test]
fn a_write_that_failed_for_a_client_that_left_is_not_the_next_clients() {
    let answer = serving_one_instance(&unique_pipe("stale"), two_hundred_kib, |name| {
        let mut first = open_within(&name);
        first.write_all(STATUS).unwrap();
        // The answer has begun: its first bytes are in the pipe. It leaves without more.
        std::io::Read::read_exact(&mut first, &mut [0]).unwrap();
        drop(first);
        ask_line(&name)
    });
    assert!(
        answer.len() > 200 << 10 && answer.ends_with(b"\n"),
        "the next client got {} bytes",
        answer.len()
    );
}
