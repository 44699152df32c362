//! The connections waiting for their client's next request, oldest first: when the control
//! server has [`MAX_CONNECTIONS`](super::server::MAX_CONNECTIONS) open, the one that has
//! waited longest gives way to a newcomer, so a crowd of silent clients (leaked or hostile)
//! cannot keep `herd stop` or `herd upgrade` out until they idle out. A connection whose
//! command is in progress (an upgrade, a stop) never gives way. Cheap to clone; clones share.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

/// The connections waiting for a request now.
#[derive(Clone, Debug, Default)]
pub struct Waiting {
    shared: Arc<Mutex<Queue>>,
}

#[derive(Debug, Default)]
struct Queue {
    /// By when they started waiting (a counter): the first is the oldest.
    waiting: BTreeMap<u64, Arc<Notify>>,
    next: u64,
}

/// One connection's wait for its next request; it stops waiting when dropped.
#[derive(Debug)]
pub struct Wait {
    waiting: Waiting,
    id: u64,
    gave_way: Arc<Notify>,
}

impl Waiting {
    /// A connection starts waiting for a request.
    pub fn start(&self) -> Wait {
        let gave_way = Arc::new(Notify::new());
        let mut queue = self.lock();
        let id = queue.next;
        queue.next += 1;
        queue.waiting.insert(id, Arc::clone(&gave_way));
        Wait {
            waiting: self.clone(),
            id,
            gave_way,
        }
    }

    /// Tells the connection that has waited longest to close; whether there was one.
    pub fn make_room(&self) -> bool {
        let oldest = self.lock().waiting.pop_first();
        match oldest {
            Some((_, gave_way)) => {
                gave_way.notify_one();
                true
            }
            None => false,
        }
    }

    /// How many connections wait.
    #[cfg(test)]
    fn count(&self) -> usize {
        self.lock().waiting.len()
    }

    /// The queue; a poisoned lock (a panic elsewhere) still counts, its state is valid.
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Wait {
    /// What `next` (the wait for the client's request) gives, or `None` once this connection
    /// must close to make room for another. A request that has come wins over being told to
    /// give way at the same moment: a client that has sent its command is never closed
    /// unanswered.
    pub async fn or_give_way<F: std::future::Future>(self, next: F) -> Option<F::Output> {
        tokio::select! {
            biased;
            next = next => Some(next),
            () = self.gave_way.notified() => None,
        }
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
        assert!(waiting.make_room());
        // The second, the oldest still waiting, is told (even before it listens).
        let gave_way = second.or_give_way(std::future::pending::<()>());
        tokio::time::timeout(std::time::Duration::from_secs(5), gave_way)
            .await
            .expect("the oldest waiting connection gives way");
        assert_eq!(waiting.count(), 1, "the third still waits");
        assert!(waiting.make_room());
        drop(third);
        assert!(!waiting.make_room(), "nobody waits: no room to make");
        assert_eq!(waiting.count(), 0);
    }

    /// A connection told to give way just as its request came answers the request (the
    /// newcomer is told `busy`) instead of closing on a client whose command it has.
    #[tokio::test]
    async fn a_request_that_has_come_wins_over_giving_way() {
        let waiting = Waiting::default();
        for _ in 0..64 {
            let wait = waiting.start();
            assert!(waiting.make_room());
            assert_eq!(wait.or_give_way(async { "request" }).await, Some("request"));
        }
    }
}
