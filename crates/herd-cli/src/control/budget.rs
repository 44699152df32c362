//! How many bytes of replies herd holds for clients that have not read them yet, across all
//! clients. A reply the socket's buffer cannot take at once (the kernel's holds about 200 KiB,
//! a `status` of 4096 workers is about 1.35 MB) stays in herd until its client reads it, and
//! a crowd of clients that ask and never read would hold one each until [`IDLE_TIMEOUT`].
//!
//! So the replies held are bounded by [`REPLY_BUDGET`] bytes. A reply that does not fit makes
//! room from the replies whose clients have read nothing for [`STALLED`], the stalest first
//! (their connections are closed); if that is not enough, a `status` is answered `busy`
//! instead, and any other reply, whose command has taken effect, is sent all the same. A reply
//! alone may be larger than the budget. Well-behaved clients read at once: they never fill it.
//!
//! When herd has not written for a while, that may be herd's doing (its writer was not
//! scheduled, in a flood), not the client's. So before replies are judged stalled, their
//! sockets are asked how many bytes their clients have not taken yet ([`Budget::stalled`],
//! [`Budget::looked`]): a client that took some since herd last wrote, or all of them, is
//! reading, and its reply stays. Pure: the control servers keep one, report to it what they
//! write and what the sockets say, and carry out its decisions.
//!
//! [`IDLE_TIMEOUT`]: super::lines::IDLE_TIMEOUT

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The most bytes of replies held for clients at once.
pub const REPLY_BUDGET: usize = 16 << 20;

/// How long a client may leave its reply unread before the reply gives way to others.
pub const STALLED: Duration = Duration::from_millis(20);

/// A held reply, as the budget knows it.
pub type HolderId = u64;

/// The replies held, and their bytes not yet taken by their clients.
#[derive(Debug)]
pub struct Budget {
    limit: usize,
    stalled: Duration,
    held: usize,
    holders: HashMap<HolderId, Holder>,
    next: HolderId,
}

#[derive(Debug)]
struct Holder {
    /// Bytes not yet written.
    bytes: usize,
    /// When it was admitted or its client last took bytes.
    progress: Instant,
    /// The bytes written that its client had not taken, as its socket said after herd's last
    /// write (or at the last look), if it said.
    unread: Option<usize>,
}

/// Whether a reply may be held.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// Write it as `id`, once these replies' connections are closed.
    Admitted {
        /// The reply's id, for [`Budget::progressed`] and [`Budget::release`].
        id: HolderId,
        /// The stalled replies that gave way, released already.
        evicted: Vec<HolderId>,
    },
    /// Answer `busy` instead: this many bytes are held for other clients.
    Refused {
        /// The bytes held.
        held: usize,
    },
}

impl Default for Budget {
    fn default() -> Budget {
        Budget::new(REPLY_BUDGET, STALLED)
    }
}

impl Budget {
    /// A budget of `limit` bytes, in which a reply unread for `stalled` gives way.
    pub fn new(limit: usize, stalled: Duration) -> Budget {
        Budget {
            limit,
            stalled,
            held: 0,
            holders: HashMap::new(),
            next: 0,
        }
    }

    /// Asks to hold a reply of `bytes` at `now`; `refusable` for a reply that may be refused
    /// (`status`'s), else it is admitted even over the budget.
    pub fn admit(&mut self, bytes: usize, refusable: bool, now: Instant) -> Admission {
        let mut evicted = Vec::new();
        if !self.fits(self.held, bytes) {
            let mut stale: Vec<(Instant, HolderId, usize)> = self
                .holders
                .iter()
                .filter(|(_, h)| now.saturating_duration_since(h.progress) >= self.stalled)
                .map(|(&id, h)| (h.progress, id, h.bytes))
                .collect();
            stale.sort_unstable();
            let mut held = self.held;
            for (_, id, stale_bytes) in stale {
                if self.fits(held, bytes) {
                    break;
                }
                held -= stale_bytes;
                evicted.push(id);
            }
            if refusable && !self.fits(held, bytes) {
                return Admission::Refused { held: self.held };
            }
            for &id in &evicted {
                self.release(id);
            }
        }
        let id = self.next;
        self.next += 1;
        self.holders.insert(
            id,
            Holder {
                bytes,
                progress: now,
                unread: None,
            },
        );
        self.held += bytes;
        Admission::Admitted { id, evicted }
    }

