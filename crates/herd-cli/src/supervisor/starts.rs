//! Worker starts waiting for their turn: the pool may ask for thousands at once (`herd scale
//! 4096`, `-w 16` under Wine, where each start is slow), and starting them all in one turn
//! would leave control requests, signals and worker exits unanswered meanwhile. The loop
//! starts at most [`PER_TURN`] per turn, no more once [`TURN_BUDGET`] has passed (a start
//! under Wine can take a large part of a second), and turns again at once while some wait.

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

/// The starts not done yet, in the order the pool asked for them, and those held back until
/// their generation's fork server is ready (`--fork-server`).
#[derive(Debug, Default)]
pub struct Starts {
    waiting: VecDeque<Start>,
    held: Vec<Start>,
}

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

    /// Takes the starts of `generation` held back (its fork server failed).
    pub fn take_held(&mut self, generation: u64) -> Vec<Start> {
        let (taken, kept) = self
            .held
            .drain(..)
            .partition(|s| s.generation == generation);
        self.held = kept;
        taken
    }

    /// Forgets every waiting and held start (herd stops: the pool no longer wants them).
    pub fn clear(&mut self) {
        self.waiting.clear();
        self.held.clear();
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
}
