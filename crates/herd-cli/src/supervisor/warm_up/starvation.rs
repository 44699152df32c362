//! Whether a warming worker is starved: at saturation a `SCHED_IDLE` start-up gets no CPU at
//! all, so waiting out the whole warm-up budget only makes the upgrade slower. The kernel
//! counts how long a task waited runnable without running (`run_delay`, the second field of
//! `/proc/PID/schedstat`) and how long it ran (the first), but adds a wait only when the
//! task gets the CPU (`sched_info_arrive`): a task that waits on counts nothing. So herd also
//! reads whether the task is runnable (`R` in `/proc/PID/stat`): one that is, and ran little
//! since the last sample, waited the rest of the interval. herd reads the worker's main
//! thread's every [`SAMPLE_EVERY`] and raises a worker that waited [`STARVED_AFTER`] in a
//! row. Pure: samples in, "starved" out.

use std::time::{Duration, Instant};

/// How often herd reads the run-queue wait of the workers warming up.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// A warming worker that waited this long for the CPU, in intervals where it waited most of
/// the time, is starved: it gets herd's priority back at once.
pub const STARVED_AFTER: Duration = Duration::from_millis(150);

/// At most this many warming workers are read per sample (in turn), so that a start of
/// thousands costs herd little.
pub const SAMPLED_PER_TICK: usize = 64;

/// An interval counts towards starvation when the worker waited at least this share of it
/// (numerator, denominator): at saturation a `SCHED_IDLE` task waits nearly all the time,
/// beside serving workers with CPU to spare much less.
const MOSTLY: (u32, u32) = (3, 4);

/// What the scheduler says of a task: its totals since it was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedStat {
    /// How long it ran.
    pub ran: Duration,
    /// How long it waited runnable without running, up to the last time it got the CPU.
    pub waited: Duration,
    /// Whether it is runnable now (running, or waiting for the CPU).
    pub runnable: bool,
}

/// One warming worker's run-queue wait, as sampled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Starvation {
    /// The last sample: when, and the task's totals then.
    last: Option<(Instant, SchedStat)>,
    /// How long it waited in the intervals in a row where it waited most of the time.
    waited: Duration,
    /// Waits counted while it was runnable that the kernel has not added yet: it adds them
    /// once the task runs, and they must not count twice.
    unbooked: Duration,
}

impl Starvation {
    /// A worker started at `at`: a new task has waited nothing yet.
    pub fn from_start(at: Instant) -> Starvation {
        Starvation {
            last: Some((at, SchedStat::default())),
            waited: Duration::ZERO,
            unbooked: Duration::ZERO,
        }
    }

    /// A worker whose wait so far is unknown (handed over by a re-exec): the first sample
    /// only sets where counting starts.
    pub fn unknown() -> Starvation {
        Starvation {
            last: None,
            waited: Duration::ZERO,
            unbooked: Duration::ZERO,
        }
    }

    /// The worker's scheduler figures were `stat` at `now` (`None`: they could not be read,
    /// and counting starts again at the next sample): whether it is starved.
    pub fn sample(&mut self, now: Instant, stat: Option<SchedStat>) -> bool {
        let Some(stat) = stat else {
            *self = Starvation::unknown();
            return false;
        };
        let Some((at, before)) = self.last.replace((now, stat)) else {
            return false;
        };
        let elapsed = now.saturating_duration_since(at);
        // What the kernel added since, less what earlier samples counted already.
        let booked = stat.waited.saturating_sub(before.waited);
        let counted = booked.saturating_sub(self.unbooked);
        self.unbooked = self.unbooked.saturating_sub(booked);
        // Runnable now: the time it did not run was spent waiting (the kernel counts it only
        // once the task runs).
        let not_run = elapsed.saturating_sub(stat.ran.saturating_sub(before.ran));
        let wait = match stat.runnable && not_run > counted {
            true => {
                self.unbooked += not_run - counted;
                not_run
            }
            false => counted,
        };
        let (num, den) = MOSTLY;
        if !elapsed.is_zero() && wait * den >= elapsed * num {
            self.waited += wait;
        } else {
            self.waited = Duration::ZERO;
        }
        self.waited >= STARVED_AFTER
    }
}