    /// Whether `bytes` more fit beside `held`: always when nothing is held.
    fn fits(&self, held: usize, bytes: usize) -> bool {
        held == 0 || held.saturating_add(bytes) <= self.limit
    }

    /// Reply `id`'s client took bytes at `now`: `left` are still to be written, and its socket
    /// says that `unread` bytes written are not taken yet (if it says).
    pub fn progressed(&mut self, id: HolderId, left: usize, unread: Option<usize>, now: Instant) {
        if let Some(h) = self.holders.get_mut(&id) {
            self.held -= h.bytes.saturating_sub(left).min(self.held);
            h.bytes = left.min(h.bytes);
            h.progress = now;
            h.unread = unread;
        }
    }

    /// The replies whose clients seem to have stopped reading at `now` (nothing written for
    /// [`STALLED`]) if a reply of `bytes` does not fit: whose sockets to ask before
    /// [`admit`](Budget::admit), and tell [`looked`](Budget::looked). None if it fits.
    pub fn stalled(&self, bytes: usize, now: Instant) -> Vec<HolderId> {
        if self.fits(self.held, bytes) {
            return Vec::new();
        }
        let stalled = |h: &Holder| now.saturating_duration_since(h.progress) >= self.stalled;
        let ids = self.holders.iter().filter(|(_, h)| stalled(h));
        ids.map(|(&id, _)| id).collect()
    }

    /// Reply `id`'s socket says at `now` that `unread` bytes written are not taken yet: if its
    /// client took any since herd last wrote (fewer than then, or none at all), it is reading
    /// and has not stalled; herd's writer is behind.
    pub fn looked(&mut self, id: HolderId, unread: usize, now: Instant) {
        if let Some(h) = self.holders.get_mut(&id) {
            if unread == 0 || h.unread.is_some_and(|before| unread < before) {
                h.progress = now;
            }
            h.unread = Some(unread);
        }
    }

    /// Reply `id` is written, or its connection is gone.
    pub fn release(&mut self, id: HolderId) {
        if let Some(h) = self.holders.remove(&id) {
            self.held -= h.bytes.min(self.held);
        }
    }

