//! How a server retries what failed and must not stop it for good (the next instance of the
//! Windows control pipe, and of the notify pipe): a pause that doubles from [`FIRST_PAUSE`] up
//! to [`MAX_PAUSE`], and a log line for the 1st, 2nd, 4th, 8th... failure in a row, so a
//! lasting failure is seen without flooding the log.

use std::ffi::OsStr;
use std::io;
use std::time::Duration;

use crate::logging::LogEvent;

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

/// The Windows pipe whose next instance [`log_failure`] and [`log_recovery`] speak of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pipe {
    /// The control pipe: while it has no next instance, it serves one client at a time.
    Control,
    /// The notify pipe: while it has no next instance, it reads one worker at a time.
    Notify,
}

impl Pipe {
    /// Its event, what it is called, and what it does once it can again.
    fn words(self) -> (LogEvent, &'static str, &'static str) {
        match self {
            Pipe::Control => (
                LogEvent::ControlAcceptFailed,
                "control pipe",
                "serving clients at once again",
            ),
            Pipe::Notify => (
                LogEvent::NotifyPipeFailed,
                "notify pipe",
                "reading workers' messages at once again",
            ),
        }
    }

    /// The line that says its next instance cannot be created, if `failed` is to be logged.
    fn failure_line(self, name: &OsStr, failed: &AfterFailure, e: &io::Error) -> Option<String> {
        let (_, pipe, _) = self.words();
        let (name, failures) = (name.to_string_lossy(), failed.failures);
        failed.log.then(|| {
            format!(
                "{pipe} {name}: cannot create its next instance ({failures} failures in a row), \
                 retrying: {e}"
            )
        })
    }

    /// The line that says it serves as before after `failures` failures, if there were any.
    fn recovery_line(self, name: &OsStr, failures: u32) -> Option<String> {
        let (_, pipe, again) = self.words();
        let name = name.to_string_lossy();
        (failures > 0).then(|| {
            format!(
                "{pipe} {name}: its next instance was created after {failures} failures: {again}"
            )
        })
    }
}

/// Says that `pipe`'s next instance cannot be created, when `failed` is to be logged.
pub fn log_failure(pipe: Pipe, name: &OsStr, failed: &AfterFailure, e: &io::Error) {
    if let Some(line) = pipe.failure_line(name, failed, e) {
        let (event, failures) = (pipe.words().0, failed.failures);
        tracing::warn!(event = event.as_str(), failures, "{line}");
    }
}

/// Says that `pipe` serves as before after `failures` failures, if there were any.
pub fn log_recovery(pipe: Pipe, name: &OsStr, failures: u32) {
    if let Some(line) = pipe.recovery_line(name, failures) {
        tracing::info!(event = pipe.words().0.as_str(), failures, "{line}");
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

    /// The notify pipe's failures are told as the control pipe's (whose lines are as before),
    /// under its own name and event, at the 1st, 2nd, 4th... failure in a row.
    #[test]
    fn each_pipe_tells_its_failures_and_its_recovery_in_its_own_words() {
        let (name, e) = (OsStr::new(r"\\.\pipe\p"), io::Error::other("no room"));
        let mut retry = Retry::default();
        let lines: Vec<Option<String>> = (0..4)
            .map(|_| Pipe::Notify.failure_line(name, &retry.failed(), &e))
            .collect();
        assert_eq!(lines.iter().filter(|l| l.is_some()).count(), 3, "{lines:?}");
        assert_eq!(
            lines[3].as_deref(),
            Some(
                r"notify pipe \\.\pipe\p: cannot create its next instance (4 failures in a row), retrying: no room"
            )
        );
        assert_eq!(
            Pipe::Notify
                .recovery_line(name, retry.succeeded())
                .as_deref(),
            Some(
                r"notify pipe \\.\pipe\p: its next instance was created after 4 failures: reading workers' messages at once again"
            )
        );
        assert_eq!(Pipe::Notify.recovery_line(name, retry.succeeded()), None);
        let first = Retry::default().failed();
        assert_eq!(
            Pipe::Control.failure_line(name, &first, &e).as_deref(),
            Some(
                r"control pipe \\.\pipe\p: cannot create its next instance (1 failures in a row), retrying: no room"
            )
        );
        assert_eq!(
            Pipe::Control.recovery_line(name, 1).as_deref(),
            Some(
                r"control pipe \\.\pipe\p: its next instance was created after 1 failures: serving clients at once again"
            )
        );
        assert_eq!(Pipe::Notify.words().0, LogEvent::NotifyPipeFailed);
        assert_eq!(Pipe::Control.words().0, LogEvent::ControlAcceptFailed);
    }
}
