//! A limit on repeated log lines: at most a burst per window, then one line saying how many
//! were held back.

use std::time::{Duration, Instant};

/// Lets through at most `burst` log lines per `window`, then says how many it held back.
#[derive(Debug)]
pub struct RateLimit {
    window: Duration,
    burst: u32,
    start: Option<Instant>,
    count: u32,
    dropped: u32,
}

impl RateLimit {
    /// A limiter for `burst` lines per `window`.
    pub fn new(burst: u32, window: Duration) -> RateLimit {
        RateLimit {
            window,
            burst,
            start: None,
            count: 0,
            dropped: 0,
        }
    }

    /// Whether a line may be logged now; the second value counts the lines suppressed in
    /// the previous window, to report once.
    pub fn allow(&mut self, now: Instant) -> (bool, u32) {
        let mut suppressed = 0;
        match self.start {
            Some(start) if now.duration_since(start) < self.window => {}
            _ => {
                suppressed = std::mem::take(&mut self.dropped);
                self.start = Some(now);
                self.count = 0;
            }
        }
        if self.count < self.burst {
            self.count += 1;
            (true, suppressed)
        } else {
            self.dropped += 1;
            (false, suppressed)
        }
    }

    /// How many lines the current window has held back so far.
    pub fn held_back(&self) -> u32 {
        self.dropped
    }

    /// Ends the window if it is over and returns how many lines it held back, so that a burst
    /// can be reported when its window ends instead of at the next line, which may never come.
    pub fn end_window(&mut self, now: Instant) -> u32 {
        match self.start {
            Some(start) if now.duration_since(start) < self.window => 0,
            _ => {
                self.start = None;
                self.count = 0;
                std::mem::take(&mut self.dropped)
            }
        }
    }

    /// The length of a window.
    pub fn window(&self) -> Duration {
        self.window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_holds_back_bursts() {
        let t0 = Instant::now();
        let mut limit = RateLimit::new(2, Duration::from_secs(10));
        assert_eq!(limit.allow(t0), (true, 0));
        assert_eq!(limit.allow(t0), (true, 0));
        assert_eq!(limit.allow(t0), (false, 0));
        assert_eq!(limit.allow(t0), (false, 0));
        assert_eq!(limit.allow(t0 + Duration::from_secs(10)), (true, 2));
    }

    #[test]
    fn a_window_ends_without_waiting_for_the_next_line() {
        let t0 = Instant::now();
        let mut limit = RateLimit::new(1, Duration::from_secs(10));
        assert_eq!(limit.allow(t0), (true, 0));
        assert_eq!(limit.allow(t0), (false, 0));
        assert_eq!(limit.allow(t0), (false, 0));
        assert_eq!(limit.held_back(), 2);
        assert_eq!(
            limit.end_window(t0 + Duration::from_secs(9)),
            0,
            "not over yet"
        );
        assert_eq!(limit.end_window(t0 + Duration::from_secs(10)), 2);
        assert_eq!(
            limit.end_window(t0 + Duration::from_secs(30)),
            0,
            "reported once"
        );
        assert_eq!(limit.allow(t0 + Duration::from_secs(31)), (true, 0));
    }
}
