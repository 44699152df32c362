//! The worker pool as a pure state machine: events in (a worker started, exited, notified,
//! time passed, a command arrived), actions out (start a worker, signal one, report an
//! upgrade's end). No processes, no clocks: the caller passes `now`, so every behaviour is
//! unit-tested in microseconds and the async driver around it stays thin.
//!
//! Workers live in *slots* 0..desired. Each slot normally holds one live worker; during a
//! rolling upgrade it briefly holds two: the old generation's worker, and the new one that
//! must become *available* (ready, and still ready `min_ready` later, like Kubernetes'
//! `minReadySeconds`) before the old one is told to stop. A new worker that dies before it is
//! available aborts the upgrade, and the old workers keep serving.

use std::collections::HashMap;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use herd_sys::process::Signal;

use herd::backoff::{Backoff, BackoffPolicy};

/// When a new worker counts as ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// After it stayed alive this long, or sent `READY=1`, whichever comes first.
    Delay(Duration),
    /// When it sends `READY=1`; one that has not after `timeout` failed to start.
    Notify {
        /// How long a worker may take.
        timeout: Duration,
    },
}

/// The pool's settings.
#[derive(Clone, Debug)]
pub struct PoolConfig {
    /// How many worker slots to fill at start.
    pub workers: usize,
    /// How long stopping workers may take before they are killed.
    pub grace: Duration,
    /// The signal that asks a worker to stop.
    pub stop_signal: Signal,
    /// Restart backoff.
    pub backoff: BackoffPolicy,
    /// When a worker is ready.
    pub readiness: Readiness,
    /// A ready worker that sends no `WATCHDOG=1` for this long is killed and restarted.
    pub watchdog: Option<Duration>,
    /// How many new-generation workers may be starting at once during an upgrade.
    pub max_surge: usize,
    /// How long a new worker must stay ready before it counts as available: only then does it
    /// replace an older worker (or complete a takeover).
    pub min_ready: Duration,
}

/// What the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Start a worker in `slot`, then report [`Pool::spawned`] or [`Pool::spawn_failed`].
    Spawn {
        /// The slot to fill.
        slot: usize,
        /// The generation the new worker belongs to.
        generation: u64,
    },
    /// Send `signal` to a worker: to its whole process group when `group`.
    Signal {
        /// The worker's pid.
        pid: u32,
        /// What to send.
        signal: Signal,
        /// Also reach the processes the worker forked (stop and kill do).
        group: bool,
        /// Why, for the log.
        reason: Reason,
    },
    /// A rolling upgrade ended: `Ok(generation)` or `Err(why it was aborted)`.
    UpgradeEnded(Result<u64, String>),
}

/// Why a worker is signalled or stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Reason {
    /// herd is stopping.
    Shutdown,
    /// Its slot is above the desired number of workers.
    ScaleDown,
    /// A ready worker of a newer generation took its slot.
    Replaced,
    /// Its upgrade was aborted before it became ready.
    UpgradeAborted,
    /// It did not become ready in time.
    NotReady,
    /// It sent no `WATCHDOG=1` in time.
    Watchdog,
    /// Its grace period is over.
    GraceExpired,
    /// Someone asked for this signal (`herd signal`).
    Requested,
}

impl Reason {
    /// A short explanation for logs and status.
    pub fn describe(self) -> &'static str {
        match self {
            Reason::Shutdown => "herd is stopping",
            Reason::ScaleDown => "scaled down",
            Reason::Replaced => "replaced by a newer generation",
            Reason::UpgradeAborted => "its upgrade was aborted",
            Reason::NotReady => "not ready in time",
            Reason::Watchdog => "watchdog timeout",
            Reason::GraceExpired => "did not stop in time",
            Reason::Requested => "requested",
        }
    }

    /// Whether a worker stopped for this reason is replaced in its slot.
    fn restarts(self) -> bool {
        matches!(self, Reason::NotReady | Reason::Watchdog)
    }
}

/// A worker's lifecycle state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerState {
    /// Started, not yet ready.
    Starting,
    /// Ready to serve.
    Ready,
    /// Told to stop; killed at `deadline` unless it exits first.
    Stopping {
        /// Why.
        reason: Reason,
        /// When it gets SIGKILL.
        deadline: Instant,
        /// Whether it already got SIGKILL.
        killed: bool,
    },
}

