//! The policy for attached processes, against fake [`Processes`].

use super::*;
use crate::supervisor::grace::STOP_CHECK_EVERY;
use std::collections::BTreeSet;

/// Processes that have exited, and the signals sent.
#[derive(Default)]
struct Fake {
    gone: BTreeSet<u32>,
    signals: Vec<(u32, Signal)>,
}

impl Processes for Fake {
    fn exited(&mut self, attached: &Attached) -> bool {
        self.gone.contains(&attached.pid)
    }
    fn now_ticks(&mut self) -> u64 {
        500
    }
    fn signal(&mut self, attached: &Attached, signal: Signal) -> std::io::Result<()> {
        self.signals.push((attached.pid, signal));
        Ok(())
    }
}

fn attached(pid: u32, now: Instant) -> Attached {
    Attached {
        pid,
        start_time: 0,
        since: now,
        sockets: vec!["http".to_string()],
        pidfd: None,
        group: pid == 8,
        session: Some(3),
    }
}

const SEC: Duration = Duration::from_secs(1);

#[test]
fn stop_then_grace_then_kill_then_kill_wait() {
    let (mut fake, mut set) = (Fake::default(), AttachedSet::default());
    let t0 = Instant::now();
    set.add(attached(7, t0));
    set.add(attached(8, t0));
    assert_eq!(set.deadline(t0), None, "not stopping: nothing to wait for");
    set.due(&mut fake, t0);
    assert!(fake.signals.is_empty());

    set.stop(&mut fake, Signal::TERM, 2 * SEC, t0);
    assert_eq!(fake.signals, [(7, Signal::TERM), (8, Signal::TERM)]);
    set.stop(&mut fake, Signal::TERM, 2 * SEC, t0);
    assert_eq!(
        fake.signals.len(),
        2,
        "a second graceful stop sends nothing"
    );
    assert_eq!(set.deadline(t0), Some(t0 + STOP_CHECK_EVERY));
    let late = t0 + 2 * SEC - Duration::from_millis(1);
    assert_eq!(
        set.deadline(late),
        Some(t0 + 2 * SEC),
        "the grace period ends"
    );

    // 8 stops in time; 7 ignores the signal.
    fake.gone.insert(8);
    set.due(&mut fake, t0 + SEC);
    assert_eq!(set.as_slice().len(), 1);
    assert_eq!(fake.signals.len(), 2, "still within the grace period");
    set.due(&mut fake, t0 + 2 * SEC);
    assert_eq!(fake.signals[2..], [(7, Signal::KILL)]);

    // 7 is stuck: waited for KILL_WAIT, then given up.
    set.due(
        &mut fake,
        t0 + 2 * SEC + KILL_WAIT - Duration::from_millis(1),
    );
    assert!(!set.is_empty());
    set.due(&mut fake, t0 + 2 * SEC + KILL_WAIT);
    assert!(set.is_empty(), "herd stops without it");
    assert_eq!(fake.signals.len(), 3, "SIGKILL once");
}

#[test]
fn a_fast_stop_kills_at_once_even_during_a_graceful_one() {
    let (mut fake, mut set) = (Fake::default(), AttachedSet::default());
    let t0 = Instant::now();
    set.add(attached(7, t0));
    set.stop(&mut fake, Signal::TERM, 30 * SEC, t0);
    set.stop(&mut fake, Signal::KILL, Duration::ZERO, t0 + SEC);
    assert_eq!(fake.signals, [(7, Signal::TERM), (7, Signal::KILL)]);
    set.stop(&mut fake, Signal::KILL, Duration::ZERO, t0 + SEC);
    assert_eq!(fake.signals.len(), 2, "killed once");
    fake.gone.insert(7);
    set.due(&mut fake, t0 + SEC);
    assert!(set.is_empty());
}

#[test]
fn exited_group_leaders_are_handed_on_once() {
    let (mut fake, mut set) = (Fake::default(), AttachedSet::default());
    let t0 = Instant::now();
    set.add(attached(7, t0));
    set.add(attached(8, t0)); // leads its group
    set.stop(&mut fake, Signal::TERM, 2 * SEC, t0);
    assert_eq!(set.kill_at(), Some(t0 + 2 * SEC));
    fake.gone.extend([7, 8]);
    set.due(&mut fake, t0 + SEC);
    assert!(set.is_empty());
    let leader = ExitedLeader {
        pid: 8,
        start_time: 0,
        session: Some(3),
        seen_exit: 500,
    };
    assert_eq!(set.take_exited_leaders(), [leader], "only the group leader");
    assert!(set.take_exited_leaders().is_empty(), "once");
}

#[test]
fn exited_processes_are_not_signalled() {
    let (mut fake, mut set) = (Fake::default(), AttachedSet::default());
    let t0 = Instant::now();
    set.add(attached(7, t0));
    set.add(attached(8, t0));
    set.add(attached(7, t0));
    assert_eq!(set.as_slice().len(), 2, "the same pid once");
    fake.gone.insert(7);
    set.stop(&mut fake, Signal::INT, SEC, t0);
    assert_eq!(fake.signals, [(8, Signal::INT)]);
}

#[test]
fn a_group_leader_that_exited_during_a_reexec_hands_its_group_on() {
    // A pid no process has (above any pid_max), held by no pidfd: it has exited.
    let saved = |group| Saved {
        pid: 0x7fff_fff0,
        start_time: 42,
        age_ms: Ago(10),
        sockets: vec!["http".to_string()],
        pidfd: None,
        group,
        session: Some(3),
    };
    let mut set = AttachedSet::default();
    let t0 = Instant::now();
    set.restore(Attached::restore(saved(false), None, Epoch::at(t0)));
    assert!(set.is_empty());
    assert!(set.take_exited_leaders().is_empty(), "no group of its own");
    set.restore(Attached::restore(saved(true), None, Epoch::at(t0)));
    assert!(set.is_empty(), "not listed as attached");
    let leaders = set.take_exited_leaders();
    assert_eq!(leaders.len(), 1, "its group is handed on: {leaders:?}");
    assert_eq!(
        (leaders[0].pid, leaders[0].start_time, leaders[0].session),
        (0x7fff_fff0, 42, Some(3))
    );
}

#[test]
fn each_pidfd_is_handed_to_the_loop_once_and_only_pidless_processes_are_polled() {
    let (mut fake, mut set) = (Fake::default(), AttachedSet::default());
    let t0 = Instant::now();
    let own = PidFd::open(std::process::id()).expect("pidfds exist on this kernel");
    let mut held = attached(9, t0);
    held.pidfd = Some(Arc::new(own));
    set.add(held);
    assert!(!set.any_unwatchable());
    assert_eq!(set.take_to_watch().len(), 1);
    assert!(set.take_to_watch().is_empty(), "handed over once");
    // Its exit wakes the loop: while stopping, only the grace and the kill wait are deadlines.
    set.stop(&mut fake, Signal::TERM, 2 * SEC, t0);
    assert_eq!(set.deadline(t0), Some(t0 + 2 * SEC));
    // One without a pidfd is looked at regularly.
    set.add(attached(10, t0));
    assert!(set.any_unwatchable());
    assert!(set.take_to_watch().is_empty());
    assert_eq!(set.deadline(t0), Some(t0 + STOP_CHECK_EVERY));
}
