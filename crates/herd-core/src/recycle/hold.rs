//! Holding a slot back from recycling: after a recycle that went wrong there (its successor
//! never became available, or the worker asked to be replaced, or was over the memory limit,
//! from its start as its predecessors were), for `hold`, doubling up to `max_hold`, until a
//! worker there has run normally, without a break, for twice `max_hold`.

use std::time::{Duration, Instant};

use super::{Recycler, ASKED_IN_A_ROW};
use crate::duration::format_duration;
use crate::pool::{Pool, RecycleCause};

/// A slot held back from recycling now, for `herd status`: see [`Recycler::holds`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecycleHold {
    /// The slot.
    pub slot: usize,
    /// Its worker that is due and waits, if one is (a slot held after a failed recycle may
    /// have none due).
    pub pid: Option<u32>,
    /// How much longer.
    pub left: Duration,
    /// Why.
    pub kind: HoldKind,
}

/// Why a slot is held back from recycling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldKind {
    /// Its last recycle failed: the successor did not become available.
    Failed,
    /// Its workers ask to be replaced (`HERD_RECYCLE=1`) at every start.
    AskedAtStart,
    /// Its workers are over `--max-memory` from the start.
    OverFromStart,
}

impl HoldKind {
    /// `recycle_failed`, `asked_at_start` or `over_memory_from_start`.
    pub fn as_str(self) -> &'static str {
        match self {
            HoldKind::Failed => "recycle_failed",
            HoldKind::AskedAtStart => "asked_at_start",
            HoldKind::OverFromStart => "over_memory_from_start",
        }
    }

    /// Why, in a few words.
    pub fn describe(self) -> &'static str {
        match self {
            HoldKind::Failed => "its last recycle failed (the successor did not become available)",
            HoldKind::AskedAtStart => {
                "its workers ask to be replaced (HERD_RECYCLE=1) at every start"
            }
            HoldKind::OverFromStart => "its workers are over --max-memory from the start",
        }
    }
}

/// A worker held back: how much longer, why, and how long it must run (`None` when it waits
/// for the slot's `not_before`).
pub(super) struct Held {
    pub(super) left: Duration,
    pub(super) kind: HoldKind,
    pub(super) hold: Option<Duration>,
}

impl Recycler {
    /// The slots held back from recycling at `now`, by slot: those whose due worker waits
    /// (it asked, or is over the memory limit, at every start; or a recycle there failed),
    /// and those waiting after a failed recycle with no worker due yet.
    pub fn holds(&self, pool: &Pool, now: Instant) -> Vec<RecycleHold> {
        let mut holds: Vec<RecycleHold> = Vec::new();
        for (pid, cause, _) in self.candidates(pool, now) {
            let (slot, held) = match (pool.worker(pid), self.held(pool, pid, cause, now)) {
                (Some(w), Some(held)) => (w.slot, held),
                _ => continue,
            };
            if holds.iter().all(|h| h.slot != slot) {
                holds.push(RecycleHold {
                    slot,
                    pid: Some(pid),
                    left: held.left,
                    kind: held.kind,
                });
            }
        }
        // A slot scaled away since (no worker there, past the pool's size) is held no more.
        let exists =
            |slot: usize| slot < pool.desired() || pool.workers().iter().any(|w| w.slot == slot);
        for (&slot, track) in &self.slots {
            let at = match track.not_before.filter(|&at| at > now && exists(slot)) {
                Some(at) => at,
                None => continue,
            };
            if holds.iter().all(|h| h.slot != slot) {
                holds.push(RecycleHold {
                    slot,
                    pid: None,
                    left: at - now,
                    kind: HoldKind::Failed,
                });
            }
        }
        holds.sort_by_key(|h| h.slot);
        holds
    }

    /// How long worker `pid`, due for `cause`, is still held back, and why; `None` if it
    /// is not.
    pub(super) fn hold(
        &self,
        pool: &Pool,
        pid: u32,
        cause: RecycleCause,
        now: Instant,
    ) -> Option<(Duration, String)> {
        let held = self.held(pool, pid, cause, now)?;
        let why = match (held.kind, held.hold) {
            (HoldKind::AskedAtStart, Some(hold)) => format!(
                "it asked to be replaced (HERD_RECYCLE=1) as soon as it started, as its last \
                 {ASKED_IN_A_ROW} predecessors in this slot did: recycling it would loop (does \
                 the worker ask at every start? have it send HERD_RECYCLE=1 only once it \
                 should be replaced); it is recycled once it has run {}",
                format_duration(hold)
            ),
            (HoldKind::OverFromStart, Some(hold)) => format!(
                "it has been over --max-memory since it became ready, as its predecessor \
                 was: recycling it would loop (is the limit below what a fresh worker \
                 needs?); it is recycled once it has run {}",
                format_duration(hold)
            ),
            _ => {
                "a recycle in this slot failed: its successor did not become available".to_string()
            }
        };
        Some((held.left, why))
    }

