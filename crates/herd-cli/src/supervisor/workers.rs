//! Carrying out the pool's actions: starting and signalling workers, collecting their exits.
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use crate::logging::LogEvent;

use super::effects::{Count, Effect, ExitCause};
use super::platform::describe_exit;
use super::pool::{Action, Reason, WorkerState};
use super::reap;
use super::starts::Start;
use super::warm_up::Spawned;
use super::Supervisor;
use crate::command::StartError;

impl Supervisor {
    pub(super) fn apply(&mut self, actions: Vec<Action>, first_generation: bool) {
        for action in actions {
            match action {
                Action::Spawn { slot, generation } => self.starts.push(Start {
                    slot,
                    generation,
                    first_generation,
                }),
                Action::Stop { pid, mode, reason } => {
                    let slot = self.pool.worker(pid).map_or(0, |w| w.slot);
                    if let Reason::Recycled(cause) = reason {
                        tracing::info!(
                            event = LogEvent::Recycled.as_str(),
                            slot,
                            pid,
                            reason = cause.as_str(),
                            "worker {slot} (pid {pid}) recycled: its successor is available; \
                             stopping it"
                        );
                    }
                    let stop = Effect::StopWorker {
                        slot,
                        pid,
                        mode,
                        reason,
                    };
                    self.effects.execute([stop]);
                }
                Action::DrainTimedOut { slot, pid, queued } => tracing::warn!(
                    event = LogEvent::DrainTimeout.as_str(),
                    slot,
                    pid,
                    queued,
                    "the slot's queue did not drain in time; stopping its worker anyway"
                ),
                Action::Ready {
                    slot,
                    pid,
                    generation,
                } => {
                    tracing::info!(
                        event = LogEvent::WorkerReady.as_str(),
                        slot,
                        pid,
                        generation,
                        "worker ready"
                    );
                    if let Some(how) = self.warming.ready(pid, Instant::now()) {
                        self.restore_priority(slot, pid, how);
                    }
                }
                Action::UpgradeEnded(result) => self.upgrade_ended(result),
            }
        }
    }

    /// Starts the next few workers the pool asked for ([`starts`](super::starts)), a batch
    /// at a time: the children of a batch start side by side.
    pub(super) fn start_some(&mut self) {
        let turn = Instant::now();
        let mut started = 0;
        loop {
            // herd's very first start goes alone: a program that cannot be executed stops
            // herd before any other worker starts (a first generation that fails stops the
            // pool; the starts beside the failed one would be killed).
            let size = match self.pool.workers().is_empty() {
                true => 1,
                false => self.effects.spawner().batch(),
            };
            let mut batch = self.starts.next_batch(started, turn.elapsed(), size);
            if batch.is_empty() {
                return;
            }
            // A stop decided since (the first generation failed, `herd stop`) cancels the
            // starts still waiting, and a scale-down those of the slots it took away.
            if self.pool.is_stopping() {
                self.starts.clear();
                return;
            }
            // A slot's start queued again by a scale-up after its scale-down counts once.
            let mut seen = std::collections::HashSet::new();
            batch.retain(|start| self.pool.wants_start(start.slot) && seen.insert(start.slot));
            started += batch.len();
            if !batch.is_empty() {
                self.spawn_batch(&batch);
            }
        }
    }

    /// Starts the workers of `batch`, then tells the pool how each start went, in order. A
    /// start whose generation's fork server is not ready (or awaited for another start) is
    /// held back, and one that asked it awaits its reply (`--fork-server`).
    fn spawn_batch(&mut self, batch: &[Start]) {
        let now = Instant::now();
        let batch = self.through_fork_gate(batch, now);
        let starts: Vec<_> = batch
            .iter()
            .map(|s| {
                let beside_servers = self.starts_beside_servers(s);
                let lowering = self.warm_up.and_then(|w| w.for_start(beside_servers));
                (s.slot, s.generation, lowering)
            })
            .collect();
        let results = self.effects.spawn_all(&starts);
        for ((start, result), &(_, _, lowering)) in batch.iter().zip(results).zip(&starts) {
            let Some(result) = result else {
                // It asked its fork server: it ends when the reply comes, its slot starting.
                self.starts.ask(*start, lowering.is_some());
                continue;
            };
            let actions = self.spawned(start, lowering.is_some(), result, now);
            self.apply(actions, start.first_generation);
        }
    }