/// One worker process.
#[derive(Clone, Debug)]
pub struct Worker {
    /// Its pid.
    pub pid: u32,
    /// Its slot.
    pub slot: usize,
    /// The generation it belongs to.
    pub generation: u64,
    /// Where it is in its life.
    pub state: WorkerState,
    /// When it started.
    pub started: Instant,
    /// When it last proved alive (`READY=1`, `WATCHDOG=1`).
    pub last_ping: Instant,
    /// When it became ready, if it did.
    pub ready_since: Option<Instant>,
    /// Whether it has stayed ready for `min_ready`: only an available worker replaces an
    /// older one or completes a takeover.
    pub available: bool,
    /// Its last `STATUS=` text.
    pub status: Option<String>,
}

impl Worker {
    fn live(&self) -> bool {
        !matches!(self.state, WorkerState::Stopping { .. })
    }

    /// Whether it still holds its slot: live, or killed for failing (its successor starts
    /// when it has exited, after the slot's backoff).
    fn holds_slot(&self) -> bool {
        match self.state {
            WorkerState::Stopping { reason, .. } => reason.restarts(),
            _ => true,
        }
    }

    /// What it adds to its slot's [`Count`].
    fn count(&self) -> Count {
        let live = self.live();
        Count {
            live: usize::from(live),
            holding: usize::from(self.holds_slot()),
            ready: usize::from(self.state == WorkerState::Ready),
            live_available: usize::from(live && self.available),
        }
    }
}

/// How many of a slot's workers are live, hold the slot, are ready, are live and available:
/// kept up to date on every change, so that the checks made on every loop turn need not look
/// at every worker for every slot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Count {
    live: usize,
    holding: usize,
    ready: usize,
    live_available: usize,
}

/// A slot's history.
#[derive(Clone, Debug, Default)]
pub struct Slot {
    backoff: Backoff,
    /// How many times a worker was restarted in this slot after an unexpected exit.
    pub restarts: u32,
    /// How the slot's last worker exited.
    pub last_exit: Option<ExitStatus>,
    /// When the next worker starts, while the slot waits out a backoff.
    pub restart_at: Option<Instant>,
    spawning: bool,
    /// Its workers, counted.
    count: Count,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Serving,
    Stopping,
}

/// A rolling upgrade in progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Upgrade {
    /// The generation being rolled out.
    pub generation: u64,
    /// When it is aborted if not finished.
    pub deadline: Instant,
}

/// What an exit meant, for the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exit {
    /// The worker's slot.
    pub slot: usize,
    /// Its generation.
    pub generation: u64,
    /// How long it ran.
    pub uptime: Duration,
    /// Why herd had asked it to stop, if it had.
    pub stopped_for: Option<Reason>,
    /// When a successor starts, if one does.
    pub restart_in: Option<Duration>,
    /// Whether it had become ready.
    pub was_ready: bool,
    /// Whether it had stayed ready for `min_ready`.
    pub was_available: bool,
}

/// The worker pool.
#[derive(Debug)]
pub struct Pool {
    config: PoolConfig,
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
}

impl Pool {
    /// A pool whose first `config.workers` slots are due to start now (generation 1).
    pub fn new(config: PoolConfig) -> Pool {
        let desired = config.workers;
        Pool {
            config,
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
        }
    }

    /// Until `until`, a new-generation worker that exits does not fail the upgrade in
    /// progress, and a worker that exits is restarted at once without growing its slot's
    /// crash-loop backoff: a worker shut a shared socket down, and every worker's `accept()`
    /// failed with it.
    pub fn excuse_exits_until(&mut self, until: Instant) {
        self.excused_until = Some(self.excused_until.map_or(until, |t| t.max(until)));
    }

    /// Everything due at `now`: kills after grace periods, readiness, watchdogs, upgrade
    /// progress, and workers to start.
    pub fn due(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        self.expire_stopping(now, &mut actions);
        if self.phase == Phase::Serving {
            self.check_readiness(now, &mut actions);
            self.check_available(now);
            self.check_watchdogs(now, &mut actions);
            self.advance_upgrade(now, &mut actions);
            self.fill_slots(now, &mut actions);
        }
        actions
    }

