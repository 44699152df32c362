//! When to recycle a worker (`--max-memory`, `--max-lifetime`): a pure policy over the
//! [`Pool`]. The caller samples each worker's memory on a timer and passes the readings and
//! `now`; [`Recycler::due`] asks the pool to recycle the workers past a limit, which guards
//! capacity (see [`Pool::recycle`]), and says what it decided, one [`RecycleEvent`] per
//! decision, for the log.
//!
//! A worker is recycled for memory once it is above the limit for `samples` samples in a row.
//! One never seen under the limit since it became ready, when its predecessor in the slot was
//! not either, is held back: recycling it would loop, since the limit is likely below what a
//! fresh worker needs. It is recycled only after it has run `hold`, then twice that for the
//! next, and so on up to `max_hold`. A recycle whose successor failed holds its slot back the
//! same way, whatever its cause: `hold`, doubling with each failure until the slot is calm. So is a worker that asks to be replaced ([`Recycler::ask`]) within its first
//! moments (before it is ready, or within a second of becoming ready) when the slot's
//! last two recycles were of workers that did too: one that asks at every start would
//! otherwise be replaced as soon as each successor is available, forever. A slot whose
//! worker then runs normally (not asking, not over the limit, not due) without a break for
//! twice `max_hold` forgets those recycles: its next worker that asks soon, or starts over the
//! limit, is not held back for a loop long over. Lifetimes end at
//! `max_lifetime` plus each worker's own jitter, drawn from its pid and a seed the caller picks
//! at random, so that workers started together are not all recycled together.
//!
//! What sampling cannot find again (the requests, the slots' holds, the workers seen under
//! the memory limit while ready, the jitter's seed) is
//! saved as plain data ([`SavedRecycler`]) for a re-exec, so that a worker that asked is still
//! replaced and a held slot still held in the next image.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::duration::{format_duration, round_ms};
use crate::pool::{Pool, RecycleCause, RecycleRefused, Worker};

mod hold;
mod state;

pub use hold::{HoldKind, RecycleHold};
pub use state::{SavedAsk, SavedRecycler, SavedSlotHold, SavedUnder};

/// A worker that asks to be replaced before it is ready, or less than this after it became
/// ready (`READY=1`), asked within its first moments: it is replaced the moment the pool allows,
/// so a worker that asks at every start loops at the pace of `--min-ready`. A second is
/// longer than it takes to send `READY=1` and then `HERD_RECYCLE=1`; one that reaches its
/// request count that fast every time is recycled nearly as often.
const ASKED_SOON: Duration = Duration::from_secs(1);

/// How many recycles in a row of workers that asked within their first moments a slot
/// allows before the next such worker is held back: a worker asking soon after a busy start
/// (`--max-requests` reached under load) is not a loop yet; asking every time is.
const ASKED_IN_A_ROW: u32 = 2;

/// Which memory figure `--max-memory` limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryKind {
    /// Resident memory (the working set on Windows).
    Rss,
    /// Proportional set size: shared pages split between the processes sharing them.
    Pss,
}

impl MemoryKind {
    /// `rss` or `pss`.
    pub fn as_str(self) -> &'static str {
        match self {
            MemoryKind::Rss => "rss",
            MemoryKind::Pss => "pss",
        }
    }
}

/// The recycling settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecyclePolicy {
    /// The memory limit, and which figure it applies to.
    pub max_memory: Option<(MemoryKind, u64)>,
    /// How long a worker runs before it is recycled, before its jitter.
    pub max_lifetime: Option<Duration>,
    /// The most each worker's lifetime is lengthened by, at random.
    pub jitter: Duration,
    /// How many samples in a row a worker must be over the memory limit.
    pub samples: u32,
    /// How long a slot is first held back after a recycle that went wrong; it doubles with
    /// each further one.
    pub hold: Duration,
    /// The longest a slot is held back.
    pub max_hold: Duration,
}

impl RecyclePolicy {
    /// Whether anything is ever recycled.
    pub fn is_on(&self) -> bool {
        self.max_memory.is_some() || self.max_lifetime.is_some()
    }
}

