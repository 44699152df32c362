//! The worker pool as a pure state machine: events in (a worker started, exited, time passed,
//! stop requested), actions out (start a worker, signal one). No processes, no clocks: the
//! caller passes `now`, so every behaviour is unit-tested in microseconds.

use std::process::ExitStatus;
use std::time::{Duration, Instant};

use herd_sys::process::Signal;

use super::backoff::{Backoff, BackoffPolicy};

/// The pool's settings.
#[derive(Clone, Debug)]
pub struct PoolConfig {
    /// How many worker slots.
    pub workers: usize,
    /// How long stopping workers may take before they are killed.
    pub grace: Duration,
    /// The signal that asks a worker to stop.
    pub stop_signal: Signal,
    /// Restart backoff.
    pub backoff: BackoffPolicy,
}

/// What the driver must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Start a worker in `slot`, then report [`Pool::spawned`] or [`Pool::spawn_failed`].
    Spawn {
        /// The slot to fill.
        slot: usize,
    },
    /// Send `signal` to the worker `pid` (and its process group).
    Signal {
        /// The worker's slot.
        slot: usize,
        /// The worker's pid.
        pid: u32,
        /// What to send.
        signal: Signal,
    },
}

/// What a worker's exit meant, for the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exit {
    /// The slot it ran in.
    pub slot: usize,
    /// How long it ran.
    pub uptime: Duration,
    /// When a successor starts, or `None` when herd is stopping.
    pub restart_in: Option<Duration>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// No process; start one at `at`.
    Waiting { at: Instant },
    /// A [`Action::Spawn`] was handed out; the driver reports back.
    Starting,
    /// A worker runs.
    Running { pid: u32, since: Instant },
    /// The worker was told to stop; `killed` once it was sent `SIGKILL`.
    Stopping {
        pid: u32,
        since: Instant,
        killed: bool,
    },
    /// Nothing runs and nothing will (herd is stopping).
    Vacant,
}

#[derive(Debug)]
struct Slot {
    state: State,
    backoff: Backoff,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Serving,
    Stopping { deadline: Instant },
}

/// The worker slots and what each is doing.
#[derive(Debug)]
pub struct Pool {
    config: PoolConfig,
    slots: Vec<Slot>,
    phase: Phase,
}

impl Pool {
    /// A pool whose every slot is due to start at `now`.
    pub fn new(config: PoolConfig, now: Instant) -> Pool {
        let slots = (0..config.workers)
            .map(|_| Slot {
                state: State::Waiting { at: now },
                backoff: Backoff::default(),
            })
            .collect();
        Pool {
            config,
            slots,
            phase: Phase::Serving,
        }
    }

    /// The actions due at `now`: workers to start, stopping workers to kill after the grace
    /// period.
    pub fn due(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        let kill = matches!(self.phase, Phase::Stopping { deadline } if now >= deadline);
        for (i, slot) in self.slots.iter_mut().enumerate() {
            match slot.state {
                State::Waiting { at } if at <= now && self.phase == Phase::Serving => {
                    slot.state = State::Starting;
                    actions.push(Action::Spawn { slot: i });
                }
                State::Stopping {
                    pid,
                    since,
                    killed: false,
                } if kill => {
                    slot.state = State::Stopping {
                        pid,
                        since,
                        killed: true,
                    };
                    actions.push(Action::Signal {
                        slot: i,
                        pid,
                        signal: Signal::KILL,
                    });
                }
                _ => {}
            }
        }
        actions
    }

    /// The worker for `slot` runs as `pid`. Only a slot handed out by [`Action::Spawn`] takes
    /// it; returns `false` otherwise (the caller must then stop that process itself).
    pub fn spawned(&mut self, slot: usize, pid: u32, now: Instant) -> bool {
        match self.slots.get_mut(slot) {
            Some(s) if s.state == State::Starting => {
                s.state = State::Running { pid, since: now };
                true
            }
            _ => false,
        }
    }

    /// The worker for `slot` could not be started; returns the delay before the next try.
    pub fn spawn_failed(&mut self, slot: usize, now: Instant) -> Duration {
        let policy = self.config.backoff;
        match self.slots.get_mut(slot) {
            Some(s) => {
                let delay = s.backoff.next_delay(&policy, None);
                s.state = match self.phase {
                    Phase::Serving => State::Waiting { at: now + delay },
                    Phase::Stopping { .. } => State::Vacant,
                };
                delay
            }
            None => Duration::ZERO,
        }
    }