    /// The start of `start` at `now` gave `result` (`to_lower`: herd meant to lower it). Only
    /// a worker herd lowered warms up (and is raised later); one it did not runs at its own
    /// priority. Only a start at herd's priority by design is timed for the budget.
    pub(super) fn spawned(
        &mut self,
        start: &Start,
        to_lower: bool,
        result: Result<Spawned, StartError>,
        now: Instant,
    ) -> Vec<Action> {
        let (slot, generation) = (start.slot, start.generation);
        match result {
            // Only a fork server (`--fork-server`) can answer so, wrongly.
            Ok(Spawned { pid, .. }) if self.pool.worker(pid).is_some() => {
                let why = format!("its fork server answered pid {pid}, which is already a worker");
                let (retry, actions) = self.pool.spawn_failed(slot, &why, now);
                start_failed(slot, &why, retry);
                actions
            }
            Ok(Spawned { pid, lowered }) => {
                tracing::info!(
                    event = LogEvent::WorkerStarted.as_str(),
                    slot,
                    pid,
                    generation,
                    "worker started"
                );
                if let Some(how) = lowered {
                    let budget = self.warming.budget(self.pool.config().readiness);
                    self.warming.started(pid, now, budget, how);
                } else if self.warm_up.is_some() && !to_lower {
                    self.warming.started_at_full(pid, now);
                }
                if !self.pool.spawned(slot, generation, pid, now) {
                    // A start of the same batch made herd stop (the first generation cannot
                    // be executed), or its fork server answered after a scale-down took its
                    // slot away. Never leave a process unsupervised.
                    let why = match self.pool.is_stopping() {
                        true => "herd stops",
                        false => "its slot was scaled away meanwhile",
                    };
                    tracing::info!(
                        event = LogEvent::WorkerKilled.as_str(),
                        slot,
                        pid,
                        "worker {slot} (pid {pid}) started but is no longer wanted ({why}); \
                         killing it"
                    );
                    self.effects.execute([Effect::KillGroup { pid }]);
                    self.platform.abandoned(pid, slot, now);
                }
                Vec::new()
            }
            Err(e) if start.first_generation && e.cannot_execute => {
                let (_, mut actions) = self.pool.spawn_failed(slot, &e.message, now);
                if self.phase.first_generation_failed(e.message) {
                    actions.extend(self.pool.stop(false, None, now));
                }
                actions
            }
            Err(e) => {
                let (retry, actions) = self.pool.spawn_failed(slot, &e.message, now);
                start_failed(slot, &e.message, retry);
                actions
            }
        }
    }

    /// Collects exited children (see [`reap`](super::reap)): the pool learns which workers
    /// exited; then the platform looks at what they left (Unix: their process groups, in one
    /// pass) and at its own children (Unix: re-exec checks).
    pub(super) fn reap(&mut self) {
        self.reap_all(|_| {});
    }

    /// As [`reap`](Self::reap), but the successors of the workers that exited start before the
    /// platform looks at what those left: on Linux that look reads every process's
    /// `/proc/PID/stat`, tens of milliseconds with thousands of workers, and a replacement
    /// need not wait for it (it does not depend on it: leftovers are stopped beside it).
    pub(super) fn reap_and_restart(&mut self) {
        self.reap_then(|supervisor| {
            let due = supervisor.pool.due(Instant::now());
            supervisor.apply(due, false);
            supervisor.start_some();
        });
    }

    /// Collects exited children; `exited` runs once the pool has learnt of some, before the
    /// platform's look. The exit the platform names at once (if a worker's) is handled alone
    /// first: its successor starts and what it left is looked at; when no other child has
    /// exited, that is all (a killed worker's successor is not kept waiting for a look at every
    /// worker, 4 ms at 4096, then a read of herd's children, 2 ms). Otherwise every worker
    /// and re-exec check is looked at, as [`reap_all`](Self::reap_all) does. (A worker or
    /// check someone else reaped, which only that look finds, is found on the next wake-up
    /// with more than one exit or a child that is not a worker: nothing in herd reaps them.)
    fn reap_then(&mut self, mut exited: impl FnMut(&mut Self)) {
        let pool = &self.pool;
        if let Some(first) =
            reap::first_exit(self.effects.children(), |pid| pool.worker(pid).is_some())
        {
            let mut exits = Vec::new();
            self.worker_found_exited(first, &mut exits);
            exited(self);
            self.reaped(Vec::new(), Vec::new(), exits);
            if !reap::more_exited(self.effects.children()) {
                return;
            }
        }
        self.reap_all(exited);
    }

