//! Turning a newcomer away on the control socket: its answer (a refusal, `busy`) is written at
//! once on its fd and the connection closed, so that a crowd turned away holds none of herd's
//! files.

use std::io::ErrorKind;

use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;

use super::lines::IDLE_TIMEOUT;
use super::protocol::Response;
use super::spare::Spare;

/// Tells the client on `stream` `response` (if any) and closes it, at once: a line this short
/// fits in a new connection's buffer, so a crowd that is turned away holds none of herd's files
/// (and none keeps out a client that may use herd at herd's open-file limit). If `stream`
/// holds the `spare`'s fd, it is taken back. Should the line not fit, the rest is written in a
/// task of its own, which waits up to [`IDLE_TIMEOUT`] for the client to take it.
pub fn turn_away(stream: UnixStream, response: Option<Response>, spare: Option<&mut Spare>) {
    let line = response.map(|r| r.to_line()).unwrap_or_default();
    let written = send_now(&stream, &line);
    match spare {
        Some(spare) => {
            drop(stream);
            spare.restore();
        }
        None if written < line.len() => {
            let mut stream = stream;
            tokio::spawn(async move {
                refuse(&mut stream, &line[written..]).await;
                close_in_background(stream);
            });
        }
        None => close_in_background(stream),
    }
}

/// Closes `stream`, a connection herd turns away (maybe another user's, refused), on another
/// thread: fds its client sent along, still queued, are closed with it, and closing one can
/// wait for as long as that client chose (see `herd_sys::fd::close_in_background`). Where the
/// kernel refuses fds on the control socket (Linux 6.16+), none are queued.
fn close_in_background(stream: UnixStream) {
    // Should tokio fail to let it go, it is closed here.
    if let Ok(stream) = stream.into_std() {
        herd_sys::fd::close_in_background(stream.into());
    }
}

/// Sends what of `line` the socket takes now: how much is done with (all of it if the client is
/// gone). Sent on the fd itself: tokio's `try_write` writes nothing until its reactor has seen
/// the connection writable, which for one just accepted it may not have yet.
fn send_now(stream: &UnixStream, line: &[u8]) -> usize {
    if line.is_empty() {
        return 0;
    }
    match socket2::SockRef::from(stream).send(line) {
        Ok(sent) => sent,
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => 0,
        Err(_) => line.len(),
    }
}

/// Writes `rest`, the end of an answer to a client that is turned away, within [`IDLE_TIMEOUT`].
async fn refuse(stream: &mut UnixStream, rest: &[u8]) {
    let _ = tokio::time::timeout(IDLE_TIMEOUT, stream.write_all(rest)).await;
}
