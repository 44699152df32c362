//! `--starting-nice`: a worker that starts while others serve runs at a low CPU priority (a
//! high nice value) until it is ready, then at herd's own, so that its start-up (a Python or
//! Node import, a cache warm-up) does not take the CPU the serving workers need on a small
//! machine. Pure: the option, herd's own nice value and whether herd may raise a priority
//! back in; the nice value for each start and what to restore on readiness out.
//!
//! - A start while no worker is ready (herd's first workers) keeps herd's nice value: there
//!   is nobody to protect, and a slow first start helps no one.
//! - Raising a priority back needs `CAP_SYS_NICE` or an `RLIMIT_NICE` that allows herd's nice
//!   value: `auto` lowers only when herd may, `off` never does, an explicit value that herd
//!   could not undo is refused at start-up.
//! - On readiness, a worker herd lowered ([`Warming`]) and still found at the starting nice
//!   value goes back to herd's (its whole process group: threads and children it started
//!   meanwhile). One herd did not lower keeps the priority it chose (`nice -n 19 app`).
//! - A worker still starting after half the time it has to become ready (at most
//!   [`MAX_WARM_UP`]) gets herd's priority back then: at nice 19 a start-up gets about 1.5%
//!   of a core that two nice-0 processes want (CFS weights 15 against 1024 each), so on a
//!   saturated machine it could otherwise miss `--ready-timeout` and fail the upgrade. A
//!   re-exec's new image gives each worker still starting a whole warm-up from then on.

use std::time::{Duration, Instant};

use super::pool::Readiness;

/// `--starting-nice` as given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartingNice {
    /// Nice 19 when herd may raise a ready worker's priority back, else off.
    Auto,
    /// Never lower a starting worker's priority.
    Off,
    /// This nice value (1 to 19).
    Nice(i32),
}

/// The lowest priority there is (the highest nice value).
pub const LOWEST: i32 = 19;

/// The resolved setting: starting workers run at `starting`, ready ones at `serving`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WarmUp {
    /// A starting worker's nice value.
    pub starting: i32,
    /// herd's own nice value, which ready workers get back.
    pub serving: i32,
}

impl StartingNice {
    /// The setting for herd at nice value `own`, where `may_raise_to(own)` says whether herd
    /// may set a worker back to `own`. `Ok(None)`: starting workers keep herd's priority.
    /// `Err`: an explicit value that cannot work, with what to do about it.
    pub fn resolve(
        self,
        own: i32,
        may_raise_to: impl FnOnce(i32) -> bool,
    ) -> Result<Option<WarmUp>, String> {
        let starting = match self {
            StartingNice::Off => return Ok(None),
            StartingNice::Auto if own >= LOWEST => return Ok(None),
            StartingNice::Auto => LOWEST,
            StartingNice::Nice(n) if own >= LOWEST => {
                return Err(format!(
                    "--starting-nice {n}: herd already runs at the lowest priority (nice {own}), \
                     so workers cannot start lower: use --starting-nice off"
                ))
            }
            StartingNice::Nice(n) if n <= own => {
                return Err(format!(
                    "--starting-nice {n} is not lower than herd's own priority (nice {own}): \
                     give a value from {} to {LOWEST}, or off",
                    (own + 1).max(1)
                ))
            }
            StartingNice::Nice(n) => n,
        };
        if may_raise_to(own) {
            return Ok(Some(WarmUp {
                starting,
                serving: own,
            }));
        }
        match self {
            StartingNice::Auto => Ok(None),
            _ => Err(format!(
                "--starting-nice {starting}: herd could not raise a ready worker's priority back \
                 to nice {own}: run herd as root or with CAP_SYS_NICE (systemd: \
                 AmbientCapabilities=CAP_SYS_NICE), or allow it with LimitNICE={} (ulimit -e), \
                 or use --starting-nice off",
                20 - own
            )),
        }
    }
}

impl WarmUp {
    /// The nice value for a worker starting now, given whether any worker serves.
    pub fn for_start(&self, others_serve: bool) -> Option<i32> {
        others_serve.then_some(self.starting)
    }

