//! `--starting-nice`: a worker that starts while others serve (an upgrade's or a recycle's
//! successor, a scale-up) runs at a low CPU priority until it is ready, then at
//! herd's own, so that its start-up (a Python or Node import, a cache warm-up) does not take
//! the CPU the serving workers need on a small machine. Pure: the
//! option, herd's own nice value and whether herd may raise a priority back in; how each
//! start is lowered and what to restore on readiness out.
//!
//! - On Linux `auto` starts a worker in the `SCHED_IDLE` class, elsewhere at nice 19. Nice 19
//!   is not enough under Linux's EEVDF scheduler (6.6 on): a running nice-19 task keeps the
//!   rest of its slice (0.75-3 ms) when a serving worker wakes, since wake-up preemption waits
//!   for the current task to run to parity; a `SCHED_IDLE` task is preempted at once by any
//!   waking task that is not idle (`check_preempt_wakeup_fair`: `cse_is_idle &&
//!   !pse_is_idle`). A worker and every thread and process it starts inherit the class.
//! - `SCHED_IDLE` is used only when herd itself runs in `SCHED_OTHER`, the class a ready
//!   worker is raised to: a herd in `SCHED_BATCH`, `SCHED_IDLE` or a real-time class (`chrt`,
//!   systemd's `CPUSchedulingPolicy=`) passes that class to its workers, and raising them to
//!   `SCHED_OTHER` would move them out of it (above it, for `SCHED_IDLE`). There `auto` lowers
//!   the nice value instead, and `idle` is refused.
//! - herd's first workers (every start until they were all ready once) and a start with no
//!   server in the pool keep herd's priority: there is no one to leave the CPU to, and 4096
//!   lowered first workers (the first ready among them serves already) would cost herd a
//!   raise walk and starvation reads each ([`StartSite`]); so does a restart after an
//!   unexpected exit, which replaces capacity the pool lost. herd times these start-ups for
//!   the warm-up budget. A scale-up beside serving workers is lowered (into a slot used before
//!   too): with CPU to spare it runs on what they leave, and on a saturated machine one worker
//!   more adds no CPU, while its start-up at herd's priority would take a share from those
//!   that serve; starved, it trickles, and its budget bounds the wait. When the pool's last
//!   ready worker exits, every worker still warming up gets herd's priority at once, and so
//!   does a successor whose own slot's serving worker exits unasked (it replaces lost
//!   capacity now, as a restart does).
//! - Raising a priority back needs `CAP_SYS_NICE`, or the same user and an `RLIMIT_NICE` that
//!   allows herd's nice value (leaving `SCHED_IDLE` counts as raising from nice 20): `auto`
//!   lowers only when herd may, `off` never does, an explicit value that herd could not undo
//!   is refused at start-up. Workers of another user (`--user`) need `CAP_SYS_NICE`.
//! - herd lowers a worker only if it still runs at herd's own class and nice value when herd
//!   looks, right after its `execve` ([`Lowering`]): one that set its own first (`chrt -b 0
//!   prog`, `nice -n 5 prog`) keeps it. Only a worker herd did lower warms up, is sampled
//!   and is raised later; a lowering that failed leaves it as it was.
//! - On readiness, herd raises what it lowered and nothing else: with `SCHED_IDLE`, every
//!   thread of the worker and of the processes it started that is still in that class (one
//!   in another class chose it itself); with a nice value, every such thread still at the
//!   starting value (one at another chose it: a child started with `nice -n 5`).
//! - A worker still starting in `SCHED_IDLE` trickles as soon as it is starved ([`on_starvation`]:
//!   `SCHED_OTHER` at nice 10 below herd's, or the next value no thread of it chose itself,
//!   until it is ready or its longest budget, counted
//!   from its start, ends: [`trickle_until`]); one
//!   lowered to a nice value gets herd's priority back then: at saturation a starting worker
//!   gets almost no CPU (a `SCHED_IDLE` one none at all), so it would only wait, and could miss
//!   `--ready-timeout`. herd reads how long each warming
//!   worker waited for the CPU (Linux's `/proc/PID/schedstat`, [`starvation`]): one that waited
//!   [`STARVED_AFTER`] in a row, most of the time, is raised then. With CPU to spare a
//!   start-up waits little and warms up on; one blocked on I/O does not wait at all. Where
//!   the wait cannot be read, and as the outer bound, a warm-up ends with its budget, which
//!   follows what a start-up costs here: [`BUDGET_FACTOR`] times the slowest of the last few
//!   start-ups herd timed at full priority (its first workers' among them), at least
//!   [`MIN_WARM_UP`], at most half the time a worker has to become ready and
//!   [`MAX_WARM_UP`]; before any was timed, that most. Where the kernel keeps no run-queue
//!   waits (no `schedstat`: not Linux, no `CONFIG_SCHED_INFO`; checked once), no sample is
//!   taken. A re-exec's new image gives each worker herd lowered and that is still starting
//!   a whole warm-up from then on, and raises it as it was lowered (the state says how); one
//!   that trickled trickles on, unsampled, until its longest warm-up from its start is over.
//! - On Windows the same starts run in a lower priority class ([`PriorityClass`]: `auto`
//!   and `idle` in `IDLE_PRIORITY_CLASS`), set while the worker is still suspended, and the
//!   worker and the processes it started that are still in that class get the class herd's
//!   workers are born in back on readiness. Windows keeps no run-queue waits: a warm-up there
//!   ends with its budget.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::pool::Readiness;

