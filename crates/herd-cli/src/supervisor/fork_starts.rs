//! The loop's side of `--fork-server` (see [`fork_server`](super::fork_server)): starts held
//! back while their generation's fork server loads (or answers another), let go when it says
//! `READY=1` (or answered), failed when it exits first or runs out of time; starts that asked
//! it for their worker, ended when it answers (or does not).

use std::process::ExitStatus;
use std::time::{Duration, Instant};

use super::effects::Effect;
use super::pool::Readiness;
use super::starts::Start;
use super::warm_up::{Lowered, WarmUpEnd};
use super::Supervisor;
use crate::command::StartError;
use crate::logging::LogEvent;
use crate::supervisor::fork_server::{Ended, Opened, Replied};

/// How long a fork server may load: the time a worker has to become ready (`--ready-timeout`
/// with `--ready notify`), else this.
const LOAD_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a fork server may load under `readiness`.
fn load_timeout(readiness: Readiness) -> Duration {
    match readiness {
        Readiness::Notify { timeout } => timeout,
        Readiness::Delay(_) => LOAD_TIMEOUT,
    }
}

impl Supervisor {
    /// The starts of `batch` that may go ahead now; those whose fork server is loading (or
    /// was just started) are held back, those whose fork server could not be started fail.
    pub(super) fn through_fork_gate(&mut self, batch: &[Start], now: Instant) -> Vec<Start> {
        let readiness = self.pool.config().readiness;
        let timeout = load_timeout(readiness);
        let mut go = Vec::with_capacity(batch.len());
        for start in batch {
            // Loading beside the workers that serve, it loads as a start beside them would.
            let beside_servers = self.starts_beside_servers(start);
            let lowering = self.warm_up.and_then(|w| w.for_start(beside_servers));
            match self
                .effects
                .spawner()
                .fork_gate(start.generation, (timeout, lowering))
            {
                Ok(Opened::Go) => go.push(*start),
                Ok(Opened::Wait) => {
                    // A start at herd's priority (a restart, one beside no server) does not
                    // wait on a load left at the starting priority.
                    if lowering.is_none() && self.warm_up.is_some() {
                        self.raise_loading_fork_servers();
                    }
                    self.starts.hold(*start);
                }
                Ok(Opened::Started { pid, lowered }) => {
                    // A load at herd's priority is timed for the warm-up budget, as a start.
                    match lowered {
                        Some(how) => {
                            let budget = self.warming.budget(readiness);
                            self.warming.started(pid, now, budget, how);
                        }
                        None if self.warm_up.is_some() => self.warming.started_at_full(pid, now),
                        None => {}
                    }
                    self.starts.hold(*start);
                }
                Err(e) => self.fork_start_failed(start, e, now),
            }
        }
        go
    }

    /// Process `pid`, which is no worker, said `READY=1`: if it is a fork server that was
    /// loading, the starts held back go ahead. Whether it was one.
    pub(super) fn fork_server_said_ready(&mut self, pid: u32) -> bool {
        if self.effects.spawner().fork_server_ready(pid).is_none() {
            return false;
        }
        // herd's priority back before the first fork: its workers are born with it.
        if let Some(how) = self.warming.ready(pid, Instant::now()) {
            self.raise_fork_server(pid, how);
        }
        self.starts.release_held();
        self.start_some();
        true
    }

    /// herd's child `pid`, which is no worker, exited with `status`: if it was a fork server
    /// that never became ready, its generation's starts held back fail; the others go ahead
    /// (they start another fork server when they need one).
    pub(super) fn fork_server_exited(&mut self, pid: u32, status: ExitStatus) {
        let how = super::platform::describe_exit(status);
        // One closed and killed while it loaded is no longer among the fork servers, but its
        // warm-up was followed all the same.
        self.warming.ended(pid);
        let Some(ended) = self.effects.spawner().fork_server_exited(pid, &how) else {
            return;
        };
        if let Ended::Failed { generation, why } = ended {
            let now = Instant::now();
            for start in self.starts.take_held(generation) {
                let e = StartError {
                    cannot_execute: false,
                    message: why.clone(),
                };
                self.fork_start_failed(&start, e, now);
            }
        }
        self.starts.release_held();
        self.start_some();
    }

    /// After each turn: once herd stops, closes every fork server and forgets the starts
    /// still waiting (held back ones included); else kills the fork servers that loaded too
    /// long (their exits fail their starts). Either way, kills those that did not answer a
    /// request in time, and ends the starts that awaited a reply (answered or not).
    pub(super) fn fork_servers_after_turn(&mut self, now: Instant) {
        if self.pool.is_stopping() {
            self.starts.clear();
            self.effects.spawner().close_fork_servers();
        } else if self.pool.upgrade_in_progress().is_none() {
            // An older generation's fork server forks nothing more once no start of its
            // generation is to come.
            let current = self.pool.generation();
            let wanted = self
                .starts
                .oldest_generation()
                .map_or(current, |g| g.min(current));
            self.effects.spawner().close_fork_servers_before(wanted);
        }
        self.effects.spawner().fork_servers_timed_out(now);
        let replied = self.effects.spawner().take_replied();
        let any = !replied.is_empty();
        for replied in replied {
            self.fork_replied(replied, Instant::now());
        }
        if any {
            // The fork server is free for the next start held back.
            self.starts.release_held();
        }
        if self.starts.has_early() && (any || !self.effects.awaits_fork_replies()) {
            self.hear_early_notifications();
        }
    }

