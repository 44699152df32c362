//! Recycling workers (`--max-memory`, `--max-lifetime`) and the figures behind it: every
//! [`SAMPLE_EVERY`] the supervisor asks the [`Sampler`]'s thread for each worker's memory and
//! CPU time (the platform's figures), feeds the memory that comes back to herd-core's pure
//! [`Recycler`], and after every loop turn carries out what it decides. `herd status` shows the figures and the recent recycles,
//! `--metrics` counts them by reason.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use herd_core::{Action, MemoryKind, RecycleCause, RecycleEvent, RecyclePolicy, Recycler};

use crate::cli::RunArgs;
use crate::logging::LogEvent;

use super::effects::{Count, Effect};
use super::platform;
use super::sampler::{ListenQueue, Sampler, Samples};
use super::status::{ms, RecycleHoldStatus, RecycleStatus, Status};
use super::Supervisor;

/// How often each worker's memory and CPU time are asked for.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// How many recent recycles `herd status` lists.
const RECENT: usize = 16;

/// The recycling settings of `herd run`'s command line: over the memory limit for two samples
/// in a row; a worker over it from the start, as its predecessor was, is held back 30 s, then
/// 1 min, ... up to 30 min.
pub fn policy(args: &RunArgs) -> RecyclePolicy {
    RecyclePolicy {
        max_memory: args.max_memory.map(|m| (m.kind, m.bytes)),
        max_lifetime: args.max_lifetime.map(|l| l.lifetime),
        jitter: args.max_lifetime.map_or(Duration::ZERO, |l| l.jitter),
        samples: 2,
        hold: Duration::from_secs(30),
        max_hold: Duration::from_secs(30 * 60),
    }
}

/// The recycler and the workers' last figures.
pub struct Recycling {
    recycler: Recycler,
    /// Each worker's CPU ticks at the last sample.
    cpu_ticks: HashMap<u32, (u64, Instant)>,
    /// Each worker's CPU use between the last two samples, in percent of one CPU.
    cpu_percent: HashMap<u32, f64>,
    /// The recent recycles, newest last, with when they started.
    recent: VecDeque<(Instant, RecycleStatus)>,
}

impl Default for Recycling {
    fn default() -> Self {
        Recycling::new(RecyclePolicy {
            max_memory: None,
            max_lifetime: None,
            jitter: Duration::ZERO,
            samples: 2,
            hold: Duration::from_secs(30),
            max_hold: Duration::from_secs(30 * 60),
        })
    }
}

impl Recycling {
    fn new(policy: RecyclePolicy) -> Recycling {
        let seed = RandomState::new().build_hasher().finish();
        Recycling {
            recycler: Recycler::new(policy, seed),
            cpu_ticks: HashMap::new(),
            cpu_percent: HashMap::new(),
            recent: VecDeque::new(),
        }
    }

    /// Worker `pid`'s CPU use between the last two samples, as a share of one CPU.
    pub fn cpu_share(&self, pid: u32) -> Option<f64> {
        self.cpu_percent.get(&pid).map(|percent| percent / 100.0)
    }

    /// What a re-exec carries: the workers' requests, the slots' holds, the jitter's seed.
    pub fn save(&self, epoch: herd_core::Epoch) -> herd_core::SavedRecycler {
        self.recycler.save(epoch)
    }

    /// Continues from what the previous image saved, at the pool's `epoch`.
    pub fn restore(&mut self, saved: herd_core::SavedRecycler, epoch: herd_core::Epoch) {
        self.recycler.restore(saved, epoch);
    }

    /// The memory figure sampled: the one `--max-memory` limits, else resident memory.
    fn kind(&self) -> MemoryKind {
        self.recycler
            .policy()
            .max_memory
            .map_or(MemoryKind::Rss, |(kind, _)| kind)
    }
}

impl Supervisor {
    /// Recycles workers by `policy`. After a re-exec, before [`resume`](Self::resume), which
    /// restores the previous image's requests and holds into this recycler.
    pub fn set_recycling(&mut self, policy: RecyclePolicy) {
        self.recycling = Recycling::new(policy);
    }

    /// Recycles workers by `policy` from now on (a config file read again), keeping the
    /// recycler's holds and jitter, the workers' figures and the recent recycles.
    pub(super) fn change_recycling(&mut self, policy: RecyclePolicy) {
        self.recycling.recycler.set_policy(policy);
    }

