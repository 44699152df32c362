//! Waiting for herd's answer without waiting on a herd that cannot give one: a stopped herd
//! (SIGSTOP, Ctrl-Z) is named at once, with how to resume it.

use std::io::ErrorKind;
use std::os::unix::io::AsFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use super::client::ClientError;

/// How often the wait looks at herd's state.
const LOOK_EVERY: Duration = Duration::from_millis(500);

/// Fails at once if the herd at the other end of `stream` is stopped.
pub fn check_running(stream: &UnixStream, control: &Path) -> Result<(), ClientError> {
    match server_pid(stream) {
        Some(pid) if herd_sys::process::is_stopped(pid) => Err(stopped(control, pid)),
        _ => Ok(()),
    }
}

/// Waits until herd's answer starts to arrive on `stream` (or the connection ends), for at
/// most `timeout` (`None`: as long as it takes), failing early if herd is stopped. Leaves the
/// stream's read timeout at what remains of `timeout`.
pub fn wait(
    stream: &UnixStream,
    control: &Path,
    timeout: Option<Duration>,
) -> Result<(), ClientError> {
    let cannot_wait = |e| ClientError::io(control, "cannot wait for", e);
    let pid = server_pid(stream);
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if remaining == Some(Duration::ZERO) {
            return Err(ClientError::Timeout {
                path: control.to_path_buf(),
                after: timeout.unwrap_or_default(),
                pid,
            });
        }
        let step = remaining.map_or(LOOK_EVERY, |r| r.min(LOOK_EVERY));
        stream.set_read_timeout(Some(step)).map_err(cannot_wait)?;
        // recv(MSG_PEEK): the answer stays for the reader; SO_RCVTIMEO bounds the wait.
        match socket2::SockRef::from(stream).peek(&mut [std::mem::MaybeUninit::uninit(); 1]) {
            Ok(_) => break,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            // Reading will say what went wrong.
            Err(_) => break,
        }
        if let Some(pid) = pid.filter(|p| herd_sys::process::is_stopped(*p)) {
            return Err(stopped(control, pid));
        }
    }
    let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()).max(LOOK_EVERY));
    stream.set_read_timeout(remaining).map_err(cannot_wait)
}

fn server_pid(stream: &UnixStream) -> Option<u32> {
    herd_sys::socket::peer_pid(stream.as_fd()).ok().flatten()
}

fn stopped(control: &Path, pid: u32) -> ClientError {
    ClientError::Stopped {
        path: control.to_path_buf(),
        pid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_silent_server_times_out_with_a_message() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let client = UnixStream::connect(&path).unwrap();
        check_running(&client, &path).unwrap();
        let e = wait(&client, &path, Some(Duration::from_millis(100)))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("no answer from") && e.contains("within 100ms"),
            "{e}"
        );
        // An answer that is there is left for the reader.
        let (mut server, _) = listener.accept().unwrap();
        server.write_all(b"{}\n").unwrap();
        wait(&client, &path, Some(Duration::from_secs(5))).unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(&client), &mut line).unwrap();
        assert_eq!(line, "{}\n");
    }
}