/// One decision, for the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecycleEvent {
    /// Worker `pid` is being recycled: the pool's `actions` start its successor.
    Started {
        /// Its slot.
        slot: usize,
        /// Its pid.
        pid: u32,
        /// Why.
        cause: RecycleCause,
        /// The figures behind it, in words.
        why: String,
        /// What the pool asks for.
        actions: Vec<crate::Action>,
    },
    /// Worker `pid` is due for recycling, but the pool refused for now (said once per worker).
    Deferred {
        /// Its slot.
        slot: usize,
        /// Its pid.
        pid: u32,
        /// Why it is due.
        cause: RecycleCause,
        /// Why not now.
        refused: RecycleRefused,
    },
    /// Worker `pid` is over the limit but held back so as not to recycle in a loop (said once
    /// per worker).
    HeldBack {
        /// Its slot.
        slot: usize,
        /// Its pid.
        pid: u32,
        /// How much longer.
        wait: Duration,
        /// Why, in words.
        why: String,
    },
    /// A recycle ended without a successor (it exited or could not start before it was
    /// available); the old worker serves on and its slot is held back for `hold`.
    Aborted {
        /// Its slot.
        slot: usize,
        /// The old worker's pid.
        pid: u32,
        /// Why it was being recycled.
        cause: RecycleCause,
        /// How long its slot is held back.
        hold: Duration,
    },
}

/// One worker's memory, as sampled.
#[derive(Clone, Copy, Debug, Default)]
struct MemoryTrack {
    /// At the last sample; `None` for a track carried across a re-exec, not sampled yet.
    bytes: Option<u64>,
    /// Samples over the limit in a row.
    over: u32,
    /// Whether it was under the limit at a sample while it was ready: one that never was
    /// started over it.
    under_while_ready: bool,
    /// When the worker started (a pid taken again by a later worker is not that worker).
    started: Option<Instant>,
}

/// A slot's recent recycles.
#[derive(Clone, Copy, Debug, Default)]
struct SlotTrack {
    /// Recycles in a row of workers that looped: over the limit from the start, or that
    /// asked within their first moments.
    quick: u32,
    /// Recycles that aborted (their successor never became available) since the slot was
    /// last calm: each holds the slot twice as long as the one before, whatever the cause.
    failed: u32,
    /// No recycle in the slot before this.
    not_before: Option<Instant>,
    /// The last time its worker was seen not running normally (see
    /// [`calm_down`](Recycler::calm_down)): it has run normally at most since then.
    normal_since: Option<Instant>,
    /// The worker whose recycle last counted in `quick`: one tried again after it failed is
    /// still one worker.
    counted: Option<u32>,
}

/// The recycling policy's state.
#[derive(Debug)]
pub struct Recycler {
    policy: RecyclePolicy,
    seed: u64,
    memory: HashMap<u32, MemoryTrack>,
    slots: HashMap<usize, SlotTrack>,
    /// Workers whose deferral or hold was already said.
    told: HashSet<u32>,
    /// Workers that asked to be replaced (`HERD_RECYCLE=1`), by pid with their start (a pid
    /// taken again by a later worker is not that worker) and whether they asked within their
    /// first moments ([`ASKED_SOON`]), until they are gone: a recycle that aborts is tried
    /// again, as one past a limit is.
    asked: HashMap<u32, (Instant, bool)>,
}

impl Recycler {
    /// A recycler with `policy`; `seed` (pick it at random) draws each worker's jitter.
    pub fn new(policy: RecyclePolicy, seed: u64) -> Recycler {
        Recycler {
            policy,
            seed,
            memory: HashMap::new(),
            slots: HashMap::new(),
            told: HashSet::new(),
            asked: HashMap::new(),
        }
    }

    /// Worker `pid` of `pool` asked to be replaced at `now`: it is recycled as soon as the
    /// pool allows, as one past its lifetime would be, unless it asked within its first
    /// moments as its predecessors did (see the module's docs). Ignored if `pid` is no worker.
    pub fn ask(&mut self, pool: &Pool, pid: u32, now: Instant) {
        if let Some(w) = pool.worker(pid) {
            // From READY=1, not from being available: that waits for --min-ready, which can
            // be long (a worker that asks 20 s in, under --min-ready 30s, did not ask soon).
            let soon = w
                .ready_since
                .map_or(true, |at| now.saturating_duration_since(at) < ASKED_SOON);
            let first = self.asked.get(&pid).filter(|a| a.0 == w.started).copied();
            self.asked.insert(pid, first.unwrap_or((w.started, soon)));
        }
    }

    /// Whether worker `w` asked to be replaced (and is the worker that asked).
    fn has_asked(&self, w: &Worker) -> bool {
        self.asked.get(&w.pid).map(|a| a.0) == Some(w.started)
    }

