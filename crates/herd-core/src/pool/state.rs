//! The pool's state as plain data, for a re-exec: instants become times relative to one
//! [`Epoch`], so that timers (backoffs, grace periods, readiness and watchdog deadlines) carry
//! on in another process image. With the `serde` feature the types are serde's, in the format
//! of the re-exec state's JSON, which herd keeps readable across versions.

use std::time::Instant;

use super::{
    MaxSurge, Phase, Pool, PoolConfig, Reason, RecycleCause, Slot, Worker, WorkerExit, WorkerState,
};
use crate::backoff::Backoff;
use crate::relative::{Ago, Ahead, Epoch};

/// Everything a serving pool knows.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
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
    /// Until when exits are excused (see [`Pool::excuse_exits_until`]); absent when they are
    /// not, and in the state of an older herd.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub excused_for_ms: Option<Ahead>,
    /// The surge bounds the pool ran with: a re-exec keeps them, whatever the new binary
    /// makes of the command line. Absent in the state of an older herd, whose command line
    /// then decides (a herd before `--max-starting` read `--max-surge N` as N start-ups).
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub surge: Option<SavedSurge>,
}

/// The surge bounds, saved (see [`MaxSurge`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SavedSurge {
    /// `--max-surge`: a number of workers, or a share of the pool.
    pub max_surge: MaxSurge,
    /// `--max-starting`.
    pub max_starting: usize,
}

/// A worker, saved.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SavedWorker {
    /// Its pid.
    pub pid: u32,
    /// Its slot.
    pub slot: usize,
    /// Its generation.
    pub generation: u64,
    /// Whether it was ready.
    pub ready: bool,
    /// When it was stopping (or draining): why, when it is killed, whether it was killed. A
    /// draining worker is also stopping (scaled down, not yet signalled), which is how a herd
    /// of a version before draining was pool state reads it.
    pub stopping: Option<(Reason, Ahead, bool)>,
    /// When it was draining its slot: since when, and when it is told to stop anyway. Absent
    /// before draining was pool state.
    #[cfg_attr(feature = "serde", serde(default))]
    pub draining: Option<(Ago, Ahead)>,
    /// When it started.
    pub age_ms: Ago,
    /// When it last proved alive.
    pub ping_age_ms: Ago,
    /// When it became ready.
    pub ready_age_ms: Option<Ago>,
    /// Whether it had stayed ready for `min_ready`. Absent in the state of herd versions
    /// before `--min-ready`: recomputed from the ready time.
    #[cfg_attr(feature = "serde", serde(default))]
    pub available: bool,
    /// Its last `STATUS=` text.
    pub status: Option<String>,
    /// Why it was being recycled, if it was. Absent before recycling existed.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub recycling: Option<RecycleCause>,
    /// Whether it restarts its slot ([`Worker::restart`]). Left out when not; absent before
    /// restarts stopped counting against `max_starting`, when every start-up counted.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "std::ops::Not::not")
    )]
    pub restart: bool,
}

/// A slot's history, saved.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SavedSlot {
    /// Its quick failures in a row.
    pub failures: u32,
    /// Its restarts.
    pub restarts: u32,
    /// How its last worker exited: the platform's raw status ([`WorkerExit::raw`]).
    pub last_exit: Option<i32>,
    /// Why the pool stopped that worker, if it did (`scaled down`), which the raw status does
    /// not say. Left out when none (and absent in an older herd's state).
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub last_exit_why: Option<String>,
    /// When its next worker starts, while it waits out a backoff.
    pub restart_in_ms: Option<Ahead>,
    /// Whether a scale-up added it and its worker waits to start (`max_starting`). Left out
    /// when not; absent before scale-ups waited.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "std::ops::Not::not")
    )]
    pub queued: bool,
}

impl Pool {
    /// The pool's state at `epoch`; `None` while it is stopping or upgrading (a re-exec waits
    /// for those). Every field is named, so that one added later does not compile until it is
    /// saved or said to need no saving.
    pub fn export(&self, epoch: Epoch) -> Option<PoolState> {
        let Pool {
            config,
            // Only while upgrading, when there is no state to save.
            next_config: _,
            desired,
            generation,
            latest_generation,
            slots,
            workers,
            phase,
            upgrade,
            excused_until,
            // Derived from the workers: `import` rebuilds them.
            by_pid: _,
            ready_slots: _,
            available_slots: _,
            draining: _,
            // Announcements still due: an imported ready worker is not announced again.
            became_ready: _,
            // Reported at the turn they happen; a re-exec waits for no recycle.
            recycles_aborted: _,
        } = self;
        if *phase != Phase::Serving || upgrade.is_some() || slots.iter().any(|s| s.spawning) {
            return None;
        }
        Some(PoolState {
            desired: *desired,
            generation: *generation,
            latest_generation: *latest_generation,
            workers: workers.iter().map(|w| save_worker(w, epoch)).collect(),
            slots: slots.iter().map(|s| save_slot(s, epoch)).collect(),
            excused_for_ms: excused_until.map(|t| epoch.ahead(t)),
            surge: Some(SavedSurge {
                max_surge: config.max_surge,
                max_starting: config.max_starting,
            }),
        })
    }

