//! Carrying out the pool's actions: starting and signalling workers, collecting their exits.
#[cfg(unix)]
use std::collections::HashSet;
use std::collections::VecDeque;
#[cfg(unix)]
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Instant;

use crate::logging::LogEvent;

use super::effects::{Count, Effect, ExitCause};
use super::platform::describe_exit;
use super::pool::Action;
use super::reap;
#[cfg(unix)]
use super::relisten;
use super::Supervisor;

impl Supervisor {
    pub(super) fn apply(&mut self, actions: Vec<Action>, first_generation: bool) {
        let mut queue: VecDeque<Action> = actions.into();
        while let Some(action) = queue.pop_front() {
            match action {
                // A stop decided while this batch ran (the first generation failed) cancels
                // the spawns still in it.
                Action::Spawn { .. } if self.pool.is_stopping() => {}
                Action::Spawn { slot, generation } => {
                    queue.extend(self.spawn(slot, generation, first_generation));
                }
                Action::Stop { pid, mode, reason } => {
                    let slot = self.pool.worker(pid).map_or(0, |w| w.slot);
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
                } => tracing::info!(
                    event = LogEvent::WorkerReady.as_str(),
                    slot,
                    pid,
                    generation,
                    "worker ready"
                ),
                Action::UpgradeEnded(result) => self.upgrade_ended(result),
            }
        }
    }

    pub(super) fn spawn(
        &mut self,
        slot: usize,
        generation: u64,
        first_generation: bool,
    ) -> Vec<Action> {
        let now = Instant::now();
        match self.effects.spawn(slot, generation) {
            Ok(pid) => {
                tracing::info!(
                    event = LogEvent::WorkerStarted.as_str(),
                    slot,
                    pid,
                    generation,
                    "worker started"
                );
                if !self.pool.spawned(slot, generation, pid, now) {
                    // Unreachable by construction; never leave a process unsupervised.
                    tracing::error!(
                        event = LogEvent::SystemError.as_str(),
                        slot,
                        pid,
                        "worker started in a slot that was not free; killing it"
                    );
                    self.effects.execute([Effect::KillGroup { pid }]);
                    #[cfg(unix)]
                    self.leftovers.abandon(pid, slot, now);
                }
                Vec::new()
            }
            Err(e) if first_generation && e.cannot_execute => {
                let (_, mut actions) = self.pool.spawn_failed(slot, &e.message, now);
                if self.phase.first_generation_failed(e.message) {
                    actions.extend(self.pool.stop(false, None, now));
                }
                actions
            }
            Err(e) => {
                let (delay, actions) = self.pool.spawn_failed(slot, &e.message, now);
                tracing::error!(
                    event = LogEvent::WorkerStartFailed.as_str(),
                    slot,
                    retry_in = %humantime::format_duration(delay),
                    "cannot start worker: {}",
                    e.message
                );
                actions
            }
        }
    }

    /// Collects exited workers (see [`reap`](super::reap)): the pool learns which exited.
    #[cfg(windows)]
    pub(super) fn reap(&mut self) {
        let workers = self.pool.workers().iter().map(|w| w.pid);
        let found = reap::look(self.effects.children(), workers, []);
        for exit in found.workers {
            self.worker_exited(exit.pid, exit.status);
        }
    }

    /// Collects exited children (see [`reap`](super::reap)): the pool learns which workers
    /// exited, the leftovers of each are looked at in one pass, re-exec checks are accounted.
    #[cfg(unix)]
    pub(super) fn reap(&mut self) {
        let workers = self.pool.workers().iter().map(|w| w.pid);
        let found = reap::look(
            self.effects.children(),
            workers,
            self.reexec_children.pids(),
        );
        let mut exits = Vec::new();
        for exit in found.workers {
            let Some((slot, state)) = self.pool.worker(exit.pid).map(|w| (w.slot, w.state)) else {
                continue;
            };
            self.worker_exited(exit.pid, exit.status);
            if exit.held {
                exits.push((exit.pid, slot, Some(state)));
            }
        }
        // Re-exec check children lead their own groups: held unreaped, like workers, while
        // their groups have members.
        for (pid, status) in found.checks {
            self.reexec_children.exited(pid, status);
            self.leftovers.check_exited(pid, Instant::now());
        }
        for pid in found.lost_checks {
            self.reexec_children.lost(pid);
        }
        let (stop_signal, grace) = (self.effects.stop_signal(), self.pool.config().grace);
        self.leftovers.exited(
            &mut self.effects.process_groups(),
            &exits,
            stop_signal,
            grace,
            Instant::now(),
        );
        reap::reap_own_group(self.effects.children());
    }

