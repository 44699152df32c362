//! The connections waiting for their client's next request, oldest first: when the control
//! server has [`MAX_CONNECTIONS`](super::server::MAX_CONNECTIONS) open, the one that has
//! waited longest gives way to a newcomer, so a crowd of silent clients (leaked or hostile)
//! cannot keep `herd stop` or `herd upgrade` out until they idle out. A connection whose
//! command is in progress (an upgrade, a stop) never gives way, nor does one whose request
//! comes as it is told to: the newcomer learns which it did ([`room`](super::room) decides
//! what next). Cheap to clone; clones share.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{oneshot, Notify, OwnedSemaphorePermit, Semaphore};

use super::room::{self, next, Next};

/// How long a newcomer waits for room at most: for the connections told to give way to say
/// whether they do, and for the place of the one that did.
pub const ROOM_WAIT: Duration = Duration::from_secs(1);

/// The connections waiting for a request now.
#[derive(Clone, Debug, Default)]
pub struct Waiting {
    shared: Arc<Mutex<Queue>>,
}

#[derive(Debug, Default)]
struct Queue {
    /// By when they started waiting (a counter): the first is the oldest.
    waiting: BTreeMap<u64, Arc<GiveWaySignal>>,
    next: u64,
}

/// How a waiting connection is told to give way, and says whether it did.
#[derive(Debug, Default)]
struct GiveWaySignal {
    give_way: Notify,
    /// Set when it is told: sent on when it gives way, dropped when it keeps its place.
    gave_way: Mutex<Option<oneshot::Sender<()>>>,
}

/// One connection's wait for its next request; it stops waiting when dropped.
#[derive(Debug)]
pub struct Wait {
    waiting: Waiting,
    id: u64,
    told: Arc<GiveWaySignal>,
}

/// Whether the connection told to give way did: `Ok` once it gave way (it closes), `Err` if
/// it kept its place (its request came at that moment).
pub type GaveWay = oneshot::Receiver<()>;

impl Waiting {
    /// A connection starts waiting for a request.
    pub fn start(&self) -> Wait {
        let told = Arc::new(GiveWaySignal::default());
        let mut queue = self.lock();
        let id = queue.next;
        queue.next += 1;
        queue.waiting.insert(id, Arc::clone(&told));
        Wait {
            waiting: self.clone(),
            id,
            told,
        }
    }

    /// Tells the connection that has waited longest to close; how it will say whether it did,
    /// or `None` if no connection waits.
    pub fn make_room(&self) -> Option<GaveWay> {
        let (_, oldest) = self.lock().waiting.pop_first()?;
        let (gave_way, said) = oneshot::channel();
        *lock(&oldest.gave_way) = Some(gave_way);
        oldest.give_way.notify_one();
        Some(said)
    }

    /// Tells the connection that has waited longest for a request to give way, and the next
    /// if it kept its place ([`room`](super::room)): whether one gave way (it has closed: herd
    /// runs on one thread, and a connection closes as it says so) by `deadline`.
    pub async fn one_gives_way(&self, deadline: tokio::time::Instant) -> bool {
        let mut told = 0;
        loop {
            // A connection waits from when it is let in, before its task runs (the accept
            // loop starts its wait): in a burst of newcomers, those let in a moment ago are
            // here to give way.
            let outcome = match self.make_room() {
                None => room::Outcome::NobodyWaits,
                Some(said) => {
                    told += 1;
                    match tokio::time::timeout_at(deadline, said).await {
                        Err(_) => return false,
                        Ok(Ok(())) => room::Outcome::GaveWay,
                        Ok(Err(_)) => room::Outcome::KeptItsPlace,
                    }
                }
            };
            match next(outcome, told) {
                Next::TakeItsPlace => return true,
                Next::TellAnother => {}
                Next::Busy => return false,
            }
        }
    }

    /// A place among `slots` for a newcomer when every one is taken: the place of the
    /// connection that has waited longest for a request, which is told to give way; if it kept
    /// its place (its request came at that moment), the next one's, and so on
    /// ([`room`](super::room)); none if every connection has a command in progress, or after
    /// [`ROOM_WAIT`]. The newcomer queues for a place before anyone gives way, so the place
    /// freed is its own (tokio's semaphore hands released permits to waiters first), not one
    /// that another newcomer takes meanwhile.
    pub async fn place(&self, slots: &Arc<Semaphore>) -> Option<OwnedSemaphorePermit> {
        let deadline = tokio::time::Instant::now() + ROOM_WAIT;
        let place = Arc::clone(slots).acquire_owned();
        tokio::pin!(place);
        tokio::select! {
            biased;
            got = &mut place => return got.ok(),
            () = std::future::ready(()) => {}
        }
        if !self.one_gives_way(deadline).await {
            return None;
        }
        tokio::time::timeout_at(deadline, place).await.ok()?.ok()
    }

    /// How many connections wait.
    #[cfg(test)]
    fn count(&self) -> usize {
        self.lock().waiting.len()
    }

