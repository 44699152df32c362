//! What becomes due with time: kills after grace periods, readiness, watchdogs, upgrade
//! progress, and workers to start; and the time herd itself could not act in, which is not
//! the workers' to make up.

use std::time::{Duration, Instant};

use super::{available_at, Action, Phase, Pool, Readiness, Reason, StopMode, Worker, WorkerState};
use crate::duration::format_duration;

impl Pool {
    /// Everything due at `now`: kills after grace periods, readiness, watchdogs, upgrade
    /// progress, workers to start, and the workers that became ready since the last call.
    pub fn due(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        self.expire_stopping(now, &mut actions);
        if self.phase == Phase::Serving {
            self.check_readiness(now, &mut actions);
            self.check_available(now);
            self.check_watchdogs(now, &mut actions);
            // Empty slots first (a scale-up's, a crash's): they serve nothing, so the room
            // for start-ups goes to them before an upgrade's or a recycle's replacements.
            self.fill_slots(now, &mut actions);
            self.advance_upgrade(now, &mut actions);
            self.advance_recycles(now, &mut actions);
        }
        self.announce_ready(&mut actions);
        actions
    }

    /// When [`due`](Pool::due) next has something to do, if ever.
    pub fn next_deadline(&self) -> Option<Instant> {
        let mut times: Vec<Instant> = Vec::new();
        let serving = self.phase == Phase::Serving;
        for w in &self.workers {
            match w.state {
                WorkerState::Stopping {
                    deadline,
                    killed: false,
                    ..
                } => times.push(deadline),
                WorkerState::Draining { until, .. } => times.push(until),
                // A paused worker is not ready by its delay: that counts only time it runs.
                WorkerState::Starting if w.paused && self.ready_by_delay(w) => {}
                WorkerState::Starting if serving => times.push(self.readiness_deadline(w)),
                WorkerState::Ready if serving => {
                    let settings = self.settings(w.generation);
                    if let Some(limit) = settings.watchdog {
                        times.push(w.last_ping + limit);
                    }
                    // A paused worker becomes available only once it runs again: no deadline.
                    if !w.available && !w.paused {
                        times.extend(available_at(w, settings.min_ready));
                    }
                }
                _ => {}
            }
        }
        if serving {
            let starts = self.slots.iter().take(self.desired);
            times.extend(
                starts
                    .filter(|s| s.may_start())
                    .filter_map(|s| s.restart_at),
            );
            times.extend(self.upgrade.map(|u| u.deadline));
        }
        times.into_iter().min()
    }

    /// herd could not act for `gap` before `now`'s turn: it was stopped (`SIGSTOP`, a
    /// debugger), frozen with its workers (a freezer cgroup: `docker pause`, `systemctl
    /// freeze`), or starved of CPU. That time is not the workers': it counts against none of
    /// the deadlines that judge them. A starting worker's readiness deadline, a ready worker's
    /// watchdog and its `min_ready` still to serve, and the upgrade's deadline move `gap`
    /// later, so that a deadline that passed only while herd could not look is not failed when
    /// it looks again (a deadline already past when herd last looked still is). Left alone:
    /// the deadlines herd set for the workers it stops and drains (their grace periods are
    /// what herd promised its service manager a stop takes, and those workers leave anyway),
    /// and restarts waiting out their backoff (moving them would only delay them).
    ///
    /// The driver calls this before it reads what the workers sent meanwhile: what it reads
    /// then counts from the resume.
    pub fn resumed_after(&mut self, gap: Duration) {
        let later = |t: &mut Instant| {
            if let Some(moved) = t.checked_add(gap) {
                *t = moved;
            }
        };
        for w in &mut self.workers {
            match w.state {
                WorkerState::Starting => later(&mut w.last_ping),
                WorkerState::Ready => {
                    later(&mut w.last_ping);
                    if !w.available {
                        if let Some(since) = &mut w.ready_since {
                            later(since);
                        }
                    }
                }
                WorkerState::Draining { .. } | WorkerState::Stopping { .. } => {}
            }
        }
        if let Some(upgrade) = &mut self.upgrade {
            later(&mut upgrade.deadline);
        }
    }

    /// Whether `w` is ready by a delay (`--ready delay=...`), not by `READY=1`.
    fn ready_by_delay(&self, w: &Worker) -> bool {
        matches!(self.settings(w.generation).readiness, Readiness::Delay(_))
    }

