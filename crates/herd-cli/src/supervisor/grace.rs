//! How herd stops the processes it holds but did not start as workers (attached processes),
//! on every platform: asked to stop when herd stops, killed once the grace period is over,
//! and given up [`KILL_WAIT`] after the kill (one stuck in the kernel may never go). Pure: the
//! time is given.

use std::time::{Duration, Instant};

/// How long herd waits for killed processes to go.
pub const KILL_WAIT: Duration = Duration::from_secs(5);

/// Where a set of processes is in herd's stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Stopping {
    /// herd is not stopping.
    #[default]
    No,
    /// Asked to stop; killed at this time.
    Until(Instant),
    /// Killed, at this time.
    Killed(Instant),
}

impl Stopping {
    /// herd stops them now (`kill`: at once, else after `grace`); whether they are to be
    /// told (a second graceful stop is not news, nothing follows a kill).
    pub fn begin(&mut self, kill: bool, grace: Duration, now: Instant) -> bool {
        match *self {
            Stopping::Killed(_) => return false,
            Stopping::Until(_) if !kill => return false,
            _ => {}
        }
        *self = match kill {
            true => Stopping::Killed(now),
            false => Stopping::Until(now.checked_add(grace).unwrap_or(now)),
        };
        true
    }

    /// When those left are (or were) killed; `None` if herd is not stopping.
    pub fn kill_at(&self) -> Option<Instant> {
        match *self {
            Stopping::No => None,
            Stopping::Until(at) | Stopping::Killed(at) => Some(at),
        }
    }

    /// When to look at those left next, given that an exit is seen by `next` at the latest
    /// (`None` if herd is not stopping).
    pub fn deadline(&self, next: Instant) -> Option<Instant> {
        match *self {
            Stopping::No => None,
            Stopping::Until(at) => Some(at.min(next)),
            Stopping::Killed(at) => Some((at + KILL_WAIT).min(next)),
        }
    }

    /// Whether those left are due to be killed at `now`: their grace period is over.
    pub fn kill_due(&self, now: Instant) -> bool {
        matches!(*self, Stopping::Until(at) if at <= now)
    }

    /// Whether those left are given up at `now`: killed [`KILL_WAIT`] ago.
    pub fn give_up(&self, now: Instant) -> bool {
        matches!(*self, Stopping::Killed(at) if now.saturating_duration_since(at) >= KILL_WAIT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn a_graceful_stop_kills_after_the_grace_period_then_gives_up() {
        let t0 = Instant::now();
        let mut s = Stopping::default();
        assert_eq!((s.kill_at(), s.deadline(t0 + SEC)), (None, None));
        assert!(s.begin(false, 2 * SEC, t0));
        assert!(
            !s.begin(false, SEC, t0 + SEC),
            "a second graceful stop is not news"
        );
        assert_eq!(s.kill_at(), Some(t0 + 2 * SEC));
        assert_eq!(s.deadline(t0 + SEC), Some(t0 + SEC));
        assert_eq!(s.deadline(t0 + 9 * SEC), Some(t0 + 2 * SEC));
        assert!(!s.kill_due(t0 + SEC) && s.kill_due(t0 + 2 * SEC));
        assert!(s.begin(true, Duration::ZERO, t0 + 2 * SEC));
        assert!(!s.begin(true, Duration::ZERO, t0 + 3 * SEC), "killed once");
        assert!(!s.give_up(t0 + 2 * SEC + KILL_WAIT - Duration::from_millis(1)));
        assert!(s.give_up(t0 + 2 * SEC + KILL_WAIT));
        assert_eq!(s.deadline(t0 + 60 * SEC), Some(t0 + 2 * SEC + KILL_WAIT));
    }

    #[test]
    fn a_fast_stop_kills_at_once() {
        let t0 = Instant::now();
        let mut s = Stopping::default();
        assert!(s.begin(true, 10 * SEC, t0));
        assert_eq!(s, Stopping::Killed(t0));
        assert!(
            !s.kill_due(t0 + 60 * SEC),
            "nothing follows a kill but giving up"
        );
    }
}
