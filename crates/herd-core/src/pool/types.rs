//! The pool's vocabulary: its settings, the actions it asks for, its workers and slots, and
//! what an exit meant.

use std::time::{Duration, Instant};

use super::MaxSurge;
use crate::backoff::{Backoff, BackoffPolicy};

/// When a new worker counts as ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// After it stayed alive this long, or sent `READY=1`, whichever comes first.
    Delay(Duration),
    /// When it sends `READY=1`; one that has not after `timeout` failed to start.
    Notify {
        /// How long a worker may take.
        timeout: Duration,
    },
}

/// The pool's settings.
#[derive(Clone, Debug)]
pub struct PoolConfig {
    /// How many worker slots to fill at start.
    pub workers: usize,
    /// How long stopping workers may take before they are killed.
    pub grace: Duration,
    /// Restart backoff.
    pub backoff: BackoffPolicy,
    /// When a worker is ready.
    pub readiness: Readiness,
    /// A ready worker that sends no `WATCHDOG=1` for this long is killed and restarted.
    pub watchdog: Option<Duration>,
    /// How many workers beyond the desired number upgrades and recycling may run at once: a
    /// replacement counts from its new worker's start until its old worker has exited.
    pub max_surge: MaxSurge,
    /// How many new workers upgrades, recycling and scale-ups beside serving workers may be
    /// starting (not yet ready) at once.
    pub max_starting: usize,
    /// How long a new worker must stay ready before it counts as available: only then does it
    /// replace an older worker (or complete a takeover).
    pub min_ready: Duration,
    /// Whether each slot has a queue of its own (`--balance reuseport`) that a worker scaled
    /// away drains before it is told to stop; `None` when the workers share one queue.
    pub drain: Option<DrainPolicy>,
}

/// How a worker scaled away waits for its slot's queue to empty before it is told to stop:
/// closing a per-slot socket resets the connections waiting in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DrainPolicy {
    /// How long the slot stays out of rotation before an empty queue counts as drained (a
    /// handshake begun before still lands in it for about one round trip).
    pub settle: Duration,
    /// The longest a worker waits for its slot's queue to empty.
    pub limit: Duration,
}

/// How a worker is told to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopMode {
    /// Asked to finish and exit: the platform's configured stop (on Unix, the stop signal to
    /// the worker's process group, then `SIGCONT`); it is killed if it has not exited when its
    /// grace period ends.
    Graceful,
    /// Ended at once (on Unix, `SIGKILL` to its process group).
    Kill,
}

/// What the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Start a worker in `slot`, then report [`Pool::spawned`](crate::Pool::spawned) or
    /// [`Pool::spawn_failed`](crate::Pool::spawn_failed).
    Spawn {
        /// The slot to fill.
        slot: usize,
        /// The generation the new worker belongs to.
        generation: u64,
    },
    /// Stop a worker, and what it started.
    Stop {
        /// The worker's pid.
        pid: u32,
        /// Gracefully or at once.
        mode: StopMode,
        /// Why, for the log.
        reason: Reason,
    },
    /// A draining worker's slot still had `queued` connections when its drain time was up: it
    /// is told to stop anyway (the [`Action::Stop`] follows).
    DrainTimedOut {
        /// Its slot.
        slot: usize,
        /// Its pid.
        pid: u32,
        /// The connections still queued.
        queued: u32,
    },
    /// A worker became ready (announced once per worker).
    Ready {
        /// Its slot.
        slot: usize,
        /// Its pid.
        pid: u32,
        /// Its generation.
        generation: u64,
    },
    /// A rolling upgrade ended: `Ok(generation)` or `Err(why it was aborted)`.
    UpgradeEnded(Result<u64, String>),
}

/// Why a worker is stopped (by its variant's name in saved state).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Reason {
    /// herd is stopping.
    Shutdown,
    /// Its slot is above the desired number of workers.
    ScaleDown,
    /// A ready worker of a newer generation took its slot.
    Replaced,
    /// Its upgrade was aborted before it became ready.
    UpgradeAborted,
    /// It did not become ready in time.
    NotReady,
    /// It sent no `WATCHDOG=1` in time.
    Watchdog,
    /// Its grace period is over.
    GraceExpired,
    /// Someone asked for a signal (`herd signal`).
    Requested,
    /// A successor in its slot became available after it was recycled, for this cause.
    Recycled(RecycleCause),
}

/// Why a worker is recycled: replaced by a fresh one in its slot (see [`Pool::recycle`](crate::Pool::recycle)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum RecycleCause {
    /// Its memory stayed above `--max-memory`.
    Memory,
    /// It ran past `--max-lifetime` (plus its jitter).
    Lifetime,
    /// It asked to be replaced (`HERD_RECYCLE=1`).
    Asked,
}

