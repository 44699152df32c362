//! What the driver asks for: scale, upgrade, stop, and which workers a signal reaches.

use std::time::{Duration, Instant};

use super::{
    Action, Phase, Pool, PoolConfig, PoolError, Reason, Slot, StopMode, Upgrade, WorkerState,
};

impl Pool {
    /// Sets the number of workers: new slots start now, `max_starting` at a time beside workers
    /// that serve (see [`fill_slots`](Pool::due)); workers above the new number stop
    /// gracefully, highest slots first (after draining their slot, with a [`DrainPolicy`](crate::DrainPolicy)).
    pub fn scale(&mut self, workers: usize, now: Instant) -> Result<Vec<Action>, PoolError> {
        if self.phase == Phase::Stopping {
            return Err(PoolError::Stopping);
        }
        if self.slots.len() < workers {
            self.slots.resize(workers, Slot::default());
        }
        let added = self.desired.min(workers)..workers;
        for s in &mut self.slots[added] {
            s.scaled_up = true;
        }
        self.desired = workers;
        self.count_slots();
        let deadline = now + self.config.grace;
        let mut actions = Vec::new();
        let mut doomed: Vec<usize> = (0..self.workers.len())
            .filter(|&i| self.workers[i].live() && self.workers[i].slot >= workers)
            .collect();
        doomed.sort_by_key(|&i| std::cmp::Reverse(self.workers[i].slot));
        for i in doomed {
            // Its successor is cancelled below: no recycle to end.
            self.update(i, |w| w.recycling = None);
            match self.config.drain {
                Some(drain) => self.set_state(
                    i,
                    WorkerState::Draining {
                        since: now,
                        until: now + drain.limit,
                        deadline,
                    },
                ),
                None => {
                    let stop = self.stop_worker(i, StopMode::Graceful, Reason::ScaleDown, deadline);
                    actions.push(stop);
                }
            }
        }
        // A start handed out for a slot above the new number is no longer wanted, even if
        // the driver has not run it yet ([`wants_start`](Pool::wants_start)).
        for s in &mut self.slots[workers..] {
            s.restart_at = None;
            s.scaled_up = false;
            s.spawning = false;
            s.spawning_restart = false;
        }
        actions.extend(self.due(now));
        Ok(actions)
    }

    /// Whether a start the pool handed out for `slot` ([`Action::Spawn`]) is still wanted:
    /// a scale-down or a stop since cancels it, and [`spawned`](Pool::spawned) would refuse
    /// its worker.
    pub fn wants_start(&self, slot: usize) -> bool {
        self.phase == Phase::Serving && self.slots.get(slot).map_or(false, |s| s.spawning)
    }

    /// Starts a rolling upgrade to a new generation that must finish within `timeout`.
    pub fn upgrade(
        &mut self,
        timeout: Duration,
        now: Instant,
    ) -> Result<(u64, Vec<Action>), PoolError> {
        self.upgrade_with(timeout, None, now)
    }

    /// Starts a rolling upgrade whose new generation runs with `config` if given (a config
    /// file read again; its `workers` and `drain` stay the pool's). The older workers and
    /// their restarts keep the pool's settings, which become `config` once the upgrade
    /// finishes and stay if it does not. An empty slot starts the new generation at once,
    /// without waiting out the backoff of the build that crashed there, and the slots'
    /// backoff starts afresh once the upgrade finishes.
    pub fn upgrade_with(
        &mut self,
        timeout: Duration,
        config: Option<PoolConfig>,
        now: Instant,
    ) -> Result<(u64, Vec<Action>), PoolError> {
        if self.phase == Phase::Stopping {
            return Err(PoolError::Stopping);
        }
        if let Some(u) = self.upgrade {
            return Err(PoolError::UpgradeInProgress {
                generation: u.generation,
            });
        }
        self.next_config = config.map(|config| PoolConfig {
            workers: self.config.workers,
            drain: self.config.drain,
            ..config
        });
        self.latest_generation += 1;
        let generation = self.latest_generation;
        self.upgrade = Some(Upgrade {
            generation,
            deadline: now + timeout,
        });
        // A slot waiting out its crash-loop backoff waits for the crashes of the build that
        // ran there: the new build starts there at once (a fix deployed to a crash loop).
        for s in self.slots.iter_mut().take(self.desired) {
            if s.count.holding == 0 {
                s.restart_at = None;
            }
        }
        Ok((generation, self.due(now)))
    }