    /// Worker `pid` exited with `status`: the pool learns it, the log and the metrics say it.
    pub(super) fn worker_exited(&mut self, pid: u32, status: ExitStatus) {
        // A worker that shut the shared socket down on its way out: repair it before the
        // others fail on it, and before this exit is judged (it may be one of theirs).
        #[cfg(unix)]
        self.check_sockets();
        let Some((exit, actions)) =
            self.pool
                .exited(pid, super::platform::worker_exit(status), Instant::now())
        else {
            return;
        };
        #[cfg(unix)]
        {
            let clean = status.success() || exit.stopped_for.is_some();
            self.relisten
                .worker_exited(exit.slot, pid, clean, Instant::now());
        }
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
        #[cfg_attr(windows, allow(unused_mut))]
        let mut how = describe_exit(status);
        #[cfg(unix)]
        if let Some(hint) = self.limit_hint(exit.slot, status, exit.stopped_for.is_some()) {
            how.push_str(&hint);
        }
        self.phase.worker_exited(&exit, pid, &how);
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
        self.apply(actions, false);
    }

    /// `; likely cause: --rlimit cpu=1 (...)` when a worker that herd did not stop was killed
    /// by a signal that a resource limit set by option sends (see [`LimitHints`]).
    #[cfg(unix)]
    fn limit_hint(&mut self, slot: usize, status: ExitStatus, stopped: bool) -> Option<String> {
        let suspects = match status.signal() {
            Some(signal) if !stopped => self.effects.limits_behind(signal),
            _ => Vec::new(),
        };
        self.limit_hinted.hint(slot, &suspects)
    }

    /// Makes the listeners that a worker shut down listen again; counts them.
    #[cfg(unix)]
    pub(super) fn check_sockets(&mut self) {
        let now = Instant::now();
        let holders: Vec<(usize, u32)> = self
            .pool
            .workers()
            .iter()
            .map(|w| (w.slot, w.pid))
            .collect();
        let restored = self.relisten.check(self.effects.listeners(), &holders, now);
        if restored > 0 {
            self.effects
                .execute([Effect::Count(Count::SocketsRestored(restored))]);
            self.pool.excuse_exits_until(now + relisten::EXCUSE);
        }
    }

    /// Whether every wanted slot has a ready worker.
    pub(super) fn all_ready(&self) -> bool {
        self.pool.all_ready()
    }
}

/// Which slots' exits were already blamed on a resource limit, so that a crash-looping slot
/// gets the hint once.
#[cfg(unix)]
#[derive(Debug, Default)]
pub struct LimitHints {
    hinted: HashSet<usize>,
}

#[cfg(unix)]
impl LimitHints {
    /// The hint for an exit of `slot` by a signal that the resource limits `suspects` send
    /// (none when no limit does, or herd stopped the worker): once per slot while it keeps
    /// failing that way, again after an exit of another kind.
    pub fn hint(&mut self, slot: usize, suspects: &[&str]) -> Option<String> {
        if suspects.is_empty() {
            self.hinted.remove(&slot);
            return None;
        }
        if !self.hinted.insert(slot) {
            return None;
        }
        Some(format!(
            "; likely cause: {} (a worker past its resource limit gets this signal)",
            suspects.join(" or ")
        ))
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn a_limit_is_blamed_once_per_slot_while_it_keeps_failing_that_way() {
        let mut hints = LimitHints::default();
        let cpu = ["--rlimit cpu=1:5"];
        assert_eq!(
            hints.hint(0, &cpu).as_deref(),
            Some("; likely cause: --rlimit cpu=1:5 (a worker past its resource limit gets this signal)")
        );
        assert_eq!(hints.hint(0, &cpu), None);
        // Another slot gets its own hint.
        assert!(hints.hint(1, &cpu).is_some());
        // An exit of another kind, then the limit again: hinted again.
        assert_eq!(hints.hint(0, &[]), None);
        let both = ["--rlimit cpu=1", "--rlimit fsize=1"];
        assert_eq!(
            hints.hint(0, &both).as_deref(),
            Some("; likely cause: --rlimit cpu=1 or --rlimit fsize=1 (a worker past its resource limit gets this signal)")
        );
    }
}