impl RecycleCause {
    /// The cause's name in logs, status and metrics: `memory`, `lifetime` or `asked`.
    pub const fn as_str(self) -> &'static str {
        match self {
            RecycleCause::Memory => "memory",
            RecycleCause::Lifetime => "lifetime",
            RecycleCause::Asked => "asked",
        }
    }
}

impl Reason {
    /// A short explanation for logs and status.
    pub fn describe(self) -> &'static str {
        match self {
            Reason::Shutdown => "herd is stopping",
            Reason::ScaleDown => "scaled down",
            Reason::Replaced => "replaced by a newer generation",
            Reason::UpgradeAborted => "its upgrade was aborted",
            Reason::NotReady => "not ready in time",
            Reason::Watchdog => "watchdog timeout",
            Reason::GraceExpired => "did not stop in time",
            Reason::Requested => "requested",
            Reason::Recycled(RecycleCause::Memory) => "recycled: over --max-memory",
            Reason::Recycled(RecycleCause::Lifetime) => "recycled: past --max-lifetime",
            Reason::Recycled(RecycleCause::Asked) => "recycled: it asked (HERD_RECYCLE=1)",
        }
    }

    /// Whether a worker stopped for this reason is replaced in its slot.
    pub(crate) fn restarts(self) -> bool {
        matches!(self, Reason::NotReady | Reason::Watchdog)
    }
}

/// A worker's lifecycle state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerState {
    /// Started, not yet ready.
    Starting,
    /// Ready to serve.
    Ready,
    /// Scaled away, not yet told to stop: its slot is out of rotation and its queue drains
    /// (see [`DrainPolicy`]).
    Draining {
        /// When it was scaled away.
        since: Instant,
        /// When it is told to stop, drained or not.
        until: Instant,
        /// When it is killed unless it has exited (its grace period's end).
        deadline: Instant,
    },
    /// Told to stop; killed at `deadline` unless it exits first.
    Stopping {
        /// Why.
        reason: Reason,
        /// When it gets killed.
        deadline: Instant,
        /// Whether it was already killed.
        killed: bool,
    },
}

/// One worker process.
#[derive(Clone, Debug)]
pub struct Worker {
    /// Its pid.
    pub pid: u32,
    /// Its slot.
    pub slot: usize,
    /// The generation it belongs to.
    pub generation: u64,
    /// Where it is in its life.
    pub state: WorkerState,
    /// When it started.
    pub started: Instant,
    /// When it last proved alive (its start, `READY=1`, `WATCHDOG=1`): its readiness and
    /// watchdog deadlines count from here. Moved later by the time herd could not act in
    /// since ([`Pool::resumed_after`](crate::Pool::resumed_after)).
    pub last_ping: Instant,
    /// When it became ready, if it did; until it is available, moved later by the time herd
    /// could not act in since, which does not count toward `min_ready`.
    pub ready_since: Option<Instant>,
    /// Whether it has stayed ready for `min_ready`: only an available worker replaces an
    /// older one or completes a takeover.
    pub available: bool,
    /// Whether it was last seen stopped (`SIGSTOP`, a debugger): it serves nothing, so it does
    /// not count as available until it runs again ([`Pool::set_paused`](crate::Pool::set_paused)).
    pub paused: bool,
    /// Its last `STATUS=` text.
    pub status: Option<String>,
    /// Why it is being recycled, while a successor in its slot starts: it serves until the
    /// successor is available.
    pub recycling: Option<RecycleCause>,
    /// Whether it restarts its slot: started into the slot a worker left by exiting
    /// unexpectedly (or after a start that failed). Its start-up does not count against
    /// `max_starting`: the crash-loop backoff paces restarts, and a loop may never end.
    pub restart: bool,
}

impl Worker {
    /// Whether it counts as available: it has been ([`available`](Self::available)) and is not
    /// paused. Only such a worker replaces an older one or completes a takeover.
    pub fn counts_available(&self) -> bool {
        self.available && !self.paused
    }

    /// Whether it serves on: neither draining nor told to stop.
    pub fn live(&self) -> bool {
        matches!(self.state, WorkerState::Starting | WorkerState::Ready)
    }

    /// Whether it still holds its slot: live, or killed for failing (its successor starts
    /// when it has exited, after the slot's backoff).
    pub(crate) fn holds_slot(&self) -> bool {
        match self.state {
            WorkerState::Stopping { reason, .. } => reason.restarts(),
            WorkerState::Draining { .. } => false,
            _ => true,
        }
    }