    /// The queue.
    fn lock(&self) -> MutexGuard<'_, Queue> {
        lock(&self.shared)
    }
}

/// A poisoned lock (a panic elsewhere) still counts: the state behind it is valid.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Wait {
    /// What `next` (the wait for the client's request) gives, or `None` once this connection
    /// must close to make room for another (the newcomer is told it gave way). A request that
    /// has come wins over being told to give way at the same moment: a client that has sent
    /// its command is never closed unanswered (the newcomer is told this one kept its place).
    ///
    /// Told to give way, it looks once more after the runtime has polled its I/O driver: tokio
    /// learns that a connection's bytes have come only then, so a connection let in a moment
    /// ago (its wait begins in the accept loop), or one whose request came as it was told,
    /// would otherwise close with its request unread.
    pub async fn or_give_way<F: std::future::Future>(self, next: F) -> Option<F::Output> {
        tokio::pin!(next);
        tokio::select! {
            biased;
            next = &mut next => return Some(next),
            () = self.told.give_way.notified() => {}
        }
        // A yielding task is woken after the driver has been polled (tokio 1.23 on).
        tokio::task::yield_now().await;
        tokio::select! {
            biased;
            next = &mut next => return Some(next),
            () = std::future::ready(()) => {}
        }
        if let Some(gave_way) = lock(&self.told.gave_way).take() {
            let _ = gave_way.send(());
        }
        None
    }
}

impl Drop for Wait {
    fn drop(&mut self) {
        self.waiting.lock().waiting.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_longest_waiting_gives_way_and_busy_ones_never_do() {
        let waiting = Waiting::default();
        let first = waiting.start();
        let second = waiting.start();
        // The first one's request came: it is busy, no longer waiting.
        drop(first);
        assert_eq!(waiting.count(), 1);
        let third = waiting.start();
        let said = waiting.make_room().expect("the second waits");
        // The second, the oldest still waiting, is told (even before it listens).
        let gave_way = second.or_give_way(std::future::pending::<()>());
        tokio::time::timeout(std::time::Duration::from_secs(5), gave_way)
            .await
            .expect("the oldest waiting connection gives way");
        assert_eq!(said.await, Ok(()), "and says so");
        assert_eq!(waiting.count(), 1, "the third still waits");
        assert!(waiting.make_room().is_some());
        drop(third);
        assert!(
            waiting.make_room().is_none(),
            "nobody waits: no room to make"
        );
        assert_eq!(waiting.count(), 0);
    }

    /// A connection told to give way just as its request came answers the request, and the
    /// newcomer learns that it kept its place (and tells the next one instead).
    #[tokio::test]
    async fn a_request_that_has_come_wins_over_giving_way() {
        let waiting = Waiting::default();
        for _ in 0..64 {
            let wait = waiting.start();
            let said = waiting.make_room().expect("one waits");
            assert_eq!(wait.or_give_way(async { "request" }).await, Some("request"));
            assert!(said.await.is_err(), "it kept its place");
        }
    }

    /// A request sent before its connection first waits (a client that connects and writes at
    /// once, let in a moment ago) keeps the connection's place when it is told to give way
    /// before tokio has seen the bytes: it was closed with its request unread.
    #[cfg(unix)]
    #[tokio::test]
    async fn a_request_that_came_before_tokio_saw_it_keeps_its_place() {
        use std::io::Write;
        use tokio::io::AsyncBufReadExt;
        let (mut client, server) = std::os::unix::net::UnixStream::pair().unwrap();
        client
            .write_all(b"{\"version\":1,\"command\":\"status\"}\n")
            .unwrap();
        server.set_nonblocking(true).unwrap();
        let server = tokio::net::UnixStream::from_std(server).unwrap();
        let waiting = Waiting::default();
        let wait = waiting.start();
        let said = waiting.make_room().expect("it waits");
        let mut reader = tokio::io::BufReader::new(server);
        let mut line = String::new();
        let got = wait.or_give_way(reader.read_line(&mut line)).await;
        assert!(matches!(got, Some(Ok(n)) if n > 0), "{got:?}");
        assert!(said.await.is_err(), "it kept its place, and said so");
    }

    /// A connection let in during a burst of newcomers, whose task has not run yet, waits
    /// already (its wait began when it was let in): the next newcomer that asks for room gets
    /// its place (it was answered `busy` when a connection began to wait only in its task).
    #[tokio::test]
    async fn a_connection_let_in_a_moment_ago_gives_way_once_it_waits() {
        let waiting = Waiting::default();
        let first = waiting.start();
        let task =
            tokio::spawn(async move { first.or_give_way(std::future::pending::<()>()).await });
        assert_eq!(waiting.count(), 1, "it waits before its task has run");
        let deadline = tokio::time::Instant::now() + ROOM_WAIT;
        assert!(waiting.one_gives_way(deadline).await, "it gave way");
        assert_eq!(task.await.unwrap(), None);
        assert_eq!(waiting.count(), 0);
        assert!(
            !waiting.one_gives_way(deadline).await,
            "nobody waits: no room, at once"
        );
    }
}
