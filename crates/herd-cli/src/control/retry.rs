//! How a server retries what failed and must not stop it for good (the next instance of the
//! Windows control pipe, and of the notify pipe): a pause that doubles from [`FIRST_PAUSE`] up
//! to [`MAX_PAUSE`], and a log line for the 1st, 2nd, 4th, 8th... failure in a row, so a
//! lasting failure is seen without flooding the log.

use std::time::Duration;

/// The pause after the first failure.
pub const FIRST_PAUSE: Duration = Duration::from_millis(10);
/// The longest pause.
pub const MAX_PAUSE: Duration = Duration::from_secs(1);

/// Failures in a row.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retry {
    failures: u32,
}

/// What to do after a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AfterFailure {
    /// How long to wait before the next try.
    pub pause: Duration,
    /// Whether to log this failure.
    pub log: bool,
    /// Failures in a row, this one included.
    pub failures: u32,
}

impl Retry {
    /// Records a failure.
    pub fn failed(&mut self) -> AfterFailure {
        self.failures = self.failures.saturating_add(1);
        let doublings = (self.failures - 1).min(16);
        let pause = FIRST_PAUSE.saturating_mul(1 << doublings).min(MAX_PAUSE);
        AfterFailure {
            pause,
            log: self.failures.is_power_of_two(),
            failures: self.failures,
        }
    }

    /// Records a success; how many failures came before it in a row (non-zero: say it
    /// recovered).
    pub fn succeeded(&mut self) -> u32 {
        std::mem::take(&mut self.failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_the_longest() {
        let mut retry = Retry::default();
        let pauses: Vec<u64> = (0..10)
            .map(|_| retry.failed().pause.as_millis() as u64)
            .collect();
        assert_eq!(pauses, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
        for _ in 0..100 {
            assert_eq!(retry.failed().pause, MAX_PAUSE);
        }
    }

    #[test]
    fn failures_are_logged_ever_more_rarely() {
        let mut retry = Retry::default();
        let logged: Vec<u32> = (0..20)
            .map(|_| retry.failed())
            .filter(|f| f.log)
            .map(|f| f.failures)
            .collect();
        assert_eq!(logged, [1, 2, 4, 8, 16]);
    }

    #[test]
    fn a_success_starts_over_and_says_how_many_failed() {
        let mut retry = Retry::default();
        assert_eq!(retry.succeeded(), 0);
        retry.failed();
        retry.failed();
        retry.failed();
        assert_eq!(retry.succeeded(), 3);
        let first = retry.failed();
        assert_eq!(
            (first.pause, first.log, first.failures),
            (FIRST_PAUSE, true, 1)
        );
    }

    #[test]
    fn endless_failures_never_overflow() {
        let mut retry = Retry {
            failures: u32::MAX - 1,
        };
        assert_eq!(retry.failed().pause, MAX_PAUSE);
        assert_eq!(retry.failed().failures, u32::MAX);
        assert_eq!(retry.failed().pause, MAX_PAUSE);
    }
}