    /// Asks the sampler for every worker's memory and CPU time, unless starts are queued
    /// ([`sampling_pause`](super::sampling_pause)); says once when the round before is stuck.
    pub(super) fn ask_for_samples(&mut self, sampler: &mut Sampler) {
        let now = Instant::now();
        if !self.sampling_pause.take(self.starts.is_waiting(), now) {
            return;
        }
        let pids = self.pool.workers().iter().map(|w| w.pid).collect();
        let sockets = platform::queue_probes(self.effects.listeners());
        let kind = self.recycling.kind();
        let Some(slow) = sampler.ask(pids, kind, sockets, now) else {
            return;
        };
        let waited = humantime::format_duration(round_s(slow.waited));
        let reading = slow
            .pid
            .map_or(String::new(), |pid| format!(" (reading pid {pid})"));
        tracing::warn!(
            event = LogEvent::SamplingSlow.as_str(),
            pid = slow.pid,
            waited = %waited,
            "reading the workers' memory and CPU time has taken {waited} so far{reading}: \
             herd status shows older figures and --max-memory waits until it ends"
        );
    }

    /// Takes a round of the workers' figures, then recycles what is due.
    pub(super) fn sampled(&mut self, samples: Samples) {
        if let Some(took) = samples.late {
            let took = humantime::format_duration(round_s(took));
            tracing::info!(
                event = LogEvent::SamplingResumed.as_str(),
                took = %took,
                "the workers' memory and CPU time were read again, after {took}"
            );
        }
        self.backlogs_read(samples.queues);
        let per_second = platform::ticks_per_second().max(1) as f64;
        let r = &mut self.recycling;
        let mut memory = Vec::new();
        let mut ticks = HashMap::new();
        r.cpu_percent.clear();
        let stopped: Vec<(u32, bool)> =
            samples.figures.iter().map(|f| (f.pid, f.stopped)).collect();
        for f in samples.figures {
            if let Some(bytes) = f.memory {
                memory.push((f.pid, bytes));
            }
            let Some(used) = f.cpu_ticks else {
                continue;
            };
            if let Some(&(before, at)) = r.cpu_ticks.get(&f.pid) {
                let seconds = f.at.saturating_duration_since(at).as_secs_f64();
                if seconds > 0.0 {
                    let share = used.saturating_sub(before) as f64 / per_second / seconds;
                    r.cpu_percent.insert(f.pid, share * 100.0);
                }
            }
            ticks.insert(f.pid, (used, f.at));
        }
        r.cpu_ticks = ticks;
        r.recycler.record_memory(&self.pool, memory);
        self.pauses_seen(&stopped);
        self.recycle_due();
    }

    /// Takes the sockets' queues a round read; says once where a worker replaced a backlog.
    fn backlogs_read(&mut self, queues: Vec<ListenQueue>) {
        for r in self.backlogs.record(queues) {
            let (socket, set, now) = (&r.socket, r.set, r.now);
            tracing::warn!(
                event = LogEvent::BacklogReplaced.as_str(),
                socket = %socket,
                set,
                now,
                "socket {socket}: its backlog is {now}, not the {set} herd listened with: a \
                 worker called listen() on it again, as many servers do with their own default \
                 (hypercorn and Sanic 100, aiohttp 128, Node 511, waitress and unicorn 1024); \
                 set the server's own backlog option to the value you want"
            );
        }
    }

    /// Worker `pid` asked to be recycled (`HERD_RECYCLE=1`); [`Self::recycle_due`] takes it up
    /// after this turn.
    pub(super) fn recycle_asked(&mut self, pid: u32, now: Instant) {
        self.recycling.recycler.ask(&self.pool, pid, now);
    }

    /// When a worker's lifetime ends or a held slot is released, if ever.
    pub(super) fn recycle_deadline(&self, now: Instant) -> Option<Instant> {
        self.recycling.recycler.next_deadline(&self.pool, now)
    }