    fn expire_stopping(&mut self, now: Instant, actions: &mut Vec<Action>) {
        for i in 0..self.workers.len() {
            let w = &self.workers[i];
            if let WorkerState::Stopping {
                deadline,
                killed: false,
                reason,
            } = w.state
            {
                if now >= deadline {
                    let pid = w.pid;
                    self.set_state(i, stopping(reason, deadline, true));
                    actions.push(kill(pid, Reason::GraceExpired));
                }
            }
        }
    }

    fn check_readiness(&mut self, now: Instant, actions: &mut Vec<Action>) {
        let mut failed_upgrade = None;
        for i in 0..self.workers.len() {
            let w = &self.workers[i];
            if w.state != WorkerState::Starting {
                continue;
            }
            match self.config.readiness {
                Readiness::Delay(delay) if now >= w.started + delay => {
                    self.update(i, |w| {
                        w.state = WorkerState::Ready;
                        w.last_ping = now;
                        w.ready_since = Some(now);
                    });
                }
                Readiness::Notify { timeout } if now >= w.started + timeout => {
                    if self.is_upgrading_worker(w) {
                        failed_upgrade = Some(format!(
                            "worker {} (pid {}) of generation {} did not send READY=1 within {}",
                            w.slot,
                            w.pid,
                            w.generation,
                            humantime::format_duration(timeout)
                        ));
                    } else {
                        let pid = w.pid;
                        self.set_state(i, stopping(Reason::NotReady, now, true));
                        actions.push(kill(pid, Reason::NotReady));
                    }
                }
                _ => {}
            }
        }
        if let Some(reason) = failed_upgrade {
            self.abort_upgrade(reason, now, actions);
        }
    }

    fn check_available(&mut self, now: Instant) {
        let min_ready = self.config.min_ready;
        for i in 0..self.workers.len() {
            let w = &self.workers[i];
            if w.state == WorkerState::Ready
                && !w.available
                && available_at(w, min_ready).is_some_and(|at| now >= at)
            {
                self.update(i, |w| w.available = true);
            }
        }
    }

    fn check_watchdogs(&mut self, now: Instant, actions: &mut Vec<Action>) {
        let Some(limit) = self.config.watchdog else {
            return;
        };
        for i in 0..self.workers.len() {
            let w = &self.workers[i];
            if w.state == WorkerState::Ready && now >= w.last_ping + limit {
                let pid = w.pid;
                self.set_state(i, stopping(Reason::Watchdog, now, true));
                actions.push(kill(pid, Reason::Watchdog));
            }
        }
    }

    fn advance_upgrade(&mut self, now: Instant, actions: &mut Vec<Action>) {
        let Some(upgrade) = self.upgrade else {
            return;
        };
        if now >= upgrade.deadline {
            let reason = format!(
                "the upgrade to generation {} did not finish before its deadline (each new \
                 worker must be ready, then stay ready for --min-ready {})",
                upgrade.generation,
                humantime::format_duration(self.config.min_ready)
            );
            self.abort_upgrade(reason, now, actions);
            return;
        }
        let g = upgrade.generation;
        // One pass over the workers per step, by slot: no step looks at every worker per slot.
        let slots = self.slots.len().max(self.desired);
        let mut new_available = vec![false; slots];
        for w in &self.workers {
            if w.generation >= g && w.live() && w.available {
                if let Some(x) = new_available.get_mut(w.slot) {
                    *x = true;
                }
            }
        }
        // Old workers whose slot has an available successor stop now.
        let (grace, stop_signal) = (self.config.grace, self.config.stop_signal);
        for i in 0..self.workers.len() {
            let w = &self.workers[i];
            if w.live() && w.generation < g && new_available.get(w.slot) == Some(&true) {
                let pid = w.pid;
                self.set_state(i, stopping(Reason::Replaced, now + grace, false));
                actions.push(signal_stop(pid, stop_signal, Reason::Replaced));
            }
        }
        // Start successors, at most max_surge at a time (counting those not yet available), for
        // slots whose old worker still serves.
        let mut has_old = vec![false; slots];
        let mut has_new = vec![false; slots];
        let mut starting = 0;
        for w in self.workers.iter().filter(|w| w.live()) {
            let has = if w.generation >= g {
                starting += usize::from(!w.available);
                &mut has_new
            } else {
                &mut has_old
            };
            if let Some(x) = has.get_mut(w.slot) {
                *x = true;
            }
        }
        starting += self.slots.iter().filter(|s| s.spawning).count();
        let mut room = self.config.max_surge.max(1).saturating_sub(starting);
        for slot in 0..self.desired {
            if room == 0 {
                break;
            }
            if has_old[slot] && !has_new[slot] && !self.slots[slot].spawning {
                self.slots[slot].spawning = true;
                actions.push(Action::Spawn {
                    slot,
                    generation: g,
                });
                room -= 1;
            }
        }
        // Done when every slot has an available worker of the new generation and no old one.
        let done = (0..self.desired).all(|slot| new_available[slot] && !has_old[slot]);
        if done {
            self.upgrade = None;
            self.generation = g;
            actions.push(Action::UpgradeEnded(Ok(g)));
        }
    }