    /// The nice value to give a worker's process group once it is ready, given its own now.
    pub fn on_ready(&self, worker_nice: i32) -> Option<i32> {
        (worker_nice == self.starting).then_some(self.serving)
    }
}

/// The longest a worker warms up at the starting priority before it gets herd's back.
pub const MAX_WARM_UP: Duration = Duration::from_secs(5);

/// How long a worker that has `ready_within` to become ready warms up at the starting
/// priority: half of that, at most [`MAX_WARM_UP`].
pub fn warm_up_budget(ready_within: Duration) -> Duration {
    (ready_within / 2).min(MAX_WARM_UP)
}

/// The warm-up of a worker that becomes ready by `readiness`: [`warm_up_budget`] of its
/// `READY=1` timeout, or of its delay.
pub fn budget_for(readiness: Readiness) -> Duration {
    match readiness {
        Readiness::Delay(within) | Readiness::Notify { timeout: within } => warm_up_budget(within),
    }
}

/// The workers warming up at the starting priority, each with the time it gets herd's back
/// if it is still starting then.
#[derive(Debug, Default)]
pub struct Warming {
    until: Vec<(u32, Instant)>,
}

impl Warming {
    /// Worker `pid` started at the starting priority; its warm-up ends at `until`.
    pub fn started(&mut self, pid: u32, until: Instant) {
        self.until.push((pid, until));
    }

    /// Worker `pid` became ready or exited: whether it was still warming up (herd lowered it
    /// and has not raised it back), forgotten from here on.
    pub fn ended(&mut self, pid: u32) -> bool {
        let before = self.until.len();
        self.until.retain(|&(p, _)| p != pid);
        self.until.len() < before
    }

    /// When the next warm-up ends.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.until.iter().map(|&(_, until)| until).min()
    }

    /// The workers whose warm-up has ended by `now`, forgotten from here on (whether each is
    /// still starting is the caller's to check).
    pub fn due(&mut self, now: Instant) -> Vec<u32> {
        let mut due = Vec::new();
        self.until.retain(|&(pid, until)| {
            let over = until <= now;
            if over {
                due.push(pid);
            }
            !over
        });
        due
    }
}

