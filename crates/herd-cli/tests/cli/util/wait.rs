//! Waiting with a deadline that fails with what the last look saw.

use std::time::{Duration, Instant};

use super::*;

/// What a `wait_until` check returns: `Some`/`Ok` with what was waited for, or `None`/`Err`
/// with what was seen instead (shown if the wait times out).
pub trait Check<T> {
    /// The value waited for, or a description of what was seen.
    fn found(self) -> Result<T, String>;
}

impl<T> Check<T> for Option<T> {
    fn found(self) -> Result<T, String> {
        self.ok_or_else(|| "None".to_string())
    }
}

impl<T, E: std::fmt::Debug> Check<T> for Result<T, E> {
    fn found(self) -> Result<T, String> {
        self.map_err(|seen| format!("{seen:?}"))
    }
}

/// Polls `check` until it returns something, failing after [`TIMEOUT`] with what the last
/// check saw (return `Err(what you saw)` rather than `None` to have it shown).
pub fn wait_until<T, C: Check<T>>(what: &str, check: impl FnMut() -> C) -> T {
    wait_until_within(what, TIMEOUT, check)
}

/// [`wait_until`] with a deadline of `limit`.
pub fn wait_until_within<T, C: Check<T>>(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> C,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        let seen = match check().found() {
            Ok(found) => return found,
            Err(seen) => seen,
        };
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what} ({limit:?}); the last check saw: {seen}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
#[should_panic(expected = "timed out waiting for 4 answers (30ms); the last check saw: \"3 of 4\"")]
fn a_wait_that_times_out_says_what_it_last_saw() {
    wait_until_within("4 answers", Duration::from_millis(30), || {
        Err::<(), _>("3 of 4")
    });
}
