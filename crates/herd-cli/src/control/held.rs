//! Writing replies within the [`budget`](super::budget): one budget for all of a control
//! server's connections; each reply is admitted before it is written, reports what its client
//! took (and what its socket says the client has not read yet, which the budget asks again
//! before it judges the reply stalled), and stops (its connection is closed) once it has given
//! way to others. Before that,
//! at most [`BUILDING`] `status` replies are being made at once (asked of the supervisor, then
//! written out as a line): a burst of requests does not make a status copy each at once.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use super::budget::{Admission, Budget, HolderId, REPLY_BUDGET};
use super::lines::IDLE_TIMEOUT;
use super::protocol::{ErrorCode, Response};
use super::request::Peer;
use crate::logging::LogEvent;

/// How many `status` replies may be in the making at once.
pub const BUILDING: usize = 2;

/// How many bytes written to a client it has not taken yet, as its socket says.
pub trait Unread: Send + Sync {
    /// The bytes, or `None` if the socket cannot say.
    fn unread(&self) -> Option<usize>;
}

/// Where a reply is written: a stream whose socket can be asked what its client has not read.
pub trait Sink: AsyncWrite + Unpin {
    /// What answers for the socket while a reply is held (such as a duplicate of it), or
    /// `None` if it cannot say.
    fn socket(&self) -> Option<Arc<dyn Unread>>;
}

/// The replies a control server holds for its clients. Cheap to clone; clones share.
#[derive(Clone, Debug)]
pub struct Replies {
    shared: Arc<Mutex<Shared>>,
    building: Arc<Semaphore>,
}

impl Default for Replies {
    fn default() -> Replies {
        Replies::new(Budget::default())
    }
}

#[derive(Debug, Default)]
struct Shared {
    budget: Budget,
    /// How to tell each held reply's writer that it gave way.
    evictions: HashMap<HolderId, Arc<Notify>>,
    /// The sockets of the replies held past their first write.
    sockets: HashMap<HolderId, Arc<dyn Unread>>,
}

impl std::fmt::Debug for dyn Unread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a socket")
    }
}

impl Replies {
    /// Replies within `budget`.
    pub fn new(budget: Budget) -> Replies {
        let shared = Shared {
            budget,
            evictions: HashMap::new(),
            sockets: HashMap::new(),
        };
        Replies {
            shared: Arc::new(Mutex::new(shared)),
            building: Arc::new(Semaphore::new(BUILDING)),
        }
    }

    /// Waits for a turn to make a `status` reply; the turn ends when the permit is dropped,
    /// which [`write`](Replies::write) does once the reply is admitted or refused.
    pub async fn turn_to_build(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.building).acquire_owned().await.ok()
    }

    /// The bytes held now.
    pub fn held(&self) -> usize {
        self.lock().budget.held()
    }

    /// Writes `line` to `write` if the budget admits it; a `refusable` reply (`status`'s) that
    /// does not fit is dropped and a `busy` line written instead. Fails once the reply has
    /// given way to others (its client read nothing for a while): the caller closes the
    /// connection. `turn`, the reply's turn to be made, ends once it is admitted or refused.
    pub async fn write(
        &self,
        write: &mut impl Sink,
        line: Vec<u8>,
        refusable: bool,
        turn: Option<OwnedSemaphorePermit>,
    ) -> io::Result<()> {
        let gave_way = Arc::new(Notify::new());
        let admitted = self.admit(line.len(), refusable, &gave_way);
        drop(turn);
        let id = match admitted {
            Ok(id) => id,
            Err(held) => {
                drop(line);
                return write.write_all(&busy(held).to_line()).await;
            }
        };
        let _held = Held { replies: self, id };
        let (mut at, mut socket) = (0, None);
        while at < line.len() {
            tokio::select! {
                biased;
                () = gave_way.notified() => {
                    return Err(io::Error::other(
                        "the reply was left unread while other clients' replies needed the room",
                    ));
                }
                written = write.write(&line[at..]) => {
                    match written? {
                        0 => return Err(io::ErrorKind::WriteZero.into()),
                        n => at += n,
                    }
                    let mut shared = self.lock();
                    if at < line.len() && socket.is_none() {
                        // Held past its first write: its socket may be asked from now on.
                        socket = write.socket();
                        if let Some(socket) = &socket {
                            shared.sockets.insert(id, Arc::clone(socket));
                        }
                    }
                    let unread = socket.as_ref().and_then(|s| s.unread());
                    let left = line.len() - at;
                    shared.budget.progressed(id, left, unread, Instant::now());
                }
            }
        }
        Ok(())
    }

    /// The reply's id if it is admitted (the replies that gave way for it are told so), else
    /// the bytes held for others.
    fn admit(
        &self,
        bytes: usize,
        refusable: bool,
        gave_way: &Arc<Notify>,
    ) -> Result<HolderId, usize> {
        let mut guard = self.lock();
        let shared = &mut *guard;
        let now = Instant::now();
        // Before replies are judged stalled by the clock, their sockets say whether their
        // clients have taken bytes since herd last wrote.
        for id in shared.budget.stalled(bytes, now) {
            if let Some(unread) = shared.sockets.get(&id).and_then(|s| s.unread()) {
                shared.budget.looked(id, unread, now);
            }
        }
        match shared.budget.admit(bytes, refusable, now) {
            Admission::Refused { held } => Err(held),
            Admission::Admitted { id, evicted } => {
                for gone in evicted {
                    if let Some(notify) = shared.evictions.remove(&gone) {
                        notify.notify_one();
                    }
                }
                shared.evictions.insert(id, Arc::clone(gave_way));
                Ok(id)
            }
        }
    }

    /// The shared state; a poisoned lock (a panic elsewhere) still counts, its state is valid.
    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Says that herd closes `peer`'s connection because its reply could not be written: writing