    /// Whether worker `pid` asked to be replaced within its first moments.
    fn asked_soon(&self, pid: u32) -> bool {
        self.asked.get(&pid).map_or(false, |a| a.1)
    }

    /// The policy.
    pub fn policy(&self) -> &RecyclePolicy {
        &self.policy
    }

    /// Recycles by `policy` from now on (a config file read again), keeping what it knows:
    /// the workers that asked to be replaced, the slots held back and their loops, each
    /// worker's jitter. When the memory limit changed, a worker's samples count afresh: over
    /// it (they were over another), and under it while ready (one under a higher limit may be
    /// over the new one from the start, as a loop would be).
    pub fn set_policy(&mut self, policy: RecyclePolicy) {
        if policy.max_memory != self.policy.max_memory {
            for track in self.memory.values_mut() {
                track.over = 0;
                track.under_while_ready = false;
            }
        }
        self.policy = policy;
    }

    /// Records one memory sample: each worker's pid and bytes (the figure the policy
    /// limits). Workers not in `readings` are forgotten.
    pub fn record_memory(&mut self, pool: &Pool, readings: impl IntoIterator<Item = (u32, u64)>) {
        let limit = self.policy.max_memory.map(|(_, limit)| limit);
        let mut memory = HashMap::new();
        for (pid, bytes) in readings {
            let (ready, started) = match pool.worker(pid) {
                Some(w) => (w.state == crate::WorkerState::Ready, w.started),
                None => continue,
            };
            let mut track = self
                .memory
                .get(&pid)
                .copied()
                .filter(|t| t.started == Some(started))
                .unwrap_or_default();
            track.started = Some(started);
            track.bytes = Some(bytes);
            match limit {
                Some(limit) if bytes > limit => track.over = track.over.saturating_add(1),
                _ => {
                    track.over = 0;
                    track.under_while_ready |= ready;
                }
            }
            memory.insert(pid, track);
        }
        self.memory = memory;
        self.told.retain(|pid| pool.worker(*pid).is_some());
    }

    /// A worker's memory at the last sample.
    pub fn memory(&self, pid: u32) -> Option<u64> {
        self.memory.get(&pid).and_then(|t| t.bytes)
    }

    /// How long worker `pid` runs before it is recycled: the lifetime plus its jitter.
    pub fn lifetime(&self, pid: u32) -> Option<Duration> {
        let lifetime = self.policy.max_lifetime?;
        let jitter_ms = u64::try_from(self.policy.jitter.as_millis()).unwrap_or(u64::MAX);
        let drawn = match jitter_ms {
            0 => 0,
            max => mix(self.seed ^ u64::from(pid)) % max.saturating_add(1),
        };
        Some(lifetime.saturating_add(Duration::from_millis(drawn)))
    }

    /// When [`due`](Recycler::due) next has a lifetime to end or a held slot to release,
    /// after `now`.
    pub fn next_deadline(&self, pool: &Pool, now: Instant) -> Option<Instant> {
        // Each scan only where it can find something: thousands of workers, every turn.
        let workers = |needed: bool| if needed { pool.workers() } else { &[] };
        let ends = workers(self.policy.max_lifetime.is_some())
            .iter()
            .filter(|w| w.live() && w.recycling.is_none())
            .filter_map(|w| w.started.checked_add(self.lifetime(w.pid)?));
        let held = self.slots.values().filter_map(|s| s.not_before);
        let asked = workers(!self.asked.is_empty())
            .iter()
            .filter(|w| w.live() && w.recycling.is_none() && self.has_asked(w))
            .filter_map(|w| {
                let (wait, _) = self.hold(pool, w.pid, RecycleCause::Asked, now)?;
                now.checked_add(wait)
            });
        ends.chain(held).chain(asked).filter(|&t| t > now).min()
    }

