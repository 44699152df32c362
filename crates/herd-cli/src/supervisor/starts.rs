//! Worker starts waiting for their turn: the pool may ask for thousands at once (`herd scale
//! 4096`, `-w 16` under Wine, where each start is slow), and starting them all in one turn
//! would leave control requests, signals and worker exits unanswered meanwhile. The loop
//! starts at most [`PER_TURN`] per turn, no more once [`TURN_BUDGET`] has passed (a start
//! under Wine can take a large part of a second), and turns again at once while some wait.

use super::status::ForkingSlot;
use std::collections::VecDeque;
use std::time::Duration;

/// How many workers one turn of the loop starts at most.
pub const PER_TURN: usize = 4;

/// How long a turn starts workers: no next start once this has passed.
pub const TURN_BUDGET: Duration = Duration::from_millis(20);

/// A start the pool asked for: `slot`'s worker of `generation`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Start {
    pub slot: usize,
    pub generation: u64,
    /// Part of herd's first generation (a worker that cannot be executed then stops herd).
    pub first_generation: bool,
}

/// The starts not done yet, in the order the pool asked for them, those held back until
/// their generation's fork server is ready or free (`--fork-server`), and those awaiting their
/// fork server's reply.
#[derive(Debug, Default)]
pub struct Starts {
    waiting: VecDeque<Start>,
    held: Vec<Start>,
    /// Each with whether herd meant to lower its worker.
    asked: Vec<(Start, bool)>,
    /// Notifications from processes that were no workers while a start awaited its fork
    /// server's reply, each with its sender and the sender's ancestors as they were then
    /// (nearest first): the worker forked, or a process it runs (`systemd-notify`), may say
    /// `READY=1` before herd has read the worker's pid.
    early: Vec<(Vec<u32>, Vec<u8>)>,
}

/// How many early notifications [`Starts`] keeps at most.
const EARLY_KEPT: usize = 64;

impl Starts {
    /// Queues `start` behind the others.
    pub fn push(&mut self, start: Start) {
        self.waiting.push_back(start);
    }

    /// The next start of a turn that has started `started` already and taken `taken`;
    /// `None` when none waits or the turn has done enough.
    pub fn next(&mut self, started: usize, taken: Duration) -> Option<Start> {
        if started >= PER_TURN || (started > 0 && taken >= TURN_BUDGET) {
            return None;
        }
        self.waiting.pop_front()
    }

    /// The next starts of a turn that has started `started` already and taken `taken`, to
    /// be made together: at most `batch` (one at least), none once the turn has done enough.
    pub fn next_batch(&mut self, started: usize, taken: Duration, batch: usize) -> Vec<Start> {
        let mut starts = Vec::new();
        while starts.len() < batch.max(1) {
            match self.next(started + starts.len(), taken) {
                Some(start) => starts.push(start),
                None => break,
            }
        }
        starts
    }

