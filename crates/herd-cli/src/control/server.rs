//! The control server: accepts connections on the control socket, checks each peer's
//! credentials, enforces the protocol's limits, and forwards valid commands to the supervisor.
//! Every connection runs in a task of its own, so no client can stall the supervisor, and the
//! replies held for clients that do not read them are bounded ([`budget`](super::budget)).

use std::io::ErrorKind;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::os::unix::io::{AsFd, BorrowedFd, OwnedFd};

use herd_sys::fdpass::MAX_FDS_PER_MESSAGE;
use tokio::io::{AsyncWriteExt, BufReader, Interest};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use crate::logging::LogEvent;
use crate::supervisor::notify::RateLimit;

use super::accept::{accept, left_at_once};
use super::held::{log_closed, Replies, Sink, Unread};
use super::hung_up::carry_out;
pub use super::lines::IDLE_TIMEOUT;
use super::lines::{next_turn, Turn};
use super::logs;
use super::protocol::{Command, ErrorCode, FdBatch, Response, VERSION};
pub use super::reply::Reply;
use super::request::forward;
pub use super::request::{ControlRequest, Peer};
use super::retry::Retry;
use super::room::{place, Place};
use super::spare::{self, Spare};
use super::turn_away::turn_away;
use super::waiting::{Wait, Waiting, ROOM_WAIT};

/// How many connections may be open at once, at most: fewer when herd's open-file limit is
/// low, an eighth of it ([`fdlimit::connection_cap`](crate::fdlimit::connection_cap)), so that
/// idle clients never take the fds supervision needs (a pipe per worker start). Idle ones cost
/// a small task each and are closed after [`IDLE_TIMEOUT`]; with the cap reached, the one that
/// has waited longest for a request is closed for a newcomer ([`waiting`](super::waiting)), so
/// a crowd of idle clients cannot lock out a working one.
pub const MAX_CONNECTIONS: usize = 1000;

/// How many refused connections are logged per [`REFUSALS_WINDOW`]; the rest are counted and
/// reported in one line when the next window begins.
pub const REFUSALS_LOGGED: u32 = 5;
/// See [`REFUSALS_LOGGED`].
pub const REFUSALS_WINDOW: Duration = Duration::from_secs(10);

/// Who may use the control socket: herd's own uid, root, and the listed uids and gids.
#[derive(Clone, Debug)]
pub struct AccessPolicy {
    /// herd's effective uid.
    pub own_uid: u32,
    /// `--control-allow-uid`.
    pub uids: Vec<u32>,
    /// `--control-allow-gid` (the peer's primary gid, as `SO_PEERCRED` reports it).
    pub gids: Vec<u32>,
}

impl AccessPolicy {
    /// Whether a peer with these credentials may send commands.
    pub fn allows(&self, uid: u32, gid: u32) -> bool {
        uid == 0 || uid == self.own_uid || self.uids.contains(&uid) || self.gids.contains(&gid)
    }
}