    /// How long worker `pid`, due for `cause`, is still held back, and why; `None` if it
    /// is not.
    fn held(&self, pool: &Pool, pid: u32, cause: RecycleCause, now: Instant) -> Option<Held> {
        let w = pool.worker(pid)?;
        let slot = self.slots.get(&w.slot).copied().unwrap_or_default();
        if let Some(at) = slot.not_before.filter(|&at| at > now) {
            return Some(Held {
                left: at - now,
                kind: HoldKind::Failed,
                hold: None,
            });
        }
        let (after, kind) = match cause {
            RecycleCause::Memory if self.started_over(pid) => (1, HoldKind::OverFromStart),
            RecycleCause::Asked if self.asked_soon(pid) => (ASKED_IN_A_ROW, HoldKind::AskedAtStart),
            _ => return None,
        };
        if slot.quick < after {
            return None;
        }
        let hold = self.hold_for(slot.quick - after + 1);
        let ran = now.saturating_duration_since(w.started);
        (ran < hold).then(|| Held {
            left: hold - ran,
            kind,
            hold: Some(hold),
        })
    }

    /// Whether worker `pid` was never seen under the memory limit while ready.
    fn started_over(&self, pid: u32) -> bool {
        self.memory
            .get(&pid)
            .map_or(false, |t| !t.under_while_ready)
    }

    /// How long the slot is held after `count` recycles that went wrong.
    fn hold_for(&self, count: u32) -> Duration {
        let factor = 1u32
            .checked_shl(count.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.policy
            .hold
            .saturating_mul(factor)
            .min(self.policy.max_hold)
    }

    /// A recycle of worker `pid` in `slot` started.
    pub(super) fn started(&mut self, slot: usize, pid: u32, cause: RecycleCause) {
        let quick = match cause {
            RecycleCause::Memory => Some(self.started_over(pid)),
            RecycleCause::Asked => Some(self.asked_soon(pid)),
            RecycleCause::Lifetime => None,
        };
        let track = self.slots.entry(slot).or_default();
        match quick {
            Some(true) => track.quick = track.quick.saturating_add(1),
            Some(false) => track.quick = 0,
            None => {}
        }
        track.not_before = None;
        self.told.remove(&pid);
    }

    /// Forgets the recycles that went wrong in each slot whose worker has been ready, running
    /// normally, for [`calm`](Self::calm) without a break (not asked to be replaced, not over
    /// the memory limit, not due, not being recycled; every worker of the slot): a loop long
    /// over is no reason to hold its next worker back. A worker ready for hours and over the
    /// limit is not calm the first sample it dips under it: its run counts from the last time
    /// it was seen otherwise. A slot still waiting after a failed recycle keeps its count until
    /// the wait is over, and a worker due (past its lifetime, whose recycles keep failing) is
    /// no proof: its slot's waits go on doubling.
    pub(super) fn calm_down(&mut self, pool: &Pool, now: Instant) {
        let calm = self.calm();
        // By slot: since when all its workers run normally (the latest became ready), or
        // `None` if one does not.
        let mut slots: Vec<(usize, Option<Instant>)> = Vec::new();
        for w in pool.workers() {
            let normal = w.live()
                && w.recycling.is_none()
                && !self.has_asked(w)
                && !self.started_over(w.pid)
                && self.over_memory(w.pid).is_none()
                && self.past_lifetime(w, now).is_none();
            let since = w.ready_since.filter(|_| normal);
            match slots.iter_mut().find(|(slot, _)| *slot == w.slot) {
                Some((_, seen)) => *seen = seen.and_then(|a| since.map(|b| a.max(b))),
                None => slots.push((w.slot, since)),
            }
        }
        for (slot, since) in slots {
            let track = match self.slots.get_mut(&slot) {
                Some(track) => track,
                None => continue,
            };
            let since = match since {
                Some(since) => since.max(track.normal_since.unwrap_or(since)),
                None => {
                    track.normal_since = Some(now);
                    continue;
                }
            };
            let waits = track.not_before.map_or(false, |at| at > now);
            if !waits && now.saturating_duration_since(since) >= calm {
                self.slots.remove(&slot);
            }
        }
    }

    /// How long a worker runs normally before its slot's recycles that went wrong are
    /// forgotten: twice the longest hold (an hour by herd's), longer than a held worker
    /// lives.
    fn calm(&self) -> Duration {
        self.policy.max_hold.saturating_mul(2)
    }

    /// A recycle in `slot` went wrong at `now`: the slot is held back, longer each time.
    /// Counted apart from `quick`, which each retry's [`started`](Self::started) may reset:
    /// a worker whose successors keep dying waits longer each time, up to `max_hold`, until
    /// its slot is calm.
    pub(super) fn went_wrong(&mut self, slot: usize, now: Instant) -> Duration {
        let failed = self
            .slots
            .get(&slot)
            .map_or(0, |s| s.failed)
            .saturating_add(1);
        let hold = self.hold_for(failed);
        let track = self.slots.entry(slot).or_default();
        track.failed = failed;
        track.not_before = now.checked_add(hold);
        track.normal_since = Some(now);
        hold
    }
}
