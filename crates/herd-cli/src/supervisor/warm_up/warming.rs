//! The workers warming up at the starting priority, which herd raises once each is ready,
//! starved or past its budget; and the start-ups at full priority, timed for the budget.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::spans::{LoweredSpan, Spans};
use super::starvation::{SchedStat, Starvation, SAMPLED_PER_TICK, SAMPLE_EVERY};
use super::{budget_for, trickle_until, Lowered, BUDGET_FACTOR, MIN_WARM_UP};
use crate::supervisor::pool::Readiness;

/// How many recent start-ups at full priority the budget looks at.
const TIMED: usize = 8;

/// The workers warming up at the starting priority, each with how herd lowered it, the time
/// it gets herd's priority back if it is still starting then and how starved it is; and the
/// start-ups at full priority, timed for the budget.
#[derive(Debug, Default)]
pub struct Warming {
    until: Vec<Warm>,
    /// When the run-queue waits were last read (or the first worker began warming).
    sampled_at: Option<Instant>,
    /// Where the next sample starts in `until` (in turn, at most [`SAMPLED_PER_TICK`]).
    cursor: usize,
    /// Whether this system cannot tell how long a task waited for the CPU: then no sample is
    /// taken, and each warm-up ends with its budget.
    unsampled: bool,
    /// Workers a re-exec handed over as warming, until [`resume`](Self::resume); how each
    /// was lowered, if the image that lowered it said.
    handed: Vec<(u32, Option<Lowered>)>,
    /// Those of `handed` that trickled.
    handed_trickling: Vec<u32>,
    /// Workers starting at full priority, since when.
    at_full: HashMap<u32, Instant>,
    /// How long the last few of those took to become ready, the latest last.
    took: VecDeque<Duration>,
    /// When each warm-up at the starting priority began and ended.
    spans: Spans,
}

/// A worker warming up.
#[derive(Debug)]
struct Warm {
    pid: u32,
    /// How herd lowered it.
    how: Lowered,
    /// When its warm-up began (after a re-exec, in this image).
    since: Instant,
    /// Its budget ends then.
    until: Instant,
    starvation: Starvation,
    /// Whether it trickles (starved once, moved to a low nice value): it is not sampled again.
    trickling: bool,
}

impl Warming {
    /// Where the run-queue wait cannot be read (`readable` false: no `/proc/PID/schedstat`),
    /// no samples are taken and each warm-up ends with its budget.
    pub fn set_sampling(&mut self, readable: bool) {
        self.unsampled = !readable;
    }

    /// Worker `pid` started at full priority at `at`: timed until it is ready.
    pub fn started_at_full(&mut self, pid: u32, at: Instant) {
        self.at_full.insert(pid, at);
    }

    /// Worker `pid` became ready at `now`: how herd lowered it, if it has not raised it back
    /// (as [`ended`](Self::ended)); a start-up at full priority is timed.
    pub fn ready(&mut self, pid: u32, now: Instant) -> Option<Lowered> {
        if let Some(at) = self.at_full.remove(&pid) {
            if self.took.len() == TIMED {
                self.took.pop_front();
            }
            self.took.push_back(now.saturating_duration_since(at));
        }
        self.spans.end(pid, now);
        self.ended(pid)
    }

    /// How long a worker that has `ready_within` to become ready warms up: see the module's
    /// doc.
    pub fn budget(&self, ready_within: Readiness) -> Duration {
        let most = budget_for(ready_within);
        match self.took.iter().max() {
            Some(&slowest) => (slowest * BUDGET_FACTOR).max(MIN_WARM_UP).min(most),
            None => most,
        }
    }

    /// Worker `pid` started at `at` and herd lowered it as `how`; its warm-up ends after
    /// `budget`, or sooner if it is starved.
    pub fn started(&mut self, pid: u32, at: Instant, budget: Duration, how: Lowered) {
        if self.until.is_empty() {
            self.sampled_at = Some(at);
        }
        self.spans.begin(pid, at);
        self.until.push(Warm {
            pid,
            how,
            since: at,
            until: at + budget,
            starvation: Starvation::from_start(at),
            trickling: false,
        });
    }