    /// The upgrade to `generation` finished: its settings are the pool's from now on.
    pub(super) fn finish_upgrade(&mut self, generation: u64) -> Action {
        self.upgrade = None;
        self.generation = generation;
        // The backoff counts the crashes of the build that runs in the slot: the new one now.
        for s in &mut self.slots {
            s.backoff = Default::default();
        }
        if let Some(next) = self.next_config.take() {
            self.config = next;
        }
        Action::UpgradeEnded(Ok(generation))
    }

    /// The shortest time an upgrade can take: each new worker must stay ready `min_ready`
    /// before it replaces an old one; those waits overlap (only start-ups are `max_starting`
    /// at a time), so one `min_ready` at least, when there are slots to replace.
    pub fn shortest_upgrade(&self) -> Duration {
        self.shortest_upgrade_with(&self.config)
    }

    fn shortest_upgrade_with(&self, config: &PoolConfig) -> Duration {
        if self.desired == 0 {
            return Duration::ZERO;
        }
        config.min_ready
    }

    /// Why an upgrade given `timeout` cannot succeed, if it cannot: it is zero, or no longer
    /// than [`Pool::shortest_upgrade`].
    pub fn upgrade_too_short(&self, timeout: Duration) -> Option<PoolError> {
        self.upgrade_too_short_with(timeout, &self.config)
    }

    /// [`Pool::upgrade_too_short`] for an upgrade whose new generation runs with `config`.
    pub fn upgrade_too_short_with(
        &self,
        timeout: Duration,
        config: &PoolConfig,
    ) -> Option<PoolError> {
        if timeout == Duration::ZERO {
            return Some(PoolError::ZeroUpgradeTimeout);
        }
        let shortest = self.shortest_upgrade_with(config);
        if shortest == Duration::ZERO || timeout > shortest {
            return None;
        }
        Some(PoolError::UpgradeTooShort {
            timeout,
            min_ready: config.min_ready,
        })
    }

    pub(super) fn abort_upgrade(
        &mut self,
        reason: String,
        now: Instant,
        actions: &mut Vec<Action>,
    ) {
        let u = match self.upgrade {
            Some(u) => u,
            None => return,
        };
        // The new workers stop with their own grace; the old ones keep the pool's settings.
        let deadline = now + self.settings(u.generation).grace;
        self.upgrade = None;
        self.next_config = None;
        let mut kept = 0;
        for i in 0..self.workers.len() {
            let w = &self.workers[i];
            if w.generation >= u.generation && w.live() && !w.counts_available() {
                let stop =
                    self.stop_worker(i, StopMode::Graceful, Reason::UpgradeAborted, deadline);
                actions.push(stop);
            } else if w.generation >= u.generation && w.live() {
                kept += 1;
            }
        }
        // Those that replaced an old worker already serve on: said, so that "the old workers
        // keep serving" is not taken for all of them.
        let reason = match kept {
            _ if self.phase == Phase::Stopping => reason,
            0 => reason,
            n => format!(
                "{reason}; {n} of its workers had replaced old ones already and serve on \
                 (each slot goes back to generation {} once its worker exits, or with the next \
                 herd upgrade)",
                self.generation
            ),
        };
        actions.push(Action::UpgradeEnded(Err(reason)));
    }