    /// When starting worker `w` is ready by its delay, or fails its `READY=1` timeout: that
    /// long after it started, counted from [`Worker::last_ping`] (its start, moved later by
    /// any time herd could not act in since: see [`Pool::resumed_after`]).
    fn readiness_deadline(&self, w: &Worker) -> Instant {
        match self.settings(w.generation).readiness {
            Readiness::Delay(d) => w.last_ping + d,
            Readiness::Notify { timeout } => w.last_ping + timeout,
        }
    }

    /// One [`Action::Ready`] per worker that became ready and is still there.
    fn announce_ready(&mut self, actions: &mut Vec<Action>) {
        for pid in std::mem::take(&mut self.became_ready) {
            if let Some(w) = self.worker(pid) {
                actions.push(Action::Ready {
                    slot: w.slot,
                    pid,
                    generation: w.generation,
                });
            }
        }
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
                    self.set_state(
                        i,
                        WorkerState::Stopping {
                            reason,
                            deadline,
                            killed: true,
                        },
                    );
                    actions.push(Action::Stop {
                        pid,
                        mode: StopMode::Kill,
                        reason: Reason::GraceExpired,
                    });
                }
            }
        }
    }

    fn check_readiness(&mut self, now: Instant, actions: &mut Vec<Action>) {
        let mut failed_upgrade = None;
        for i in 0..self.workers.len() {
            let w = &self.workers[i];
            if w.state != WorkerState::Starting || now < self.readiness_deadline(w) {
                continue;
            }
            match self.settings(w.generation).readiness {
                Readiness::Delay(_) if w.paused => {}
                Readiness::Delay(_) => self.make_ready(i, now),
                Readiness::Notify { timeout } => {
                    if self.is_upgrading_worker(w) {
                        failed_upgrade = Some(format!(
                            "worker {} (pid {}) of generation {} did not send READY=1 within {}",
                            w.slot,
                            w.pid,
                            w.generation,
                            format_duration(timeout)
                        ));
                    } else {
                        actions.push(self.stop_worker(i, StopMode::Kill, Reason::NotReady, now));
                    }
                }
            }
        }
        if let Some(reason) = failed_upgrade {
            self.abort_upgrade(reason, now, actions);
        }
    }

    fn check_available(&mut self, now: Instant) {
        for i in 0..self.workers.len() {
            let w = &self.workers[i];
            let min_ready = self.settings(w.generation).min_ready;
            if w.state == WorkerState::Ready
                && !w.available
                && !w.paused
                && available_at(w, min_ready).map_or(false, |at| now >= at)
            {
                self.update(i, |w| w.available = true);
            }
        }
    }

    fn check_watchdogs(&mut self, now: Instant, actions: &mut Vec<Action>) {
        for i in 0..self.workers.len() {
            let w = &self.workers[i];
            let expired = match self.settings(w.generation).watchdog {
                Some(limit) => now >= w.last_ping + limit,
                None => false,
            };
            if w.state == WorkerState::Ready && expired {
                actions.push(self.stop_worker(i, StopMode::Kill, Reason::Watchdog, now));
            }
        }
    }

    fn advance_upgrade(&mut self, now: Instant, actions: &mut Vec<Action>) {
        let upgrade = match self.upgrade {
            Some(upgrade) => upgrade,
            None => return,
        };
        if now >= upgrade.deadline {
            let paused: Vec<String> = (self.workers.iter())
                .filter(|w| w.paused && w.generation >= upgrade.generation)
                .map(|w| w.pid.to_string())
                .collect();
            let paused = match paused.len() {
                0 => String::new(),
                1 => format!(
                    "; new worker {} is paused (kill -CONT resumes it)",
                    paused[0]
                ),
                _ => format!(
                    "; new workers {} are paused (kill -CONT resumes them)",
                    paused.join(", ")
                ),
            };
            let reason = format!(
                "the upgrade to generation {} did not finish before its deadline (each new \
                 worker must be ready, then stay ready for --min-ready {}){paused}",
                upgrade.generation,
                format_duration(self.settings(upgrade.generation).min_ready)
            );
            self.abort_upgrade(reason, now, actions);
            return;
        }
        let g = upgrade.generation;
        // One pass over the workers per step, by slot: no step looks at every worker per slot.
        let slots = self.slots.len().max(self.desired);
        let mut new_available = vec![false; slots];
        for w in &self.workers {
            if w.generation >= g && w.live() && w.counts_available() {
                if let Some(x) = new_available.get_mut(w.slot) {
                    *x = true;
                }
            }
        }
        // Old workers whose slot has an available successor stop now, with their own grace.
        let deadline = now + self.config.grace;
        for i in 0..self.workers.len() {
            let w = &self.workers[i];
            if w.live() && w.generation < g && new_available.get(w.slot) == Some(&true) {
                actions.push(self.stop_worker(i, StopMode::Graceful, Reason::Replaced, deadline));
            }
        }
        let has_old = self.start_successors(g, slots, actions);
        // Done when every slot has an available worker of the new generation and no old one;
        // but with no slot (`herd scale 0`), no new worker proved the build: a deploy script
        // must not read success, and a later scale-up must not run what was never ready.
        let done = (0..self.desired).all(|slot| new_available[slot] && !has_old[slot]);
        if done && self.desired == 0 {
            let reason = format!(
                "no worker runs (herd scale 0) to prove generation {g} in: the pool keeps \
                 generation {}; run herd upgrade again once workers run",
                self.generation
            );
            self.abort_upgrade(reason, now, actions);
        } else if done {
            actions.push(self.finish_upgrade(g));
        }
    }

    /// Starts successors of generation `g` for slots whose old worker still runs, within the
    /// surge bounds (see surge.rs): at most max_starting start-ups at once, which take the CPU
    /// (restarts aside: a crash loop may never end), and at most max_surge workers beyond the
    /// pool, which take memory. A successor that is ready no longer counts as starting, so
    /// with room in max_surge the next one starts while it waits out --min-ready: the slots'
    /// waits overlap (an upgrade takes about one --min-ready, not one per slot). Its old
    /// worker counts against max_surge until it has exited. No old worker stops before its
    /// own successor is available. Slots whose old worker serves nothing (it hangs in its
    /// start-up) go first. Returns which of the `slots` still have an old worker.
    fn start_successors(&mut self, g: u64, slots: usize, actions: &mut Vec<Action>) -> Vec<bool> {
        let mut has_old = vec![false; slots];
        let mut has_new = vec![false; slots];
        let mut serving = vec![false; slots];
        for w in self.workers.iter().filter(|w| w.live()) {
            let has = if w.generation >= g {
                &mut has_new
            } else {
                if w.state != WorkerState::Starting {
                    if let Some(x) = serving.get_mut(w.slot) {
                        *x = true;
                    }
                }
                &mut has_old
            };
            if let Some(x) = has.get_mut(w.slot) {
                *x = true;
            }
        }
        let mut room = self.replacement_room(g);
        let (idle, busy): (Vec<usize>, Vec<usize>) =
            (0..self.desired).partition(|&slot| !serving[slot]);
        for slot in idle.into_iter().chain(busy) {
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
        has_old
    }

    /// Starts a worker in each empty slot whose start is due: a first start, a scale-up, a
    /// restart once its backoff is over. A scale-up beside workers that serve takes the CPU
    /// they need, as a replacement's start-up does: at most `max_starting` start-ups at once,
    /// counted with the replacements' ([`Pool::start_ups`]), the rest as those end. herd's
    /// first workers start at once (the first ready serves already), as do the starts that
    /// replace capacity the pool lost (restarts, an upgrade's build in a slot whose worker
    /// crashed).
    fn fill_slots(&mut self, now: Instant, actions: &mut Vec<Action>) {
        let generation = self.upgrade.map_or(self.generation, |u| u.generation);
        // Counted only when a slot needs it: this runs every turn.
        let mut room: Option<usize> = None;
        for slot in 0..self.desired {
            let s = &self.slots[slot];
            if !s.may_start() || s.restart_at.map_or(false, |at| at > now) {
                continue;
            }
            // A restart is due once its worker left; none is before a first start or a
            // scale-up, nor once an upgrade cancelled the backoff of the build it replaces.
            let restart = s.restart_at.is_some();
            // A slot a scale-up added whose worker then exited (it was starting when a
            // scale-down and a scale-up came) restarts: it does not wait.
            if s.scaled_up && !restart {
                let left = room.get_or_insert_with(|| self.start_room(generation));
                if *left == 0 {
                    continue;
                }
                *left -= 1;
            }
            let s = &mut self.slots[slot];
            s.restart_at = None;
            s.scaled_up = false;
            s.spawning_restart = restart;
            s.spawning = true;
            actions.push(Action::Spawn { slot, generation });
        }
    }

    /// How many more workers of `generation` may start in slots a scale-up added: any number
    /// while no worker serves, else what `max_starting` leaves.
    fn start_room(&self, generation: u64) -> usize {
        if !self.serves() {
            return usize::MAX;
        }
        let most = self.settings(generation).max_starting.max(1);
        most.saturating_sub(self.start_ups())
    }
}