    /// Until when worker `pid`, found starved at `now`, may trickle: [`trickle_until`] its
    /// longest warm-up, `longest`, from when its warm-up began. `None` if that is over, or it
    /// is not warming up.
    pub fn trickle_until(&self, pid: u32, longest: Duration, now: Instant) -> Option<Instant> {
        let w = self.until.iter().find(|w| w.pid == pid)?;
        trickle_until(w.since, longest, now)
    }

    /// Worker `pid`, found starved, trickles from now on at `nice` until it is ready or
    /// `until` ([`trickle_until`](Self::trickle_until)); it is not sampled again.
    pub fn trickle(&mut self, pid: u32, nice: i32, until: Instant) {
        if let Some(w) = self.until.iter_mut().find(|w| w.pid == pid) {
            w.how = Lowered::Nice(nice);
            w.until = until;
            w.starvation = Starvation::unknown();
            w.trickling = true;
        }
    }

    /// Worker `pid` became ready or exited: how herd lowered it, if it was still warming up
    /// (herd has not raised it back), forgotten from here on.
    pub fn ended(&mut self, pid: u32) -> Option<Lowered> {
        self.at_full.remove(&pid);
        self.cut(pid)
    }

    /// Worker or fork server `pid`, if it is still warming up, gets herd's priority early (a
    /// start at herd's priority waits for it, or its slot lost its server): how herd lowered
    /// it, forgotten from here on. A start-up at full priority stays timed.
    pub fn cut(&mut self, pid: u32) -> Option<Lowered> {
        let i = self.until.iter().position(|w| w.pid == pid)?;
        Some(self.until.remove(i).how)
    }

    /// The workers warming up now and how herd lowered each, for a re-exec to hand over.
    pub fn lowered(&self) -> Vec<(u32, Lowered)> {
        self.until.iter().map(|w| (w.pid, w.how)).collect()
    }

    /// The workers that trickle ([`trickle`](Self::trickle)), for a re-exec to hand over.
    pub fn trickling(&self) -> Vec<u32> {
        let trickling = self.until.iter().filter(|w| w.trickling);
        trickling.map(|w| w.pid).collect()
    }

    /// Workers `handed` over by a re-exec as warming, with how each was lowered (`None`: the
    /// image that lowered it did not say), and those of them that `trickling`, until
    /// [`resume`](Self::resume).
    pub fn handed_over(&mut self, handed: Vec<(u32, Option<Lowered>)>, trickling: Vec<u32>) {
        self.handed = handed;
        self.handed_trickling = trickling;
    }

    /// The workers handed over that are still starting (`started`: when each started, `None`
    /// once it is not starting) warm up from `now` for `budget`, their wait counted from their
    /// first sample; one whose lowering is unknown is taken as lowered to `assumed` (this
    /// image's setting), and forgotten without one. One that trickled, at a nice value,
    /// trickles on, not sampled (sampled again, it would soon be found starved, a trickle
    /// waits most of the time, and get herd's priority at once), until `budget` (the longest,
    /// since this image has timed no start-up yet) from its start, as in the image that made
    /// it trickle ([`trickle_until`]): a re-exec, or one every second, does not lengthen it
    /// into its `--ready-timeout`. Any other warm-up is forgotten.
    pub fn resume(
        &mut self,
        assumed: Option<Lowered>,
        started: impl Fn(u32) -> Option<Instant>,
        now: Instant,
        budget: Duration,
    ) {
        let trickling = std::mem::take(&mut self.handed_trickling);
        self.until = std::mem::take(&mut self.handed)
            .into_iter()
            .filter_map(|(pid, how)| {
                let started = started(pid)?;
                let trickles = matches!(how, Some(Lowered::Nice(_))) && trickling.contains(&pid);
                let how = how.or(assumed)?;
                Some(Warm {
                    pid,
                    how,
                    since: now,
                    until: match trickles {
                        true => started + budget,
                        false => now + budget,
                    },
                    starvation: Starvation::unknown(),
                    trickling: trickles,
                })
            })
            .collect();
        // A process its worker started before the re-exec may have inherited the priority.
        for w in &self.until {
            self.spans.begin(w.pid, started(w.pid).unwrap_or(now));
        }
        self.sampled_at = Some(now);
        self.cursor = 0;
    }