    /// The bytes held.
    pub fn held(&self) -> usize {
        self.held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn admitted(a: Admission) -> (HolderId, Vec<HolderId>) {
        match a {
            Admission::Admitted { id, evicted } => (id, evicted),
            refused => panic!("{refused:?}"),
        }
    }

    #[test]
    fn replies_fit_until_the_budget_is_full_then_status_is_refused() {
        let t0 = Instant::now();
        let mut b = Budget::new(100, 20 * MS);
        admitted(b.admit(60, true, t0));
        admitted(b.admit(40, true, t0));
        assert_eq!(b.held(), 100);
        assert_eq!(b.admit(1, true, t0), Admission::Refused { held: 100 });
        assert_eq!(b.held(), 100, "a refusal holds nothing");
    }

    #[test]
    fn a_reply_whose_command_took_effect_is_never_refused() {
        let t0 = Instant::now();
        let mut b = Budget::new(100, 20 * MS);
        admitted(b.admit(100, true, t0));
        let (_, evicted) = admitted(b.admit(30, false, t0));
        assert!(evicted.is_empty(), "nothing had stalled");
        assert_eq!(b.held(), 130);
    }

    #[test]
    fn a_reply_alone_may_exceed_the_budget() {
        let mut b = Budget::new(100, 20 * MS);
        admitted(b.admit(1000, true, Instant::now()));
        assert_eq!(b.held(), 1000);
    }

    #[test]
    fn stalled_replies_give_way_stalest_first_and_only_as_many_as_needed() {
        let t0 = Instant::now();
        let mut b = Budget::new(100, 20 * MS);
        let (a, _) = admitted(b.admit(40, true, t0));
        let (c, _) = admitted(b.admit(40, true, t0 + MS));
        let (d, _) = admitted(b.admit(20, true, t0 + 2 * MS));
        // `a`'s client reads a little, later: `c` is now the stalest.
        b.progressed(a, 30, None, t0 + 5 * MS);
        assert_eq!(b.held(), 90);
        let (_, evicted) = admitted(b.admit(40, true, t0 + 30 * MS));
        assert_eq!(evicted, [c]);
        assert_eq!(b.held(), 90);
        let _ = d;
    }

    #[test]
    fn a_client_that_reads_is_not_evicted_nor_are_replies_admitted_just_now() {
        let t0 = Instant::now();
        let mut b = Budget::new(100, 20 * MS);
        let (reader, _) = admitted(b.admit(50, true, t0));
        admitted(b.admit(50, true, t0 + 15 * MS));
        b.progressed(reader, 49, None, t0 + 19 * MS);
        // At 30 ms the reader took bytes 11 ms ago, the other was admitted 15 ms ago.
        assert_eq!(
            b.admit(10, true, t0 + 30 * MS),
            Admission::Refused { held: 99 }
        );
        // Refused, nothing was evicted: both are still held.
        b.release(reader);
        assert_eq!(b.held(), 50);
    }

    #[test]
    fn when_the_stalled_are_not_enough_nobody_is_evicted_for_a_refusal() {
        let t0 = Instant::now();
        let mut b = Budget::new(100, 20 * MS);
        admitted(b.admit(10, true, t0));
        admitted(b.admit(90, true, t0 + 25 * MS));
        assert_eq!(
            b.admit(50, true, t0 + 30 * MS),
            Admission::Refused { held: 100 }
        );
        assert_eq!(b.held(), 100);
    }

    #[test]
    fn a_client_that_read_since_herd_last_wrote_is_not_stalled_whatever_the_clock_says() {
        let t0 = Instant::now();
        let mut b = Budget::new(100, 20 * MS);
        let (reading, _) = admitted(b.admit(40, true, t0));
        let (stopped, _) = admitted(b.admit(40, true, t0));
        let (drained, _) = admitted(b.admit(20, true, t0));
        // Each socket took 10 bytes at once and holds them unread.
        for (id, left) in [(reading, 30), (stopped, 30), (drained, 10)] {
            b.progressed(id, left, Some(10), t0 + MS);
        }
        assert_eq!(b.held(), 70);
        let now = t0 + 50 * MS;
        assert!(b.stalled(30, now).is_empty(), "30 more fit: nothing to ask");
        // herd wrote nothing for 49 ms: by the clock all three have stalled.
        let mut asked = b.stalled(40, now);
        asked.sort_unstable();
        assert_eq!(asked, [reading, stopped, drained]);
        // The sockets say: one client took 6 of its 10 bytes, one took all, one none.
        b.looked(reading, 4, now);
        b.looked(drained, 0, now);
        b.looked(stopped, 10, now);
        let (_, evicted) = admitted(b.admit(40, true, now));
        assert_eq!(
            evicted,
            [stopped],
            "only the client that stopped reading gives way"
        );
        // Later the reading one has taken nothing more since: it has stalled now. The drained
        // one still holds nothing unread.
        let later = now + 20 * MS;
        b.looked(reading, 4, later);
        b.looked(drained, 0, later);
        let (_, evicted) = admitted(b.admit(30, true, later));
        assert_eq!(evicted, [reading]);
    }

    #[test]
    fn without_a_look_the_clock_decides_and_a_reply_that_fits_asks_nothing() {
        let t0 = Instant::now();
        let mut b = Budget::new(100, 20 * MS);
        let (a, _) = admitted(b.admit(60, true, t0));
        assert!(b.stalled(40, t0 + 30 * MS).is_empty(), "it fits");
        assert_eq!(b.stalled(50, t0 + 30 * MS), [a]);
        let (_, evicted) = admitted(b.admit(50, true, t0 + 30 * MS));
        assert_eq!(evicted, [a]);
    }

    #[test]
    fn released_and_written_bytes_leave_the_budget() {
        let t0 = Instant::now();
        let mut b = Budget::new(100, 20 * MS);
        let (a, _) = admitted(b.admit(70, true, t0));
        b.progressed(a, 20, None, t0);
        assert_eq!(b.held(), 20);
        b.release(a);
        b.release(a);
        assert_eq!(b.held(), 0);
        b.progressed(a, 5, None, t0);
        assert_eq!(
            b.held(),
            0,
            "a released reply's progress counts for nothing"
        );
    }
}
