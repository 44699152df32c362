//! When each warm-up at the starting priority began and ended: a process born meanwhile (a
//! daemon a lowered worker left, re-parented to herd) may have inherited the priority, and
//! one born at another time chose its own.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

/// How many ended spans are kept at most (those that ended last).
const KEPT: usize = 256;
/// How long an ended span is kept. A process still at the starting priority left its
/// worker's tree before the warm-up ended (the raise walks the tree; a worker's exit
/// re-parents its children at once), so the orphans' next look, within a second, finds it:
/// a span kept longer would only raise a process that chose the priority itself later.
const KEPT_FOR: Duration = Duration::from_secs(10);

/// One warm-up at the starting priority.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoweredSpan {
    /// The worker (or fork server) lowered.
    pub pid: u32,
    /// When its warm-up began (its start).
    pub from: Instant,
    /// When it ended (`None`: it goes on).
    pub until: Option<Instant>,
}

impl LoweredSpan {
    /// Whether a process born at `born` (known to within `slack`) was born during it.
    pub fn covers(&self, born: Instant, slack: Duration) -> bool {
        born + slack >= self.from && self.until.is_none_or(|until| born <= until + slack)
    }
}

/// The spans of this image's warm-ups, the oldest first.
#[derive(Debug, Default)]
pub struct Spans {
    spans: VecDeque<LoweredSpan>,
}

impl Spans {
    /// Worker `pid`'s warm-up began at `from`.
    pub fn begin(&mut self, pid: u32, from: Instant) {
        self.spans.push_back(LoweredSpan {
            pid,
            from,
            until: None,
        });
    }

    /// Worker `pid`'s warm-up ended at `now`.
    pub fn end(&mut self, pid: u32, now: Instant) {
        for span in self.spans.iter_mut().filter(|s| s.pid == pid) {
            span.until.get_or_insert(now);
        }
    }

    /// The spans as of `now`: those whose worker is not among `warming` any more end now, at
    /// the latest (one that ended without a time given); ended ones are forgotten
    /// [`KEPT_FOR`] after, and beyond the [`KEPT`] that ended last.
    pub fn at(&mut self, warming: &HashSet<u32>, now: Instant) -> Vec<LoweredSpan> {
        for span in self.spans.iter_mut().filter(|s| s.until.is_none()) {
            if !warming.contains(&span.pid) {
                span.until = Some(now);
            }
        }
        let mut ends: Vec<Instant> = self.spans.iter().filter_map(|s| s.until).collect();
        let oldest_kept = match ends.len().checked_sub(KEPT) {
            Some(extra) if extra > 0 => {
                ends.sort_unstable();
                Some(ends[extra])
            }
            _ => None,
        };
        self.spans.retain(|s| match s.until {
            None => true,
            Some(until) => {
                now.saturating_duration_since(until) <= KEPT_FOR
                    && oldest_kept.is_none_or(|oldest| until >= oldest)
            }
        });
        self.spans.iter().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervisor::warm_up::{Lowered, Warming, MAX_WARM_UP};

    const MS: Duration = Duration::from_millis(1);
    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn a_span_covers_births_from_its_start_to_its_end_within_the_slack() {
        let t0 = Instant::now();
        let span = LoweredSpan {
            pid: 1,
            from: t0 + 100 * MS,
            until: Some(t0 + 200 * MS),
        };
        let covers = |ms: u32| span.covers(t0 + ms * MS, 20 * MS);
        assert!(!covers(79) && covers(80) && covers(150) && covers(220) && !covers(221));
        let going_on = LoweredSpan {
            until: None,
            ..span
        };
        assert!(going_on.covers(t0 + 10_000 * MS, 20 * MS));
    }

    #[test]
    fn spans_end_when_their_worker_no_longer_warms_up_and_are_forgotten_later() {
        let t0 = Instant::now();
        let mut spans = Spans::default();
        spans.begin(1, t0);
        spans.begin(2, t0);
        let now = spans.at(&HashSet::from([2]), t0 + MS);
        assert_eq!(now[0].until, Some(t0 + MS));
        assert_eq!(now[1].until, None);
        let later = spans.at(&HashSet::new(), t0 + 2 * MS);
        assert_eq!(later[0].until, Some(t0 + MS), "ended once");
        assert!(spans.at(&HashSet::new(), t0 + KEPT_FOR + 3 * MS).is_empty());
    }

    #[test]
    fn an_end_given_its_time_keeps_it() {
        let t0 = Instant::now();
        let mut spans = Spans::default();
        spans.begin(1, t0);
        spans.end(1, t0 + MS);
        spans.end(1, t0 + 2 * MS);
        assert_eq!(
            spans.at(&HashSet::new(), t0 + SECOND)[0].until,
            Some(t0 + MS)
        );
    }

    #[test]
    fn the_last_kept_ended_spans_stay_beside_every_one_going_on() {
        // A rolling upgrade of thousands: hundreds warm up, and one that ended just now must
        // stay for the look that finds its orphans.
        let t0 = Instant::now();
        let mut spans = Spans::default();
        let going_on: HashSet<u32> = (1000..1300).collect();
        for &pid in &going_on {
            spans.begin(pid, t0);
        }
        for pid in 0..KEPT as u32 + 10 {
            spans.begin(pid, t0);
            spans.end(pid, t0 + (KEPT as u32 + 10 - pid) * MS);
        }
        let now = spans.at(&going_on, t0 + SECOND);
        assert_eq!(now.len(), going_on.len() + KEPT);
        assert!(now.iter().any(|s| s.pid == 0), "the last to end stays");
        assert!(
            !now.iter().any(|s| s.pid == KEPT as u32 + 9),
            "the first to end goes"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_warm_up_spans_from_its_start_to_its_end_and_after_a_reexec_from_its_workers_start() {
        let (t0, s) = (Instant::now(), Duration::from_secs(1));
        let mut w = Warming::default();
        w.started(10, t0, MAX_WARM_UP, Lowered::Idle);
        w.started(11, t0, s, Lowered::Idle);
        w.started(12, t0, MAX_WARM_UP, Lowered::Idle);
        w.ready(10, t0 + s);
        assert_eq!(w.due(t0 + 2 * s), [(11, Lowered::Idle)]);
        let spans = w.spans(t0 + 3 * s);
        let until: Vec<_> = spans.iter().map(|span| (span.pid, span.until)).collect();
        assert_eq!(
            until,
            [(10, Some(t0 + s)), (11, Some(t0 + 2 * s)), (12, None)]
        );
        let mut after = Warming::default();
        after.handed_over(vec![(12, Some(Lowered::Idle))], vec![]);
        after.resume(None, |_| Some(t0), t0 + 4 * s, MAX_WARM_UP);
        let handed = after.spans(t0 + 4 * s);
        assert_eq!(
            (handed[0].pid, handed[0].from, handed[0].until),
            (12, t0, None)
        );
    }
}