mod end;
mod priority_class;
mod spans;
mod starvation;
mod warming;

pub use end::WarmUpEnd;
pub use priority_class::PriorityClass;
pub use spans::LoweredSpan;
pub use starvation::{SchedStat, Starvation, SAMPLED_PER_TICK, SAMPLE_EVERY, STARVED_AFTER};
pub use warming::{handed, Warming};

/// `--starting-nice` as given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartingNice {
    /// `SCHED_IDLE` on Linux, `IDLE_PRIORITY_CLASS` on Windows, nice 19 elsewhere, when
    /// herd may raise a ready worker's priority back; else off.
    Auto,
    /// Never lower a starting worker's priority.
    Off,
    /// The `SCHED_IDLE` class (Linux), `IDLE_PRIORITY_CLASS` (Windows).
    Idle,
    /// This nice value (1 to 19).
    Nice(i32),
}

/// How a starting worker runs until it is ready (by name in a re-exec's state).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Lowered {
    /// In the `SCHED_IDLE` class (Linux), `IDLE_PRIORITY_CLASS` (Windows).
    Idle,
    /// At this nice value.
    Nice(i32),
}

/// Whether starting workers can warm up in `SCHED_IDLE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchedIdle {
    /// Yes: herd runs in `SCHED_OTHER`, which a ready worker is raised back to.
    Available,
    /// This system has no `SCHED_IDLE` (it is Linux's).
    Missing,
    /// herd runs in this other class (a policy, as `sched_getscheduler` gives it), which its
    /// workers inherit and which a worker raised from `SCHED_IDLE` (to `SCHED_OTHER`) would
    /// not get back.
    HerdIn(i32),
}

impl SchedIdle {
    /// On Linux, for herd in scheduling policy `policy` (`sched_getscheduler`).
    pub fn on_linux_in(policy: i32) -> SchedIdle {
        match born_with(policy, 0).class {
            0 => SchedIdle::Available,
            class => SchedIdle::HerdIn(class),
        }
    }

    /// The class herd's workers start in (`SCHED_OTHER`, 0, where none is known).
    pub fn workers_class(self) -> i32 {
        match self {
            SchedIdle::HerdIn(class) => class,
            SchedIdle::Available | SchedIdle::Missing => 0,
        }
    }
}

