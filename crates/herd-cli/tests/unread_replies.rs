//! Clients that ask for a `status` of 4096 workers (about 1.35 MB) and never read it cannot
//! make herd hold their replies without bound: the control server, run in this process as in
//! herd (one thread, answered by a stand-in supervisor), keeps this process's memory within
//! the reply budget, and a client that reads is answered meanwhile, and keeps its reply when
//! herd's writer falls behind it. (Unix: the Windows pipe's budget is tested in
//! control/pipe_tests.rs.)
#![cfg(unix)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::io::AsFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant};

use herd_cli::control::protocol::Response;
use herd_cli::control::server::{serve, AccessPolicy, Reply};

#[path = "fixtures/status.rs"]
mod fixture;
use fixture::status;

const WORKERS: usize = 4096;
const CLIENTS: usize = 60;
/// The most herd may grow: its reply budget (16 MiB), and the replies being made meanwhile.
const BOUND: u64 = 32 << 20;
const TIMEOUT: Duration = Duration::from_secs(60);
const STATUS: &[u8] = b"{\"version\":1,\"command\":\"status\"}\n";

/// The tests of this file, one at a time: `cargo test` runs them as threads of one process,
/// whose peak memory the first one measures.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Takes this file's turn (see [`ONE_AT_A_TIME`]); a test that failed holding it passes it on.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// A field of this process's `/proc/self/status`, in bytes.
fn memory(field: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = text.lines().find(|l| l.starts_with(field)).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// Serves a control socket at `path` on a thread of its own (one thread, as in herd), answering
/// the requests in turn, counted from 0, with what `answer` makes of each number; returns once
/// it is bound, with the server's log events (JSON lines, fields flattened, as herd writes them).
fn control_server(
    path: PathBuf,
    mut answer: impl FnMut(usize) -> Response + Send + 'static,
) -> Receiver<String> {
    let (bound, is_bound) = std::sync::mpsc::channel();
    let (logged, logs) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_writer(move || Lines(logged.clone()))
            .finish();
        let _logging = tracing::subscriber::set_default(subscriber);
        runtime.block_on(async move {
            let listener = tokio::net::UnixListener::bind(&path).unwrap();
            bound.send(()).unwrap();
            let policy = AccessPolicy {
                own_uid: herd_sys::process::effective_uid(),
                uids: Vec::new(),
                gids: Vec::new(),
            };
            let (requests, mut asked) = tokio::sync::mpsc::channel(64);
            tokio::spawn(serve(listener, policy, requests));
            let mut answered = 0;
            while let Some(request) = asked.recv().await {
                let _ = request.reply.send(Reply::from(answer(answered)));
                answered += 1;
            }
        });
    });
    is_bound.recv_timeout(TIMEOUT).unwrap();
    logs
}

/// Sends each log line written to it on its channel.
struct Lines(Sender<String>);

impl Write for Lines {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let _ = self.0.send(String::from_utf8_lossy(line).into_owned());
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// [`control_server`] answering every request with a fresh copy of a status of [`WORKERS`]
/// workers.
fn status_server(path: PathBuf) {
    let status = status(WORKERS);
    control_server(path, move |_| Response::ok(status.clone()));
}

/// Asks for the status and reads the whole answer, as `herd status` does.
fn ask(path: &Path) -> serde_json::Value {
    let mut stream = UnixStream::connect(path).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.write_all(STATUS).unwrap();
    let mut line = Vec::new();
    BufReader::new(stream).read_until(b'\n', &mut line).unwrap();
    serde_json::from_slice(&line).unwrap()
}

#[test]
fn clients_that_never_read_their_replies_cannot_grow_herds_memory() {
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("control.sock");
    status_server(path.clone());
    let answer = ask(&path);
    assert_eq!(
        answer["result"]["workers"].as_array().unwrap().len(),
        WORKERS
    );
    let before = memory("VmRSS:");
    // The peak from here on (what another test of this process reached before is not ours).
    std::fs::write("/proc/self/clear_refs", "5").unwrap();

    let unread: Vec<UnixStream> = (0..CLIENTS)
        .map(|_| {
            let mut stream = UnixStream::connect(&path).unwrap();
            stream.write_all(STATUS).unwrap();
            stream
        })
        .collect();
    // Each has been answered (the first bytes of its reply, `busy`, or a closed connection)
    // once it is readable; none is read.
    for (i, stream) in unread.iter().enumerate() {
        let readable = herd_sys::fd::wait_readable(&[stream.as_fd()], Some(TIMEOUT)).unwrap();
        assert!(readable, "client {i} was not answered within {TIMEOUT:?}");
    }
    let peak = memory("VmHWM:");
    let grew = peak.saturating_sub(before);
    assert!(
        grew <= BOUND,
        "{CLIENTS} clients that do not read grew memory by {} MiB (from {} MiB)",
        grew >> 20,
        before >> 20
    );

    // A client that reads is answered meanwhile.
    let answer = ask(&path);
    assert_eq!(answer["ok"], true, "{}", answer["error"]);
    assert_eq!(
        answer["result"]["workers"].as_array().unwrap().len(),
        WORKERS
    );
    drop(unread);
}

/// Workers whose status is larger than half the budget (about 9.5 MB): two such replies do
/// not fit together.
const BIG: usize = 40_960;

/// A client that reads while herd's thread is busy elsewhere (here: making another answer for
/// 100 ms, as a status of many workers can take in a flood) has taken bytes that herd has not
/// replaced yet, for longer than a stalled reply is given. Asked, its socket says so: its reply
/// is not evicted for a newcomer's (which is told `busy`), and it reads it whole.
#[test]
fn a_client_that_reads_while_herds_writer_waits_keeps_its_reply() {
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("control.sock");
    let (busy, is_busy) = std::sync::mpsc::channel();
    let big = status(BIG);
    control_server(path.clone(), move |answered| {
        if answered == 1 {
            // The thread is taken: no writer of this server runs meanwhile.
            busy.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(100));
        }
        Response::ok(big.clone())
    });

