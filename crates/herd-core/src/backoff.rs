//! Restart backoff for crash loops: immediate after a healthy run, then exponential. The
//! policy every supervisor's [`Pool`](crate::Pool) applies per slot.

use std::time::Duration;

/// The restart policy's constants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// The delay after the second quick failure in a row; it doubles with each further one.
    pub initial: Duration,
    /// The longest delay.
    pub max: Duration,
    /// A worker that ran at least this long was healthy: its exit resets the backoff.
    pub healthy_after: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(30),
            healthy_after: Duration::from_secs(10),
        }
    }
}

/// One slot's failure count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    /// Records a worker that ran for `uptime` (`None`: it could not be started at all) and
    /// returns how long to wait before starting the next one.
    ///
    /// The first failure after a healthy run restarts at once (one crash is not a loop); each
    /// further quick failure waits `initial`, `2 * initial`, `4 * initial`, ... up to `max`.
    pub fn next_delay(&mut self, policy: &BackoffPolicy, uptime: Option<Duration>) -> Duration {
        if uptime.map_or(false, |u| u >= policy.healthy_after) {
            self.failures = 0;
        }
        let delay = match self.failures {
            0 => Duration::ZERO,
            n => {
                let factor = 1u32.checked_shl(n - 1).unwrap_or(u32::MAX);
                policy.initial.saturating_mul(factor).min(policy.max)
            }
        };
        self.failures = self.failures.saturating_add(1);
        delay
    }

    /// A backoff that has seen `failures` quick failures in a row (restored after re-exec).
    pub fn with_failures(failures: u32) -> Backoff {
        Backoff { failures }
    }

    /// How many quick failures in a row this slot has had.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUICK: Option<Duration> = Some(Duration::from_millis(10));

    #[test]
    fn crash_loop_doubles_up_to_the_cap() {
        let policy = BackoffPolicy::default();
        let mut b = Backoff::default();
        let delays: Vec<u64> = (0..12)
            .map(|_| b.next_delay(&policy, QUICK).as_millis() as u64)
            .collect();
        assert_eq!(
            delays,
            [0, 100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000]
        );
        for _ in 0..100 {
            assert_eq!(b.next_delay(&policy, QUICK), policy.max);
        }
    }

    #[test]
    fn a_healthy_run_resets() {
        let policy = BackoffPolicy::default();
        let mut b = Backoff::default();
        for _ in 0..5 {
            b.next_delay(&policy, QUICK);
        }
        assert_eq!(
            b.next_delay(&policy, Some(policy.healthy_after)),
            Duration::ZERO
        );
        assert_eq!(b.next_delay(&policy, QUICK), policy.initial);
    }

    #[test]
    fn spawn_failures_count_as_quick() {
        let policy = BackoffPolicy::default();
        let mut b = Backoff::default();
        assert_eq!(b.next_delay(&policy, None), Duration::ZERO);
        assert_eq!(b.next_delay(&policy, None), policy.initial);
        assert_eq!(b.failures(), 2);
    }
}
