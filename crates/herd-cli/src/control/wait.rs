//! Waiting for herd's answer without waiting on a herd that cannot give one: a stopped herd
//! (SIGSTOP, Ctrl-Z) is named at once, with how to resume it; unless the request reached it
//! before it stopped, and the client is patient: herd carries the request out once it resumes
//! (an upgrade under way goes on), so the client waits for it, within its timeout.

use std::io::ErrorKind;
use std::os::unix::io::AsFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use super::client::ClientError;

/// How often the wait looks at herd's state.
const LOOK_EVERY: Duration = Duration::from_millis(500);

/// How many looks, [`CONFIRM_EVERY`] apart, must all find herd stopped before it is said to
/// be: a tracer (`strace -p`) stops it at each system call for an instant.
const CONFIRM_LOOKS: u32 = 5;

/// See [`CONFIRM_LOOKS`].
const CONFIRM_EVERY: Duration = Duration::from_millis(10);

/// How many looks, [`CONFIRM_EVERY`] apart, must all find herd held by a tracer before it is
/// said to be stopped: `strace -p` holds it at each system call for an instant, a debugger at
/// a breakpoint for good.
const TRACED_LOOKS: u32 = 50;

/// Whether `pid` is stopped and stays so: by a signal (`SIGSTOP`, Ctrl-Z) for a few looks, by
/// a tracer for half a second (a debugger's hold, not `strace`'s instants).
fn stays_stopped(pid: u32) -> bool {
    let by_signal = || herd_sys::process::is_stopped_by_signal(pid);
    let at_all = || herd_sys::process::is_stopped(pid);
    stays(CONFIRM_LOOKS, by_signal) || (at_all() && stays(TRACED_LOOKS, at_all))
}

/// Whether every one of `looks` looks, [`CONFIRM_EVERY`] apart, finds `stopped`.
fn stays(looks: u32, mut stopped: impl FnMut() -> bool) -> bool {
    (0..looks).all(|look| {
        if look > 0 {
            std::thread::sleep(CONFIRM_EVERY);
        }
        stopped()
    })
}

/// Fails at once if the herd at the other end of `stream` is stopped.
pub fn check_running(stream: &UnixStream, control: &Path) -> Result<(), ClientError> {
    match server_pid(stream) {
        Some(pid) if stays_stopped(pid) => Err(stopped(control, pid)),
        _ => Ok(()),
    }
}

/// How [`wait`] takes a herd it sees stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhenStopped {
    /// It fails at once ([`ClientError::Stopped`]).
    Fail,
    /// It waits for herd to resume, saying so once on stderr: the request was delivered, and
    /// herd carries it out once it resumes.
    Wait,
}

/// Waits until herd's answer starts to arrive on `stream` (or the connection ends), for at
/// most `timeout` (`None`: as long as it takes). A herd seen stopped fails the wait at once,
/// or is waited for (`when_stopped`); one still stopped when `timeout` ends fails it as
/// stopped. Leaves the stream's read timeout at what remains of `timeout`.
pub fn wait(
    stream: &UnixStream,
    control: &Path,
    timeout: Option<Duration>,
    when_stopped: WhenStopped,
) -> Result<(), ClientError> {
    let say = |pid| crate::logging::line(&waiting_for_resume(control, pid));
    wait_with(stream, control, timeout, when_stopped, stays_stopped, say)
}