/// The class and nice value a child of a process in scheduling policy `policy` at nice value
/// `nice` starts with: the same, unless the policy carries `SCHED_RESET_ON_FORK`, which a
/// child does not inherit and which starts the children of a real-time or deadline process in
/// `SCHED_OTHER` at nice 0, and those of any other at nice 0 at the highest (`sched(7)`;
/// `sched_fork` in the kernel's `kernel/sched/core.c`).
pub fn born_with(policy: i32, nice: i32) -> Priority {
    const SCHED_RESET_ON_FORK: i32 = 0x4000_0000;
    let class = policy & !SCHED_RESET_ON_FORK;
    match (policy & SCHED_RESET_ON_FORK != 0, class) {
        (false, _) => Priority { class, nice },
        (true, 1 | 2 | 6) => Priority { class: 0, nice: 0 },
        (true, _) => Priority {
            class,
            nice: nice.max(0),
        },
    }
}

/// The name of scheduling class `class`, for messages.
pub fn class_name(class: i32) -> &'static str {
    match class {
        0 => "SCHED_OTHER",
        1 => "SCHED_FIFO",
        2 => "SCHED_RR",
        3 => "SCHED_BATCH",
        5 => "SCHED_IDLE",
        6 => "SCHED_DEADLINE",
        _ => "a scheduling class other than SCHED_OTHER",
    }
}

/// A task's scheduling class (its policy, as `sched_getscheduler` gives it) and nice value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Priority {
    /// The class.
    pub class: i32,
    /// The nice value.
    pub nice: i32,
}

/// The lowest priority there is (the highest nice value).
pub const LOWEST: i32 = 19;

/// The resolved setting: starting workers run at `starting`, ready ones at `serving`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WarmUp {
    /// How a starting worker runs.
    pub starting: Lowered,
    /// The nice value herd's workers start at (herd's own, see [`born_with`]), which ready
    /// workers get back; on Windows, the priority class's value ([`PriorityClass::raw`]).
    pub serving: i32,
    /// The class herd's workers start in (herd's own, see [`born_with`]).
    pub class: i32,
}

/// How herd lowers one starting worker: to `to`, if it still runs at `from`, the class and
/// nice value it started with (herd's); one that changed either chose its own priority.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lowering {
    /// What the worker runs at until it is ready.
    pub to: Lowered,
    /// What it started at.
    pub from: Priority,
}

impl Lowering {
    /// Whether a worker that runs at `now` is lowered: only if it still runs at herd's class
    /// and nice value.
    pub fn applies_to(&self, now: Priority) -> bool {
        now == self.from
    }
}

/// A worker started: its pid, and how herd lowered it (`None`: it runs at its own priority,
/// herd's unless it chose another).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spawned {
    /// The worker's pid.
    pub pid: u32,
    /// How herd lowered it.
    pub lowered: Option<Lowered>,
}

impl StartingNice {
    /// The setting for workers that start at nice value `own` (herd's, see [`born_with`]),
    /// where `idle` says whether starting workers can use `SCHED_IDLE` and `may_raise_to(own)`
    /// whether herd may set a worker back to `own` (or what would let it). `Ok(None)`:
    /// starting workers keep herd's priority. `Err`: an explicit value that cannot work, with
    /// what to do about it.
    pub fn resolve(
        self,
        own: i32,
        idle: SchedIdle,
        may_raise_to: impl FnOnce(i32) -> Result<(), String>,
    ) -> Result<Option<WarmUp>, String> {
        let starting = match (self, idle) {
            (StartingNice::Off, _) => return Ok(None),
            (StartingNice::Auto, SchedIdle::Available) => Lowered::Idle,
            (StartingNice::Auto, _) if own >= LOWEST => return Ok(None),
            (StartingNice::Auto, _) => Lowered::Nice(LOWEST),
            (StartingNice::Idle, SchedIdle::Missing) => {
                return Err(
                    "--starting-nice idle: SCHED_IDLE is Linux's; give a nice value \
                            from 1 to 19, or off"
                        .to_string(),
                )
            }
            (StartingNice::Idle, SchedIdle::HerdIn(class)) => {
                return Err(format!(
                    "--starting-nice idle: herd runs in {}, which its workers inherit, and \
                     a worker raised from SCHED_IDLE gets SCHED_OTHER instead: give a nice value \
                     from 1 to 19, or off",
                    class_name(class)
                ))
            }
            (StartingNice::Idle, SchedIdle::Available) => Lowered::Idle,
            (StartingNice::Nice(n), _) if own >= LOWEST => {
                return Err(format!(
                    "--starting-nice {n}: herd already runs at the lowest priority (nice {own}), \
                     so workers cannot start lower: use --starting-nice off"
                ))
            }
            (StartingNice::Nice(n), _) if n <= own => {
                return Err(format!(
                    "--starting-nice {n} is not lower than herd's own priority (nice {own}): \
                     give a value from {} to {LOWEST}, or off",
                    (own + 1).max(1)
                ))
            }
            (StartingNice::Nice(n), _) => Lowered::Nice(n),
        };
        let refused = match may_raise_to(own) {
            Ok(()) => {
                return Ok(Some(WarmUp {
                    starting,
                    serving: own,
                    class: idle.workers_class(),
                }))
            }
            Err(way_out) => way_out,
        };
        match (self, starting) {
            (StartingNice::Auto, _) => Ok(None),
            (_, Lowered::Idle) => Err(format!(
                "--starting-nice idle: herd could not raise a ready worker back from SCHED_IDLE \
                 to nice {own}: {refused}, or use --starting-nice off"
            )),
            (_, Lowered::Nice(n)) => Err(format!(
                "--starting-nice {n}: herd could not raise a ready worker's priority back to \
                 nice {own}: {refused}, or use --starting-nice off"
            )),
        }
    }
}