    /// A child exited. Returns `None` when `pid` is not one of the pool's workers.
    pub fn exited(&mut self, pid: u32, _status: ExitStatus, now: Instant) -> Option<Exit> {
        let policy = self.config.backoff;
        let serving = self.phase == Phase::Serving;
        let (slot, s) = self
            .slots
            .iter_mut()
            .enumerate()
            .find(|(_, s)| s.pid() == Some(pid))?;
        let since = match s.state {
            State::Running { since, .. } | State::Stopping { since, .. } => since,
            _ => now,
        };
        let uptime = now.saturating_duration_since(since);
        let restart_in = if serving {
            let delay = s.backoff.next_delay(&policy, Some(uptime));
            s.state = State::Waiting { at: now + delay };
            Some(delay)
        } else {
            s.state = State::Vacant;
            None
        };
        Some(Exit {
            slot,
            uptime,
            restart_in,
        })
    }

    /// Stops every worker: gracefully (the stop signal now, `SIGKILL` after the grace period)
    /// or at once (`SIGKILL` now). Asking for a graceful stop while stopping changes nothing;
    /// asking for a fast one kills whatever still runs.
    pub fn stop(&mut self, graceful: bool, now: Instant) -> Vec<Action> {
        let deadline = match (self.phase, graceful) {
            (Phase::Stopping { .. }, true) => return Vec::new(),
            (_, true) => now + self.config.grace,
            (_, false) => now,
        };
        self.phase = Phase::Stopping { deadline };
        let stop_signal = self.config.stop_signal;
        let mut actions = Vec::new();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            match slot.state {
                State::Waiting { .. } | State::Starting => slot.state = State::Vacant,
                State::Running { pid, since } => {
                    slot.state = State::Stopping {
                        pid,
                        since,
                        killed: false,
                    };
                    actions.push(Action::Signal {
                        slot: i,
                        pid,
                        signal: stop_signal,
                    });
                }
                State::Stopping { .. } | State::Vacant => {}
            }
        }
        actions.extend(self.due(now));
        actions
    }

    /// When [`due`](Pool::due) next has something to do, if ever.
    pub fn next_deadline(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut earliest = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        for slot in &self.slots {
            match (slot.state, self.phase) {
                (State::Waiting { at }, Phase::Serving) => earliest(at),
                (State::Stopping { killed: false, .. }, Phase::Stopping { deadline }) => {
                    earliest(deadline)
                }
                _ => {}
            }
        }
        next
    }

    /// The pool's settings.
    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    /// Whether a stop was requested.
    pub fn is_stopping(&self) -> bool {
        self.phase != Phase::Serving
    }

    /// Whether a stop was requested and every worker is gone.
    pub fn is_stopped(&self) -> bool {
        self.is_stopping() && self.slots.iter().all(|s| s.state == State::Vacant)
    }

    /// The pids of the workers that run now, by slot.
    #[cfg(test)]
    pub fn running(&self) -> impl Iterator<Item = (usize, u32)> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.pid().map(|pid| (i, pid)))
    }

    /// How many quick failures in a row `slot` has had.
    pub fn failures(&self, slot: usize) -> u32 {
        self.slots.get(slot).map_or(0, |s| s.backoff.failures())
    }
}

