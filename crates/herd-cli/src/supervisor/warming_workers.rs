//! Carrying out `--starting-nice` ([`warm_up`]): which starts are lowered, and raising the
//! workers lowered at start once their warm-up ends (ready, starved, past its budget, or beside
//! no serving worker any more); a starved one trickles first.
use std::time::{Duration, Instant};

use crate::logging::LogEvent;

use super::pool::WorkerState;
use super::starts::Start;
use super::warm_up::{self, Lowered, WarmUpEnd};
use super::Supervisor;

impl Supervisor {
    /// `--starting-nice`: a worker herd lowered as `how` gets herd's priority back.
    pub(super) fn restore_priority(&mut self, slot: usize, pid: u32, how: Lowered) {
        let serving = self.workers_nice;
        if let Err(e) = self.effects.spawner().restore_priority(pid, how, serving) {
            tracing::warn!(
                event = LogEvent::PriorityNotRestored.as_str(),
                slot,
                pid,
                "cannot give the worker herd's priority back: {e}"
            );
        }
    }

    /// `--starting-nice`: workers still starting when their warm-up ends get herd's priority
    /// back, so that a start-up starved on a saturated machine can still be ready in time;
    /// one starved in `SCHED_IDLE` first trickles (see [`Self::trickle`]).
    /// The starvation reads stay in the loop, as the raise on readiness does: at most 64
    /// workers' two small `/proc` files per 50 ms (1.4 ms of CPU at most), only while
    /// successors warm up; on the sampler thread they would wait behind its rounds of every
    /// worker's memory (a tenth of a second and more with thousands of workers).
    pub(super) fn warm_up_due(&mut self) {
        let now = Instant::now();
        let mut over: Vec<_> = self
            .warming
            .due(now)
            .into_iter()
            .map(|w| (w, WarmUpEnd::Budget))
            .collect();
        // The pool's last ready worker is gone (exited, stopped, scaled away): what still warms
        // up starts beside no server any more, as herd's first workers do.
        if !self.pool.serves() {
            over.extend(
                self.warming
                    .cut_short()
                    .into_iter()
                    .map(|w| (w, WarmUpEnd::PoolEmpty)),
            );
        }
        let spawner = self.effects.spawner();
        let longest = warm_up::budget_for(self.pool.config().readiness);
        for (pid, how) in self.warming.starved(now, |pid| spawner.sched_stat(pid)) {
            let in_tree = || self.effects.spawner().nice_values(pid);
            let nice = warm_up::on_starvation(how, self.workers_nice, in_tree);
            let until = self.warming.trickle_until(pid, longest, now);
            match (nice, until) {
                (Some(nice), Some(until)) if self.trickle(pid, nice, until) => {}
                _ => {
                    self.warming.ended(pid);
                    over.push(((pid, how), WarmUpEnd::Starved));
                }
            }
        }
        for ((pid, how), reason) in over {
            let Some(slot) = self.starting_slot(pid) else {
                if self.effects.fork_server_pids().contains(&pid) {
                    tracing::info!(
                        event = LogEvent::WarmUpOver.as_str(),
                        pid,
                        reason = reason.as_str(),
                        "fork server still loading at --starting-nice gets herd's priority back"
                    );
                    self.raise_fork_server(pid, how);
                }
                continue;
            };
            self.warm_up_over(slot, pid, how, reason);
        }
    }

    /// `--starting-nice`: the warm-up of worker `pid` of `slot`, lowered as `how`, ends for
    /// `reason` while it is still starting: it gets herd's priority back.
    fn warm_up_over(&mut self, slot: usize, pid: u32, how: Lowered, reason: WarmUpEnd) {
        tracing::info!(
            event = LogEvent::WarmUpOver.as_str(),
            slot,
            pid,
            reason = reason.as_str(),
            "worker still starting at --starting-nice is {}: it gets herd's priority back",
            reason.says()
        );
        self.restore_priority(slot, pid, how);
    }