    /// Carries out what the recycler decides now, one log line per decision. None while herd
    /// drains before a stop (`--drain-delay`): as scaling and upgrades, a recycle would start
    /// successors that the stop kills moments later, in their start-up. What is due then is
    /// refused once the stop goes on.
    pub(super) fn recycle_due(&mut self) {
        if self.probes.draining() {
            return;
        }
        let now = Instant::now();
        for event in self.recycling.recycler.due(&mut self.pool, now) {
            match event {
                RecycleEvent::Started {
                    slot,
                    pid,
                    cause,
                    why,
                    actions,
                } => self.recycle_started(slot, pid, cause, why, actions, now),
                RecycleEvent::Deferred {
                    slot,
                    pid,
                    cause,
                    refused,
                } => tracing::info!(
                    event = LogEvent::RecycleDeferred.as_str(),
                    slot,
                    pid,
                    reason = cause.as_str(),
                    why = %refused,
                    "worker {slot} (pid {pid}) is due for recycling ({}), not now: {refused}",
                    cause.as_str()
                ),
                RecycleEvent::HeldBack {
                    slot,
                    pid,
                    wait,
                    why,
                } => tracing::warn!(
                    event = LogEvent::RecycleHeldBack.as_str(),
                    slot,
                    pid,
                    wait = %humantime::format_duration(round_s(wait)),
                    why = %why,
                    "worker {slot} (pid {pid}) is not recycled yet: {why}"
                ),
                RecycleEvent::Aborted {
                    slot,
                    pid,
                    cause,
                    hold,
                } => self.recycle_aborted(slot, pid, cause, hold),
            }
        }
    }

    /// The recycle of worker `pid` in `slot` for `cause` failed, and the slot waits `hold`:
    /// logged, and marked in the recent recycles, which `herd status` shows.
    fn recycle_aborted(&mut self, slot: usize, pid: u32, cause: RecycleCause, hold: Duration) {
        tracing::warn!(
            event = LogEvent::RecycleAborted.as_str(),
            slot,
            pid,
            reason = cause.as_str(),
            hold = %humantime::format_duration(hold),
            "recycling worker {slot} (pid {pid}) failed: its successor was gone before it was \
             available; it serves on, and its slot waits {} before the next try",
            humantime::format_duration(hold)
        );
        let mut recent = self.recycling.recent.iter_mut().rev();
        if let Some((_, r)) = recent.find(|(_, r)| r.slot == slot && r.pid == pid) {
            r.aborted = true;
        }
    }

    /// Worker `pid` in `slot` is recycled for `cause`: logged, counted, its successor started
    /// (`actions`), and remembered for `herd status`.
    fn recycle_started(
        &mut self,
        slot: usize,
        pid: u32,
        cause: RecycleCause,
        why: String,
        actions: Vec<Action>,
        now: Instant,
    ) {
        let reason = cause.as_str();
        tracing::info!(
            event = LogEvent::Recycle.as_str(),
            slot,
            pid,
            reason,
            why = %why,
            "recycling worker {slot} (pid {pid}): {why}; its successor starts"
        );
        self.effects.execute([Effect::Count(Count::Recycle(cause))]);
        self.apply(actions, false);
        // The successor starts now (recycles are few: --max-surge), so that status names it.
        self.start_some();
        let successor = self
            .pool
            .workers()
            .iter()
            .rev()
            .find(|w| w.slot == slot && w.pid != pid && w.live() && w.recycling.is_none());
        let record = RecycleStatus {
            slot,
            pid,
            successor: successor.map(|w| w.pid),
            reason: reason.to_string(),
            why,
            ago_ms: 0,
            aborted: false,
        };
        let recent = &mut self.recycling.recent;
        recent.push_back((now, record));
        while recent.len() > RECENT {
            recent.pop_front();
        }
    }

    /// Adds each worker's figures, the recent recycles and the slots held back to `status`.
    pub(super) fn recycling_status(&self, status: &mut Status) {
        let r = &self.recycling;
        for w in &mut status.workers {
            w.memory_bytes = r.recycler.memory(w.pid);
            w.cpu_percent = r.cpu_percent.get(&w.pid).map(|p| (p * 10.0).round() / 10.0);
            w.recycling = self
                .pool
                .worker(w.pid)
                .and_then(|p| p.recycling)
                .map(|c| c.as_str().to_string());
        }
        status.memory_kind = Some(match r.kind() {
            MemoryKind::Rss => super::platform::RESIDENT_MEMORY.to_string(),
            kind => kind.as_str().to_string(),
        });
        let now = Instant::now();
        status.recycles = r
            .recent
            .iter()
            .map(|(at, record)| RecycleStatus {
                ago_ms: ms(now.saturating_duration_since(*at)),
                ..record.clone()
            })
            .collect();
        status.recycle_holds = r
            .recycler
            .holds(&self.pool, now)
            .into_iter()
            .map(|h| RecycleHoldStatus {
                slot: h.slot,
                pid: h.pid,
                reason: h.kind.as_str().to_string(),
                why: h.kind.describe().to_string(),
                // Rounded up: a hold shown is never 0.
                left_ms: ms(h.left).max(1),
            })
            .collect();
    }
}

/// `d` in whole seconds, rounded up, for messages.
fn round_s(d: Duration) -> Duration {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    Duration::from_secs(secs)
}