    fn fill_slots(&mut self, now: Instant, actions: &mut Vec<Action>) {
        let generation = self.upgrade.map_or(self.generation, |u| u.generation);
        for slot in 0..self.desired {
            let s = &self.slots[slot];
            if s.spawning || s.count.holding > 0 {
                continue;
            }
            if s.restart_at.is_none_or(|at| at <= now) {
                let s = &mut self.slots[slot];
                s.restart_at = None;
                s.spawning = true;
                actions.push(Action::Spawn { slot, generation });
            }
        }
    }

    /// The worker for `slot` runs as `pid`. Returns `false` when the slot was not handed out
    /// by [`Action::Spawn`] (the caller must then stop that process itself).
    pub fn spawned(&mut self, slot: usize, generation: u64, pid: u32, now: Instant) -> bool {
        match self.slots.get_mut(slot) {
            Some(s) if s.spawning && self.phase == Phase::Serving => {
                s.spawning = false;
                let w = Worker {
                    pid,
                    slot,
                    generation,
                    state: WorkerState::Starting,
                    started: now,
                    last_ping: now,
                    ready_since: None,
                    available: false,
                    status: None,
                };
                self.add_count(slot, w.count());
                self.by_pid.entry(pid).or_insert(self.workers.len());
                self.workers.push(w);
                true
            }
            _ => false,
        }
    }

    /// The worker for `slot` could not be started. Returns the delay before the next try, and
    /// aborts an upgrade whose new worker this was.
    pub fn spawn_failed(
        &mut self,
        slot: usize,
        why: &str,
        now: Instant,
    ) -> (Duration, Vec<Action>) {
        let policy = self.config.backoff;
        let mut actions = Vec::new();
        let Some(s) = self.slots.get_mut(slot) else {
            return (Duration::ZERO, actions);
        };
        s.spawning = false;
        let delay = s.backoff.next_delay(&policy, None);
        s.restart_at = Some(now + delay);
        if let Some(u) = self.upgrade {
            let reason = format!(
                "cannot start a worker of generation {}: {why}",
                u.generation
            );
            self.abort_upgrade(reason, now, &mut actions);
        }
        (delay, actions)
    }