    /// When each warm-up at the starting priority in this image began and ended, as of `now`
    /// (a warm-up over since the last call ends now), for the orphans they may leave
    /// ([`Orphans::look`](crate::supervisor::orphans::Orphans::look)).
    #[cfg(unix)]
    pub fn spans(&mut self, now: Instant) -> Vec<LoweredSpan> {
        let warming: std::collections::HashSet<u32> = self.until.iter().map(|w| w.pid).collect();
        self.spans.at(&warming, now)
    }

    /// When the next warm-up ends or the next sample is due.
    pub fn next_deadline(&self) -> Option<Instant> {
        let budget = self.until.iter().map(|w| w.until).min()?;
        let sampled = !self.unsampled && self.until.iter().any(|w| !w.trickling);
        let sample = match sampled {
            false => None,
            true => self.sampled_at.map(|at| at + SAMPLE_EVERY),
        };
        Some(sample.map_or(budget, |s| s.min(budget)))
    }

    /// Every worker warming up and how herd lowered each, forgotten from here on: the pool's
    /// last ready worker is gone, and they start beside no server any more. Start-ups at
    /// full priority stay timed.
    pub fn cut_short(&mut self) -> Vec<(u32, Lowered)> {
        self.until.drain(..).map(|w| (w.pid, w.how)).collect()
    }

    /// The workers whose warm-up budget has ended by `now` and how herd lowered each,
    /// forgotten from here on (whether each is still starting is the caller's to check).
    pub fn due(&mut self, now: Instant) -> Vec<(u32, Lowered)> {
        let mut due = Vec::new();
        self.until.retain(|w| {
            let over = w.until <= now;
            if over {
                due.push((w.pid, w.how));
            }
            !over
        });
        for &(pid, _) in &due {
            self.spans.end(pid, now);
        }
        due
    }

    /// If a sample is due at `now`: reads the scheduler figures of up to
    /// [`SAMPLED_PER_TICK`] warming workers (`sched(pid)`, `None` when they cannot be read)
    /// and returns those starved, with how herd lowered each (whether each is still starting
    /// is the caller's to check). Each still warms up: the caller makes it
    /// [`trickle`](Self::trickle), or raises it and forgets it ([`ended`](Self::ended)). A
    /// worker whose figures cannot be read warms up until its budget ends; where none can be,
    /// none is read.
    pub fn starved(
        &mut self,
        now: Instant,
        mut sched: impl FnMut(u32) -> Option<SchedStat>,
    ) -> Vec<(u32, Lowered)> {
        let due = !matches!(self.sampled_at, Some(at) if now < at + SAMPLE_EVERY);
        if self.until.is_empty() || !due || self.unsampled {
            return Vec::new();
        }
        self.sampled_at = Some(now);
        let n = self.until.len();
        let first = self.cursor % n;
        let mut starved = Vec::new();
        for i in 0..n.min(SAMPLED_PER_TICK) {
            let w = &mut self.until[(first + i) % n];
            if !w.trickling && w.starvation.sample(now, sched(w.pid)) {
                starved.push((w.pid, w.how));
            }
        }
        self.cursor = first + n.min(SAMPLED_PER_TICK);
        starved
    }
}

/// The warming workers of a re-exec's state (`warming`, `warming_lowered`), each with how it
/// was lowered if the state says (an older herd's does not, nor one whose list does not match
/// `warming`).
pub fn handed(warming: Vec<u32>, lowered: Vec<Lowered>) -> Vec<(u32, Option<Lowered>)> {
    if lowered.len() != warming.len() {
        return warming.into_iter().map(|pid| (pid, None)).collect();
    }
    warming
        .into_iter()
        .zip(lowered.into_iter().map(Some))
        .collect()
}

#[cfg(test)]
mod tests;