/// [`wait`], with `is_stopped` telling whether a pid is stopped, and `say` saying once that
/// the client waits for the stopped herd `pid`.
fn wait_with(
    stream: &UnixStream,
    control: &Path,
    timeout: Option<Duration>,
    when_stopped: WhenStopped,
    is_stopped: impl Fn(u32) -> bool,
    mut say: impl FnMut(u32),
) -> Result<(), ClientError> {
    let cannot_wait = |e| ClientError::io(control, "cannot wait for", e);
    let pid = server_pid(stream);
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut said = false;
    loop {
        let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if remaining == Some(Duration::ZERO) {
            return Err(match pid.filter(|&p| is_stopped(p)) {
                Some(pid) => stopped(control, pid),
                None => ClientError::Timeout {
                    path: control.to_path_buf(),
                    after: timeout.unwrap_or_default(),
                    pid,
                },
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
        if let Some(pid) = pid.filter(|&p| is_stopped(p)) {
            match when_stopped {
                WhenStopped::Fail => return Err(stopped(control, pid)),
                WhenStopped::Wait if !said => {
                    said = true;
                    say(pid);
                }
                WhenStopped::Wait => {}
            }
        }
    }
    let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()).max(LOOK_EVERY));
    stream.set_read_timeout(remaining).map_err(cannot_wait)
}

fn server_pid(stream: &UnixStream) -> Option<u32> {
    herd_sys::socket::peer_pid(stream.as_fd()).ok().flatten()
}

/// What a patient client says once when it waits for the stopped herd `pid`.
fn waiting_for_resume(control: &Path, pid: u32) -> String {
    format!(
        "herd: the herd at {} (pid {pid}) is stopped (by SIGSTOP, Ctrl-Z or a debugger) with \
         the request delivered; waiting for it to resume ('kill -CONT {pid}')",
        control.display()
    )
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
    use std::os::unix::net::UnixListener;

    /// A tracer (`strace -p`) stops herd at each system call for an instant: one look that
    /// finds it running is enough; only a stop that holds is one.
    #[test]
    fn only_a_stop_that_holds_is_one() {
        assert!(stays(CONFIRM_LOOKS, || true));
        let mut looks = 0;
        assert!(!stays(CONFIRM_LOOKS, || {
            looks += 1;
            looks != 3
        }));
        assert_eq!(looks, 3, "no look after one found it running");
    }

    #[test]
    fn a_silent_server_times_out_with_a_message() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let client = UnixStream::connect(&path).unwrap();
        check_running(&client, &path).unwrap();
        let e = wait(
            &client,
            &path,
            Some(Duration::from_millis(100)),
            WhenStopped::Fail,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("no answer from") && e.contains("within 100ms"),
            "{e}"
        );
        // An answer that is there is left for the reader.
        let (mut server, _) = listener.accept().unwrap();
        server.write_all(b"{}\n").unwrap();
        wait(
            &client,
            &path,
            Some(Duration::from_secs(5)),
            WhenStopped::Fail,
        )
        .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(&client), &mut line).unwrap();
        assert_eq!(line, "{}\n");
    }

    /// A client connected to a server that answers nothing yet: its listener too.
    fn silent_server() -> (
        tempfile::TempDir,
        std::path::PathBuf,
        UnixStream,
        UnixListener,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let client = UnixStream::connect(&path).unwrap();
        (dir, path, client, listener)
    }

    #[test]
    fn a_stopped_herd_fails_an_impatient_wait_at_once() {
        let (_dir, path, client, _listener) = silent_server();
        let started = Instant::now();
        let e = wait_with(
            &client,
            &path,
            Some(Duration::from_secs(30)),
            WhenStopped::Fail,
            |_| true,
            |_| panic!("an impatient wait says nothing"),
        )
        .unwrap_err();
        assert!(matches!(e, ClientError::Stopped { .. }), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_patient_wait_outlasts_a_stopped_herd_and_says_so_once() {
        let (_dir, path, client, listener) = silent_server();
        let looks = std::cell::Cell::new(0);
        let mut said = Vec::new();
        // The herd is stopped for the first two looks, then resumes and answers.
        let server = std::thread::spawn(move || {
            let (mut server, _) = listener.accept().unwrap();
            std::thread::sleep(LOOK_EVERY * 2 + LOOK_EVERY / 2);
            server.write_all(b"{}\n").unwrap();
            server
        });
        wait_with(
            &client,
            &path,
            Some(Duration::from_secs(30)),
            WhenStopped::Wait,
            |_| {
                looks.set(looks.get() + 1);
                looks.get() <= 2
            },
            |pid| said.push(pid),
        )
        .unwrap();
        let _server = server.join().unwrap();
        assert_eq!(said, [std::process::id()], "said once, with herd's pid");
        let line = waiting_for_resume(&path, 42);
        assert!(
            line.contains("(pid 42) is stopped") && line.contains("waiting for it to resume"),
            "{line}"
        );
    }

    #[test]
    fn a_herd_still_stopped_when_the_time_is_up_is_said_stopped() {
        let (_dir, path, client, _listener) = silent_server();
        let e = wait_with(
            &client,
            &path,
            Some(Duration::from_millis(100)),
            WhenStopped::Wait,
            |_| true,
            |_| {},
        )
        .unwrap_err();
        assert!(matches!(e, ClientError::Stopped { .. }), "{e}");
    }
}