    /// A child exited. Returns `None` when `pid` is not one of the pool's workers, else what
    /// the exit meant, with any actions it triggers (an aborted upgrade).
    pub fn exited(
        &mut self,
        pid: u32,
        status: ExitStatus,
        now: Instant,
    ) -> Option<(Exit, Vec<Action>)> {
        let index = *self.by_pid.get(&pid)?;
        let w = self.workers.remove(index);
        self.remove_count(w.slot, w.count());
        self.index_pids();
        let mut actions = Vec::new();
        let stopped_for = match w.state {
            WorkerState::Stopping { reason, .. } => Some(reason),
            _ => None,
        };
        let policy = self.config.backoff;
        let slot = &mut self.slots[w.slot];
        slot.last_exit = Some(status);
        let uptime = now.saturating_duration_since(w.started);

        // A new-generation worker that dies before it is available fails its upgrade (one
        // killed for failing, by its watchdog, counts too).
        let excused = self.excused_until.is_some_and(|t| now < t);
        if w.holds_slot() && !w.available && self.is_upgrading_worker(&w) && !excused {
            let when = match w.ready_since {
                None => "before it was ready".to_string(),
                Some(t) => format!(
                    "{} after it was ready, within --min-ready {}",
                    humantime::format_duration(round_ms(now.saturating_duration_since(t))),
                    humantime::format_duration(self.config.min_ready)
                ),
            };
            let reason = format!(
                "worker {} (pid {}) of generation {} exited {when}: {}",
                w.slot,
                pid,
                w.generation,
                super::describe_exit(status)
            );
            self.abort_upgrade(reason, now, &mut actions);
        }

        let unexpected = stopped_for.is_none_or(Reason::restarts);
        let slot_wanted = self.phase == Phase::Serving && w.slot < self.desired;
        let replaced = self.slots[w.slot].count.live > 0;
        // A worker killed from outside (SIGKILL that herd did not send: an operator, the OOM
        // killer, a chaos test) did not crash on its own: its successor starts at once, and the
        // slot's crash-loop backoff does not grow, so kills cannot starve a slot.
        let killed_from_outside = stopped_for.is_none() && {
            use std::os::unix::process::ExitStatusExt;
            status.signal() == Some(libc::SIGKILL)
        };
        // A worker that exits just after a shared socket was found shut down (and repaired)
        // most likely failed on it: no fault of its own, so its backoff does not grow either.
        let socket_failed = excused && stopped_for.is_none();
        let restart_in = if unexpected && slot_wanted && !replaced {
            let slot = &mut self.slots[w.slot];
            let delay = if killed_from_outside || socket_failed {
                Duration::ZERO
            } else {
                slot.backoff.next_delay(&policy, Some(uptime))
            };
            slot.restarts += 1;
            slot.restart_at = Some(now + delay);
            Some(delay)
        } else {
            None
        };
        Some((
            Exit {
                slot: w.slot,
                generation: w.generation,
                uptime,
                stopped_for,
                restart_in,
                was_ready: w.ready_since.is_some(),
                was_available: w.available,
            },
            actions,
        ))
    }

    /// A worker sent an `sd_notify` message. Returns `true` when `pid` is a worker.
    pub fn notified(&mut self, pid: u32, message: &NotifyMessage, now: Instant) -> bool {
        let Some(&i) = self.by_pid.get(&pid) else {
            return false;
        };
        self.update(i, |w| {
            if message.ready && w.state == WorkerState::Starting {
                w.state = WorkerState::Ready;
                w.last_ping = now;
                w.ready_since = Some(now);
            }
            if message.watchdog && w.state == WorkerState::Ready {
                w.last_ping = now;
            }
            if let Some(status) = &message.status {
                w.status = Some(status.clone());
            }
        });
        true
    }

    /// Sets the number of workers: new slots start now; workers above the new number stop
    /// gracefully, highest slots first.
    pub fn scale(&mut self, workers: usize, now: Instant) -> Result<Vec<Action>, String> {
        if self.phase == Phase::Stopping {
            return Err("herd is stopping".to_string());
        }
        self.desired = workers;
        if self.slots.len() < workers {
            self.slots.resize(workers, Slot::default());
        }
        self.count_slots();
        let (grace, stop_signal) = (self.config.grace, self.config.stop_signal);
        let mut actions = Vec::new();
        let mut doomed: Vec<usize> = (0..self.workers.len())
            .filter(|&i| self.workers[i].live() && self.workers[i].slot >= workers)
            .collect();
        doomed.sort_by_key(|&i| std::cmp::Reverse(self.workers[i].slot));
        for i in doomed {
            let pid = self.workers[i].pid;
            self.set_state(i, stopping(Reason::ScaleDown, now + grace, false));
            actions.push(signal_stop(pid, stop_signal, Reason::ScaleDown));
        }
        for s in &mut self.slots[workers..] {
            s.restart_at = None;
        }
        actions.extend(self.due(now));
        Ok(actions)
    }

    /// Starts a rolling upgrade to a new generation that must finish within `timeout`.
    pub fn upgrade(
        &mut self,
        timeout: Duration,
        now: Instant,
    ) -> Result<(u64, Vec<Action>), String> {
        if self.phase == Phase::Stopping {
            return Err("herd is stopping".to_string());
        }
        if let Some(u) = self.upgrade {
            return Err(format!(
                "an upgrade to generation {} is in progress",
                u.generation
            ));
        }
        self.latest_generation += 1;
        let generation = self.latest_generation;
        self.upgrade = Some(Upgrade {
            generation,
            deadline: now + timeout,
        });
        Ok((generation, self.due(now)))
    }

