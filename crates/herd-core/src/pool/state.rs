//! The pool's state as plain data, for a re-exec: instants become offsets from the moment of
//! export, so timers (backoffs, grace periods, readiness and watchdog deadlines) carry on. The
//! driver chooses the wire format.

use std::time::{Duration, Instant};

use super::{Phase, Pool, PoolConfig, Reason, Slot, Worker, WorkerExit, WorkerState};
use crate::backoff::Backoff;

/// Everything a serving pool knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolState {
    /// The desired number of workers.
    pub desired: usize,
    /// The generation new workers belong to.
    pub generation: u64,
    /// The newest generation an upgrade started.
    pub latest_generation: u64,
    /// Every worker, in start order.
    pub workers: Vec<SavedWorker>,
    /// Every slot's history.
    pub slots: Vec<SavedSlot>,
}

/// A worker, saved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavedWorker {
    /// Its pid.
    pub pid: u32,
    /// Its slot.
    pub slot: usize,
    /// Its generation.
    pub generation: u64,
    /// Whether it was ready.
    pub ready: bool,
    /// When it was stopping (or draining): why, the milliseconds left before its kill,
    /// whether it was killed.
    pub stopping: Option<(Reason, u64, bool)>,
    /// When it was draining its slot: how long ago it started, in milliseconds, and how many
    /// are left before it is told to stop anyway.
    pub draining: Option<(u64, u64)>,
    /// How long ago it started, in milliseconds.
    pub age_ms: u64,
    /// How long ago it last proved alive, in milliseconds.
    pub ping_age_ms: u64,
    /// How long ago it became ready, in milliseconds.
    pub ready_age_ms: Option<u64>,
    /// Whether it had stayed ready for `min_ready`.
    pub available: bool,
    /// Its last `STATUS=` text.
    pub status: Option<String>,
}

/// A slot's history, saved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavedSlot {
    /// Its quick failures in a row.
    pub failures: u32,
    /// Its restarts.
    pub restarts: u32,
    /// How its last worker exited.
    pub last_exit: Option<WorkerExit>,
    /// The milliseconds left before its next worker starts, while it waits out a backoff.
    pub restart_in_ms: Option<u64>,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Pool {
    /// The pool's state; `None` while it is stopping or upgrading (a re-exec waits for those).
    pub fn export(&self, now: Instant) -> Option<PoolState> {
        if self.phase != Phase::Serving
            || self.upgrade.is_some()
            || self.slots.iter().any(|s| s.spawning)
        {
            return None;
        }
        let ago = |t: Instant| millis(now.saturating_duration_since(t));
        let ahead = |t: Instant| millis(t.saturating_duration_since(now));
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
                        WorkerState::Draining { deadline, .. } => {
                            Some((Reason::ScaleDown, ahead(deadline), false))
                        }
                        _ => None,
                    },
                    draining: match w.state {
                        WorkerState::Draining { since, until, .. } => {
                            Some((ago(since), ahead(until)))
                        }
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
                    last_exit: s.last_exit.clone(),
                    restart_in_ms: s.restart_at.map(ahead),
                })
                .collect(),
        })
    }

    /// A pool continuing from `state`, with the (re-read) `config`. Its ready workers are not
    /// announced again.
    pub fn import(config: PoolConfig, state: PoolState, now: Instant) -> Pool {
        let ago = |ms: u64| now.checked_sub(Duration::from_millis(ms)).unwrap_or(now);
        let ahead = |ms: u64| now + Duration::from_millis(ms);
        // The derived fields (the pid index, the counts per slot) start empty, as in a new
        // pool, and `reindex` fills them.
        let mut pool = Pool {
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
                    state: match (w.stopping, w.draining, w.ready) {
                        (Some((_, deadline_ms, _)), Some((since_ms, until_ms)), _) => {
                            WorkerState::Draining {
                                since: ago(since_ms),
                                until: ahead(until_ms),
                                deadline: ahead(deadline_ms),
                            }
                        }
                        (Some((reason, deadline_ms, killed)), None, _) => WorkerState::Stopping {
                            reason,
                            deadline: ahead(deadline_ms),
                            killed,
                        },
                        (None, _, true) => WorkerState::Ready,
                        (None, _, false) => WorkerState::Starting,
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
                    last_exit: s.last_exit,
                    restart_at: s.restart_in_ms.map(ahead),
                    spawning: false,
                    count: Default::default(),
                })
                .collect(),
            ..Pool::new(config)
        };
        pool.reindex();
        pool
    }
}
