//! What the driver reports: a worker started or could not, exited, or sent a notification.

use std::time::{Duration, Instant};

use super::{Action, Exit, Phase, Pool, Reason, Worker, WorkerExit, WorkerState};
use crate::duration::{format_duration, round_ms};
use crate::notify::NotifyMessage;

impl Pool {
    /// The worker for `slot` runs as `pid`. Returns `false` when the slot was not handed out
    /// by [`Action::Spawn`] (the caller must then stop that process itself).
    pub fn spawned(&mut self, slot: usize, generation: u64, pid: u32, now: Instant) -> bool {
        match self.slots.get_mut(slot) {
            Some(s) if s.spawning && self.phase == Phase::Serving => {
                s.spawning = false;
                let restart = std::mem::take(&mut s.spawning_restart);
                let w = Worker {
                    pid,
                    slot,
                    generation,
                    state: WorkerState::Starting,
                    started: now,
                    last_ping: now,
                    ready_since: None,
                    available: false,
                    paused: false,
                    status: None,
                    recycling: None,
                    restart,
                };
                self.add_count(slot, w.count());
                self.by_pid.entry(pid).or_insert(self.workers.len());
                self.workers.push(w);
                true
            }
            _ => false,
        }
    }

    /// Worker `pid` was seen stopped (`paused`: `SIGSTOP`, a debugger) at `now`, or running
    /// again. A paused worker serves nothing: it does not count as available
    /// ([`Worker::counts_available`]), so an upgrade, a recycle or a takeover waits for it to
    /// run again (or times out) instead of stopping the workers that serve. It is not ready by
    /// a readiness delay meanwhile, while its readiness timeout and watchdog still hold (as
    /// systemd's do); running again, it proves itself afresh: its readiness delay (or
    /// timeout), watchdog and `min_ready` count from `now`, for time stopped is no time served.
    pub fn set_paused(&mut self, pid: u32, paused: bool, now: Instant) {
        let i = match self.by_pid.get(&pid) {
            Some(&i) => i,
            None => return,
        };
        if self.workers[i].paused == paused {
            return;
        }
        self.update(i, |w| {
            w.paused = paused;
            if !paused && w.live() {
                w.last_ping = now;
                if w.state == WorkerState::Ready {
                    w.ready_since = Some(now);
                    w.available = false;
                }
            }
        });
    }

    /// The worker for `slot` could not be started. Returns when the slot tries again (`None`:
    /// never, a successor's old worker serves on in the slot it holds), and aborts an upgrade
    /// whose new worker this was. Only a start into a slot nobody holds grows the slot's
    /// crash-loop backoff: a successor's (an upgrade's, a recycle's) leaves the slot to its
    /// old worker, not looping, and one that fails an upgrade ends it (no loop either); the
    /// count would stay with the slot and delay a later quick restart of its build.
    pub fn spawn_failed(
        &mut self,
        slot: usize,
        why: &str,
        now: Instant,
    ) -> (Option<Duration>, Vec<Action>) {
        let policy = self.config.backoff;
        let fails_upgrade = self.upgrade.is_some();
        let mut actions = Vec::new();
        let s = match self.slots.get_mut(slot) {
            Some(s) => s,
            None => return (None, actions),
        };
        s.spawning = false;
        s.spawning_restart = false;
        let retry = match (s.count.holding > 0, fails_upgrade) {
            (true, _) => None,
            (false, true) => Some(Duration::ZERO),
            (false, false) => Some(s.backoff.next_delay(&policy, None)),
        };
        if let Some(delay) = retry {
            s.restart_at = Some(now + delay);
        }
        if let Some(u) = self.upgrade {
            let reason = format!(
                "cannot start a worker of generation {}: {why}",
                u.generation
            );
            self.abort_upgrade(reason, now, &mut actions);
        }
        (retry, actions)
    }

