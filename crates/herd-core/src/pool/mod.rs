//! The worker pool as a pure state machine: events in (a worker started, exited, notified,
//! time passed, a command arrived), actions out (start a worker, stop one, announce one ready,
//! report an upgrade's end). No processes, no clocks: the caller passes `now`.
//!
//! Workers live in *slots* 0..desired. Each slot normally holds one live worker; during a
//! rolling upgrade it briefly holds two: the old generation's worker, and the new one that
//! must become *available* (ready, and still ready `min_ready` later, like Kubernetes'
//! `minReadySeconds`) before the old one is told to stop. A new worker that dies before it is
//! available aborts the upgrade, and the old workers keep serving.
//!
//! Workers are indexed by pid, and each slot counts its live, ready and available workers, so
//! the checks made on every loop turn cost O(1) per slot, not a look at every worker.

mod commands;
mod error;
mod events;
mod recycle;
mod state;
mod surge;
mod timers;
mod types;

use std::collections::HashMap;
use std::time::{Duration, Instant};

pub use error::PoolError;
pub use recycle::RecycleRefused;
pub use state::{PoolState, SavedSlot, SavedSurge, SavedWorker};
pub use surge::MaxSurge;
#[cfg(test)]
pub(crate) use surge::SURGES_COUNTED;
use types::Count;
pub use types::{
    Action, DrainPolicy, Exit, PoolConfig, Readiness, Reason, RecycleCause, Slot, StopMode,
    Upgrade, Worker, WorkerExit, WorkerState,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Serving,
    Stopping,
}

/// The worker pool.
#[derive(Debug)]
pub struct Pool {
    config: PoolConfig,
    /// The settings of the upgrade's new generation, if it has its own (see
    /// [`Pool::upgrade_with`]).
    next_config: Option<PoolConfig>,
    desired: usize,
    generation: u64,
    latest_generation: u64,
    slots: Vec<Slot>,
    workers: Vec<Worker>,
    phase: Phase,
    upgrade: Option<Upgrade>,
    /// See [`Pool::excuse_exits_until`].
    excused_until: Option<Instant>,
    /// Where each pid is in `workers` (the first, should a pid appear twice).
    by_pid: HashMap<u32, usize>,
    /// How many of the slots below `desired` have a ready worker.
    ready_slots: usize,
    /// How many of the slots below `desired` have a live, available worker.
    available_slots: usize,
    /// Workers that became ready since the last [`Pool::due`], which announces them.
    became_ready: Vec<u32>,
    /// How many workers drain their slot.
    draining: usize,
    /// Recycles that ended without a successor, since the last [`Pool::take_recycles_aborted`].
    recycles_aborted: Vec<(usize, u32, RecycleCause)>,
}

impl Pool {
    /// A pool whose first `config.workers` slots are due to start now (generation 1).
    pub fn new(config: PoolConfig) -> Pool {
        let desired = config.workers;
        Pool {
            config,
            next_config: None,
            desired,
            generation: 1,
            latest_generation: 1,
            slots: vec![Slot::default(); desired],
            workers: Vec::new(),
            phase: Phase::Serving,
            upgrade: None,
            excused_until: None,
            by_pid: HashMap::new(),
            ready_slots: 0,
            available_slots: 0,
            became_ready: Vec::new(),
            draining: 0,
            recycles_aborted: Vec::new(),
        }
    }

    /// Until `until`, a new-generation worker that exits does not fail the upgrade in
    /// progress, and a worker that exits is restarted at once without growing its slot's
    /// crash-loop backoff: a worker shut a shared socket down, and every worker's `accept()`
    /// failed with it.
    pub fn excuse_exits_until(&mut self, until: Instant) {
        self.excused_until = Some(self.excused_until.map_or(until, |t| t.max(until)));
    }

    /// Whether every wanted slot has an available worker (the rule for completing a
    /// takeover).
    pub fn all_available(&self) -> bool {
        self.available_slots == self.desired
    }

