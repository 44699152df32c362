//! Holding a slot back from recycling: after a recycle that went wrong there (its successor
//! never became available, or the worker asked to be replaced, or was over the memory limit,
//! from its start as its predecessors were), for `hold`, doubling up to `max_hold`, until a
//! worker there has run normally, without a break, for twice `max_hold`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::{Recycler, SlotTrack, ASKED_IN_A_ROW};
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

    /// Whether worker `pid`, due for `cause`, is still held back: for how long, of which
    /// kind and for how long in all (what [`hold`](Self::hold) puts in words); `None` if not.
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
        if track.counted != Some(pid) {
            match quick {
                Some(true) => track.quick = track.quick.saturating_add(1),
                Some(false) => track.quick = 0,
                None => {}
            }
            track.counted = Some(pid);
        }
        track.not_before = None;
        self.told.remove(&pid);
    }

    /// Forgets the recycles that went wrong in each slot that has served normally for
    /// [`calm`](Self::calm) without a break: a worker of it ready all along, none asking to
    /// be replaced, started over the memory limit or over it now, none restarted after a
    /// crash since. A recycle that goes well (one past its lifetime, its successor starting
    /// beside it) is no break: a slot under a `--max-lifetime` shorter than the calm calms
    /// down too. A worker ready for hours and over the limit is not calm the first sample it
    /// dips under it: its run counts from the last time it was seen otherwise. A slot still
    /// waiting after a failed recycle keeps its count until the wait is over, and each recycle
    /// that fails breaks the calm again ([`went_wrong`](Self::went_wrong)): a worker due whose
    /// recycles keep failing is no proof. Nor is a slot whose recycle is in flight calm yet: a
    /// successor that takes longer than the calm to fail would otherwise find its slot's count
    /// forgotten (the recycles that went wrong are counted before, in the same turn).
    pub(super) fn calm_down(&mut self, pool: &Pool, now: Instant) {
        if self.slots.is_empty() {
            return; // no slot has a count to forget: nothing to look at, whatever the pool's size
        }
        let calm = self.calm();
        let mut slots: HashMap<usize, SlotSeen> = HashMap::new();
        for w in pool.workers() {
            if !self.slots.contains_key(&w.slot) {
                continue;
            }
            let seen = SlotSeen {
                serving: w.live() && w.ready_since.is_some(),
                troubled: self.has_asked(w)
                    || self.started_over(w.pid)
                    || self.over_memory(w.pid).is_some(),
                restarted: w.ready_since.filter(|_| w.restart),
                recycling: w.recycling.is_some(),
            };
            match slots.get_mut(&w.slot) {
                Some(s) => s.join(seen),
                None => {
                    slots.insert(w.slot, seen);
                }
            }
        }
        // A slot scaled away (past the pool's size, no worker left there) is forgotten.
        let gone = |slot: usize| slot >= pool.desired() && !slots.contains_key(&slot);
        self.slots.retain(|&slot, _| !gone(slot));
        for (&slot, track) in self.slots.iter_mut() {
            // No worker there (one exited, its successor not started yet) is no calm either.
            let seen = slots.get(&slot);
            let since = match seen.filter(|s| s.serving && !s.troubled) {
                Some(seen) => {
                    let since = *track.normal_since.get_or_insert(now);
                    seen.restarted.map_or(since, |at| at.max(since))
                }
                None => {
                    track.normal_since = Some(now);
                    continue;
                }
            };
            // A recycle in flight may yet fail: the calm is concluded once it is over.
            let waits = track.not_before.map_or(false, |at| at > now)
                || seen.map_or(false, |s| s.recycling);
            if !waits && now.saturating_duration_since(since) >= calm {
                *track = SlotTrack::default();
            }
        }
        self.slots
            .retain(|_, t| t.quick > 0 || t.failed > 0 || t.not_before.is_some());
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

/// What [`calm_down`](Recycler::calm_down) saw of one slot's workers.
struct SlotSeen {
    /// A worker of it is ready and serves on.
    serving: bool,
    /// One is not running normally: it asked to be replaced, or is or started over the limit.
    troubled: bool,
    /// When the latest restarted after a crash became ready: the slot's calm counts from then.
    restarted: Option<Instant>,
    /// One of them is being recycled: its successor has yet to become available.
    recycling: bool,
}

impl SlotSeen {
    fn join(&mut self, other: SlotSeen) {
        self.serving |= other.serving;
        self.troubled |= other.troubled;
        self.restarted = self.restarted.max(other.restarted);
        self.recycling |= other.recycling;
    }
}
