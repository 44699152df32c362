//! herd's side of systemd's protocols when systemd (or what plays it) misbehaves or asks for
//! more: a watchdog (`WATCHDOG_USEC`), a notify socket nobody reads, socket names that are not
//! text. The test plays systemd's part.

use std::process::{Command, Stdio};

use crate::util::*;

/// A `LISTEN_FDNAMES` that is not UTF-8 is refused, not taken for an unset one (which would
/// name the socket "unknown").
#[test]
fn socket_names_that_are_not_text_are_refused() {
    let script = r#"
import os, socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(8)
os.dup2(s.fileno(), 3)
os.environb[b"LISTEN_FDNAMES"] = b"caf\xe9"
os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()))
os.execv(sys.argv[1], sys.argv[1:])
"#;
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new("python3")
        .args(["-c", script, HERD, "run", "-w", "1", "-b", "systemd"])
        .args(["--", "sleep", "600"])
        .env("HERD_CONTROL", dir.path().join("control.sock"))
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    let status = wait_child(&mut child, TIMEOUT, libc::SIGQUIT);
    let stderr = reader.join().unwrap();
    assert_eq!(status.and_then(|s| s.code()), Some(FAILURE), "{stderr}");
    assert!(
        stderr.contains(r#"LISTEN_FDNAMES="caf\xE9" is not valid UTF-8"#),
        "{stderr}"
    );
}