    /// `--starting-nice`: the pool lost its worker in `slot` (it exited unasked, or stopped for
    /// its watchdog), and none is ready there: what still warms up in the slot (an upgrade's
    /// or a recycle's successor, lowered beside the worker it was to replace) is the slot's
    /// restart now and gets herd's priority at once (`slot_lost`; `pool_empty` when no worker
    /// of the pool serves any more). A successor not started yet starts as a restart does
    /// ([`Pool::starts_restart`](herd_core::Pool::starts_restart)). With `--balance reuseport`
    /// the slot's own queue waits for it alone.
    pub(super) fn slot_lost(&mut self, slot: usize) {
        if self.pool.slot_serves(slot) {
            return;
        }
        let reason = match self.pool.serves() {
            true => WarmUpEnd::SlotLost,
            false => WarmUpEnd::PoolEmpty,
        };
        let starting: Vec<u32> = self
            .pool
            .workers()
            .iter()
            .filter(|w| w.slot == slot && w.state == WorkerState::Starting)
            .map(|w| w.pid)
            .collect();
        for pid in starting {
            if let Some(how) = self.warming.cut(pid) {
                self.warm_up_over(slot, pid, how, reason);
            }
        }
    }

    /// The slot of worker `pid` if it is still starting.
    fn starting_slot(&self, pid: u32) -> Option<usize> {
        let worker = self.pool.worker(pid)?;
        (worker.state == WorkerState::Starting).then_some(worker.slot)
    }

    /// `--starting-nice`: a worker (or fork server) still starting, starved in `SCHED_IDLE`,
    /// trickles at nice value `nice` (a tenth of a serving worker's share) until it is ready
    /// or `until`, when its longest budget ends: at saturation its start-up takes that little
    /// from the serving workers rather than all it needs at once, where herd's priority back
    /// would give it an equal share. Whether it does (false: it is gone or no longer
    /// starting, or its priority could not be moved; it gets herd's back instead).
    fn trickle(&mut self, pid: u32, nice: i32, until: Instant) -> bool {
        let slot = self.starting_slot(pid);
        if slot.is_none() && !self.effects.fork_server_pids().contains(&pid) {
            return false;
        }
        let serving = self.workers_nice;
        if let Err(e) = self.effects.spawner().trickle(pid, serving, nice) {
            tracing::warn!(
                event = LogEvent::WarmUpTrickle.as_str(),
                slot,
                pid,
                nice,
                "cannot move the starved worker out of SCHED_IDLE to nice {nice} ({e}): it gets \
                 herd's priority back instead"
            );
            return false;
        }
        self.warming.trickle(pid, nice, until);
        let left = until.saturating_duration_since(Instant::now());
        tracing::info!(
            event = LogEvent::WarmUpTrickle.as_str(),
            slot,
            pid,
            nice,
            "{} still starting at --starting-nice is starved of CPU: it warms up on at nice \
             {nice} until it is ready, or for {} at most",
            match slot {
                Some(_) => "worker",
                None => "fork server",
            },
            humantime::format_duration(Duration::from_millis(
                u64::try_from(left.as_millis()).unwrap_or(u64::MAX)
            ))
        );
        true
    }

    /// `--starting-nice`: whether `start` now is beside workers that serve
    /// ([`StartSite::beside_servers`](warm_up::StartSite::beside_servers)).
    pub(super) fn starts_beside_servers(&self, start: &Start) -> bool {
        let site = warm_up::StartSite {
            // Until the pool was first all ready (the pool paces its first starts).
            first_fill: start.first_generation || !self.phase.ready_reported(),
            restart: self.pool.starts_restart(start.slot),
            slot_serves: self.pool.slot_serves(start.slot),
            pool_serves: self.pool.serves(),
            per_slot_queues: self.pool.config().drain.is_some(),
        };
        site.beside_servers()
    }
}