impl Slot {
    fn pid(&self) -> Option<u32> {
        match self.state {
            State::Running { pid, .. } | State::Stopping { pid, .. } => Some(pid),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    const SEC: Duration = Duration::from_secs(1);

    fn config(workers: usize) -> PoolConfig {
        PoolConfig {
            workers,
            grace: 5 * SEC,
            stop_signal: Signal::TERM,
            backoff: BackoffPolicy::default(),
        }
    }

    fn code(n: i32) -> ExitStatus {
        ExitStatus::from_raw(n << 8)
    }

    /// Starts every due slot with pids 100 + slot.
    fn start_all(pool: &mut Pool, now: Instant) {
        for action in pool.due(now) {
            match action {
                Action::Spawn { slot } => assert!(pool.spawned(slot, 100 + slot as u32, now)),
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn starts_every_slot_once() {
        let t0 = Instant::now();
        let mut pool = Pool::new(config(3), t0);
        assert_eq!(
            pool.due(t0),
            [0, 1, 2].map(|slot| Action::Spawn { slot }).to_vec()
        );
        // Nothing is handed out twice while the driver starts them.
        assert!(pool.due(t0).is_empty());
        for slot in 0..3 {
            assert!(pool.spawned(slot, 100 + slot as u32, t0));
        }
        assert_eq!(pool.running().count(), 3);
        assert_eq!(pool.next_deadline(), None);
    }

    #[test]
    fn a_crashed_worker_is_restarted_in_its_slot_with_backoff() {
        let t0 = Instant::now();
        let mut pool = Pool::new(config(2), t0);
        start_all(&mut pool, t0);
        let t1 = t0 + Duration::from_millis(50);
        let exit = pool.exited(101, code(1), t1).unwrap();
        assert_eq!(exit.slot, 1);
        assert_eq!(exit.restart_in, Some(Duration::ZERO));
        assert_eq!(pool.due(t1), [Action::Spawn { slot: 1 }]);
        assert!(pool.spawned(1, 201, t1));

        // A second quick crash waits.
        let t2 = t1 + Duration::from_millis(10);
        let exit = pool.exited(201, code(1), t2).unwrap();
        assert_eq!(exit.restart_in, Some(Duration::from_millis(100)));
        assert!(pool.due(t2).is_empty());
        assert_eq!(pool.next_deadline(), Some(t2 + Duration::from_millis(100)));
        assert_eq!(
            pool.due(t2 + Duration::from_millis(100)),
            [Action::Spawn { slot: 1 }]
        );
        assert_eq!(pool.failures(1), 2);
    }

    #[test]
    fn unknown_pids_are_ignored() {
        let t0 = Instant::now();
        let mut pool = Pool::new(config(1), t0);
        start_all(&mut pool, t0);
        assert_eq!(pool.exited(999, code(0), t0), None);
    }

    #[test]
    fn spawn_failures_back_off() {
        let t0 = Instant::now();
        let mut pool = Pool::new(config(1), t0);
        assert_eq!(pool.due(t0), [Action::Spawn { slot: 0 }]);
        assert_eq!(pool.spawn_failed(0, t0), Duration::ZERO);
        assert_eq!(pool.due(t0), [Action::Spawn { slot: 0 }]);
        assert_eq!(pool.spawn_failed(0, t0), Duration::from_millis(100));
        assert!(pool.due(t0).is_empty());
    }

    #[test]
    fn graceful_stop_signals_waits_then_kills() {
        let t0 = Instant::now();
        let mut pool = Pool::new(config(2), t0);
        start_all(&mut pool, t0);
        let actions = pool.stop(true, t0);
        assert_eq!(
            actions,
            [
                Action::Signal {
                    slot: 0,
                    pid: 100,
                    signal: Signal::TERM
                },
                Action::Signal {
                    slot: 1,
                    pid: 101,
                    signal: Signal::TERM
                },
            ]
        );
        assert!(pool.is_stopping() && !pool.is_stopped());
        // Worker 0 finishes in time and is not restarted.
        let exit = pool.exited(100, code(0), t0 + SEC).unwrap();
        assert_eq!(exit.restart_in, None);
        // A second graceful request changes nothing.
        assert!(pool.stop(true, t0 + SEC).is_empty());
        assert_eq!(pool.next_deadline(), Some(t0 + 5 * SEC));
        assert!(pool.due(t0 + 4 * SEC).is_empty());
        assert_eq!(
            pool.due(t0 + 5 * SEC),
            [Action::Signal {
                slot: 1,
                pid: 101,
                signal: Signal::KILL
            }]
        );
        assert!(pool.due(t0 + 6 * SEC).is_empty(), "killed only once");
        assert_eq!(pool.next_deadline(), None);
        pool.exited(101, ExitStatus::from_raw(9), t0 + 5 * SEC)
            .unwrap();
        assert!(pool.is_stopped());
    }

    #[test]
    fn fast_stop_kills_at_once_even_during_a_graceful_one() {
        let t0 = Instant::now();
        let mut pool = Pool::new(config(2), t0);
        start_all(&mut pool, t0);
        pool.stop(true, t0);
        let actions = pool.stop(false, t0 + SEC);
        assert_eq!(
            actions,
            [
                Action::Signal {
                    slot: 0,
                    pid: 100,
                    signal: Signal::KILL
                },
                Action::Signal {
                    slot: 1,
                    pid: 101,
                    signal: Signal::KILL
                },
            ]
        );
    }

    #[test]
    fn stop_cancels_pending_restarts() {
        let t0 = Instant::now();
        let mut pool = Pool::new(config(2), t0);
        start_all(&mut pool, t0);
        pool.exited(100, code(1), t0).unwrap();
        pool.exited(101, code(1), t0).unwrap();
        assert!(pool.stop(true, t0).is_empty());
        assert!(pool.is_stopped());
        assert!(pool.due(t0 + SEC).is_empty());
    }

    #[test]
    fn only_slots_handed_out_take_a_pid() {
        let t0 = Instant::now();
        let mut pool = Pool::new(config(2), t0);
        assert!(!pool.spawned(0, 100, t0), "slot 0 was not handed out yet");
        assert_eq!(pool.due(t0).len(), 2);
        assert!(pool.spawned(0, 100, t0));
        pool.stop(false, t0);
        assert!(
            !pool.spawned(1, 101, t0),
            "slot 1 was cancelled by the stop"
        );
    }

    #[test]
    fn a_stop_before_any_worker_ran_is_immediate() {
        let t0 = Instant::now();
        let mut pool = Pool::new(config(2), t0);
        assert!(pool.stop(false, t0).is_empty());
        assert!(pool.is_stopped());
    }
}