    /// Whether some start waits (the loop must turn again at once); held ones do not count.
    pub fn is_waiting(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// Holds `start` back until [`release_held`](Self::release_held).
    pub fn hold(&mut self, start: Start) {
        self.held.push(start);
    }

    /// Puts the starts held back before the waiting ones, in the order they were held.
    pub fn release_held(&mut self) {
        for start in self.held.drain(..).rev() {
            self.waiting.push_front(start);
        }
    }

    /// The slots whose start waits for its fork server (held back, or awaiting the reply), by
    /// slot.
    pub fn forking(&self) -> Vec<ForkingSlot> {
        let held = self.held.iter().chain(self.asked.iter().map(|(s, _)| s));
        let mut forking: Vec<ForkingSlot> = held
            .map(|s| ForkingSlot {
                slot: s.slot,
                generation: s.generation,
            })
            .collect();
        forking.sort_by_key(|f| (f.slot, f.generation));
        forking.dedup();
        forking
    }

    /// The oldest generation a start not done yet is of (waiting, held back or awaiting its
    /// fork server's reply).
    pub fn oldest_generation(&self) -> Option<u64> {
        let held = self.held.iter().chain(self.asked.iter().map(|(s, _)| s));
        self.waiting.iter().chain(held).map(|s| s.generation).min()
    }

    /// Takes the starts of `generation` held back (its fork server failed).
    pub fn take_held(&mut self, generation: u64) -> Vec<Start> {
        let (taken, kept) = self
            .held
            .drain(..)
            .partition(|s| s.generation == generation);
        self.held = kept;
        taken
    }

    /// `start` (`to_lower`: herd means to lower its worker) asked its fork server and awaits
    /// the reply.
    pub fn ask(&mut self, start: Start, to_lower: bool) {
        self.asked.push((start, to_lower));
    }

    /// The start of `slot`'s worker of `generation` that awaited its fork server's reply, and
    /// whether herd meant to lower it; `None` if none awaits it (herd stopped since).
    pub fn answered(&mut self, slot: usize, generation: u64) -> Option<(Start, bool)> {
        let found = self
            .asked
            .iter()
            .position(|(s, _)| s.slot == slot && s.generation == generation)?;
        Some(self.asked.remove(found))
    }

    /// Takes the starts of generations after `generation` that wait or are held back, and
    /// those of `slots` that awaited a reply (an upgrade to them was aborted).
    pub fn take_after(&mut self, generation: u64, slots: &[usize]) -> Vec<Start> {
        let newer = |s: &Start| s.generation > generation;
        let mut taken: Vec<Start> = self.waiting.iter().copied().filter(newer).collect();
        self.waiting.retain(|s| !newer(s));
        taken.extend(self.held.iter().copied().filter(newer));
        self.held.retain(|s| !newer(s));
        let cancelled = |s: &Start| newer(s) && slots.contains(&s.slot);
        taken.extend(self.asked.iter().map(|&(s, _)| s).filter(cancelled));
        self.asked.retain(|(s, _)| !cancelled(s));
        taken
    }

    /// Keeps `message` from the first of `lineage` (the sender, then its ancestors), no
    /// worker, until the starts awaiting their fork server's reply have ended; `false` if too
    /// many are kept already.
    pub fn keep_early(&mut self, lineage: Vec<u32>, message: &[u8]) -> bool {
        if !self.may_keep_early() || lineage.is_empty() {
            return false;
        }
        self.early.push((lineage, message.to_vec()));
        true
    }

    /// Whether another notification may be kept (fewer than [`EARLY_KEPT`] are).
    pub fn may_keep_early(&self) -> bool {
        self.early.len() < EARLY_KEPT
    }

    /// Whether notifications are kept (see [`keep_early`](Self::keep_early)).
    pub fn has_early(&self) -> bool {
        !self.early.is_empty()
    }

    /// Takes the notifications kept whose sender, or an ancestor it had then, is a worker
    /// now (`is_worker`), and every one once no fork server's reply is `awaiting` any more, in
    /// the order they came: (sender, its worker, message). The others stay kept as they were
    /// (their ancestors read when they came: `systemd-notify` may be gone, its pid another
    /// process's).
    pub fn take_early(
        &mut self,
        awaiting: bool,
        is_worker: impl Fn(u32) -> bool,
    ) -> Vec<(u32, Option<u32>, Vec<u8>)> {
        let mut heard = Vec::new();
        for (lineage, message) in std::mem::take(&mut self.early) {
            let worker = lineage.iter().copied().find(|&pid| is_worker(pid));
            match (lineage.first(), worker) {
                (Some(_), None) if awaiting => self.early.push((lineage, message)),
                (Some(&sender), worker) => heard.push((sender, worker, message)),
                (None, _) => {}
            }
        }
        heard
    }

    /// Forgets every start (herd stops: the pool no longer wants them; a worker forked for
    /// one awaiting its reply is stopped as it comes).
    pub fn clear(&mut self) {
        self.waiting.clear();
        self.held.clear();
        self.asked.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(slot: usize) -> Start {
        Start {
            slot,
            generation: 1,
            first_generation: false,
        }
    }

    /// The slots one turn starts when each start takes `each`.
    fn turn(starts: &mut Starts, each: Duration) -> Vec<usize> {
        let mut slots = Vec::new();
        while let Some(s) = starts.next(slots.len(), each * slots.len() as u32) {
            slots.push(s.slot);
        }
        slots
    }

    #[test]
    fn a_turn_starts_at_most_a_few_in_the_order_asked() {
        let mut starts = Starts::default();
        (0..10).for_each(|slot| starts.push(start(slot)));
        let fast = Duration::from_millis(1);
        assert_eq!(turn(&mut starts, fast), [0, 1, 2, 3]);
        assert_eq!(turn(&mut starts, fast), [4, 5, 6, 7]);
        assert!(starts.is_waiting());
        assert_eq!(turn(&mut starts, fast), [8, 9]);
        assert!(!starts.is_waiting());
        assert!(turn(&mut starts, fast).is_empty());
    }

    /// An older generation's fork server is closed only once no start of it is to come:
    /// waiting, held back or awaiting a reply.
    #[test]
    fn the_oldest_generation_counts_every_start_not_done() {
        let mut starts = Starts::default();
        assert_eq!(starts.oldest_generation(), None);
        let of = |generation| Start {
            generation,
            ..start(0)
        };
        starts.push(of(3));
        assert_eq!(starts.oldest_generation(), Some(3));
        starts.hold(of(2));
        assert_eq!(starts.oldest_generation(), Some(2));
        starts.ask(of(1), false);
        assert_eq!(starts.oldest_generation(), Some(1));
        starts.answered(0, 1);
        assert_eq!(starts.oldest_generation(), Some(2));
    }

    #[test]
    fn a_slow_start_ends_its_turn_but_a_turn_starts_one_at_least() {
        let mut starts = Starts::default();
        (0..3).for_each(|slot| starts.push(start(slot)));
        let slow = TURN_BUDGET * 10;
        assert_eq!(turn(&mut starts, slow), [0]);
        assert_eq!(turn(&mut starts, slow), [1]);
        assert_eq!(turn(&mut starts, TURN_BUDGET / 4), [2]);
    }

    /// Batches take what a turn would take one by one, in order, at most `batch` at a time.
    #[test]
    fn a_turn_takes_its_starts_in_batches() {
        let mut starts = Starts::default();
        (0..10).for_each(|slot| starts.push(start(slot)));
        let slots = |batch: Vec<Start>| batch.iter().map(|s| s.slot).collect::<Vec<_>>();
        let fast = Duration::from_millis(1);
        assert_eq!(slots(starts.next_batch(0, fast, 3)), [0, 1, 2]);
        assert_eq!(slots(starts.next_batch(3, fast, 3)), [3]);
        assert!(starts.next_batch(4, fast, 3).is_empty());
        assert_eq!(slots(starts.next_batch(0, fast, 0)), [4]);
        assert_eq!(slots(starts.next_batch(0, fast, 8)), [5, 6, 7, 8]);
        // A turn past its budget starts nothing more, unless it has started nothing yet.
        assert!(starts.next_batch(1, TURN_BUDGET, 8).is_empty());
        assert_eq!(slots(starts.next_batch(0, TURN_BUDGET, 8)), [9]);
        assert!(starts.next_batch(0, fast, 8).is_empty());
    }

    #[test]
    fn cleared_starts_are_gone() {
        let mut starts = Starts::default();
        starts.push(start(0));
        starts.clear();
        assert!(!starts.is_waiting());
        assert_eq!(starts.next(0, Duration::ZERO), None);
    }

    #[test]
    fn held_starts_wait_apart_then_go_first_or_are_taken_by_generation() {
        let mut starts = Starts::default();
        let of = |slot, generation| Start {
            slot,
            generation,
            first_generation: false,
        };
        starts.hold(of(0, 2));
        starts.hold(of(1, 3));
        starts.hold(of(2, 2));
        assert!(!starts.is_waiting());
        assert_eq!(starts.take_held(3), vec![of(1, 3)]);
        starts.push(of(5, 1));
        starts.release_held();
        let all = starts.next_batch(0, Duration::ZERO, 4);
        assert_eq!(all, vec![of(0, 2), of(2, 2), of(5, 1)]);
        starts.hold(of(0, 2));
        starts.clear();
        starts.release_held();
        assert!(!starts.is_waiting());
    }

    #[test]
    fn early_notifications_are_kept_in_order_up_to_a_bound() {
        let mut starts = Starts::default();
        assert!(!starts.has_early());
        for pid in 0..EARLY_KEPT as u32 {
            assert!(starts.keep_early(vec![pid, 1000], b"READY=1"));
        }
        assert!(!starts.keep_early(vec![999], b"READY=1"));
        let early = starts.take_early(false, |_| false);
        assert_eq!(early.len(), EARLY_KEPT);
        assert_eq!(early[0], (0, None, b"READY=1".to_vec()));
        assert!(!starts.has_early());
    }

    /// A notification whose worker is not known yet stays kept, with the ancestors read when
    /// it came, while other replies are awaited (one read again then would find its sender
    /// gone, or another process under its pid); once none is, it is heard for what it is.
    #[test]
    fn early_notifications_stay_kept_with_their_ancestors_until_their_worker_is_known() {
        let mut starts = Starts::default();
        assert!(starts.keep_early(vec![50, 40, 1000], b"READY=1"));
        assert!(starts.keep_early(vec![60, 41, 1000], b"STATUS=x"));
        let heard = starts.take_early(true, |pid| pid == 40);
        assert_eq!(heard, [(50, Some(40), b"READY=1".to_vec())]);
        let heard = starts.take_early(true, |pid| pid == 40);
        assert!(heard.is_empty(), "still awaited: kept");
        let heard = starts.take_early(true, |pid| pid == 41);
        assert_eq!(heard, [(60, Some(41), b"STATUS=x".to_vec())]);
        assert!(starts.keep_early(vec![70, 1000], b"READY=1"));
        let heard = starts.take_early(false, |_| false);
        assert_eq!(
            heard,
            [(70, None, b"READY=1".to_vec())],
            "no reply awaited: no one's"
        );
        assert!(!starts.has_early());
    }

    #[test]
    fn asked_starts_are_found_by_slot_and_generation_once() {
        let mut starts = Starts::default();
        let of = |slot, generation| Start {
            slot,
            generation,
            first_generation: false,
        };
        starts.ask(of(0, 1), true);
        starts.ask(of(1, 2), false);
        assert!(!starts.is_waiting());
        assert_eq!(starts.answered(0, 2), None);
        assert_eq!(starts.answered(0, 1), Some((of(0, 1), true)));
        assert_eq!(starts.answered(0, 1), None);
        starts.clear();
        assert_eq!(starts.answered(1, 2), None);
    }

    #[test]
    fn an_aborted_upgrade_takes_its_generations_starts_and_those_of_the_cancelled_slots() {
        let mut starts = Starts::default();
        let of = |slot, generation| Start {
            slot,
            generation,
            first_generation: false,
        };
        starts.push(of(0, 1));
        starts.push(of(1, 2));
        starts.hold(of(2, 2));
        starts.hold(of(3, 1));
        starts.ask(of(4, 2), false);
        starts.ask(of(5, 2), false);
        starts.ask(of(6, 1), false);
        // Slot 5's fork server was not closed (no reply is awaited from it any more).
        let taken = starts.take_after(1, &[4, 6]);
        assert_eq!(taken, vec![of(1, 2), of(2, 2), of(4, 2)]);
        assert_eq!(starts.answered(5, 2), Some((of(5, 2), false)));
        assert_eq!(starts.answered(6, 1), Some((of(6, 1), false)));
        starts.release_held();
        assert_eq!(
            starts.next_batch(0, Duration::ZERO, 4),
            vec![of(3, 1), of(0, 1)]
        );
    }
}