/// Serves `listener` until the supervisor drops its end of `requests`.
pub async fn serve(
    listener: UnixListener,
    policy: AccessPolicy,
    requests: mpsc::Sender<ControlRequest>,
) {
    // No request carries fds: one a client sent along would be closed here (see
    // `herd_sys::fd::close_in_background`), so the kernel refuses them where it can. Set when
    // the socket was bound too (`path::bind_private`); again here for one an older herd
    // handed over.
    herd_sys::fdpass::refuse_fds(std::os::unix::io::AsFd::as_fd(&listener));
    let cap = crate::fdlimit::connection_cap(crate::fdlimit::handle_limit(), MAX_CONNECTIONS);
    let slots = Arc::new(Semaphore::new(cap));
    // Another user can connect as often as it likes when the socket is open to others
    // (`--control-allow-uid/gid`): its refusals are logged at a bounded rate.
    let refusals = Arc::new(Mutex::new(RateLimit::new(REFUSALS_LOGGED, REFUSALS_WINDOW)));
    let replies = Replies::default();
    let waiting = Waiting::default();
    let mut spare = Spare::new();
    // A second file in reserve, given up for a newcomer served on the spare's fd, so that a
    // spare is left to answer the next one `busy` while that one stays (`herd logs -f`).
    let mut reserve = Spare::new();
    let mut retry = Retry::default();
    loop {
        let held = spare::refill(&mut spare, &mut reserve);
        let accepted = accept(&listener, (&mut spare, held), &waiting, &mut retry).await;
        let Some((stream, lent)) = accepted else {
            continue;
        };
        if requests.is_closed() {
            return;
        }
        // One that connected and left at once, having sent nothing, is let go: at the limit,
        // a silent connection would else give way for nobody.
        if left_at_once(&stream) {
            turn_away(stream, None, lent.then_some(&mut spare));
            continue;
        }
        let checked = check(&stream, &policy, &refusals);
        let (peer, permit) = match place(checked, || Arc::clone(&slots).try_acquire_owned().ok()) {
            Place::Denied(refusal) => {
                turn_away(stream, refusal, lent.then_some(&mut spare));
                continue;
            }
            Place::Free(peer, permit) => (peer, permit),
            Place::MakeRoom(peer) => match waiting.place(&slots).await {
                Some(permit) => (peer, permit),
                None => {
                    turn_away(stream, Some(busy(cap)), lent.then_some(&mut spare));
                    continue;
                }
            },
        };
        // Let in on the spare's fd: a silent connection gives way, and its fd is the spare.
        // With none to give way (herd's files are held by other things than connections that
        // wait), it is served on the spare's fd all the same, the reserve's fd becoming the
        // spare: one client can still reach herd at its open-file limit. With the reserve
        // given up already (such a client is still there), the newcomer is answered busy on
        // the spare's fd, which is taken back: else it would wait unaccepted until a file is
        // free, herd warning ten times a second meanwhile.
        if lent && !spare.restore() {
            let deadline = tokio::time::Instant::now() + ROOM_WAIT;
            let room = waiting.one_gives_way(deadline).await && spare.restore();
            if !room && !spare.take(&mut reserve) {
                turn_away(stream, Some(out_of_files_busy()), Some(&mut spare));
                continue;
            }
        }
        // Waiting for its first request from now on, before its task runs: a newcomer right
        // behind it (a burst of them) finds it there to give way.
        let first = waiting.start();
        let requests = requests.clone();
        let (replies, waiting) = (replies.clone(), waiting.clone());
        tokio::spawn(async move {
            converse(stream, peer, first, &requests, &replies, &waiting).await;
            drop(permit);
        });
    }
}

/// The answer to a newcomer for which no connection gives way.
fn busy(cap: usize) -> Response {
    Response::error(
        ErrorCode::Busy,
        format!("too many control connections (at most {cap})"),
    )
}

/// The answer to a newcomer at herd's open-file limit for which no connection gives way while
/// another is served on the reserve.
fn out_of_files_busy() -> Response {
    Response::error(
        ErrorCode::Busy,
        "herd is at its open-file limit: no file to serve another control connection on",
    )
}

/// The refusal limiter; a poisoned lock (a panic elsewhere) still limits, its state is valid.
fn lock(refusals: &Mutex<RateLimit>) -> std::sync::MutexGuard<'_, RateLimit> {
    refusals.lock().unwrap_or_else(|e| e.into_inner())
}

fn report_refusals(suppressed: u32) {
    if suppressed > 0 {
        tracing::warn!(
            event = LogEvent::ControlDeniedUnlogged.as_str(),
            suppressed,
            "control socket: {suppressed} more refused connections were not logged"
        );
    }
}

