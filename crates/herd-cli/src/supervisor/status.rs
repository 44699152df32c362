//! `herd status`: a snapshot of the supervisor, its workers and its sockets, serialized as the
//! `status` command's result.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::pool::{Pool, WorkerState};
pub use crate::logging::RecentEvent;
use crate::spec::{Balance, SocketKind};

/// The whole snapshot.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Status {
    /// The supervisor's pid.
    pub pid: u32,
    /// The herd's `--name`.
    pub name: String,
    /// herd's version.
    pub version: String,
    /// How long herd has run, in milliseconds.
    pub uptime_ms: u64,
    /// The generation of the last completed upgrade (1 at start).
    pub generation: u64,
    /// The generation being rolled out, during an upgrade.
    pub upgrading_to: Option<u64>,
    /// Whether herd is stopping.
    pub stopping: bool,
    /// While a stop waits out `--drain-delay` (`/readyz` answers 503, workers serve on): the
    /// milliseconds left before the workers are asked to stop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draining_ms: Option<u64>,
    /// How many workers herd keeps running.
    pub desired: usize,
    /// How many worker processes run (stopping ones included).
    pub running: usize,
    /// How many are ready.
    pub ready: usize,
    /// How many have stayed ready for `min_ready_ms` (only those replace older workers).
    #[serde(default)]
    pub available: usize,
    /// `--min-ready`, in milliseconds.
    #[serde(default)]
    pub min_ready_ms: u64,
    /// `--grace`, in milliseconds (`None` from a herd that predates the field).
    #[serde(default)]
    pub grace_ms: Option<u64>,
    /// Every worker process.
    pub workers: Vec<WorkerStatus>,
    /// Slots without a worker, waiting out a restart backoff.
    pub waiting: Vec<WaitingSlot>,
    /// Slots a scale-up added whose worker waits to start, `--max-starting` at a time beside
    /// serving workers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub queued: Vec<usize>,
    /// Slots whose worker's start waits for its generation's fork server (`--fork-server`:
    /// loading, or started anew after it exited), by slot.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forking: Vec<ForkingSlot>,
    /// `--max-starting` (`auto` resolved): how many new workers may be starting at once
    /// (`None` from a herd that predates the field).
    #[serde(default)]
    pub max_starting: Option<usize>,
    /// `--max-surge` for `desired` workers (a percentage resolved, at least 1): how many
    /// workers may run beyond the pool (`None` from a herd that predates the field).
    #[serde(default)]
    pub max_surge: Option<usize>,
    /// The listening sockets.
    pub sockets: Vec<SocketStatus>,
    /// Processes that fetched the sockets with `herd attach` (not supervised).
    pub attached: Vec<AttachedStatus>,
    /// Autoscaling bounds and last decision, or null.
    #[serde(default)]
    pub autoscale: Option<AutoscaleStatus>,
    /// herd's own log lines lost because its stderr was closed, full or not read.
    #[serde(default)]
    pub log_lines_dropped: u64,
    /// Lines of worker output (`--worker-output prefix|json`) lost because herd's stdout or
    /// stderr was not written as fast as the workers wrote.
    #[serde(default)]
    pub worker_output_lines_dropped: u64,
    /// Exited workers whose process groups still have processes, which herd is stopping.
    #[serde(default)]
    pub leftovers: Vec<LeftoverStatus>,
    /// Which memory figure `memory_bytes` is: `rss` (the working set on Windows) or `pss`.
    #[serde(default)]
    pub memory_kind: Option<String>,
    /// The recent recycles (`--max-memory`, `--max-lifetime`), oldest first.
    #[serde(default)]
    pub recycles: Vec<RecycleStatus>,
    /// The slots held back from recycling now, by slot. Left out when none is.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recycle_holds: Vec<RecycleHoldStatus>,
    /// Processes workers left behind that were re-parented to herd (Linux), which herd reaps
    /// and stops when it stops.
    #[serde(default)]
    pub orphans: Vec<OrphanStatus>,
    /// herd's recent log events (info and above), oldest first.
    #[serde(default)]
    pub events: Vec<RecentEvent>,
    /// `--fork-server`'s fork servers, by pid.
    #[serde(default)]
    pub fork_servers: Vec<ForkServerStatus>,
}

/// A generation's fork server (`--fork-server`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForkServerStatus {
    /// Its pid.
    pub pid: u32,
    /// The generation whose workers it forks.
    pub generation: u64,
    /// Whether it said `READY=1` (else it is loading).
    pub ready: bool,
}

/// A process a worker left behind, re-parented to herd.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrphanStatus {
    /// Its pid.
    pub pid: u32,
    /// Its command name, as the system shows it.
    pub name: String,
    /// How long herd has known it, in milliseconds (since this image started, after a
    /// re-exec).
    pub known_ms: u64,
}

