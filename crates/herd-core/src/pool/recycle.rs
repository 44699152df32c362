//! Recycling: a worker is replaced in its slot by a fresh one of the same generation, like
//! one step of a rolling upgrade: the successor starts, becomes available, and only then is
//! the old worker told to stop. Why and when to recycle is the
//! [`Recycler`](crate::Recycler)'s; the pool guards capacity.

use std::fmt;
use std::time::Instant;

use super::{Action, Phase, Pool, Reason, RecycleCause, StopMode, Worker, WorkerState};

/// Why a worker cannot be recycled now; every refusal but [`RecycleRefused::NotAWorker`]
/// may pass, so the recycle is tried again later.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecycleRefused {
    /// No live worker has this pid.
    NotAWorker,
    /// herd is stopping.
    Stopping,
    /// An upgrade is in progress (it replaces every worker anyway).
    Upgrading,
    /// The worker is not ready and available yet.
    NotAvailable,
    /// It is already being recycled.
    AlreadyRecycling,
    /// Some wanted slots have no ready worker: a `--max-lifetime` recycle waits (one for
    /// `--max-memory` does not: a slot that crash-loops would hold it back for good).
    ShortOfReady {
        /// Slots with a ready worker.
        ready: usize,
        /// Wanted slots.
        desired: usize,
    },
    /// The pool already runs `max_surge` workers beyond the desired number (recycles whose
    /// old worker has not exited yet, grace period included).
    AtMaxSurge {
        /// The limit, for the desired number of workers.
        max_surge: usize,
        /// Workers beyond the desired number now.
        surge: usize,
    },
    /// `max_starting` new workers are starting already, restarts aside (see
    /// [`Pool::start_ups`]).
    AtMaxStarting {
        /// The limit.
        max_starting: usize,
        /// The start-ups it counts now: first starts, scale-ups and replacements.
        starting: usize,
    },
}

impl fmt::Display for RecycleRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecycleRefused::NotAWorker => write!(f, "it is no longer a live worker"),
            RecycleRefused::Stopping => write!(f, "herd is stopping"),
            RecycleRefused::Upgrading => write!(f, "an upgrade is in progress"),
            RecycleRefused::NotAvailable => write!(f, "it is not ready (and available) yet"),
            RecycleRefused::AlreadyRecycling => write!(f, "it is already being recycled"),
            RecycleRefused::ShortOfReady { ready, desired } => write!(
                f,
                "only {ready} of {desired} workers are ready; recycling waits for all"
            ),
            RecycleRefused::AtMaxSurge { max_surge, surge } => write!(
                f,
                "{surge} worker(s) beyond the pool already, the most --max-surge allows is \
                 {max_surge} (a recycle lasts until its old worker has exited)"
            ),
            RecycleRefused::AtMaxStarting {
                max_starting,
                starting,
            } => write!(
                f,
                "{starting} worker(s) starting already (first starts, scale-ups and \
                 replacements; restarts do not count), the most --max-starting allows is \
                 {max_starting}"
            ),
        }
    }
}

impl Pool {
    /// Starts recycling worker `pid` for `cause`: a successor starts in its slot now (the
    /// returned [`Action::Spawn`]); once it is available, the old worker is told to stop
    /// gracefully. Refused while stopping or upgrading, for `Lifetime` and `Asked` while a wanted
    /// slot has no ready worker, for a worker not yet available, when the pool runs `max_surge`
    /// workers beyond the desired number already (an old worker still in its grace period counts), and when
    /// `max_starting` new workers are starting, restarts aside ([`Pool::start_ups`]).
    pub fn recycle(
        &mut self,
        pid: u32,
        cause: RecycleCause,
        _now: Instant,
    ) -> Result<Vec<Action>, RecycleRefused> {
        let i = match self.by_pid.get(&pid) {
            Some(&i) if self.workers[i].live() => i,
            _ => return Err(RecycleRefused::NotAWorker),
        };
        if self.phase == Phase::Stopping {
            return Err(RecycleRefused::Stopping);
        }
        if self.upgrade.is_some() {
            return Err(RecycleRefused::Upgrading);
        }
        let w = &self.workers[i];
        if w.recycling.is_some() {
            return Err(RecycleRefused::AlreadyRecycling);
        }
        if w.state != WorkerState::Ready || !w.available || w.slot >= self.desired {
            return Err(RecycleRefused::NotAvailable);
        }
        // A worker over --max-memory is recycled all the same: a slot that crash-loops would
        // hold it back for good, and it would grow until the OOM killer ended it (its
        // successor starts first: capacity does not drop).
        if cause != RecycleCause::Memory && !self.all_ready() {
            return Err(RecycleRefused::ShortOfReady {
                ready: self.ready_slots,
                desired: self.desired,
            });
        }
        let slot = w.slot;
        if self.slots[slot].spawning || self.slots[slot].count.live > 1 {
            return Err(RecycleRefused::AlreadyRecycling);
        }
        let max_surge = self.config.max_surge.limit(self.desired);
        let surge = self.surge();
        if surge >= max_surge {
            return Err(RecycleRefused::AtMaxSurge { max_surge, surge });
        }
        let max_starting = self.config.max_starting.max(1);
        let starting = self.start_ups();
        if starting >= max_starting {
            return Err(RecycleRefused::AtMaxStarting {
                max_starting,
                starting,
            });
        }
        self.update(i, |w| w.recycling = Some(cause));
        self.slots[slot].spawning = true;
        Ok(vec![Action::Spawn {
            slot,
            generation: self.generation,
        }])
    }

    /// How many recycles are under way: a recycle lasts until its old worker has exited (as
    /// its share of the [`surge`](Pool::surge) does).
    pub fn recycles_in_progress(&self) -> usize {
        self.workers
            .iter()
            .filter(|w| w.recycling.is_some())
            .count()
    }

    /// The recycles that ended without a successor (it exited, or could not start, before it
    /// was available: the old worker serves on), as (slot, pid, cause), since the last call.
    pub fn take_recycles_aborted(&mut self) -> Vec<(usize, u32, RecycleCause)> {
        std::mem::take(&mut self.recycles_aborted)
    }

    /// Stops each recycled worker whose successor is available; ends the recycles whose
    /// successor is gone.
    pub(super) fn advance_recycles(&mut self, now: Instant, actions: &mut Vec<Action>) {
        let deadline = now + self.config.grace;
        for i in 0..self.workers.len() {
            let w = &self.workers[i];
            let cause = match w.recycling {
                Some(cause) if w.live() => cause,
                _ => continue,
            };
            let (slot, pid) = (w.slot, w.pid);
            let mut successor = self
                .workers
                .iter()
                .filter(|s| s.slot == slot && s.pid != pid && s.live() && s.recycling.is_none());
            match successor.next().map(Worker::counts_available) {
                Some(true) => {
                    let reason = Reason::Recycled(cause);
                    actions.push(self.stop_worker(i, StopMode::Graceful, reason, deadline));
                }
                Some(false) => {}
                None if self.slots[slot].spawning => {}
                None => {
                    self.update(i, |w| w.recycling = None);
                    self.recycles_aborted.push((slot, pid, cause));
                }
            }
        }
    }
}