/// Who is on the other end of `stream`, if the access policy lets them in; else what to tell
/// a client that is not let in (the log says so, rate-limited), or nothing if its credentials
/// cannot be read.
fn check(
    stream: &UnixStream,
    policy: &AccessPolicy,
    refusals: &Arc<Mutex<RateLimit>>,
) -> Result<Peer, Option<Response>> {
    let cred = match stream.peer_cred() {
        Ok(cred) => cred,
        Err(e) => {
            tracing::warn!(
                event = LogEvent::SystemError.as_str(),
                "control socket: cannot read the peer's credentials: {e}"
            );
            return Err(None);
        }
    };
    if !policy.allows(cred.uid(), cred.gid()) {
        let (log, suppressed, first_held_back) = {
            let mut limit = lock(refusals);
            let (log, suppressed) = limit.allow(Instant::now());
            (log, suppressed, !log && limit.held_back() == 1)
        };
        report_refusals(suppressed);
        if first_held_back {
            // Say how many were held back once this window is over, even if nobody knocks again.
            let refusals = Arc::clone(refusals);
            tokio::spawn(async move {
                let window = lock(&refusals).window();
                tokio::time::sleep(window).await;
                let suppressed = lock(&refusals).end_window(Instant::now());
                report_refusals(suppressed);
            });
        }
        if log {
            tracing::warn!(
                event = LogEvent::ControlDenied.as_str(),
                uid = cred.uid(),
                gid = cred.gid(),
                pid = cred.pid(),
                "control socket: permission denied"
            );
        }
        let message = denied(cred.uid(), policy.own_uid);
        return Err(Some(Response::error(ErrorCode::PermissionDenied, message)));
    }
    Ok(Peer {
        pid: cred.pid().and_then(|p| u32::try_from(p).ok()),
        uid: Some(cred.uid()),
    })
}

/// Reads `peer`'s requests one line at a time and answers each (within the budget of
/// `replies`), until it closes, idles too long, sends a request too large, leaves a reply
/// unread while others need the room, or has waited longest for a request (in `waiting`)
/// when a newcomer needs its place; `first` is its wait for its first request, begun when it
/// was let in.
async fn converse(
    stream: UnixStream,
    peer: Peer,
    first: Wait,
    requests: &mpsc::Sender<ControlRequest>,
    replies: &Replies,
    waiting: &Waiting,
) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::with_capacity(1024, read);
    let mut first = Some(first);
    loop {
        let (written, written_rx) = oneshot::channel();
        let (mut refusable, mut turn) = (false, None);
        let wait = first.take().unwrap_or_else(|| waiting.start());
        let next = (wait.or_give_way(next_turn(&mut reader)).await).unwrap_or(Turn::Close(None));
        let reply = match next {
            Turn::Close(last) => {
                if let Some(last) = last {
                    let _ =
                        tokio::time::timeout(IDLE_TIMEOUT, write.write_all(&last.to_line())).await;
                }
                return;
            }
            Turn::Answer(response) => Reply::from(response),
            Turn::Request(request) => {
                if !carry_out(&request.command, hung_up(&write)) {
                    // Nobody reads this answer; what the client sent after it still counts.
                    continue;
                }
                match logs::serve(&request.command, &mut reader, &mut write, hung_up).await {
                    Some(true) => continue,
                    Some(false) => return,
                    None => {}
                }
                // Only a status may be refused for want of room: other commands took effect.
                refusable = matches!(request.command, Command::Status);
                if refusable {
                    turn = replies.turn_to_build().await;
                    // Its turn may have been long in coming: is its client still there?
                    if hung_up(&write) {
                        continue;
                    }
                }
                let connection = match request.command {
                    Command::Reexec | Command::Sockets { attach: true, .. } => {
                        write.as_ref().as_fd().try_clone_to_owned().ok()
                    }
                    _ => None,
                };
                forward(request.command, peer, written_rx, connection, requests).await
            }
        };
        let sent = send_reply(&mut write, reply, (refusable, turn), replies);
        let sent = tokio::time::timeout(IDLE_TIMEOUT, sent).await;
        let _ = written.send(());
        match sent {
            Ok(Ok(())) => {}
            // The client hung up before its answer: the requests it sent after are read all
            // the same, and those that change something carried out.
            Ok(Err(_)) if hung_up(&write) => {}
            // Given way for others' replies, or left unread for IDLE_TIMEOUT.
            Ok(Err(e)) => return log_closed(peer, Some(&e)),
            Err(_) => return log_closed(peer, None),
        }
    }
}