/// A worker recycled: replaced by a successor in its slot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecycleStatus {
    /// The slot.
    pub slot: usize,
    /// The recycled worker's pid.
    pub pid: u32,
    /// Its successor's pid, if one started.
    pub successor: Option<u32>,
    /// `memory`, `lifetime` or `asked`.
    pub reason: String,
    /// The figures behind it, in words.
    pub why: String,
    /// How long ago it started, in milliseconds.
    pub ago_ms: u64,
    /// Whether it failed: the successor was gone before it was available, and the recycled
    /// worker serves on.
    #[serde(default)]
    pub aborted: bool,
}

/// A slot held back from recycling (`recycle_held_back`, `recycle_aborted`): no recycle
/// starts in it for `left_ms`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecycleHoldStatus {
    /// The slot.
    pub slot: usize,
    /// Its worker that is due for recycling and waits, if one is.
    pub pid: Option<u32>,
    /// `asked_at_start`, `over_memory_from_start` or `recycle_failed`.
    pub reason: String,
    /// Why, in words.
    pub why: String,
    /// How much longer, in milliseconds.
    pub left_ms: u64,
}

/// Autoscaling, when it is on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoscaleStatus {
    /// The fewest workers it keeps.
    pub min: usize,
    /// The most workers it keeps.
    pub max: usize,
    /// Its last decision, if it made one.
    pub last_decision: Option<AutoscaleDecision>,
}

/// An autoscaling decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoscaleDecision {
    /// How many workers it asked for.
    pub workers: usize,
    /// Why.
    pub reason: String,
    /// How long ago, in milliseconds.
    pub ago_ms: u64,
}

/// The process group an exited worker left behind.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LeftoverStatus {
    /// The exited worker's pid: the group's id.
    pub pid: u32,
    /// Its slot.
    pub slot: usize,
    /// When what remains gets SIGKILL, in milliseconds from now (0: it did).
    pub kill_in_ms: u64,
}

/// A process started by `herd attach`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AttachedStatus {
    /// Its pid.
    pub pid: u32,
    /// How long ago it attached, in milliseconds.
    pub uptime_ms: u64,
    /// The sockets it took.
    pub sockets: Vec<String>,
}

/// One worker.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorkerStatus {
    /// Its slot.
    pub slot: usize,
    /// Its pid.
    pub pid: u32,
    /// Its generation.
    pub generation: u64,
    /// `starting`, `ready` or `stopping`.
    pub state: String,
    /// Whether it has stayed ready for `--min-ready` (assumed of a ready worker by clients
    /// reading the status of a herd that predates the field).
    #[serde(default = "assumed_available")]
    pub available: bool,
    /// Why it is stopping, if it is.
    pub stopping_reason: Option<String>,
    /// How long it has run, in milliseconds.
    pub uptime_ms: u64,
    /// How many times its slot restarted a worker after an unexpected exit.
    pub restarts: u32,
    /// How its slot's previous worker exited.
    pub last_exit: Option<String>,
    /// Its last `STATUS=` text.
    pub status: Option<String>,
    /// Its memory at the last sample, in bytes (see [`Status::memory_kind`]).
    #[serde(default)]
    pub memory_bytes: Option<u64>,
    /// Its CPU use between the last two samples, in percent of one CPU.
    #[serde(default)]
    pub cpu_percent: Option<f64>,
    /// Why it is being recycled (`memory`, `lifetime`), while its successor starts.
    #[serde(default)]
    pub recycling: Option<String>,
    /// Whether it is stopped (by `SIGSTOP`, `SIGTSTP` or a debugger, Linux): it serves nothing,
    /// whatever its state says, until it gets `SIGCONT`. Left out when not.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
}

/// A slot waiting to restart its worker.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WaitingSlot {
    /// The slot.
    pub slot: usize,
    /// When its next worker starts, in milliseconds from now.
    pub restart_in_ms: u64,
    /// Restarts so far.
    pub restarts: u32,
    /// How its last worker exited.
    pub last_exit: Option<String>,
}

/// A slot whose worker's start waits for its generation's fork server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForkingSlot {
    /// The slot.
    pub slot: usize,
    /// The generation of the worker to start.
    pub generation: u64,
}

