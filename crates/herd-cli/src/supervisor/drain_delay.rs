//! `--drain-delay`: a graceful stop first turns `/readyz` to 503 and keeps everything serving
//! for the delay, so that load balancers stop sending new clients before any worker is asked
//! to stop; then the stop goes on as asked. Pure: stop requests and the time in, what to do
//! out.
//!
//! - A graceful stop with a delay, while herd serves: the drain begins.
//! - A stop that is not graceful (`herd stop --fast`, SIGQUIT), a stop while herd stops
//!   already, or a delay of 0: the stop goes on at once.
//! - A second stop request during the drain skips the rest of the delay: the stop goes on
//!   with what the second asked (its grace period, or else the first's).
//! - The delay over: the first request's stop goes on.

use std::time::{Duration, Instant};

/// A stop as it was asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StopRequest {
    /// Who asked (`SIGTERM`, `herd stop`), for the log.
    pub reason: String,
    /// Whether workers get the stop signal and a grace period.
    pub graceful: bool,
    /// The grace period asked for, if not `--grace`.
    pub grace: Option<Duration>,
}

/// What to do with a stop request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DrainStep {
    /// Begin draining: readiness says no, and the stop goes on at `until`.
    Begin {
        /// When the delay is over.
        until: Instant,
    },
    /// Stop now, as asked.
    Stop(StopRequest),
}

/// Whether a drain is under way.
#[derive(Clone, Debug, Default)]
pub struct DrainDelay {
    /// The stop that waits, and until when.
    waiting: Option<(StopRequest, Instant)>,
}

impl DrainDelay {
    /// What to do with `request` at `now`, given `--drain-delay` (`delay`) and whether herd
    /// is `stopping` already.
    pub fn request(
        &mut self,
        request: StopRequest,
        delay: Duration,
        stopping: bool,
        now: Instant,
    ) -> DrainStep {
        if let Some((first, _)) = self.waiting.take() {
            let grace = request.grace.or(first.grace);
            return DrainStep::Stop(StopRequest { grace, ..request });
        }
        if stopping || !request.graceful || delay.is_zero() {
            return DrainStep::Stop(request);
        }
        let until = now + delay;
        self.waiting = Some((request, until));
        DrainStep::Begin { until }
    }

    /// The waiting stop, once its delay is over at `now`.
    pub fn due(&mut self, now: Instant) -> Option<StopRequest> {
        match &self.waiting {
            Some((_, until)) if now >= *until => self.waiting.take().map(|(request, _)| request),
            _ => None,
        }
    }

    /// When the delay is over, while draining.
    pub fn until(&self) -> Option<Instant> {
        self.waiting.as_ref().map(|(_, until)| *until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DELAY: Duration = Duration::from_secs(10);

    fn stop(reason: &str, graceful: bool, grace: Option<u64>) -> StopRequest {
        StopRequest {
            reason: reason.to_string(),
            graceful,
            grace: grace.map(Duration::from_secs),
        }
    }

    #[test]
    fn a_graceful_stop_waits_out_the_delay_then_goes_on_as_asked() {
        let t0 = Instant::now();
        let mut drain = DrainDelay::default();
        let asked = stop("herd stop", true, Some(5));
        let step = drain.request(asked.clone(), DELAY, false, t0);
        assert_eq!(step, DrainStep::Begin { until: t0 + DELAY });
        assert_eq!(drain.until(), Some(t0 + DELAY));
        assert_eq!(drain.due(t0 + DELAY - Duration::from_millis(1)), None);
        assert_eq!(drain.due(t0 + DELAY), Some(asked));
        assert_eq!((drain.until(), drain.due(t0 + DELAY)), (None, None));
    }

    #[test]
    fn no_delay_a_fast_stop_or_a_stop_under_way_stops_at_once() {
        let t0 = Instant::now();
        let mut drain = DrainDelay::default();
        let term = stop("SIGTERM", true, None);
        let step = drain.request(term.clone(), Duration::ZERO, false, t0);
        assert_eq!(step, DrainStep::Stop(term.clone()));
        let quit = stop("SIGQUIT", false, None);
        assert_eq!(
            drain.request(quit.clone(), DELAY, false, t0),
            DrainStep::Stop(quit)
        );
        assert_eq!(
            drain.request(term.clone(), DELAY, true, t0),
            DrainStep::Stop(term)
        );
        assert_eq!(drain.until(), None);
    }

    #[test]
    fn a_second_request_skips_the_rest_of_the_delay() {
        let t0 = Instant::now();
        let mut drain = DrainDelay::default();
        drain.request(stop("herd stop", true, Some(5)), DELAY, false, t0);
        // The second keeps the first's grace period unless it gives its own.
        let step = drain.request(stop("SIGTERM", true, None), DELAY, false, t0);
        assert_eq!(step, DrainStep::Stop(stop("SIGTERM", true, Some(5))));
        assert_eq!(drain.due(t0 + DELAY), None, "nothing waits any more");
        drain.request(stop("SIGTERM", true, None), DELAY, false, t0);
        let fast = stop("herd stop", false, Some(1));
        assert_eq!(
            drain.request(fast.clone(), DELAY, false, t0),
            DrainStep::Stop(fast)
        );
    }
}
