//! How herd stops the processes it holds but did not start as workers (attached processes),
//! on every platform: asked to stop when herd stops, killed once the grace period is over,
//! and given up [`KILL_WAIT`] after the kill (one stuck in the kernel may never go). Pure: the
//! time is given, and the system is behind [`Stopper`]; each platform's
//! [`AttachedSet`](super::attached::AttachedSet) holds a [`HeldSet`] of its own kind of
//! process (Unix: by pidfd or pid and start time; Windows: by process handle).

use std::time::{Duration, Instant};

use super::platform::Signal;
use crate::logging::LogEvent;

/// How long herd waits for killed processes to go.
pub const KILL_WAIT: Duration = Duration::from_secs(5);
/// How often, while herd stops and waits for them, processes whose exit does not wake the
/// loop are looked at.
pub const STOP_CHECK_EVERY: Duration = Duration::from_millis(10);

/// A process herd holds but did not start.
pub trait Held {
    /// Its pid.
    fn pid(&self) -> u32;
    /// Whether its exit wakes herd's loop (else it is looked at every [`STOP_CHECK_EVERY`]
    /// while herd stops).
    fn watched(&self) -> bool;
}

/// What the policy needs of the system, for processes of kind `A`.
pub trait Stopper<A> {
    /// Whether `held` has exited.
    fn exited(&mut self, held: &A) -> bool;
    /// Sends `signal` to `held` (Unix: and its group, if it leads one).
    fn signal(&mut self, held: &A, signal: Signal) -> std::io::Result<()>;
}

/// The processes herd holds, and where they are in herd's stop.
#[derive(Debug)]
pub struct HeldSet<A> {
    list: Vec<A>,
    stopping: Stopping,
}

impl<A> Default for HeldSet<A> {
    fn default() -> HeldSet<A> {
        HeldSet {
            list: Vec::new(),
            stopping: Stopping::No,
        }
    }
}

impl<A: Held> HeldSet<A> {
    /// Adds `held`, replacing an entry of the same pid.
    pub fn add(&mut self, held: A) {
        match self.get_mut(held.pid()) {
            Some(entry) => *entry = held,
            None => self.list.push(held),
        }
    }

    /// The process of `pid`, if it is held.
    pub fn get_mut(&mut self, pid: u32) -> Option<&mut A> {
        self.list.iter_mut().find(|a| a.pid() == pid)
    }

    /// The processes.
    pub fn as_slice(&self) -> &[A] {
        &self.list
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Whether some are held whose exit does not wake the loop: only regular looks see them
    /// exit.
    pub fn any_unwatchable(&self) -> bool {
        self.list.iter().any(|a| !a.watched())
    }

    /// Where they are in herd's stop.
    pub fn stopping(&self) -> Stopping {
        self.stopping
    }

    /// Forgets those that have exited, and says so; returns them.
    pub fn remove_exited(&mut self, stopper: &mut impl Stopper<A>) -> Vec<A> {
        let (gone, kept) = std::mem::take(&mut self.list)
            .into_iter()
            .partition(|a| stopper.exited(a));
        self.list = kept;
        for a in &gone {
            tracing::info!(
                event = LogEvent::AttachedWorkerExited.as_str(),
                pid = a.pid(),
                "attached worker exited"
            );
        }
        gone
    }

    /// Stops them as herd stops: `signal`, then [`Signal::KILL`] after `grace` (a kill at
    /// once, or a second stop that is not graceful, kills those left). Returns those found
    /// exited.
    pub fn stop(
        &mut self,
        stopper: &mut impl Stopper<A>,
        signal: Signal,
        grace: Duration,
        now: Instant,
    ) -> Vec<A> {
        if !self.stopping.begin(signal == Signal::KILL, grace, now) {
            return Vec::new();
        }
        let gone = self.remove_exited(stopper);
        for a in &self.list {
            let pid = a.pid();
            tracing::info!(
                event = LogEvent::AttachedWorkerSignalled.as_str(),
                pid,
                "sending {signal} to attached worker"
            );
            if let Err(e) = stopper.signal(a, signal) {
                tracing::warn!(
                    event = LogEvent::SignalFailed.as_str(),
                    pid,
                    "cannot send {signal} to attached worker: {e}"
                );
            }
        }
        gone
    }

    /// While herd stops and some are left: when to look at them next (and kill those left
    /// once their grace period is over).
    pub fn deadline(&self, now: Instant) -> Option<Instant> {
        if self.list.is_empty() {
            return None;
        }
        // An exit that wakes the loop needs no look; the others are looked at regularly.
        let next = match self.any_unwatchable() {
            true => now + STOP_CHECK_EVERY,
            false => now + KILL_WAIT,
        };
        self.stopping.deadline(next)
    }

    /// While herd stops: forgets those that have exited, kills those left once their grace
    /// period is over, and gives up on those still there [`KILL_WAIT`] after. Returns those
    /// found exited.
    pub fn due(&mut self, stopper: &mut impl Stopper<A>, now: Instant) -> Vec<A> {
        if self.stopping == Stopping::No {
            return Vec::new();
        }
        let mut gone = self.remove_exited(stopper);
        if self.stopping.give_up(now) {
            for a in self.list.drain(..) {
                tracing::warn!(
                    event = LogEvent::AttachedWorkerStuck.as_str(),
                    pid = a.pid(),
                    "attached worker still there {}s after {}; herd stops without it",
                    KILL_WAIT.as_secs(),
                    Signal::KILL
                );
            }
        }
        if self.stopping.kill_due(now) && !self.list.is_empty() {
            for a in &self.list {
                tracing::warn!(
                    event = LogEvent::AttachedWorkerKilled.as_str(),
                    pid = a.pid(),
                    "killing attached worker: it did not stop within the grace period"
                );
            }
            gone.extend(self.stop(stopper, Signal::KILL, Duration::ZERO, now));
        }
        gone
    }
}

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