    let mut reader = UnixStream::connect(&path).unwrap();
    reader.write_all(STATUS).unwrap();
    let first = herd_sys::fd::wait_readable(&[reader.as_fd()], Some(TIMEOUT)).unwrap();
    assert!(first, "no answer within {TIMEOUT:?}");
    let mut newcomer = UnixStream::connect(&path).unwrap();
    newcomer.write_all(STATUS).unwrap();
    is_busy.recv_timeout(TIMEOUT).unwrap();
    // While the server's thread is taken, the reader takes everything its socket holds.
    reader.set_nonblocking(true).unwrap();
    let mut line = Vec::new();
    let mut buf = vec![0; 1 << 16];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => panic!("closed after {} bytes", line.len()),
            Ok(n) => line.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("{e}"),
        }
    }
    reader.set_nonblocking(false).unwrap();
    reader.set_read_timeout(Some(TIMEOUT)).unwrap();
    BufReader::new(&reader)
        .read_until(b'\n', &mut line)
        .unwrap();
    assert!(
        line.ends_with(b"\n"),
        "the reader's reply was cut after {} bytes",
        line.len()
    );
    let answer: serde_json::Value = serde_json::from_slice(&line).unwrap();
    assert_eq!(answer["result"]["workers"].as_array().unwrap().len(), BIG);

    newcomer.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut refused = Vec::new();
    BufReader::new(&newcomer)
        .read_until(b'\n', &mut refused)
        .unwrap();
    let refused: serde_json::Value = serde_json::from_slice(&refused).unwrap();
    assert_eq!(refused["error"]["code"], "busy", "{}", refused["error"]);
}

/// A client that sends requests and reads none of the answers is closed once its reply gives
/// way to another client's, and herd says so: one `control_client_closed` warning, with the
/// client's pid and uid and why. (Its reply left unread for 30 s is closed and logged alike.)
#[test]
fn a_client_closed_for_leaving_its_replies_unread_is_logged() {
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("control.sock");
    let big = status(BIG);
    let logs = control_server(path.clone(), move |_| Response::ok(big.clone()));

    let mut unread = UnixStream::connect(&path).unwrap();
    unread.write_all(&[STATUS, STATUS].concat()).unwrap();
    let answered = herd_sys::fd::wait_readable(&[unread.as_fd()], Some(TIMEOUT)).unwrap();
    assert!(answered, "no answer within {TIMEOUT:?}");
    // Another client asks until its reply has the room: `busy` while the unread one has not
    // stalled yet (20 ms), then it gives way.
    let deadline = Instant::now() + TIMEOUT;
    while ask(&path)["ok"] != true {
        assert!(Instant::now() < deadline, "always busy for {TIMEOUT:?}");
    }

    let deadline = Instant::now() + TIMEOUT;
    let closed = std::iter::from_fn(|| {
        logs.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .ok()
    })
    .map(|line| serde_json::from_str::<serde_json::Value>(&line).unwrap())
    .find(|event| event["event"] == "control_client_closed")
    .expect("no control_client_closed event");
    assert_eq!(closed["level"], "WARN", "{closed}");
    assert_eq!(closed["pid"], std::process::id(), "{closed}");
    assert_eq!(
        closed["uid"],
        herd_sys::process::effective_uid(),
        "{closed}"
    );
    let reason = closed["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("left unread"), "{closed}");
}
