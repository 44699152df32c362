//! When each warm-up at the starting priority began and ended: a process born meanwhile (a
//! daemon a lowered worker left, re-parented to herd) may have inherited the priority, and
//! one born at another time chose its own.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How many ended spans are kept: a daemon's orphaning can come long after its birth (when
/// its parent exits), but it is found in the look after that.
const KEPT: usize = 256;
/// Ended spans older than this are forgotten.
const KEPT_FOR: Duration = Duration::from_secs(600);

/// One warm-up at the starting priority.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoweredSpan {
    /// The worker (or fork server) lowered.
    pub pid: u32,
    /// When its warm-up began (its start).
    pub from: Instant,
    /// When herd saw it end (`None`: it goes on).
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

    /// The spans as of `now`: those whose worker no longer warms up (`warming` false) end
    /// now, at the latest; the oldest ended ones are forgotten.
    pub fn at(&mut self, warming: impl Fn(u32) -> bool, now: Instant) -> Vec<LoweredSpan> {
        for span in self.spans.iter_mut().filter(|s| s.until.is_none()) {
            if !warming(span.pid) {
                span.until = Some(now);
            }
        }
        let stale = |s: &LoweredSpan| {
            s.until
                .is_some_and(|until| now.saturating_duration_since(until) > KEPT_FOR)
        };
        self.spans.retain(|s| !stale(s));
        while self.spans.len() > KEPT {
            match self.spans.iter().position(|s| s.until.is_some()) {
                Some(i) => drop(self.spans.remove(i)),
                None => break,
            }
        }
        self.spans.iter().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

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
        let now = spans.at(|pid| pid == 2, t0 + MS);
        assert_eq!(now[0].until, Some(t0 + MS));
        assert_eq!(now[1].until, None);
        let later = spans.at(|_| false, t0 + 2 * MS);
        assert_eq!(later[0].until, Some(t0 + MS), "ended once");
        assert!(spans.at(|_| false, t0 + KEPT_FOR + 3 * MS).is_empty());
    }

    #[test]
    fn at_most_kept_ended_spans_stay() {
        let t0 = Instant::now();
        let mut spans = Spans::default();
        spans.begin(0, t0);
        for pid in 1..=KEPT as u32 + 10 {
            spans.begin(pid, t0);
        }
        let now = spans.at(|pid| pid == 0, t0);
        assert_eq!(now.len(), KEPT);
        assert_eq!(now[0].pid, 0, "one going on stays");
    }
}