/// Parses `--starting-nice`: `auto`, `off`, or a nice value from 1 to 19.
pub fn parse_starting_nice(text: &str) -> Result<StartingNice, String> {
    match text {
        "auto" => Ok(StartingNice::Auto),
        "off" => Ok(StartingNice::Off),
        _ => match text.parse::<i32>() {
            Ok(n) if (1..=LOWEST).contains(&n) => Ok(StartingNice::Nice(n)),
            _ => Err(format!(
                "'{text}' is not a starting nice value: give auto, off, or a number from 1 to \
                 {LOWEST} (19 is the lowest priority)"
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(option: StartingNice, own: i32, may: bool) -> Result<Option<WarmUp>, String> {
        option.resolve(own, |_| may)
    }

    #[test]
    fn auto_lowers_to_19_only_when_herd_may_raise_back() {
        let on = WarmUp {
            starting: 19,
            serving: 0,
        };
        assert_eq!(resolve(StartingNice::Auto, 0, true), Ok(Some(on)));
        assert_eq!(resolve(StartingNice::Auto, 0, false), Ok(None));
        assert_eq!(resolve(StartingNice::Auto, 19, true), Ok(None));
        let at_5 = resolve(StartingNice::Auto, 5, true).unwrap().unwrap();
        assert_eq!((at_5.starting, at_5.serving), (19, 5));
    }

    #[test]
    fn off_never_lowers() {
        assert_eq!(resolve(StartingNice::Off, 0, true), Ok(None));
    }

    #[test]
    fn an_explicit_value_that_cannot_work_is_refused_with_the_way_out() {
        let e = resolve(StartingNice::Nice(10), 0, false).unwrap_err();
        assert!(
            e.contains("CAP_SYS_NICE") && e.contains("LimitNICE=20"),
            "{e}"
        );
        let e = resolve(StartingNice::Nice(3), 5, true).unwrap_err();
        assert!(e.contains("from 6 to 19"), "{e}");
        // herd at nice 19: no range to offer ('from 20 to 19').
        let e = resolve(StartingNice::Nice(19), 19, true).unwrap_err();
        assert!(e.contains("lowest priority") && e.contains("off"), "{e}");
        let ok = resolve(StartingNice::Nice(10), 0, true).unwrap().unwrap();
        assert_eq!((ok.starting, ok.serving), (10, 0));
    }

    #[test]
    fn herd_s_first_workers_start_at_its_own_priority() {
        let w = WarmUp {
            starting: 19,
            serving: 0,
        };
        assert_eq!(w.for_start(false), None);
        assert_eq!(w.for_start(true), Some(19));
    }

    #[test]
    fn only_a_worker_still_at_the_starting_value_is_raised_on_readiness() {
        let w = WarmUp {
            starting: 19,
            serving: 0,
        };
        assert_eq!(w.on_ready(19), Some(0));
        assert_eq!(w.on_ready(0), None);
        assert_eq!(w.on_ready(7), None);
    }

    #[test]
    fn a_warm_up_takes_half_the_ready_time_at_most_5s() {
        let sec = Duration::from_secs(1);
        assert_eq!(warm_up_budget(4 * sec), 2 * sec);
        assert_eq!(warm_up_budget(60 * sec), MAX_WARM_UP);
        assert_eq!(warm_up_budget(Duration::ZERO), Duration::ZERO);
        let notify = Readiness::Notify { timeout: 4 * sec };
        assert_eq!(budget_for(notify), 2 * sec);
        assert_eq!(budget_for(Readiness::Delay(sec)), sec / 2);
    }

    #[test]
    fn warm_ups_end_at_their_deadlines_once() {
        let t0 = Instant::now();
        let sec = Duration::from_secs(1);
        let mut w = Warming::default();
        assert_eq!(w.next_deadline(), None);
        w.started(10, t0 + 2 * sec);
        w.started(11, t0 + sec);
        assert_eq!(w.next_deadline(), Some(t0 + sec));
        assert!(w.due(t0).is_empty());
        assert_eq!(w.due(t0 + sec), [11]);
        assert_eq!(w.next_deadline(), Some(t0 + 2 * sec));
        assert_eq!(w.due(t0 + 3 * sec), [10]);
        assert!(w.due(t0 + 3 * sec).is_empty());
        assert_eq!(w.next_deadline(), None);
    }

    #[test]
    fn only_a_worker_still_warming_up_is_raised_on_readiness() {
        let t0 = Instant::now();
        let mut w = Warming::default();
        w.started(10, t0);
        w.started(11, t0 + Duration::from_secs(1));
        assert!(w.ended(11), "lowered by herd");
        assert!(!w.ended(11), "once");
        assert!(!w.ended(12), "never lowered: keeps its own priority");
        assert_eq!(w.due(t0), [10]);
        assert!(!w.ended(10), "already raised at its deadline");
    }

    #[test]
    fn refusals_are_one_clean_line_with_a_value_the_parser_takes() {
        let at_19 = resolve(StartingNice::Nice(10), 19, true).unwrap_err();
        assert!(!at_19.contains("  ") && !at_19.contains('\n'), "{at_19}");
        let below = resolve(StartingNice::Nice(1), 1, true).unwrap_err();
        assert!(below.contains("from 2 to 19"), "{below}");
    }

    #[test]
    fn parsing() {
        assert_eq!(parse_starting_nice("auto"), Ok(StartingNice::Auto));
        assert_eq!(parse_starting_nice("off"), Ok(StartingNice::Off));
        assert_eq!(parse_starting_nice("19"), Ok(StartingNice::Nice(19)));
        for bad in ["0", "20", "-5", "low", ""] {
            assert!(parse_starting_nice(bad)
                .unwrap_err()
                .contains("auto, off, or a number from 1 to 19"));
        }
    }
}
