//! Holding the workers' samples back while starts wait for their turn.
//!
//! A round reads `/proc` for every worker (see [`Sampler`](super::sampler::Sampler)): at
//! thousands of workers that is a noticeable share of a small machine's CPU, taken from the
//! workers being started and from herd starting them (0.16-0.2 s of CPU while 4096 workers
//! start on 2 cores). So a round due while starts are queued is skipped; once they are all
//! made, the next tick samples again. A queue that never empties (a start slower than the
//! loop, thousands of workers under Wine) still gets a round every [`LONGEST_PAUSE`].

use std::time::{Duration, Instant};

/// How long queued starts may hold the samples back at most.
pub const LONGEST_PAUSE: Duration = Duration::from_secs(5);

/// Whether a due round is taken: the pure part, events in (a tick, with whether starts
/// wait), a decision out.
#[derive(Debug, Default)]
pub struct SamplingPause {
    /// Since when starts have held the samples back, if they do.
    since: Option<Instant>,
}

impl SamplingPause {
    /// Whether the round due at `now` is asked for, `starting` when starts are queued: not
    /// while they are, unless they have held the samples back for [`LONGEST_PAUSE`].
    pub fn take(&mut self, starting: bool, now: Instant) -> bool {
        if !starting {
            self.since = None;
            return true;
        }
        let since = *self.since.get_or_insert(now);
        if now.saturating_duration_since(since) < LONGEST_PAUSE {
            return false;
        }
        self.since = Some(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn rounds_wait_while_starts_are_queued_and_resume_after() {
        let t0 = Instant::now();
        let mut pause = SamplingPause::default();
        assert!(pause.take(false, t0), "nothing starting: sample");
        assert!(!pause.take(true, t0 + SEC), "starts queued: skip");
        assert!(!pause.take(true, t0 + 2 * SEC));
        assert!(pause.take(false, t0 + 3 * SEC), "starts made: sample again");
        assert!(pause.take(false, t0 + 4 * SEC));
        // A later burst of starts is held back afresh, for as long as before.
        assert!(!pause.take(true, t0 + 5 * SEC));
        assert!(!pause.take(true, t0 + 5 * SEC + LONGEST_PAUSE - SEC));
    }

    #[test]
    fn starts_that_never_end_still_get_a_round_every_longest_pause() {
        let t0 = Instant::now();
        let mut pause = SamplingPause::default();
        let mut taken = Vec::new();
        for tick in 0..=12 {
            if pause.take(true, t0 + tick * SEC) {
                taken.push(tick);
            }
        }
        assert_eq!(taken, [5, 10], "one round every {LONGEST_PAUSE:?}");
    }
}