    /// A pool continuing from `state` at `epoch`, with the (re-read) `config` but the surge
    /// bounds the state carries; `exit` reads a slot's last exit from the platform's raw
    /// status. Its ready workers are not announced again.
    pub fn import(
        mut config: PoolConfig,
        state: PoolState,
        epoch: Epoch,
        exit: impl Fn(i32) -> WorkerExit,
    ) -> Pool {
        let PoolState {
            desired,
            generation,
            latest_generation,
            workers,
            slots,
            excused_for_ms,
            surge,
        } = state;
        if let Some(saved) = surge {
            config.max_surge = saved.max_surge;
            config.max_starting = saved.max_starting;
        }
        // The derived fields (the pid index, the counts per slot) start empty, as in a new
        // pool, and `reindex` fills them.
        let mut pool = Pool {
            desired,
            generation,
            latest_generation,
            workers: workers.into_iter().map(|w| load_worker(w, epoch)).collect(),
            slots: slots
                .into_iter()
                .map(|s| load_slot(s, epoch, &exit))
                .collect(),
            excused_until: excused_for_ms.map(|t| epoch.future(t)),
            ..Pool::new(config)
        };
        pool.reindex();
        pool
    }
}

fn save_worker(worker: &Worker, epoch: Epoch) -> SavedWorker {
    let Worker {
        pid,
        slot,
        generation,
        state,
        started,
        last_ping,
        ready_since,
        available,
        // Not kept: the sampler sees it again within a second.
        paused: _,
        status,
        recycling,
        restart,
    } = worker;
    let ahead = |t: Instant| epoch.ahead(t);
    SavedWorker {
        pid: *pid,
        slot: *slot,
        generation: *generation,
        ready: *state == WorkerState::Ready,
        stopping: match *state {
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
        draining: match *state {
            WorkerState::Draining { since, until, .. } => Some((epoch.ago(since), ahead(until))),
            _ => None,
        },
        age_ms: epoch.ago(*started),
        ping_age_ms: epoch.ago(*last_ping),
        ready_age_ms: ready_since.map(|t| epoch.ago(t)),
        available: *available,
        status: status.clone(),
        recycling: *recycling,
        restart: *restart,
    }
}

fn load_worker(saved: SavedWorker, epoch: Epoch) -> Worker {
    let state = match (saved.stopping, saved.draining, saved.ready) {
        (Some((_, deadline, _)), Some((since, until)), _) => WorkerState::Draining {
            since: epoch.past(since),
            until: epoch.future(until),
            deadline: epoch.future(deadline),
        },
        (Some((reason, deadline, killed)), None, _) => WorkerState::Stopping {
            reason,
            deadline: epoch.future(deadline),
            killed,
        },
        (None, _, true) => WorkerState::Ready,
        (None, _, false) => WorkerState::Starting,
    };
    Worker {
        pid: saved.pid,
        slot: saved.slot,
        generation: saved.generation,
        state,
        started: epoch.past(saved.age_ms),
        last_ping: epoch.past(saved.ping_age_ms),
        ready_since: saved.ready_age_ms.map(|t| epoch.past(t)),
        available: saved.available,
        paused: false,
        status: saved.status,
        recycling: saved.recycling,
        restart: saved.restart,
    }
}

fn save_slot(slot: &Slot, epoch: Epoch) -> SavedSlot {
    let Slot {
        backoff,
        restarts,
        last_exit,
        last_exit_why,
        restart_at,
        // A re-exec waits while a slot is spawning; the count is derived.
        spawning: _,
        scaled_up,
        spawning_restart: _,
        count: _,
    } = slot;
    SavedSlot {
        failures: backoff.failures(),
        restarts: *restarts,
        last_exit: last_exit.as_ref().map(|e| e.raw),
        last_exit_why: last_exit_why.clone(),
        restart_in_ms: restart_at.map(|t| epoch.ahead(t)),
        queued: *scaled_up,
    }
}

fn load_slot(saved: SavedSlot, epoch: Epoch, exit: impl Fn(i32) -> WorkerExit) -> Slot {
    Slot {
        backoff: Backoff::with_failures(saved.failures),
        restarts: saved.restarts,
        last_exit: saved.last_exit.map(exit),
        last_exit_why: saved.last_exit_why,
        restart_at: saved.restart_in_ms.map(|t| epoch.future(t)),
        spawning: false,
        scaled_up: saved.queued,
        spawning_restart: false,
        count: Default::default(),
    }
}