    /// Why it was asked to leave, if it was.
    pub fn stopped_for(&self) -> Option<Reason> {
        match self.state {
            WorkerState::Stopping { reason, .. } => Some(reason),
            WorkerState::Draining { .. } => Some(Reason::ScaleDown),
            _ => None,
        }
    }

    /// What it adds to its slot's [`Count`].
    pub(crate) fn count(&self) -> Count {
        let live = self.live();
        Count {
            live: usize::from(live),
            holding: usize::from(self.holds_slot()),
            ready: usize::from(self.state == WorkerState::Ready),
            live_available: usize::from(live && self.counts_available()),
        }
    }
}

/// How many of a slot's workers are live, hold the slot, are ready, are live and available:
/// kept up to date on every change, so that the checks made on every loop turn need not look
/// at every worker for every slot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Count {
    pub(crate) live: usize,
    pub(crate) holding: usize,
    pub(crate) ready: usize,
    pub(crate) live_available: usize,
}

/// How a worker process ended, as the pool needs it: the platform describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerExit {
    /// Whether it exited successfully (code 0).
    pub success: bool,
    /// Whether it was ended by a forced kill (`SIGKILL`): when the pool did not ask for it,
    /// someone else killed it (an operator, the OOM killer), which is no crash of its own.
    pub killed: bool,
    /// How it ended, for messages: `exit code 3`, `killed by SIGSEGV (core dumped)`.
    pub description: String,
    /// The platform's raw status (a Unix wait status, a Windows exit code), kept for a
    /// re-exec.
    pub raw: i32,
}

/// A slot's history.
#[derive(Clone, Debug, Default)]
pub struct Slot {
    pub(crate) backoff: Backoff,
    /// How many times a worker was restarted in this slot after an unexpected exit.
    pub restarts: u32,
    /// How the slot's last worker exited.
    pub last_exit: Option<WorkerExit>,
    /// Why the pool stopped the slot's last worker, if it did ([`Slot::last_exit_said`]).
    pub(crate) last_exit_why: Option<String>,
    /// When the next worker starts, while the slot waits out a backoff.
    pub restart_at: Option<Instant>,
    pub(crate) spawning: bool,
    /// Whether a scale-up added the slot and its first worker has not started yet: it waits
    /// for room under `max_starting` while other workers serve.
    pub(crate) scaled_up: bool,
    /// Whether the worker being spawned is a restart (see [`Worker::restart`]).
    pub(crate) spawning_restart: bool,
    /// Its workers, counted.
    pub(crate) count: Count,
}

impl Slot {
    /// How the slot's last worker exited, as `herd status` says it: with why the pool stopped
    /// it, if it did (`killed by SIGTERM (replaced by a newer generation)`).
    pub fn last_exit_said(&self) -> Option<String> {
        let exit = self.last_exit.as_ref()?;
        Some(match &self.last_exit_why {
            Some(why) => format!("{} ({why})", exit.description),
            None => exit.description.clone(),
        })
    }

    /// Whether a scale-up added the slot and its worker waits for room under `max_starting`
    /// to start (see [`Pool::scale`](crate::Pool::scale)).
    pub fn waits_to_start(&self) -> bool {
        self.scaled_up && !self.spawning && self.restart_at.is_none()
    }

    /// Whether a worker may start here once its restart (if one waits) is due: none is
    /// starting, and no worker holds the slot (one that serves, or one killed for failing,
    /// whose successor starts when it has exited). A held slot's `restart_at` is no deadline.
    pub(crate) fn may_start(&self) -> bool {
        !self.spawning && self.count.holding == 0
    }
}

/// A rolling upgrade in progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Upgrade {
    /// The generation being rolled out.
    pub generation: u64,
    /// When it is aborted if not finished (moved later by the time herd could not act in:
    /// [`Pool::resumed_after`](crate::Pool::resumed_after)).
    pub deadline: Instant,
}

/// What an exit meant, for the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exit {
    /// The worker's slot.
    pub slot: usize,
    /// Its generation.
    pub generation: u64,
    /// How long it ran.
    pub uptime: Duration,
    /// Why herd had asked it to stop, if it had.
    pub stopped_for: Option<Reason>,
    /// When a successor starts, if one does.
    pub restart_in: Option<Duration>,
    /// Whether the pool lost it: it exited unasked (or stopped for its watchdog or for not
    /// becoming ready), from a slot still wanted.
    pub lost: bool,
    /// Whether it had become ready.
    pub was_ready: bool,
    /// Whether it had stayed ready for `min_ready`.
    pub was_available: bool,
}
