//! Readiness and status notifications to the supervisor (`sd_notify(3)`).
//!
//! herd (and systemd) set `NOTIFY_SOCKET` to a Unix datagram socket; a worker sends newline
//! separated `KEY=VALUE` assignments to it. When the variable is not set, notifying does
//! nothing, so a worker can call these functions unconditionally. Not supported: passing fds to
//! the supervisor (`FDSTORE=1`) and `MAINPID=`.
//!
//! On Windows herd sets `NOTIFY_SOCKET` to a named pipe (`\\.\pipe\...`): each message is
//! one connection to it, the same text written and the pipe closed, as a datagram would be.
//! A program in another language does the same: open the pipe for writing, write, close.
//!
//! ```no_run
//! use herd::notify::{notify, State};
//!
//! herd::notify::ready()?;                                  // READY=1: start serving
//! notify(&[State::Status("warm cache: 12000 entries")])?;  // shown by `herd status`
//! notify(&[State::Watchdog])?;                             // with `herd run --watchdog`
//! herd::notify::stopping()?;                               // STOPPING=1
//! # Ok::<(), herd::Error>(())
//! ```

use std::fmt;

use crate::error::{Error, Result};

/// One assignment of the notify protocol; its `Display` is the wire format.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum State<'a> {
    /// `READY=1`: start-up is finished and the worker serves.
    Ready,
    /// `STOPPING=1`: the worker is shutting down.
    Stopping,
    /// `RELOADING=1`: the worker is reloading its configuration.
    Reloading,
    /// `WATCHDOG=1`: the worker is alive (keep-alive ping).
    Watchdog,
    /// `STATUS=...`: a one-line, human-readable status.
    Status(&'a str),
    /// `HERD_RECYCLE=1`: herd, replace this worker (see [`recycle`]).
    Recycle,
}

impl fmt::Display for State<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            State::Ready => f.write_str("READY=1"),
            State::Stopping => f.write_str("STOPPING=1"),
            State::Reloading => f.write_str("RELOADING=1"),
            State::Watchdog => f.write_str("WATCHDOG=1"),
            State::Recycle => f.write_str("HERD_RECYCLE=1"),
            // A newline would start a new assignment: fold it into a space.
            State::Status(text) => write!(f, "STATUS={}", text.replace('\n', " ")),
        }
    }
}

/// Sends `states` as one datagram to `NOTIFY_SOCKET`. Returns `Ok(false)` when the variable is
/// not set (nobody listens), `Ok(true)` once sent. On Unix, a receiver whose queue is full is
/// waited for at most a second (then an error), where `sd_notify(3)` would block for good.
pub fn notify(states: &[State<'_>]) -> Result<bool> {
    let socket = match std::env::var_os("NOTIFY_SOCKET") {
        None => return Ok(false),
        Some(socket) => socket,
    };
    let message = states
        .iter()
        .map(State::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    send(&socket, message.as_bytes())
        .map_err(|e| Error::io(format!("cannot notify {socket:?}"), e))?;
    Ok(true)
}

#[cfg(unix)]
fn send(socket: &std::ffi::OsStr, message: &[u8]) -> std::io::Result<()> {
    herd_sys::notify::send(socket, message)
}

/// Writes `message` to the pipe `pipe` in one connection, trying again as [`pipe_retry`] says.
#[cfg(windows)]
fn send(pipe: &std::ffi::OsStr, message: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::time::{Duration, Instant};
    // Opening anything else for writing would overwrite a file.
    let is_pipe = pipe
        .to_str()
        .and_then(|p| p.get(..9))
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case(r"\\.\pipe\"));
    if !is_pipe {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            r"on Windows NOTIFY_SOCKET must be a named pipe (\\.\pipe\NAME)",
        ));
    }
    let first = Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        match std::fs::OpenOptions::new().write(true).open(pipe) {
            Ok(mut connection) => return connection.write_all(message),
            Err(e) => match pipe_retry(e.raw_os_error(), first.elapsed(), pause) {
                Some(next) => {
                    std::thread::sleep(pause);
                    pause = next;
                }
                None => return Err(e),
            },
        }
    }
}

/// `ERROR_PIPE_BUSY`: every instance of the pipe is serving another client.
#[cfg(any(windows, test))]
const PIPE_BUSY: i32 = 231;
/// `ERROR_FILE_NOT_FOUND`: no instance of the pipe waits for a client.
#[cfg(any(windows, test))]
const NO_PIPE: i32 = 2;

/// Whether opening the notify pipe, failed with the system error `code` after `waited` since
/// the first try, is tried again after `pause`, and then the pause after that (doubling up to
/// 100 ms): while every instance is busy (many workers starting at once), for up to 10 s;
/// while none is there (herd makes another instance as soon as a client takes one, or, where
/// making one failed, again within its backoff of at most 1 s), for up to 2 s.
#[cfg(any(windows, test))]
fn pipe_retry(
    code: Option<i32>,
    waited: std::time::Duration,
    pause: std::time::Duration,
) -> Option<std::time::Duration> {
    use std::time::Duration;
    let patience = match code {
        Some(PIPE_BUSY) => Duration::from_secs(10),
        Some(NO_PIPE) => Duration::from_secs(2),
        _ => return None,
    };
    (waited + pause < patience).then(|| (pause * 2).min(Duration::from_millis(100)))
}

/// Tells the supervisor this worker is ready to serve (`READY=1`).
pub fn ready() -> Result<bool> {
    notify(&[State::Ready])
}

/// Tells the supervisor this worker is stopping (`STOPPING=1`).
pub fn stopping() -> Result<bool> {
    notify(&[State::Stopping])
}

/// Asks herd to recycle this worker (`HERD_RECYCLE=1`): a successor starts in its slot, and
/// once it is available this worker gets the stop signal; serve on meanwhile. For what herd
/// cannot see, such as a number of requests served. Other supervisors ignore it.
pub fn recycle() -> Result<bool> {
    notify(&[State::Recycle])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_pipe_is_tried_for_10_s_a_missing_one_for_2_s_nothing_else_again() {
        use std::time::Duration;
        let ms = Duration::from_millis;
        assert_eq!(pipe_retry(Some(PIPE_BUSY), ms(0), ms(5)), Some(ms(10)));
        assert_eq!(
            pipe_retry(Some(PIPE_BUSY), ms(9_000), ms(80)),
            Some(ms(100))
        );
        assert_eq!(pipe_retry(Some(PIPE_BUSY), ms(9_950), ms(100)), None);
        assert_eq!(pipe_retry(Some(NO_PIPE), ms(0), ms(5)), Some(ms(10)));
        assert_eq!(pipe_retry(Some(NO_PIPE), ms(1_800), ms(100)), Some(ms(100)));
        assert_eq!(pipe_retry(Some(NO_PIPE), ms(1_950), ms(100)), None);
        // Access denied, a bad name, no error code: at once.
        assert_eq!(pipe_retry(Some(5), ms(0), ms(5)), None);
        assert_eq!(pipe_retry(Some(123), ms(0), ms(5)), None);
        assert_eq!(pipe_retry(None, ms(0), ms(5)), None);
    }

    #[test]
    fn wire_format() {
        assert_eq!(State::Ready.to_string(), "READY=1");
        assert_eq!(State::Status("a\nb").to_string(), "STATUS=a b");
    }
}
