//! Taking the control socket's next connection, at herd's open-file limit too: the spare fd
//! is lent only to a connection that is there ([`super::spare`] decides what to do when accept
//! fails), and failures are backed off from and told ever more rarely.

use std::os::unix::io::AsFd;
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};

use super::retry::Retry;
use super::spare::{after_accept_failed, AcceptFailed, Spare};
use super::waiting::{Waiting, ROOM_WAIT};
use crate::logging::LogEvent;

/// How often the spare and its reserve are taken back while either is missing.
const REFILL_EVERY: Duration = Duration::from_millis(200);

/// The next connection, and whether it took the [`Spare`]'s fd (herd is at its open-file limit):
/// `None` after a failure, which is logged and backed off from, or when nobody was waiting after
/// all. Unless the spare and its reserve are both `held`, it waits at most [`REFILL_EVERY`] so
/// that they are taken back once files are free, whether or not anyone connects meanwhile.
pub async fn accept(
    listener: &UnixListener,
    (spare, held): (&mut Spare, bool),
    waiting: &Waiting,
    retry: &mut Retry,
) -> Option<(UnixStream, bool)> {
    let next = match held {
        true => listener.accept().await,
        false => tokio::time::timeout(REFILL_EVERY, listener.accept())
            .await
            .ok()?,
    };
    let mut e = match next {
        Ok((stream, _)) => {
            accepting_again(retry.succeeded());
            return Some((stream, false));
        }
        Err(e) => e,
    };
    let failed = after_accept_failed(out_of_files(&e), spare.held(), || someone_waits(listener));
    match failed {
        AcceptFailed::LendSpare => {
            spare.lend();
            let now = tokio::select! {
                biased;
                accepted = listener.accept() => Some(accepted),
                () = std::future::ready(()) => None,
            };
            match now {
                Some(Ok((stream, _))) => {
                    accepting_again(retry.succeeded());
                    return Some((stream, true));
                }
                Some(Err(again)) => {
                    spare.restore();
                    e = again;
                }
                None => {
                    spare.restore(); // nobody there after all
                    return None;
                }
            }
        }
        AcceptFailed::WaitForFiles => {
            tokio::time::sleep(REFILL_EVERY).await;
            return None;
        }
        AcceptFailed::MakeRoom => {
            // The fd of the one that gives way becomes the spare.
            let deadline = tokio::time::Instant::now() + ROOM_WAIT;
            if waiting.one_gives_way(deadline).await {
                spare.restore();
                return None;
            }
        }
        AcceptFailed::BackOff => {}
    }
    // Backed off from instead of spinning, ever longer while it lasts (10 ms up to 1 s), and
    // told ever more rarely: a connection herd can never take (its limit below the files it
    // holds) would else have it warn ten times a second for ever.
    let failed = retry.failed();
    if failed.log {
        let failures = failed.failures;
        tracing::warn!(
            event = LogEvent::ControlAcceptFailed.as_str(),
            failures,
            "control socket: accept failed ({failures} failures in a row), retrying: {e}"
        );
    }
    tokio::time::sleep(failed.pause).await;
    None
}

/// Says that the control socket accepts again after `failures` failures, if there were any.
fn accepting_again(failures: u32) {
    if failures > 0 {
        tracing::info!(
            event = LogEvent::ControlAcceptFailed.as_str(),
            failures,
            "control socket: accepting again after {failures} failures"
        );
    }
}

/// Whether the client on `stream` closed its end, or shut down its writing side, having sent
/// nothing: a peek finds the end of the stream and no byte before it.
pub fn left_at_once(stream: &UnixStream) -> bool {
    let mut byte = [std::mem::MaybeUninit::uninit()];
    matches!(socket2::SockRef::from(stream).peek(&mut byte), Ok(0))
}

/// Whether a connection waits in `listener`'s backlog, seen without taking an fd.
fn someone_waits(listener: &UnixListener) -> bool {
    herd_sys::fd::wait_readable(&[listener.as_fd()], Some(Duration::ZERO)).unwrap_or(true)
}

/// Whether `accept` failed for want of a file (herd's limit or the system's): closing one of
/// herd's connections makes room.
fn out_of_files(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_want_of_files_makes_a_connection_give_way() {
        for errno in [libc::EMFILE, libc::ENFILE] {
            assert!(out_of_files(&std::io::Error::from_raw_os_error(errno)));
        }
        for errno in [libc::ECONNABORTED, libc::ENOMEM, libc::EINTR] {
            assert!(!out_of_files(&std::io::Error::from_raw_os_error(errno)));
        }
    }
}