/// A listening socket.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SocketStatus {
    /// Its name in `LISTEN_FDNAMES`.
    pub name: String,
    /// Where it listens, with the real port.
    pub address: String,
    /// `tcp`, `udp`, `unix` or `shm`.
    pub kind: SocketKind,
    /// Its fd number in workers.
    pub fd: i32,
    /// Connections waiting to be accepted (TCP on Linux).
    pub queue: Option<u32>,
    /// The accept queue's limit, the backlog in force (TCP on Linux).
    pub queue_limit: Option<u32>,
    /// The backlog herd listened with, when known (TCP on Linux): a `queue_limit` that differs
    /// was set by a worker's own `listen`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backlog_set: Option<u32>,
    /// `shared`, or `reuseport` for one socket per worker slot (`shared` when absent).
    #[serde(default)]
    pub balance: Balance,
    /// Under `reuseport`, each slot's waiting connections, in slot order (`queue` is the sum).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slot_queues: Vec<u32>,
    /// The socket file herd created (or took over) for a Unix socket, and removes as it exits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<SocketFileStatus>,
}

/// A socket file, and which file it is: a herd that takes over checks it is still the same.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SocketFileStatus {
    /// Where it is, absolute (a path that is not UTF-8 is not shown).
    pub path: String,
    /// Its device.
    pub dev: u64,
    /// Its inode.
    pub ino: u64,
}

fn assumed_available() -> bool {
    true
}

/// Builds the snapshot of `pool`, with the platform's `sockets` and `attached` processes.
pub fn snapshot(
    pool: &Pool,
    sockets: Vec<SocketStatus>,
    attached: Vec<AttachedStatus>,
    name: &str,
    started: Instant,
) -> Status {
    let now = Instant::now();
    let mut workers: Vec<WorkerStatus> = pool
        .workers()
        .iter()
        .map(|w| worker_status(pool, w, now))
        .collect();
    // By slot, as `herd status` and `herd top` show them (the pool keeps them in start order:
    // a restarted worker would come after every other). A slot's workers keep theirs: its old
    // generation before its new one during an upgrade.
    workers.sort_by_key(|w| w.slot);
    let waiting = pool
        .slots()
        .iter()
        .enumerate()
        .take(pool.desired())
        .filter_map(|(i, s)| {
            s.restart_at.map(|at| WaitingSlot {
                slot: i,
                restart_in_ms: ms(at.saturating_duration_since(now)),
                restarts: s.restarts,
                last_exit: s.last_exit_said(),
            })
        })
        .collect();
    let queued = (pool.slots().iter().enumerate().take(pool.desired()))
        .filter_map(|(i, s)| s.waits_to_start().then_some(i))
        .collect();
    Status {
        pid: std::process::id(),
        name: name.to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        uptime_ms: ms(now.saturating_duration_since(started)),
        generation: pool.generation(),
        upgrading_to: pool.upgrade_in_progress().map(|u| u.generation),
        stopping: pool.is_stopping(),
        draining_ms: None,
        desired: pool.desired(),
        running: workers.len(),
        ready: workers.iter().filter(|w| w.state == "ready").count(),
        available: workers.iter().filter(|w| w.available).count(),
        min_ready_ms: ms(pool.config().min_ready),
        grace_ms: Some(ms(pool.config().grace)),
        workers,
        waiting,
        queued,
        forking: Vec::new(),
        max_starting: Some(pool.config().max_starting.max(1)),
        max_surge: Some(pool.config().max_surge.limit(pool.desired())),
        sockets,
        attached,
        autoscale: None,
        log_lines_dropped: crate::logging::lines_dropped(),
        worker_output_lines_dropped: crate::output::lines_dropped(),
        leftovers: Vec::new(),
        memory_kind: None,
        recycles: Vec::new(),
        recycle_holds: Vec::new(),
        orphans: Vec::new(),
        events: crate::logging::recent_events(),
        fork_servers: Vec::new(),
    }
}

/// `d` in whole milliseconds.
pub fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// One worker, as of `now`.
fn worker_status(pool: &Pool, w: &super::pool::Worker, now: Instant) -> WorkerStatus {
    let slot = &pool.slots()[w.slot];
    let (state, reason) = match w.state {
        WorkerState::Starting => ("starting", None),
        WorkerState::Ready => ("ready", None),
        // A worker draining its slot shows as stopping, as it did when the drain was the
        // supervisor's.
        WorkerState::Stopping { .. } | WorkerState::Draining { .. } => (
            "stopping",
            w.stopped_for().map(|r| r.describe().to_string()),
        ),
    };
    WorkerStatus {
        slot: w.slot,
        pid: w.pid,
        generation: w.generation,
        state: state.to_string(),
        available: w.available && w.state == WorkerState::Ready,
        stopping_reason: reason,
        uptime_ms: ms(now.saturating_duration_since(w.started)),
        restarts: slot.restarts,
        last_exit: slot.last_exit_said(),
        status: w.status.clone(),
        memory_bytes: None,
        cpu_percent: None,
        recycling: None,
        paused: w.paused,
    }
}

#[cfg(test)]
mod tests;