    /// Asks `pool` to recycle each worker past a limit at `now`, and says what was decided.
    pub fn due(&mut self, pool: &mut Pool, now: Instant) -> Vec<RecycleEvent> {
        let mut events = Vec::new();
        self.asked.retain(|&pid, &mut (started, _)| {
            pool.worker(pid)
                .map_or(false, |w| w.live() && w.started == started)
        });
        // The recycles that aborted first: each breaks its slot's calm.
        for (slot, pid, cause) in pool.take_recycles_aborted() {
            let hold = self.went_wrong(slot, now);
            events.push(RecycleEvent::Aborted {
                slot,
                pid,
                cause,
                hold,
            });
        }
        self.calm_down(pool, now);
        // Once the pool has no room for a recycle (at --max-surge or --max-starting), it has
        // none for the workers due after it either, this turn: each would be refused again,
        // for the price of counting the whole pool (thousands due, every turn). Those not
        // told yet are still asked, for their own refusal to be said.
        let mut full = false;
        for (pid, cause, why) in self.candidates(pool, now) {
            let slot = match pool.worker(pid) {
                Some(w) => w.slot,
                None => continue,
            };
            if let Some((wait, why)) = self.hold(pool, pid, cause, now) {
                if self.told.insert(pid) {
                    events.push(RecycleEvent::HeldBack {
                        slot,
                        pid,
                        wait,
                        why,
                    });
                }
                continue;
            }
            if full && self.told.contains(&pid) {
                continue;
            }
            match pool.recycle(pid, cause, now) {
                Ok(actions) => {
                    self.started(slot, pid, cause);
                    events.push(RecycleEvent::Started {
                        slot,
                        pid,
                        cause,
                        why,
                        actions,
                    });
                }
                Err(RecycleRefused::NotAWorker) => {}
                Err(refused) => {
                    full |= matches!(
                        refused,
                        RecycleRefused::AtMaxSurge { .. } | RecycleRefused::AtMaxStarting { .. }
                    );
                    if self.told.insert(pid) {
                        events.push(RecycleEvent::Deferred {
                            slot,
                            pid,
                            cause,
                            refused,
                        });
                    }
                }
            }
        }
        events
    }

    /// The workers past a limit, memory first, then the oldest first: pid, cause, and why.
    fn candidates(&self, pool: &Pool, now: Instant) -> Vec<(u32, RecycleCause, String)> {
        let mut found: Vec<(bool, Instant, u32, RecycleCause, String)> = Vec::new();
        let any = self.policy.max_memory.is_some()
            || self.policy.max_lifetime.is_some()
            || !self.asked.is_empty();
        for w in if any { pool.workers() } else { &[] } {
            if !w.live() || w.recycling.is_some() {
                continue;
            }
            if let Some(why) = self.over_memory(w.pid) {
                found.push((false, w.started, w.pid, RecycleCause::Memory, why));
            } else if self.has_asked(w) {
                let why = "it asked to be replaced (HERD_RECYCLE=1)".to_string();
                found.push((true, w.started, w.pid, RecycleCause::Asked, why));
            } else if let Some(why) = self.past_lifetime(w, now) {
                found.push((true, w.started, w.pid, RecycleCause::Lifetime, why));
            }
        }
        found.sort_by_key(|c| (c.0, c.1));
        found.into_iter().map(|(_, _, p, c, w)| (p, c, w)).collect()
    }

    fn over_memory(&self, pid: u32) -> Option<String> {
        let (kind, limit) = self.policy.max_memory?;
        let track = self.memory.get(&pid)?;
        let samples = self.policy.samples.max(1);
        (track.over >= samples).then(|| {
            format!(
                "{} {} above --max-memory {} for {} samples",
                kind.as_str(),
                format_bytes(track.bytes.unwrap_or_default()),
                format_bytes(limit),
                track.over
            )
        })
    }

    fn past_lifetime(&self, w: &Worker, now: Instant) -> Option<String> {
        let lifetime = self.lifetime(w.pid)?;
        let ran = now.saturating_duration_since(w.started);
        (ran >= lifetime).then(|| {
            let max = self.policy.max_lifetime.unwrap_or_default();
            format!(
                "ran {}, past --max-lifetime {} plus its jitter {}",
                format_duration(round_ms(ran)),
                format_duration(max),
                format_duration(lifetime.saturating_sub(max))
            )
        })
    }
}

/// `bytes` for people: `512 MiB`, `1.5 GiB`, `900 KiB`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    loop {
        // As shown: whole from 100 on, else to a tenth; a tenth of .0 is left out.
        let shown = if value >= 100.0 {
            value.round()
        } else {
            (value * 10.0).round() / 10.0
        };
        if shown >= 1024.0 && unit < UNITS.len() - 1 {
            value /= 1024.0;
            unit += 1;
            continue;
        }
        return if shown.fract() == 0.0 {
            format!("{shown:.0} {}", UNITS[unit])
        } else {
            format!("{shown:.1} {}", UNITS[unit])
        };
    }
}

/// A well-spread 64-bit hash (splitmix64's finalizer).
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests;