    /// Looks at every worker and re-exec check; `exited` runs once the pool has learnt of
    /// those that exited, before the platform's look. At start-up and after a re-exec this is
    /// the look: workers and checks handed over that are no longer herd's children are found
    /// there.
    fn reap_all(&mut self, mut exited: impl FnMut(&mut Self)) {
        let workers = self.pool.workers().iter().map(|w| w.pid);
        let checks = self.platform.check_pids();
        let found = reap::look(self.effects.children(), workers, checks);
        let mut exits = Vec::new();
        let any_exited = !found.workers.is_empty();
        for exit in found.workers {
            self.worker_found_exited(exit, &mut exits);
        }
        if any_exited {
            exited(self);
        }
        self.reaped(found.checks, found.lost_checks, exits);
    }

    /// A worker found exited: the pool learns it; one still held unreaped joins `exits` (pid,
    /// slot, state) for the platform's look at what it left.
    fn worker_found_exited(
        &mut self,
        exit: reap::WorkerExit,
        exits: &mut Vec<(u32, usize, Option<WorkerState>)>,
    ) {
        let Some((slot, state)) = self.pool.worker(exit.pid).map(|w| (w.slot, w.state)) else {
            return;
        };
        self.worker_exited(exit.pid, exit.status);
        if exit.held {
            exits.push((exit.pid, slot, Some(state)));
        }
    }

    /// Worker `pid` exited with `status`: the pool learns it, the log and the metrics say it.
    pub(super) fn worker_exited(&mut self, pid: u32, status: ExitStatus) {
        self.worker_exiting();
        self.warming.ended(pid);
        let Some((exit, actions)) =
            self.pool
                .exited(pid, super::platform::worker_exit(status), Instant::now())
        else {
            return;
        };
        let stopped = exit.stopped_for.is_some();
        let hint = self.worker_gone(exit.slot, pid, status, stopped);
        let cause = if exit.stopped_for.is_some() {
            ExitCause::Stopped
        } else if status.code().is_some() {
            ExitCause::Exit
        } else {
            ExitCause::Signal
        };
        let restart = exit.restart_in.map(|_| Effect::Count(Count::Restart));
        let counts = [Effect::Count(Count::Exit(cause))]
            .into_iter()
            .chain(restart);
        self.effects.execute(counts);
        crate::output::worker_exited(pid);
        let how = describe_exit(status) + hint.as_deref().unwrap_or("");
        let readiness = self.pool.config().readiness;
        self.phase.worker_exited(&exit, pid, &how, readiness);
        let uptime = format!("{:.3}s", exit.uptime.as_secs_f64());
        let (slot, generation) = (exit.slot, exit.generation);
        match (exit.stopped_for, exit.restart_in) {
            (Some(reason), None) => tracing::info!(
                event = LogEvent::WorkerExited.as_str(),
                slot,
                pid,
                generation,
                %uptime,
                "worker exited: {how} (stopped: {})",
                reason.describe()
            ),
            (None, None) => {
                tracing::warn!(event = LogEvent::WorkerExited.as_str(), slot, pid, generation, %uptime, "worker exited: {how}")
            }
            (_, Some(delay)) if delay.is_zero() => tracing::warn!(
                event = LogEvent::WorkerExited.as_str(),
                slot,
                pid,
                generation,
                %uptime,
                "worker exited: {how}; restarting it"
            ),
            (_, Some(delay)) => tracing::warn!(
                event = LogEvent::WorkerExited.as_str(),
                slot,
                pid,
                generation,
                %uptime,
                failures = self.pool.failures(slot),
                restart_in = %humantime::format_duration(delay),
                "worker exited: {how}; restarting it in {} (crash-loop backoff)",
                humantime::format_duration(delay)
            ),
        }
        if exit.lost {
            self.slot_lost(exit.slot);
        }
        self.apply(actions, false);
    }

    /// Whether every wanted slot has a ready worker.
    pub(super) fn all_ready(&self) -> bool {
        self.pool.all_ready()
    }
}

/// Logs that the worker for `slot` could not be started (`why`), and when the pool tries
/// again: after `retry`, or never (`None`: the worker it was to replace, an upgrade's or a
/// recycle's, serves on in its slot).
fn start_failed(slot: usize, why: &str, retry: Option<Duration>) {
    match retry {
        Some(delay) => tracing::error!(
            event = LogEvent::WorkerStartFailed.as_str(),
            slot,
            retry_in = %humantime::format_duration(delay),
            "cannot start worker: {why}"
        ),
        None => tracing::error!(
            event = LogEvent::WorkerStartFailed.as_str(),
            slot,
            "cannot start worker: {why}; the worker of its slot serves on"
        ),
    }
}