    /// Whether every wanted slot has a ready worker.
    pub fn all_ready(&self) -> bool {
        self.ready_slots == self.desired
    }

    /// The wanted slots that have a ready worker, in order.
    pub fn ready_slots(&self) -> impl Iterator<Item = usize> + '_ {
        let wanted = self.desired.min(self.slots.len());
        (0..wanted).filter(move |&slot| self.slots[slot].count.ready > 0)
    }

    /// Whether any wanted slot has a ready worker: a worker starting now would start beside
    /// workers that serve.
    pub fn serves(&self) -> bool {
        self.ready_slots > 0
    }

    /// Whether `slot` has a ready worker: a worker starting there now would replace one that
    /// serves (an upgrade's or a recycle's successor), not fill an empty slot.
    pub fn slot_serves(&self, slot: usize) -> bool {
        self.slots.get(slot).map_or(false, |s| s.count.ready > 0)
    }

    /// Whether the worker the pool is starting in `slot` (its [`Action::Spawn`], not yet
    /// [`spawned`](Pool::spawned)) restarts it: its worker exited unexpectedly, or its last
    /// start failed (see [`Worker::restart`]). Not a first start, a scale-up into a slot used
    /// before, or an upgrade's or a recycle's successor.
    pub fn starts_restart(&self, slot: usize) -> bool {
        self.slots
            .get(slot)
            .map_or(false, |s| s.spawning && s.spawning_restart)
    }

    /// Whether a worker scaled away drains its slot (see [`Pool::release_drained`]).
    pub fn is_draining(&self) -> bool {
        self.draining > 0
    }

    /// Whether a stop was requested.
    pub fn is_stopping(&self) -> bool {
        self.phase == Phase::Stopping
    }

    /// Whether a stop was requested and every worker is gone.
    pub fn is_stopped(&self) -> bool {
        self.is_stopping() && self.workers.is_empty()
    }

    /// The pool's settings: those of the current generation and its restarts (an upgrade
    /// started with [`Pool::upgrade_with`] has its own until it finishes).
    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    /// The settings of the workers of `generation`: an upgrade's own for its new generation,
    /// the pool's for the older ones.
    fn settings(&self, generation: u64) -> &PoolConfig {
        match (&self.next_config, self.upgrade) {
            (Some(next), Some(u)) if generation >= u.generation => next,
            _ => &self.config,
        }
    }

    /// The desired number of workers.
    pub fn desired(&self) -> usize {
        self.desired
    }

    /// The generation new workers belong to, once any upgrade has finished.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The upgrade in progress, if any.
    pub fn upgrade_in_progress(&self) -> Option<Upgrade> {
        self.upgrade
    }

    /// Every worker process, in start order.
    pub fn workers(&self) -> &[Worker] {
        &self.workers
    }

    /// The slots' histories (restarts, last exit, pending restart).
    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    /// The worker with this pid.
    pub fn worker(&self, pid: u32) -> Option<&Worker> {
        self.by_pid.get(&pid).map(|&i| &self.workers[i])
    }

    /// How many quick failures in a row `slot` has had.
    pub fn failures(&self, slot: usize) -> u32 {
        self.slots.get(slot).map_or(0, |s| s.backoff.failures())
    }

    /// Marks worker `i` ready at `now`, to be announced by the next [`Pool::due`].
    fn make_ready(&mut self, i: usize, now: Instant) {
        self.update(i, |w| {
            w.state = WorkerState::Ready;
            w.last_ping = now;
            w.ready_since = Some(now);
        });
        self.became_ready.push(self.workers[i].pid);
    }

    /// Changes worker `i`, keeping its slot's count up to date.
    fn update(&mut self, i: usize, change: impl FnOnce(&mut Worker)) {
        let w = &mut self.workers[i];
        let (slot, before, was_draining) = (w.slot, w.count(), is_draining(w));
        change(w);
        let after = w.count();
        match (was_draining, is_draining(w)) {
            (false, true) => self.draining += 1,
            (true, false) => self.draining = self.draining.saturating_sub(1),
            _ => {}
        }
        if after != before {
            self.remove_count(slot, before);
            self.add_count(slot, after);
        }
    }

    fn set_state(&mut self, i: usize, state: WorkerState) {
        self.update(i, |w| w.state = state);
    }

    /// Tells worker `i` to stop for `reason`: gracefully (killed at `deadline`) or at once.
    fn stop_worker(
        &mut self,
        i: usize,
        mode: StopMode,
        reason: Reason,
        deadline: Instant,
    ) -> Action {
        let killed = mode == StopMode::Kill;
        self.set_state(
            i,
            WorkerState::Stopping {
                reason,
                deadline,
                killed,
            },
        );
        Action::Stop {
            pid: self.workers[i].pid,
            mode,
            reason,
        }
    }

    fn add_count(&mut self, slot: usize, c: Count) {
        self.change_count(slot, |count| {
            count.live += c.live;
            count.holding += c.holding;
            count.ready += c.ready;
            count.live_available += c.live_available;
        });
    }

    fn remove_count(&mut self, slot: usize, c: Count) {
        self.change_count(slot, |count| {
            count.live = count.live.saturating_sub(c.live);
            count.holding = count.holding.saturating_sub(c.holding);
            count.ready = count.ready.saturating_sub(c.ready);
            count.live_available = count.live_available.saturating_sub(c.live_available);
        });
    }

    /// Changes `slot`'s count, and with it how many wanted slots are ready or available.
    fn change_count(&mut self, slot: usize, change: impl FnOnce(&mut Count)) {
        let s = match self.slots.get_mut(slot) {
            Some(s) => s,
            None => return,
        };
        let before = s.count;
        change(&mut s.count);
        let after = s.count;
        if slot < self.desired {
            let flip = |total: &mut usize, was: usize, is: usize| match (was > 0, is > 0) {
                (false, true) => *total += 1,
                (true, false) => *total = total.saturating_sub(1),
                _ => {}
            };
            flip(&mut self.ready_slots, before.ready, after.ready);
            flip(
                &mut self.available_slots,
                before.live_available,
                after.live_available,
            );
        }
    }

    /// Recounts the wanted slots that are ready or available (`desired` changed).
    fn count_slots(&mut self) {
        let wanted = &self.slots[..self.desired.min(self.slots.len())];
        self.ready_slots = wanted.iter().filter(|s| s.count.ready > 0).count();
        self.available_slots = wanted.iter().filter(|s| s.count.live_available > 0).count();
    }

    /// Rebuilds the index by pid (workers moved).
    fn index_pids(&mut self) {
        self.by_pid.clear();
        for (i, w) in self.workers.iter().enumerate() {
            self.by_pid.entry(w.pid).or_insert(i);
        }
    }

    /// Rebuilds every index from the workers.
    fn reindex(&mut self) {
        for s in &mut self.slots {
            s.count = Count::default();
        }
        for i in 0..self.workers.len() {
            let (slot, c) = (self.workers[i].slot, self.workers[i].count());
            if let Some(s) = self.slots.get_mut(slot) {
                s.count.live += c.live;
                s.count.holding += c.holding;
                s.count.ready += c.ready;
                s.count.live_available += c.live_available;
            }
        }
        self.count_slots();
        self.index_pids();
        self.draining = self.workers.iter().filter(|w| is_draining(w)).count();
    }

    fn is_upgrading_worker(&self, w: &Worker) -> bool {
        self.upgrade.map_or(false, |u| w.generation >= u.generation)
    }
}

fn is_draining(w: &Worker) -> bool {
    matches!(w.state, WorkerState::Draining { .. })
}

/// When a ready worker becomes available; `None` if not ready (or never, for a `min_ready`
/// past the end of time).
fn available_at(w: &Worker, min_ready: Duration) -> Option<Instant> {
    w.ready_since?.checked_add(min_ready)
}

#[cfg(test)]
mod tests;