    fn abort_upgrade(&mut self, reason: String, now: Instant, actions: &mut Vec<Action>) {
        let Some(u) = self.upgrade.take() else {
            return;
        };
        let stop_signal = self.config.stop_signal;
        let grace = self.config.grace;
        for i in 0..self.workers.len() {
            let w = &self.workers[i];
            if w.generation >= u.generation && w.live() && !w.available {
                let pid = w.pid;
                self.set_state(i, stopping(Reason::UpgradeAborted, now + grace, false));
                actions.push(signal_stop(pid, stop_signal, Reason::UpgradeAborted));
            }
        }
        actions.push(Action::UpgradeEnded(Err(reason)));
    }

    /// Stops every worker: gracefully (the stop signal now, `SIGKILL` after `grace`) or at
    /// once. A graceful request while stopping changes nothing; a fast one kills what runs.
    pub fn stop(&mut self, graceful: bool, grace: Option<Duration>, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        if graceful && self.phase == Phase::Stopping {
            return actions;
        }
        self.abort_upgrade("herd is stopping".to_string(), now, &mut actions);
        self.phase = Phase::Stopping;
        for s in &mut self.slots {
            s.restart_at = None;
            s.spawning = false;
        }
        let deadline = now + grace.unwrap_or(self.config.grace);
        let stop_signal = self.config.stop_signal;
        for i in 0..self.workers.len() {
            let pid = self.workers[i].pid;
            match (self.workers[i].state, graceful) {
                (WorkerState::Stopping { killed: true, .. }, _) => {}
                (WorkerState::Stopping { .. }, true) => {}
                (_, false) => {
                    self.set_state(i, stopping(Reason::Shutdown, now, true));
                    actions.push(kill(pid, Reason::Shutdown));
                }
                (_, true) => {
                    self.set_state(i, stopping(Reason::Shutdown, deadline, false));
                    actions.push(signal_stop(pid, stop_signal, Reason::Shutdown));
                }
            }
        }
        actions
    }

    /// Signals the live workers, or the one in `slot`.
    pub fn signal(&self, signal: Signal, slot: Option<usize>) -> Result<Vec<Action>, String> {
        let actions: Vec<Action> = self
            .workers
            .iter()
            .filter(|w| w.live() && slot.is_none_or(|s| w.slot == s))
            .map(|w| Action::Signal {
                pid: w.pid,
                signal,
                group: false,
                reason: Reason::Requested,
            })
            .collect();
        match (slot, actions.is_empty()) {
            (Some(s), true) => Err(format!("no worker runs in slot {s}")),
            _ => Ok(actions),
        }
    }

    /// When [`due`](Pool::due) next has something to do, if ever.
    pub fn next_deadline(&self) -> Option<Instant> {
        let mut times: Vec<Instant> = Vec::new();
        for w in &self.workers {
            match w.state {
                WorkerState::Stopping {
                    deadline,
                    killed: false,
                    ..
                } => times.push(deadline),
                WorkerState::Starting if self.phase == Phase::Serving => {
                    times.push(match self.config.readiness {
                        Readiness::Delay(d) => w.started + d,
                        Readiness::Notify { timeout } => w.started + timeout,
                    })
                }
                WorkerState::Ready if self.phase == Phase::Serving => {
                    if let Some(limit) = self.config.watchdog {
                        times.push(w.last_ping + limit);
                    }
                    if !w.available {
                        times.extend(available_at(w, self.config.min_ready));
                    }
                }
                _ => {}
            }
        }
        if self.phase == Phase::Serving {
            times.extend(
                self.slots
                    .iter()
                    .take(self.desired)
                    .filter_map(|s| s.restart_at),
            );
            times.extend(self.upgrade.map(|u| u.deadline));
        }
        times.into_iter().min()
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
        (0..wanted).filter(|&slot| self.slots[slot].count.ready > 0)
    }

    /// Whether a stop was requested.
    pub fn is_stopping(&self) -> bool {
        self.phase == Phase::Stopping
    }

    /// Whether a stop was requested and every worker is gone.
    pub fn is_stopped(&self) -> bool {
        self.is_stopping() && self.workers.is_empty()
    }

    /// The pool's settings.
    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    /// The desired number of workers.
    pub fn desired(&self) -> usize {
        self.desired
    }