/// A duplicate of a client's socket, which says how much the client has not read
/// (`SIOCOUTQ`) while its reply is held.
struct Dup(OwnedFd);

impl Unread for Dup {
    fn unread(&self) -> Option<usize> {
        herd_sys::connection::unread_by_peer(self.0.as_fd())
            .ok()
            .flatten()
    }
}

impl Sink for OwnedWriteHalf {
    fn socket(&self) -> Option<Arc<dyn Unread>> {
        let dup = self.as_ref().as_fd().try_clone_to_owned().ok()?;
        Some(Arc::new(Dup(dup)))
    }
}

/// Whether the client on `write` has hung up (closed its end): see [`hung_up`](super::hung_up).
fn hung_up(write: &OwnedWriteHalf) -> bool {
    peer_hung_up(write.as_ref().as_fd())
}

/// Whether the client on `connection` has hung up (a failed look says it has not).
fn peer_hung_up(connection: BorrowedFd<'_>) -> bool {
    herd_sys::connection::peer_hung_up(connection).unwrap_or(false)
}

/// Writes the response line, within the budget of `replies` (the response itself is dropped
/// first: only its line is held); its fds ride on its first byte, and any beyond the first
/// batch on the lines `{"version":1,"batch":N}` that follow.
async fn send_reply(
    write: &mut OwnedWriteHalf,
    reply: Reply,
    (refusable, turn): (bool, Option<OwnedSemaphorePermit>),
    replies: &Replies,
) -> std::io::Result<()> {
    let Reply { response, fds } = reply;
    let mut line = response.to_line();
    drop(response);
    let batches: Vec<&[OwnedFd]> = fds.chunks(MAX_FDS_PER_MESSAGE).collect();
    if batches.is_empty() {
        return replies.write(write, line, refusable, turn).await;
    }
    for (i, batch) in batches.iter().enumerate() {
        if i > 0 {
            line = FdBatch {
                version: VERSION,
                batch: i,
            }
            .to_line();
        }
        let fds: Vec<BorrowedFd<'_>> = batch.iter().map(AsFd::as_fd).collect();
        let stream: &UnixStream = write.as_ref();
        let sent = loop {
            stream.writable().await?;
            match stream.try_io(Interest::WRITABLE, || {
                herd_sys::fdpass::send_with_fds(stream.as_fd(), &line, &fds)
            }) {
                Ok(n) => break n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        };
        write.write_all(&line[sent..]).await?;
    }
    Ok(())
}

/// What a client of `uid` is told when a herd of `own_uid` refuses it: who is allowed (root
/// once, when herd is root).
fn denied(uid: u32, own_uid: u32) -> String {
    let own = match own_uid {
        0 => String::new(),
        own => format!("its own uid {own}, "),
    };
    format!(
        "permission denied: uid {uid} is not allowed; herd allows {own}root and \
         --control-allow-uid/--control-allow-gid"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A herd running as root said "herd allows its own uid 0, root, and ...": root twice.
    #[test]
    fn a_refused_client_is_told_who_is_allowed_root_once() {
        assert_eq!(
            denied(4001, 0),
            "permission denied: uid 4001 is not allowed; herd allows root and \
             --control-allow-uid/--control-allow-gid"
        );
        assert_eq!(
            denied(4001, 1000),
            "permission denied: uid 4001 is not allowed; herd allows its own uid 1000, root and \
             --control-allow-uid/--control-allow-gid"
        );
    }

    #[test]
    fn access_policy() {
        let policy = AccessPolicy {
            own_uid: 1000,
            uids: vec![1001],
            gids: vec![50],
        };
        assert!(policy.allows(1000, 1000));
        assert!(policy.allows(0, 0));
        assert!(policy.allows(1001, 1));
        assert!(policy.allows(2000, 50));
        assert!(!policy.allows(2000, 2000));
    }
}