/// What would let herd raise a worker at nice 20 or `SCHED_IDLE` back to nice `own`, for a
/// worker of herd's own user or of `other_user`.
pub fn raise_way_out(own: i32, other_user: bool) -> String {
    let cap = "run herd as root or with CAP_SYS_NICE (systemd: AmbientCapabilities=CAP_SYS_NICE)";
    if other_user {
        return format!(
            "the workers run as another user (--user), which needs CAP_SYS_NICE: {cap}"
        );
    }
    format!("{cap}, or allow it with LimitNICE={} (ulimit -e)", 20 - own)
}

/// Where a worker starts.
#[derive(Clone, Copy, Debug)]
pub struct StartSite {
    /// In herd's first fill of the pool: until every first worker was ready once.
    pub first_fill: bool,
    /// It restarts its slot, whose worker exited unexpectedly ([`Pool::starts_restart`]).
    ///
    /// [`Pool::starts_restart`]: herd_core::Pool::starts_restart
    pub restart: bool,
    /// Its slot's worker is ready: it is an upgrade's or a recycle's successor.
    pub slot_serves: bool,
    /// A worker of the pool is ready.
    pub pool_serves: bool,
    /// Each slot has a queue of its own (`--balance reuseport`).
    pub per_slot_queues: bool,
}

impl StartSite {
    /// Whether the start is beside workers that serve, and so lowered: always when its own
    /// slot's worker is ready (an upgrade's or a recycle's successor, in the first fill too);
    /// else when the pool serves, outside the first fill (4096 first workers, the first ready
    /// among them, would make the rest cost herd a raise walk and starvation reads each), for
    /// no restart (it replaces capacity the pool lost), and with one queue for all (with a
    /// queue per slot, the connections a crashed worker left wait for its restart alone, and a
    /// scale-up starts at herd's priority too).
    pub fn beside_servers(self) -> bool {
        if self.slot_serves {
            return true;
        }
        // A restart replaces capacity the pool lost (a killed worker is to be back within
        // milliseconds); the first fill paces its starts, its first ready worker serving.
        !(self.first_fill || self.restart || self.per_slot_queues) && self.pool_serves
    }
}

impl WarmUp {
    /// How a worker starting now runs: lowered only when it starts `beside_servers`
    /// ([`StartSite::beside_servers`]), else at herd's priority.
    pub fn for_start(&self, beside_servers: bool) -> Option<Lowering> {
        let from = Priority {
            class: self.class,
            nice: self.serving,
        };
        beside_servers.then_some(Lowering {
            to: self.starting,
            from,
        })
    }
}

/// How many nice values under the serving workers' a starved `SCHED_IDLE` start-up trickles
/// at: nice 10 weighs 110 against nice 0's 1024 (the kernel's `sched_prio_to_weight`), a
/// tenth of one serving worker's share.
pub const TRICKLE_BELOW: i32 = 10;