    /// The notifications that came from processes that were no workers while starts awaited
    /// their fork server's reply are heard again: those from a worker forked since, or from a
    /// process it ran (its ancestors are read as the message comes: `systemd-notify` may be
    /// gone by now), are its own (its `READY=1` may come before herd reads its pid); the
    /// others are kept while starts still await a reply, then dropped as any message from no
    /// worker.
    fn hear_early_notifications(&mut self) {
        let awaiting = self.effects.awaits_fork_replies();
        let pool = &self.pool;
        let heard = (self.starts).take_early(awaiting, |pid| pool.worker(pid).is_some());
        for (sender, worker, message) in heard {
            self.notified(Some((sender, worker)), &message, false);
        }
    }

    /// A start that awaited its fork server's reply ended, as `replied` says, at `now`.
    fn fork_replied(&mut self, replied: Replied, now: Instant) {
        let (slot, pid) = match replied {
            Replied::Start {
                slot,
                generation,
                result,
            } => {
                let Some((start, to_lower)) = self.starts.answered(slot, generation) else {
                    // herd stopped since: a worker forked for it is stopped below.
                    let Ok(spawned) = result else { return };
                    return self.fork_replied(
                        Replied::Unwanted {
                            slot,
                            pid: spawned.pid,
                        },
                        now,
                    );
                };
                let result = match result {
                    // A hostile or broken fork server naming a serving worker: one process is
                    // not two workers, and that one is left alone.
                    Ok(spawned) if self.pool.worker(spawned.pid).is_some() => Err(StartError {
                        cannot_execute: false,
                        message: format!(
                            "its fork server answered pid {}, which is another slot's worker \
                             already",
                            spawned.pid
                        ),
                    }),
                    other => other,
                };
                let actions = self.spawned(&start, to_lower, result, now);
                return self.apply(actions, start.first_generation);
            }
            Replied::Unwanted { slot, pid } if self.pool.worker(pid).is_some() => {
                tracing::warn!(
                    event = LogEvent::WorkerStartFailed.as_str(),
                    slot,
                    pid,
                    "its fork server answered pid {pid}, another slot's worker, for a start no \
                     longer wanted; leaving that worker alone"
                );
                return;
            }
            Replied::Unwanted { slot, pid } => (slot, pid),
        };
        // A real process, herd's child, that leads its own group: stopped as a worker that
        // started where no slot wants it.
        tracing::warn!(
            event = LogEvent::WorkerStartFailed.as_str(),
            slot,
            pid,
            "its fork server forked worker {pid} for a start no longer wanted (herd stops, or \
             its upgrade was aborted); killing it"
        );
        self.warming.ended(pid);
        self.effects.execute([Effect::KillGroup { pid }]);
        self.platform.abandoned(pid, slot, now);
    }

    /// An upgrade past `generation` was aborted: its starts still to be made, and those of
    /// `slots`, which awaited its fork server's reply, fail (the slot's old worker serves on; a
    /// worker forked for one is stopped as it comes).
    pub(super) fn cancel_starts_after(&mut self, generation: u64, slots: &[usize]) {
        let now = Instant::now();
        for start in self.starts.take_after(generation, slots) {
            let e = StartError {
                cannot_execute: false,
                message: format!("its upgrade to generation {} was aborted", start.generation),
            };
            self.fork_start_failed(&start, e, now);
        }
    }

    /// `--starting-nice`: every fork server still loading at the starting priority gets herd's
    /// (`warm_up_over`, `reason` `waited_for`): a start at herd's priority waits for its load.
    fn raise_loading_fork_servers(&mut self) {
        for pid in self.effects.fork_server_pids() {
            if let Some(how) = self.warming.cut(pid) {
                tracing::info!(
                    event = LogEvent::WarmUpOver.as_str(),
                    pid,
                    reason = WarmUpEnd::WaitedFor.as_str(),
                    "fork server still loading at --starting-nice gets herd's priority back: a \
                     start at herd's priority waits for it"
                );
                self.raise_fork_server(pid, how);
            }
        }
    }

    /// `--starting-nice`: fork server `pid`, which herd lowered as `how` while it loads, gets
    /// herd's priority back.
    pub(super) fn raise_fork_server(&mut self, pid: u32, how: Lowered) {
        let serving = self.workers_nice;
        match self.effects.spawner().restore_priority(pid, how, serving) {
            // Its load is timed from now (one left lowered is only slow; its timeout speaks).
            Ok(()) => self
                .effects
                .spawner()
                .fork_server_raised(pid, Instant::now()),
            Err(e) => tracing::warn!(
                event = LogEvent::PriorityNotRestored.as_str(),
                pid,
                "cannot give the fork server herd's priority back: {e}"
            ),
        }
    }

    fn fork_start_failed(&mut self, start: &Start, e: StartError, now: Instant) {
        let actions = self.spawned(start, false, Err(e), now);
        self.apply(actions, start.first_generation);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fork_server_loads_for_the_ready_timeout_or_a_minute() {
        let timeout = Duration::from_secs(7);
        assert_eq!(load_timeout(Readiness::Notify { timeout }), timeout);
        assert_eq!(load_timeout(Readiness::Delay(timeout)), LOAD_TIMEOUT);
    }
}