    /// The shortest time an upgrade can take: each new worker must stay ready `min_ready`
    /// before it replaces an old one, and at most `max_surge` start at a time, so the
    /// `desired` slots take that many rounds.
    pub fn shortest_upgrade(&self) -> Duration {
        let rounds = self.desired.div_ceil(self.config.max_surge.max(1));
        self.config
            .min_ready
            .saturating_mul(u32::try_from(rounds).unwrap_or(u32::MAX))
    }

    /// Why an upgrade given `timeout` cannot succeed, if it cannot: it is zero, or no longer
    /// than [`Pool::shortest_upgrade`].
    pub fn upgrade_too_short(&self, timeout: Duration) -> Option<String> {
        if timeout.is_zero() {
            return Some("an upgrade timeout must be positive".to_string());
        }
        let shortest = self.shortest_upgrade();
        if shortest.is_zero() || timeout > shortest {
            return None;
        }
        let min_ready = humantime::format_duration(self.config.min_ready);
        let rounds = match self.config.max_surge {
            surge if surge >= self.desired => String::new(),
            surge => format!(
                " ({} workers, {surge} at a time: at least {})",
                self.desired,
                humantime::format_duration(shortest)
            ),
        };
        Some(format!(
            "an upgrade timeout of {} is too short: each new worker must stay ready for \
             --min-ready {min_ready} before it replaces an old one{rounds}; give a longer \
             --timeout, or run herd with a shorter --min-ready",
            humantime::format_duration(timeout)
        ))
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

    /// Changes worker `i`, keeping its slot's count up to date.
    fn update(&mut self, i: usize, change: impl FnOnce(&mut Worker)) {
        let w = &mut self.workers[i];
        let (slot, before) = (w.slot, w.count());
        change(w);
        let after = w.count();
        if after != before {
            self.remove_count(slot, before);
            self.add_count(slot, after);
        }
    }

    fn set_state(&mut self, i: usize, state: WorkerState) {
        self.update(i, |w| w.state = state);
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
        let Some(s) = self.slots.get_mut(slot) else {
            return;
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
    }

    fn is_upgrading_worker(&self, w: &Worker) -> bool {
        self.upgrade.is_some_and(|u| w.generation >= u.generation)
    }
}

/// Everything a pool knows, for re-exec: instants become offsets from the moment of export,
/// so timers (backoffs, grace periods, readiness and watchdog deadlines) carry on.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct PoolState {
    desired: usize,
    generation: u64,
    latest_generation: u64,
    workers: Vec<SavedWorker>,
    slots: Vec<SavedSlot>,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct SavedWorker {
    pid: u32,
    slot: usize,
    generation: u64,
    ready: bool,
    stopping: Option<(Reason, u64, bool)>,
    age_ms: u64,
    ping_age_ms: u64,
    ready_age_ms: Option<u64>,
    /// Absent in the state of herd versions before `--min-ready`: recomputed from the ready
    /// time.
    #[serde(default)]
    available: bool,
    status: Option<String>,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct SavedSlot {
    failures: u32,
    restarts: u32,
    last_exit: Option<i32>,
    restart_in_ms: Option<u64>,
}

impl Pool {
    /// The pool's state; `None` while it is stopping or upgrading (a re-exec waits for those).
    pub fn export(&self, now: Instant) -> Option<PoolState> {
        use std::os::unix::process::ExitStatusExt;
        if self.phase != Phase::Serving
            || self.upgrade.is_some()
            || self.slots.iter().any(|s| s.spawning)
        {
            return None;
        }
        let ago = |t: Instant| now.saturating_duration_since(t).as_millis() as u64;
        let ahead = |t: Instant| t.saturating_duration_since(now).as_millis() as u64;
        Some(PoolState {
            desired: self.desired,
            generation: self.generation,
            latest_generation: self.latest_generation,
            workers: self
                .workers
                .iter()
                .map(|w| SavedWorker {
                    pid: w.pid,
                    slot: w.slot,
                    generation: w.generation,
                    ready: w.state == WorkerState::Ready,
                    stopping: match w.state {
                        WorkerState::Stopping {
                            reason,
                            deadline,
                            killed,
                        } => Some((reason, ahead(deadline), killed)),
                        _ => None,
                    },
                    age_ms: ago(w.started),
                    ping_age_ms: ago(w.last_ping),
                    ready_age_ms: w.ready_since.map(ago),
                    available: w.available,
                    status: w.status.clone(),
                })
                .collect(),
            slots: self
                .slots
                .iter()
                .map(|s| SavedSlot {
                    failures: s.backoff.failures(),
                    restarts: s.restarts,
                    last_exit: s.last_exit.map(|e| e.into_raw()),
                    restart_in_ms: s.restart_at.map(ahead),
                })
                .collect(),
        })
    }

    /// A pool continuing from `state`, with the (re-read) `config`.
    pub fn import(config: PoolConfig, state: PoolState, now: Instant) -> Pool {
        use std::os::unix::process::ExitStatusExt;
        let ago = |ms: u64| now.checked_sub(Duration::from_millis(ms)).unwrap_or(now);
        let ahead = |ms: u64| now + Duration::from_millis(ms);
        let mut pool = Pool {
            config,
            desired: state.desired,
            generation: state.generation,
            latest_generation: state.latest_generation,
            workers: state
                .workers
                .into_iter()
                .map(|w| Worker {
                    pid: w.pid,
                    slot: w.slot,
                    generation: w.generation,
                    state: match (w.stopping, w.ready) {
                        (Some((reason, deadline_ms, killed)), _) => {
                            stopping(reason, ahead(deadline_ms), killed)
                        }
                        (None, true) => WorkerState::Ready,
                        (None, false) => WorkerState::Starting,
                    },
                    started: ago(w.age_ms),
                    last_ping: ago(w.ping_age_ms),
                    ready_since: w.ready_age_ms.map(ago),
                    available: w.available,
                    status: w.status,
                })
                .collect(),
            slots: state
                .slots
                .into_iter()
                .map(|s| Slot {
                    backoff: Backoff::with_failures(s.failures),
                    restarts: s.restarts,
                    last_exit: s.last_exit.map(ExitStatus::from_raw),
                    restart_at: s.restart_in_ms.map(ahead),
                    spawning: false,
                    count: Count::default(),
                })
                .collect(),
            phase: Phase::Serving,
            upgrade: None,
            excused_until: None,
            by_pid: HashMap::new(),
            ready_slots: 0,
            available_slots: 0,
        };
        pool.reindex();
        pool
    }
}

/// The fields of an `sd_notify` message that herd acts on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NotifyMessage {
    /// `READY=1`.
    pub ready: bool,
    /// `STOPPING=1`.
    pub stopping: bool,
    /// `WATCHDOG=1`.
    pub watchdog: bool,
    /// `STATUS=...`.
    pub status: Option<String>,
}

impl NotifyMessage {
    /// Parses newline-separated `KEY=VALUE` assignments; unknown keys are ignored, as systemd
    /// does. Returns `None` for a message that is not UTF-8 or has a line without `=`.
    pub fn parse(bytes: &[u8]) -> Option<NotifyMessage> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut message = NotifyMessage::default();
        for line in text.split('\n').filter(|l| !l.is_empty()) {
            let (key, value) = line.split_once('=')?;
            match (key, value) {
                ("READY", "1") => message.ready = true,
                ("STOPPING", "1") => message.stopping = true,
                ("WATCHDOG", "1") => message.watchdog = true,
                ("STATUS", text) => {
                    message.status = Some(text.chars().take(200).collect());
                }
                _ => {}
            }
        }
        Some(message)
    }
}

/// When a ready worker becomes available; `None` if not ready (or never, for a `min_ready`
/// past the end of time).
fn available_at(w: &Worker, min_ready: Duration) -> Option<Instant> {
    w.ready_since?.checked_add(min_ready)
}

/// `d` rounded down to milliseconds, for messages.
fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

fn stopping(reason: Reason, deadline: Instant, killed: bool) -> WorkerState {
    WorkerState::Stopping {
        reason,
        deadline,
        killed,
    }
}

fn kill(pid: u32, reason: Reason) -> Action {
    Action::Signal {
        pid,
        signal: Signal::KILL,
        group: true,
        reason,
    }
}

fn signal_stop(pid: u32, signal: Signal, reason: Reason) -> Action {
    Action::Signal {
        pid,
        signal,
        group: true,
        reason,
    }
}

#[cfg(test)]
mod tests;