/// What a warming worker lowered as `how` gets once it is starved, beside serving workers at
/// nice `serving`: `Some(nice)`, a trickle (out of `SCHED_IDLE`, which gets no CPU at all at
/// saturation, into `SCHED_OTHER` at that nice value) until it is ready or its longest budget
/// ([`budget_for`]) ends, or `None`: herd's priority back at once (a worker lowered to a nice
/// value already gets its small share; a trickle would need a nice value above 19).
///
/// The trickle's value is the first from [`TRICKLE_BELOW`] under `serving` to [`LOWEST`] that
/// no thread of the worker's tree runs at yet (`in_tree`, its nice values, read only for a
/// worker in `SCHED_IDLE`): one there chose it itself (a child started with `nice`, whose
/// default is 10), and the raise that ends the trickle moves every thread at its value, so
/// it would take that choice away.
pub fn on_starvation(
    how: Lowered,
    serving: i32,
    in_tree: impl FnOnce() -> Vec<i32>,
) -> Option<i32> {
    match how {
        Lowered::Idle => {
            let taken = in_tree();
            (serving + TRICKLE_BELOW..=LOWEST).find(|nice| !taken.contains(nice))
        }
        Lowered::Nice(_) => None,
    }
}

/// Until when a worker whose warm-up began at `since`, found starved at `now`, trickles: until
/// its longest warm-up (`longest`, [`budget_for`]) from `since` is over, not from `now`, so
/// that it has the other half of its ready time at herd's priority, as a warm-up that ends
/// with its budget has (`--ready-timeout` counts from its start too). `None` when that is
/// over already: herd's priority at once.
pub fn trickle_until(since: Instant, longest: Duration, now: Instant) -> Option<Instant> {
    let until = since + longest;
    (until > now).then_some(until)
}

/// The longest a worker warms up at the starting priority before it gets herd's back.
pub const MAX_WARM_UP: Duration = Duration::from_secs(5);

/// How long a worker that has `ready_within` to become ready warms up at the starting
/// priority: half of that, at most [`MAX_WARM_UP`].
pub fn warm_up_budget(ready_within: Duration) -> Duration {
    (ready_within / 2).min(MAX_WARM_UP)
}

/// The warm-up of a worker that becomes ready by `readiness`: [`warm_up_budget`] of its
/// `READY=1` timeout, or of its delay.
pub fn budget_for(readiness: Readiness) -> Duration {
    match readiness {
        Readiness::Delay(within) | Readiness::Notify { timeout: within } => warm_up_budget(within),
    }
}

/// A warm-up lasts at least this long (a start-up timed at full priority varies from one
/// start to the next).
pub const MIN_WARM_UP: Duration = Duration::from_millis(250);

/// A warm-up lasts this many times the slowest recent start-up at full priority. Twice: a
/// start timed among others that started at once (herd's first generation) already took
/// longer than one alone, and a start-up in `SCHED_IDLE` at 2000 requests/s on 2 cores took
/// about as long as one at full priority; at saturation a longer warm-up only makes the
/// upgrade slower (4 workers that took 2.3 s each at full priority ran out a 5 s budget each:
/// 33 s for the upgrade against 15 s at full priority).
pub const BUDGET_FACTOR: u32 = 2;

/// Parses `--starting-nice`: `auto`, `off`, `idle`, or a nice value from 1 to 19.
pub fn parse_starting_nice(text: &str) -> Result<StartingNice, String> {
    match text {
        "auto" => Ok(StartingNice::Auto),
        "off" => Ok(StartingNice::Off),
        "idle" => Ok(StartingNice::Idle),
        _ => match text.parse::<i32>() {
            Ok(n) if (1..=LOWEST).contains(&n) => Ok(StartingNice::Nice(n)),
            _ => Err(format!(
                "'{text}' is not a starting nice value: give auto, off, idle, or a number from 1 \
                 to {LOWEST} (19 is the lowest priority)"
            )),
        },
    }
}

#[cfg(test)]
mod tests;