    /// A child exited. Returns `None` when `pid` is not one of the pool's workers, else what
    /// the exit meant, with any actions it triggers (an aborted upgrade).
    pub fn exited(
        &mut self,
        pid: u32,
        status: WorkerExit,
        now: Instant,
    ) -> Option<(Exit, Vec<Action>)> {
        let index = *self.by_pid.get(&pid)?;
        let w = self.workers.remove(index);
        self.remove_count(w.slot, w.count());
        if super::is_draining(&w) {
            self.draining = self.draining.saturating_sub(1);
        }
        self.index_pids();
        let mut actions = Vec::new();
        let stopped_for = w.stopped_for();
        let uptime = now.saturating_duration_since(w.started);
        // A new-generation worker that dies before it is available fails its upgrade (one
        // killed for failing, by its watchdog, counts too); so does one that crashes after,
        // while the upgrade still goes on: a build that crashes past `--min-ready`
        // would otherwise go on replacing the old workers that serve, one slot at a time,
        // down to none (its slot, and each the upgrade replaced once its worker exits, goes
        // back to the build that ran there).
        let excused = self.excused_until.map_or(false, |t| now < t);
        // On its own: a crash, or a watchdog's kill; not an exit 0 (a worker that recycles
        // itself) nor a SIGKILL herd did not send (an operator, the OOM killer, a chaos test).
        let crashed = match stopped_for {
            None => !status.success && !status.killed,
            Some(reason) => reason == Reason::Watchdog,
        };
        let fails_upgrade = self.is_upgrading_worker(&w)
            && !excused
            && ((w.holds_slot() && !w.available) || (w.available && crashed));
        if fails_upgrade {
            let reason = self.upgrade_failure(&w, &status, now);
            self.abort_upgrade(reason, now, &mut actions);
        }
        // A worker killed from outside (SIGKILL that herd did not send: an operator, the OOM
        // killer, a chaos test) did not crash on its own: its successor starts at once, and the
        // slot's crash-loop backoff does not grow, so kills cannot starve a slot. Nor does a
        // worker that exits just after a shared socket was found shut down (and repaired): it
        // most likely failed on it. Nor a new worker whose exit fails its upgrade: the upgrade
        // ends (no loop), and the slot goes back to the build that ran there, whose own
        // crashes are what its backoff counts.
        let no_fault = (stopped_for.is_none() && (status.killed || excused)) || fails_upgrade;
        let why = stop_why(stopped_for, fails_upgrade, &w);
        self.slots[w.slot].last_exit = Some(status);
        self.slots[w.slot].last_exit_why = why;
        let unexpected = stopped_for.map_or(true, Reason::restarts);
        let slot_wanted = self.phase == Phase::Serving && w.slot < self.desired;
        // Replaced by a live worker, or by one whose start is already under way (an upgrade's
        // or a recycle's successor queued behind others): a restart too would leave the slot
        // due forever once that start holds it.
        let replaced = self.slots[w.slot].count.live > 0 || self.slots[w.slot].spawning;
        let restart_in = match unexpected && slot_wanted && !replaced {
            true => Some(self.restart(&w, no_fault, uptime, now)),
            false => None,
        };
        // Lost with no other worker in its slot, beside a start already under way there (an
        // upgrade's or a recycle's successor, queued or awaiting its fork server): that start
        // is the slot's restart now (`starts_restart`).
        let lost = unexpected && slot_wanted;
        if lost && self.slots[w.slot].count.live == 0 && self.slots[w.slot].spawning {
            self.slots[w.slot].spawning_restart = true;
        }
        let exit = Exit {
            slot: w.slot,
            generation: w.generation,
            uptime,
            stopped_for,
            restart_in,
            lost,
            was_ready: w.ready_since.is_some(),
            was_available: w.available,
        };
        Some((exit, actions))
    }

    /// Schedules the restart of `w`'s slot, `w` having exited after `uptime` (`no_fault`:
    /// not for a crash of its own); returns the delay. An older build's worker that exits
    /// during an upgrade is followed by the new build at once: the backoff counts the older
    /// build's crashes (kept, should the upgrade fail), as for a slot that waited out its
    /// backoff when the upgrade began.
    fn restart(&mut self, w: &Worker, no_fault: bool, uptime: Duration, now: Instant) -> Duration {
        let older_build = self.upgrade.map_or(false, |u| w.generation < u.generation);
        let policy = self.settings(w.generation).backoff;
        let slot = &mut self.slots[w.slot];
        let delay = match no_fault {
            true => Duration::ZERO,
            false => slot.backoff.next_delay(&policy, Some(uptime)),
        };
        let delay = if older_build { Duration::ZERO } else { delay };
        slot.restarts += 1;
        slot.restart_at = Some(now + delay);
        delay
    }

    /// Why the upgrade fails when its new worker `w` exited.
    fn upgrade_failure(&self, w: &Worker, status: &WorkerExit, now: Instant) -> String {
        let min_ready = format_duration(self.settings(w.generation).min_ready);
        let when = match w.ready_since {
            None => "before it was ready".to_string(),
            Some(t) => format!(
                "{} after it was ready, {} --min-ready {min_ready}",
                format_duration(round_ms(now.saturating_duration_since(t))),
                if w.available { "past" } else { "within" },
            ),
        };
        format!(
            "worker {} (pid {}) of generation {} exited {when}: {}",
            w.slot, w.pid, w.generation, status.description
        )
    }

    /// A worker sent an `sd_notify` message. Returns `true` when `pid` is a worker.
    pub fn notified(&mut self, pid: u32, message: &NotifyMessage, now: Instant) -> bool {
        let i = match self.by_pid.get(&pid) {
            Some(&i) => i,
            None => return false,
        };
        if message.ready && self.workers[i].state == WorkerState::Starting {
            self.make_ready(i, now);
        }
        self.update(i, |w| {
            if message.watchdog && w.state == WorkerState::Ready {
                w.last_ping = now;
            }
            if let Some(status) = &message.status {
                w.status = Some(status.clone());
            }
        });
        true
    }
}

/// Why the pool stopped worker `w`, for `herd status` to say with its exit (`killed by
/// SIGTERM (replaced by a newer generation)`: a planned stop read as a kill), or that it was a
/// new build whose exit failed its upgrade (the slot runs the older one again, and its exit is
/// no crash of that build's); `None` for an exit of its own.
fn stop_why(stopped_for: Option<Reason>, failed_upgrade: bool, w: &Worker) -> Option<String> {
    match (stopped_for, failed_upgrade) {
        (Some(reason), _) => Some(reason.describe().to_string()),
        (None, true) => Some(format!("generation {}, its upgrade failed", w.generation)),
        (None, false) => None,
    }
}
