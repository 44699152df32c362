//! herd's own stalls: the time herd could not act in is not its workers' fault.
//!
//! The loop turns at least once a second on every platform (it asks for the workers' figures
//! every [`SAMPLE_EVERY`](super::recycling::SAMPLE_EVERY)). When it has not turned for much
//! longer, herd could not act: it was stopped (`SIGSTOP`, Ctrl-Z, a debugger), frozen with its
//! workers (a freezer cgroup: `docker pause`, `systemctl freeze`) or starved of CPU. The
//! monotonic clock counted on meanwhile (Linux's `CLOCK_MONOTONIC` does while a process is
//! stopped or frozen; not across a suspend of the whole system, which needs no excuse then),
//! so every deadline that passed in the gap would be judged at once on the resume, before the
//! `READY=1` and `WATCHDOG=1` the workers sent meanwhile are read: healthy workers would be
//! killed and an upgrade aborted. Instead the pool ([`Pool::resumed_after`]) and the fork
//! servers move the deadlines that judge them by the gap; and every turn reads the
//! notifications waiting before it judges anything.
//!
//! A gap is counted from the end of the last turn: a long turn is herd at work, and a stop
//! that lands inside a turn (rare: turns are short) is not excused.
//!
//! [`Pool::resumed_after`]: herd_core::Pool::resumed_after

use std::time::{Duration, Instant};

use super::sources::Sources;
use super::Supervisor;
use crate::logging::LogEvent;

/// A gap between two turns longer than this is a stall of herd's: twice the longest the loop
/// waits between turns.
pub const STALL_AFTER: Duration = Duration::from_secs(2);

/// When the loop last turned, to tell a stall.
#[derive(Debug, Default)]
pub struct Stalls {
    /// When the last turn ended (else began): a long turn is herd at work (stopping 4096
    /// workers at once), not herd kept from acting, and what the workers sent meanwhile is
    /// read before the next turn judges anything.
    last_turn: Option<Instant>,
}

impl Stalls {
    /// A turn begins at `now`: how long herd could not act since the last turn ended, if
    /// that is a stall (longer than [`STALL_AFTER`]). The first turn follows no stall.
    pub fn turn(&mut self, now: Instant) -> Option<Duration> {
        let gap = self
            .last_turn
            .replace(now)
            .map(|last| now.saturating_duration_since(last));
        gap.filter(|&gap| gap > STALL_AFTER)
    }

    /// The turn that began last ends at `now`.
    pub fn turn_ended(&mut self, now: Instant) {
        self.last_turn = Some(now);
    }
}

impl Supervisor {
    /// A turn begins: after a stall of herd's, no worker's or fork server's deadline counts
    /// it; then the notifications the workers sent are read, before any deadline is judged
    /// (a `WATCHDOG=1` sent in time and waiting in the socket counts, whichever input woke
    /// the loop).
    pub(super) fn turn_begins(&mut self, sources: &Sources) {
        if let Some(gap) = self.stalls.turn(Instant::now()) {
            let stalled = humantime::format_duration(round_ms(gap));
            tracing::warn!(
                event = LogEvent::Resumed.as_str(),
                stalled = %stalled,
                "herd could not act for {stalled} (it was stopped, frozen or starved of CPU): \
                 that time does not count against its workers' deadlines"
            );
            self.pool.resumed_after(gap);
            self.effects.spawner().resumed_after(gap);
        }
        self.read_waiting_notifications(sources);
    }
}

/// `d` to the millisecond, for the log.
fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gap_longer_than_two_seconds_between_turns_is_a_stall() {
        let mut stalls = Stalls::default();
        let t0 = Instant::now();
        assert_eq!(stalls.turn(t0), None, "the first turn follows no stall");
        assert_eq!(
            stalls.turn(t0 + STALL_AFTER),
            None,
            "a slow turn is no stall"
        );
        let resumed = t0 + STALL_AFTER + Duration::from_secs(10);
        assert_eq!(stalls.turn(resumed), Some(Duration::from_secs(10)));
        // Counted from the turn after the stall, not again.
        let next = resumed + Duration::from_millis(250);
        assert_eq!(stalls.turn(next), None);
        // A turn that took long itself (herd at work) is no stall: counted from its end.
        let long = next + Duration::from_secs(3);
        stalls.turn_ended(long);
        assert_eq!(stalls.turn(long + Duration::from_millis(900)), None);
    }
}