    /// Stops every worker: gracefully (a graceful stop now, a kill after `grace`, the pool's
    /// own when `None`) or at once. A `grace` given is the most any worker still stopping has
    /// left (one scaled down or replaced before, an aborted upgrade's, or one stopping for an
    /// earlier stop): it brings their kills forward, never back. A graceful request while
    /// stopping changes nothing else; a fast one kills what runs.
    pub fn stop(&mut self, graceful: bool, grace: Option<Duration>, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        let at_most = grace.map(|grace| now + grace);
        if let Some(at_most) = at_most.filter(|_| graceful) {
            self.kill_stopping_by(at_most);
        }
        if graceful && self.phase == Phase::Stopping {
            return actions;
        }
        self.phase = Phase::Stopping;
        self.abort_upgrade("herd is stopping".to_string(), now, &mut actions);
        for s in &mut self.slots {
            s.restart_at = None;
            s.scaled_up = false;
            s.spawning = false;
            s.spawning_restart = false;
        }
        let deadline = now + grace.unwrap_or(self.config.grace);
        for i in 0..self.workers.len() {
            match (self.workers[i].state, graceful) {
                (WorkerState::Stopping { killed: true, .. }, _) => {}
                (WorkerState::Stopping { .. }, true) => {}
                // Its drain ends: it stops as scaled away, by its own deadline.
                (WorkerState::Draining { deadline, .. }, true) => {
                    let deadline = at_most.map_or(deadline, |at_most| deadline.min(at_most));
                    let stop = self.stop_worker(i, StopMode::Graceful, Reason::ScaleDown, deadline);
                    actions.push(stop);
                }
                (_, false) => {
                    actions.push(self.stop_worker(i, StopMode::Kill, Reason::Shutdown, now));
                }
                (_, true) => {
                    let stop = self.stop_worker(i, StopMode::Graceful, Reason::Shutdown, deadline);
                    actions.push(stop);
                }
            }
        }
        // An aborted upgrade's workers were given their own grace just now.
        if let Some(at_most) = at_most.filter(|_| graceful) {
            self.kill_stopping_by(at_most);
        }
        actions
    }

    /// Brings the kill of every worker stopping gracefully forward to `at_most`, where it was
    /// later.
    fn kill_stopping_by(&mut self, at_most: Instant) {
        for i in 0..self.workers.len() {
            if let WorkerState::Stopping {
                reason,
                deadline,
                killed: false,
            } = self.workers[i].state
            {
                if deadline > at_most {
                    let state = WorkerState::Stopping {
                        reason,
                        deadline: at_most,
                        killed: false,
                    };
                    self.set_state(i, state);
                }
            }
        }
    }

    /// Tells the draining workers whose slot has drained to stop: `queued(slot)` is how many
    /// connections wait in the slot's queue. A slot has drained once it has been out of
    /// rotation for the policy's `settle` time with an empty queue, or after its `limit`
    /// (then with an [`Action::DrainTimedOut`] if connections still wait).
    pub fn release_drained(&mut self, now: Instant, queued: impl Fn(usize) -> u32) -> Vec<Action> {
        let mut actions = Vec::new();
        let settle = match self.config.drain {
            Some(drain) if self.is_draining() => drain.settle,
            _ => return actions,
        };
        for i in 0..self.workers.len() {
            let w = &self.workers[i];
            let (since, until, deadline) = match w.state {
                WorkerState::Draining {
                    since,
                    until,
                    deadline,
                } => (since, until, deadline),
                _ => continue,
            };
            let waiting = queued(w.slot);
            let settled = now.saturating_duration_since(since) >= settle;
            if (settled && waiting == 0) || now >= until {
                if waiting > 0 {
                    actions.push(Action::DrainTimedOut {
                        slot: w.slot,
                        pid: w.pid,
                        queued: waiting,
                    });
                }
                actions.push(self.stop_worker(i, StopMode::Graceful, Reason::ScaleDown, deadline));
            }
        }
        actions
    }

    /// The pids of the live workers, or of the one in `slot`, for a signal someone asked for
    /// (`herd signal`): the driver sends it.
    pub fn signal_targets(&self, slot: Option<usize>) -> Result<Vec<u32>, PoolError> {
        let pids: Vec<u32> = self
            .workers
            .iter()
            .filter(|w| w.live() && slot.map_or(true, |s| w.slot == s))
            .map(|w| w.pid)
            .collect();
        match (slot, pids.is_empty()) {
            (Some(slot), true) => {
                let mut running: Vec<usize> = (self.workers.iter())
                    .filter(|w| w.live())
                    .map(|w| w.slot)
                    .collect();
                running.sort_unstable();
                running.dedup();
                Err(PoolError::NoWorkerInSlot { slot, running })
            }
            _ => Ok(pids),
        }
    }
}
