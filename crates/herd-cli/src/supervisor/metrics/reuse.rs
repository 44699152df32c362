//! Reusing a rendering: scrapes that come close together are answered with the same text
//! while nothing has happened since it was made, so that a crowd of scrapers costs the
//! supervisor's loop one rendering (its reads of every worker's CPU time) per [`REUSE_FOR`] at
//! most, not one per scrape.

use std::time::{Duration, Instant};

/// How long a rendering answers the scrapes that follow it, while nothing happens: the
/// figures read at the moment (CPU time, memory, queues) may be this old.
pub const REUSE_FOR: Duration = Duration::from_secs(1);

/// A rendering: the text, or why it could not be encoded.
pub type Rendered = Result<String, std::fmt::Error>;

/// What the metrics count and follow as things happen (as opposed to the figures they read at
/// the moment): a rendering is reused only while these are the same.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Happened {
    /// Desired workers.
    pub desired: i64,
    /// Running worker processes.
    pub running: i64,
    /// Ready workers by generation, by generation number.
    pub ready: Vec<(u64, i64)>,
    /// Attached processes.
    pub attached: i64,
    /// Everything the counters counted, summed.
    pub counted: u64,
}

/// The last rendering, while it may answer scrapes.
#[derive(Default)]
pub struct LastRendering {
    last: Option<(Instant, Happened, Rendered)>,
}

impl LastRendering {
    /// The rendering that answers a scrape at `now`, when `happened` is what is: the last one,
    /// if it is less than [`REUSE_FOR`] old and saw the same.
    pub fn reusable(&self, now: Instant, happened: &Happened) -> Option<&Rendered> {
        let (at, seen, rendered) = self.last.as_ref()?;
        let young = now.saturating_duration_since(*at) < REUSE_FOR;
        (young && seen == happened).then_some(rendered)
    }

    /// Keeps `rendered`, made at `at` when `happened` was what it saw.
    pub fn keep(&mut self, at: Instant, happened: Happened, rendered: Rendered) {
        self.last = Some((at, happened, rendered));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rendering_is_reused_while_young_and_nothing_happened() {
        let t0 = Instant::now();
        let happened = Happened {
            desired: 2,
            running: 2,
            ready: vec![(1, 2)],
            attached: 0,
            counted: 0,
        };
        let mut last = LastRendering::default();
        assert_eq!(last.reusable(t0, &happened), None);
        last.keep(t0, happened.clone(), Ok("herd_up 1\n".to_string()));
        let text = |r: Option<&Rendered>| r.cloned().map(Result::unwrap);
        // The scrapes that follow within REUSE_FOR share it.
        assert_eq!(
            text(last.reusable(t0, &happened)).as_deref(),
            Some("herd_up 1\n")
        );
        let almost = t0 + REUSE_FOR - Duration::from_millis(1);
        assert!(last.reusable(almost, &happened).is_some());
        // Not once it is REUSE_FOR old, nor once anything happened: a worker ready, one more
        // running, a counter counted, a process attached, another number asked for.
        assert_eq!(last.reusable(t0 + REUSE_FOR, &happened), None);
        let changes: [fn(&mut Happened); 5] = [
            |h| h.ready = vec![(1, 1), (2, 1)],
            |h| h.running += 1,
            |h| h.counted += 1,
            |h| h.attached += 1,
            |h| h.desired = 3,
        ];
        for change in changes {
            let mut now = happened.clone();
            change(&mut now);
            assert_eq!(last.reusable(t0, &now), None, "{now:?}");
        }
        // A clock that went back (or a rendering kept late) is no reason to render again.
        if let Some(before) = t0.checked_sub(Duration::from_millis(5)) {
            assert!(last.reusable(before, &happened).is_some());
        }
        // The next rendering replaces it.
        let later = t0 + REUSE_FOR;
        last.keep(later, happened.clone(), Err(std::fmt::Error));
        assert_eq!(last.reusable(later, &happened), Some(&Err(std::fmt::Error)));
    }
}
