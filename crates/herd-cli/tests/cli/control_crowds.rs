//! The control socket in a crowd: clients that hang up before their answer, and newcomers
//! when the connection limit is reached. herd is paused (SIGSTOP) while the clients act, so
//! that it meets each of them in the state the test means.

use std::io::{BufRead, BufReader, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::util::*;

const STATUS: &[u8] = b"{\"version\":1,\"command\":\"status\"}\n";

/// Pauses `herd` until the returned guard is dropped.
fn paused(herd: &Herd) -> impl Drop + '_ {
    struct Paused<'a>(&'a Herd);
    impl Drop for Paused<'_> {
        fn drop(&mut self) {
            self.0.signal(libc::SIGCONT);
        }
    }
    herd.signal(libc::SIGSTOP);
    wait_until("herd to be paused", || match proc_state(herd.pid()) {
        Some('T') => Ok(()),
        state => Err(state),
    });
    Paused(herd)
}

/// The answer line on `stream`, as JSON.
fn answer(stream: &UnixStream) -> Value {
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut line = Vec::new();
    BufReader::new(stream).read_until(b'\n', &mut line).unwrap();
    serde_json::from_slice(&line)
        .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&line)))
}

/// A client that asks and hangs up before herd reads its request gets nothing made for it:
/// a `sockets` request with `attach` from a process that closed its connection (and lives on)
/// registers nothing. One that only shuts down its writing side after asking still gets its
/// answer.
#[test]
fn a_client_that_hung_up_gets_no_answer_made_and_a_half_closed_one_does() {
    let herd = Herd::start(&ONE_SLEEPER);
    wait_status(&herd, "the worker ready", |s| s["ready"] == 1);
    let control = herd.control();

    let pause = paused(&herd);
    // Asks to attach, hangs up, and lives on until killed.
    let script = "import socket, sys, time\n\
        s = socket.socket(socket.AF_UNIX)\n\
        s.connect(sys.argv[1])\n\
        s.sendall(b'{\"version\":1,\"command\":\"sockets\",\"attach\":true}\\n')\n\
        s.close()\n\
        print('gone', flush=True)\n\
        time.sleep(1000)\n";
    let mut gone = Command::new("python3")
        .args(["-c", script, &control])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut said = String::new();
    BufReader::new(gone.stdout.take().unwrap())
        .read_line(&mut said)
        .unwrap();
    assert_eq!(said, "gone\n");
    let mut half_closed = UnixStream::connect(&control).unwrap();
    half_closed.write_all(STATUS).unwrap();
    half_closed.shutdown(Shutdown::Write).unwrap();
    drop(pause);

    let status = answer(&half_closed);
    assert_eq!(status["ok"], true, "{status}");
    // herd took the requests in the order they came: the attach came first.
    assert_eq!(
        status["result"]["attached"],
        serde_json::json!([]),
        "{status}"
    );
    let _ = gone.kill();
    let _ = gone.wait();
}
