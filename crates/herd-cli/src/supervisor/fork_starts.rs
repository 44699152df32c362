//! The loop's side of `--fork-server` (see [`fork_server`](super::fork_server)): starts held
//! back while their generation's fork server loads, let go when it says `READY=1`, failed
//! when it exits first or runs out of time.

use std::process::ExitStatus;
use std::time::{Duration, Instant};

use super::pool::Readiness;
use super::starts::Start;
use super::warm_up::Lowered;
use super::Supervisor;
use crate::command::StartError;
use crate::logging::LogEvent;
use crate::supervisor::fork_server::{Ended, Opened};

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
            // Loading beside the worker its slot's start replaces, it loads as that start would.
            let replaces_a_server = self.pool.slot_serves(start.slot);
            let lowering = self.warm_up.and_then(|w| w.for_start(replaces_a_server));
            match self
                .effects
                .spawner()
                .fork_gate(start.generation, (timeout, lowering))
            {
                Ok(Opened::Go) => go.push(*start),
                Ok(Opened::Wait) => self.starts.hold(*start),
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
        let Some(ended) = self.effects.spawner().fork_server_exited(pid, &how) else {
            return;
        };
        self.warming.ended(pid);
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
    /// long (their exits fail their starts).
    pub(super) fn fork_servers_after_turn(&mut self, now: Instant) {
        if self.pool.is_stopping() {
            self.starts.clear();
            self.effects.spawner().close_fork_servers();
            return;
        }
        self.effects.spawner().fork_servers_timed_out(now);
    }

    /// `--starting-nice`: fork server `pid`, which herd lowered as `how` while it loads, gets
    /// herd's priority back.
    pub(super) fn raise_fork_server(&mut self, pid: u32, how: Lowered) {
        let serving = self.workers_nice;
        if let Err(e) = self.effects.spawner().restore_priority(pid, how, serving) {
            tracing::warn!(
                event = LogEvent::PriorityNotRestored.as_str(),
                pid,
                "cannot give the fork server herd's priority back: {e}"
            );
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