    /// A process of the tests: its pid, the sockets it took, whether its exit wakes the loop.
    #[derive(Debug, PartialEq)]
    struct Proc(u32, &'static str, bool);

    impl Held for Proc {
        fn pid(&self) -> u32 {
            self.0
        }
        fn watched(&self) -> bool {
            self.2
        }
    }

    /// Which have exited, and the signals sent.
    #[derive(Default)]
    struct Fake {
        gone: Vec<u32>,
        sent: Vec<(u32, Signal)>,
    }

    impl Stopper<Proc> for Fake {
        fn exited(&mut self, held: &Proc) -> bool {
            self.gone.contains(&held.0)
        }
        fn signal(&mut self, held: &Proc, signal: Signal) -> std::io::Result<()> {
            self.sent.push((held.0, signal));
            Ok(())
        }
    }

    #[test]
    fn a_process_held_again_keeps_its_one_entry_and_its_place() {
        let mut set = HeldSet::default();
        set.add(Proc(7, "http", true));
        set.add(Proc(8, "http", true));
        set.add(Proc(7, "http,admin", true));
        assert_eq!(
            set.as_slice(),
            [Proc(7, "http,admin", true), Proc(8, "http", true)]
        );
        assert_eq!(set.get_mut(8), Some(&mut Proc(8, "http", true)));
        assert_eq!(set.get_mut(9), None);
    }

    #[test]
    fn held_processes_are_asked_to_stop_then_killed_then_given_up_on() {
        let graceful = Signal::from_name("TERM").expect("a stop signal on every platform");
        let (mut fake, mut set) = (Fake::default(), HeldSet::default());
        let t0 = Instant::now();
        set.add(Proc(7, "http", true));
        set.add(Proc(8, "http", true));
        set.add(Proc(9, "http", true));
        assert_eq!(set.deadline(t0), None, "not stopping: nothing to wait for");
        assert!(set.due(&mut fake, t0).is_empty());
        fake.gone.push(9);
        let gone = set.stop(&mut fake, graceful, 2 * SEC, t0);
        assert_eq!(gone, [Proc(9, "http", true)], "the exited one is forgotten");
        assert_eq!(fake.sent, [(7, graceful), (8, graceful)]);
        // Exits wake the loop: only the grace period is a deadline.
        assert_eq!(set.deadline(t0), Some(t0 + 2 * SEC));
        set.add(Proc(10, "http", false));
        assert_eq!(set.deadline(t0), Some(t0 + STOP_CHECK_EVERY));
        fake.gone.push(10);
        assert_eq!(set.due(&mut fake, t0 + SEC).len(), 1);
        fake.sent.clear();
        assert!(set.due(&mut fake, t0 + 2 * SEC).is_empty());
        assert_eq!(fake.sent, [(7, Signal::KILL), (8, Signal::KILL)]);
        assert_eq!(set.deadline(t0 + 2 * SEC), Some(t0 + 2 * SEC + KILL_WAIT));
        set.due(&mut fake, t0 + 2 * SEC + KILL_WAIT);
        assert!(set.is_empty(), "given up on {KILL_WAIT:?} after the kill");
    }
}