/// it failed with `failed` (such as the reply having given way to others'), or (`None`) the
/// client took none of it for [`IDLE_TIMEOUT`].
pub fn log_closed(peer: Peer, failed: Option<&io::Error>) {
    let reason = match failed {
        Some(e) => e.to_string(),
        None => format!("the reply was left unread for {} s", IDLE_TIMEOUT.as_secs()),
    };
    let who = match (peer.pid, peer.uid) {
        (Some(pid), Some(uid)) => format!("pid {pid}, uid {uid}"),
        (Some(pid), None) => format!("pid {pid}"),
        (None, Some(uid)) => format!("uid {uid}"),
        (None, None) => "a client".to_string(),
    };
    tracing::warn!(
        event = LogEvent::ControlClientClosed.as_str(),
        pid = peer.pid,
        uid = peer.uid,
        reason = reason.as_str(),
        "control: closed the connection of {who}: {reason}; what it sent after is not read"
    );
}

/// Releases a reply's bytes when its writing ends, however it ends.
struct Held<'a> {
    replies: &'a Replies,
    id: HolderId,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let mut shared = self.replies.lock();
        shared.budget.release(self.id);
        shared.evictions.remove(&self.id);
        shared.sockets.remove(&self.id);
    }
}

/// The answer to a `status` that does not fit: `held` bytes wait for other clients.
fn busy(held: usize) -> Response {
    let mib = |bytes: usize| bytes as f64 / f64::from(1 << 20);
    Response::error(
        ErrorCode::Busy,
        format!(
            "too many unread replies: {:.1} MiB of answers wait for other clients to read them \
             (at most {:.0} MiB); try again",
            mib(held),
            mib(REPLY_BUDGET)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    impl Sink for Vec<u8> {
        fn socket(&self) -> Option<Arc<dyn Unread>> {
            None
        }
    }

    impl Sink for tokio::io::DuplexStream {
        fn socket(&self) -> Option<Arc<dyn Unread>> {
            None
        }
    }

    #[tokio::test]
    async fn a_reply_is_written_whole_and_released() {
        let replies = Replies::default();
        let mut out = Vec::new();
        replies
            .write(&mut out, vec![b'x'; 1000], true, None)
            .await
            .unwrap();
        assert_eq!(out.len(), 1000);
        assert_eq!(replies.held(), 0);
    }

    #[tokio::test]
    async fn a_status_that_does_not_fit_is_answered_busy() {
        let replies = Replies::new(Budget::new(100, Duration::from_secs(60)));
        // A client that never reads: its reply stays held.
        let (mut unread, _client) = tokio::io::duplex(10);
        let held = replies.clone();
        let stuck = tokio::spawn(async move {
            let _ = held.write(&mut unread, vec![b'x'; 100], true, None).await;
        });
        tokio::task::yield_now().await;
        assert_eq!(replies.held(), 90, "10 bytes went into the pipe");
        let mut out = Vec::new();
        replies
            .write(&mut out, vec![b'y'; 50], true, None)
            .await
            .unwrap();
        let answer: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(answer["error"]["code"], "busy", "{answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.starts_with("too many unread replies"), "{message}");
        // Not refusable (its command took effect): written all the same.
        let mut out = Vec::new();
        replies
            .write(&mut out, vec![b'z'; 50], false, None)
            .await
            .unwrap();
        assert_eq!(out, vec![b'z'; 50]);
        stuck.abort();
    }

    #[tokio::test]
    async fn a_reply_left_unread_gives_way_and_its_writer_fails() {
        let replies = Replies::new(Budget::new(100, Duration::ZERO));
        let (mut unread, _client) = tokio::io::duplex(10);
        let held = replies.clone();
        let stuck =
            tokio::spawn(async move { held.write(&mut unread, vec![b'x'; 100], true, None).await });
        tokio::task::yield_now().await;
        let mut out = Vec::new();
        replies
            .write(&mut out, vec![b'y'; 50], true, None)
            .await
            .unwrap();
        assert_eq!(
            out,
            vec![b'y'; 50],
            "admitted once the stalled reply gave way"
        );
        let failed = stuck.await.unwrap().unwrap_err();
        assert!(failed.to_string().contains("left unread"), "{failed}");
        assert_eq!(replies.held(), 0);
    }
}
