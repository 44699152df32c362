//! The bookkeeping of leftovers, against a fake [`Groups`].

use super::*;
use std::collections::BTreeSet;

/// Groups with members, leaders that have exited, and what was done to them. Each group
/// has one member, its id plus 1000.
#[derive(Default)]
struct Fake {
    populated: BTreeSet<u32>,
    running: BTreeSet<u32>,
    signals: Vec<(u32, Signal)>,
    reaped: Vec<u32>,
    /// Passes over `/proc`.
    scans: usize,
    /// What `/proc/PID/stat` says: by default, every process is in session 1 and started
    /// at tick 10.
    stats: std::collections::HashMap<u32, Option<Stat>>,
    /// Extra members, by group.
    extra: std::collections::HashMap<u32, Vec<u32>>,
    /// The time, in clock ticks since boot.
    ticks: u64,
}

impl Groups for Fake {
    fn refresh(&mut self) {
        self.scans += 1;
    }
    fn members(&mut self, pgid: u32) -> Vec<u32> {
        let mut members = match self.populated.contains(&pgid) {
            true => vec![pgid + 1000],
            false => Vec::new(),
        };
        members.extend(self.extra.get(&pgid).into_iter().flatten());
        members
    }
    fn stat(&mut self, pid: u32) -> Option<Stat> {
        *self.stats.get(&pid).unwrap_or(&Some(Stat {
            session: 1,
            start_time: 10,
        }))
    }
    fn now_ticks(&mut self) -> u64 {
        self.ticks
    }
    fn signal(&mut self, pgid: u32, signal: Signal) {
        self.signals.push((pgid, signal));
    }
    fn reap(&mut self, pgid: u32) -> bool {
        if self.running.contains(&pgid) {
            return false;
        }
        self.reaped.push(pgid);
        true
    }
}

const SEC: Duration = Duration::from_secs(1);

/// Attached process `pid`, session 1, started at tick 5, seen exited at tick 20.
fn leader(pid: u32) -> ExitedLeader {
    ExitedLeader {
        pid,
        start_time: 5,
        session: Some(1),
        seen_exit: 20,
    }
}

#[test]
fn a_worker_that_leaves_nothing_is_reaped_at_once() {
    let (mut fake, mut left) = (Fake::default(), Leftovers::default());
    let now = Instant::now();
    assert_eq!(
        left.exited(&mut fake, &[(7, 0, None)], Signal::TERM, SEC, now),
        0
    );
    assert_eq!(fake.reaped, [7]);
    assert!(fake.signals.is_empty() && left.is_empty());
}

#[test]
fn a_crashed_workers_children_get_the_stop_signal_then_sigkill_and_the_leader_is_held() {
    let mut fake = Fake::default();
    fake.populated.insert(7);
    let mut left = Leftovers::default();
    let t0 = Instant::now();
    let state = Some(WorkerState::Ready);
    assert_eq!(
        left.exited(&mut fake, &[(7, 2, state)], Signal::INT, 5 * SEC, t0),
        1
    );
    assert_eq!(fake.signals, [(7, Signal::INT)]);
    assert!(fake.reaped.is_empty(), "the zombie holds the group id");
    left.check(&mut fake, t0 + 4 * SEC);
    assert_eq!(fake.signals.len(), 1);
    left.check(&mut fake, t0 + 5 * SEC);
    left.check(&mut fake, t0 + 6 * SEC);
    assert_eq!(
        fake.signals[1..],
        [(7, Signal::KILL), (7, Signal::KILL)],
        "killed, and again until gone"
    );
    fake.populated.clear();
    left.check(&mut fake, t0 + 6 * SEC);
    assert_eq!(fake.reaped, [7]);
    assert!(left.is_empty());
}

#[test]
fn a_group_herd_already_signalled_keeps_its_deadline() {
    let mut fake = Fake::default();
    fake.populated.insert(7);
    let mut left = Leftovers::default();
    let t0 = Instant::now();
    let stopping = WorkerState::Stopping {
        reason: super::super::pool::Reason::Shutdown,
        deadline: t0 + 2 * SEC,
        killed: false,
    };
    left.exited(
        &mut fake,
        &[(7, 0, Some(stopping))],
        Signal::TERM,
        30 * SEC,
        t0,
    );
    assert!(
        fake.signals.is_empty(),
        "the group got the stop signal already"
    );
    left.check(&mut fake, t0 + 2 * SEC);
    assert_eq!(fake.signals, [(7, Signal::KILL)]);
}

#[test]
fn stopping_shortens_every_deadline() {
    let mut fake = Fake::default();
    fake.populated.insert(7);
    let mut left = Leftovers::default();
    let t0 = Instant::now();
    left.exited(&mut fake, &[(7, 0, None)], Signal::TERM, 30 * SEC, t0);
    left.stop(t0 + SEC);
    left.check(&mut fake, t0 + SEC);
    assert_eq!(fake.signals, [(7, Signal::TERM), (7, Signal::KILL)]);
}

#[test]
fn an_attached_processs_group_is_stopped_like_a_workers() {
    let mut fake = Fake::default();
    fake.populated.insert(7);
    let mut left = Leftovers::default();
    let t0 = Instant::now();
    // Gone: no stranger has its pid.
    fake.stats.insert(7, None);
    fake.stats.insert(8, None);
    fake.stats.insert(9, None);
    // Exited on its own: its group gets the stop signal, SIGKILL after the grace.
    left.attached_exited(&mut fake, leader(7), None, Signal::TERM, 2 * SEC, t0);
    assert_eq!(fake.signals, [(7, Signal::TERM)]);
    left.check(&mut fake, t0 + 2 * SEC);
    assert_eq!(fake.signals[1..], [(7, Signal::KILL)]);
    // Exited while herd stops: the group was signalled with it; SIGKILL at herd's time.
    fake.populated.insert(8);
    left.attached_exited(
        &mut fake,
        leader(8),
        Some(t0 + 3 * SEC),
        Signal::TERM,
        SEC,
        t0,
    );
    assert_eq!(fake.signals.len(), 2);
    // An empty group is not tracked; a tracked one is forgotten once empty.
    left.attached_exited(&mut fake, leader(9), None, Signal::TERM, SEC, t0);
    assert_eq!(left.groups.len(), 2);
    fake.populated.clear();
    left.check(&mut fake, t0 + 3 * SEC);
    assert!(left.is_empty());
}

#[test]
fn a_check_childs_leftovers_are_killed_at_once() {
    let mut fake = Fake::default();
    fake.populated.insert(9);
    let mut left = Leftovers::default();
    let t0 = Instant::now();
    left.check_exited(9, t0);
    left.check(&mut fake, t0);
    assert_eq!(fake.signals, [(9, Signal::KILL)]);
    assert!(fake.reaped.is_empty(), "the zombie holds the group id");
    fake.populated.clear();
    left.check(&mut fake, t0);
    assert_eq!(fake.reaped, [9]);
    assert!(left.is_empty());
}

#[test]
fn an_abandoned_child_is_held_until_it_has_exited() {
    let mut fake = Fake::default();
    fake.running.insert(9);
    let mut left = Leftovers::default();
    let t0 = Instant::now();
    left.abandon(9, 0, t0);
    left.check(&mut fake, t0);
    assert_eq!(left.groups.len(), 1, "still running");
    fake.running.clear();
    left.check(&mut fake, t0);
    assert!(left.is_empty());
    assert_eq!(fake.reaped, [9]);
}

#[test]
fn deadlines_survive_export_and_import() {
    let mut fake = Fake::default();
    fake.populated.insert(7);
    let mut left = Leftovers::default();
    let t0 = Instant::now();
    left.exited(&mut fake, &[(7, 0, None)], Signal::TERM, 10 * SEC, t0);
    let json = serde_json::to_string(&left.export(Epoch::at(t0 + 4 * SEC))).unwrap();
    let later = t0 + 5 * SEC;
    let mut left = Leftovers::import(serde_json::from_str(&json).unwrap(), Epoch::at(later));
    left.check(&mut fake, later + 5 * SEC + Duration::from_millis(999));
    assert_eq!(fake.signals.len(), 1, "6s to go at export");
    left.check(&mut fake, later + 6 * SEC);
    assert_eq!(fake.signals.last(), Some(&(7, Signal::KILL)));
}

#[test]
fn many_exits_cost_one_look_at_every_group() {
    let mut fake = Fake::default();
    fake.populated.insert(8);
    let mut left = Leftovers::default();
    let t0 = Instant::now();
    let exits: Vec<_> = (1..=100).map(|pid| (pid, 0, None)).collect();
    assert_eq!(left.exited(&mut fake, &exits, Signal::TERM, SEC, t0), 1);
    assert_eq!(fake.scans, 1, "one pass over /proc for the whole batch");
    assert_eq!(fake.reaped.len(), 99);
    assert_eq!(left.groups.len(), 1);
    left.check(&mut fake, t0 + SEC);
    assert_eq!(fake.scans, 2, "one per check");
}

#[test]
fn a_group_that_outlives_sigkill_is_given_up_after_kill_wait() {
    let mut fake = Fake::default();
    fake.populated.insert(7);
    let mut left = Leftovers::default();
    let t0 = Instant::now();
    left.exited(&mut fake, &[(7, 0, None)], Signal::TERM, SEC, t0);
    left.stop(t0);
    left.check(&mut fake, t0);
    assert_eq!(fake.signals.last(), Some(&(7, Signal::KILL)));
    left.check(&mut fake, t0 + KILL_WAIT - Duration::from_millis(1));
    assert_eq!(left.groups.len(), 1, "still waited for");
    assert!(fake.reaped.is_empty());
    left.check(&mut fake, t0 + KILL_WAIT);
    assert!(left.is_empty(), "herd stop must not wait for ever");
    assert_eq!(
        fake.reaped,
        [7],
        "the members hold the group id; the zombie can go"
    );
}

#[test]
fn an_attached_processs_group_is_told_from_a_stranger_that_got_its_id() {
    let t0 = Instant::now();
    let stat = |session, start_time| {
        Some(Stat {
            session,
            start_time,
        })
    };
    // Members started after herd saw the leader exit (tick 20), or in another session,
    // are a stranger's group that got the id once the leader's emptied.
    for member in [stat(1, 21), stat(2, 10), stat(1, 4)] {
        let (mut fake, mut left) = (Fake::default(), Leftovers::default());
        fake.populated.insert(7);
        fake.stats.insert(7, None);
        fake.stats.insert(1007, member);
        left.attached_exited(&mut fake, leader(7), None, Signal::TERM, SEC, t0);
        assert!(fake.signals.is_empty(), "{member:?}");
        assert!(left.is_empty(), "{member:?}");
    }
    // A live process with the leader's pid and another start time: a stranger leads it.
    let (mut fake, mut left) = (Fake::default(), Leftovers::default());
    fake.populated.insert(7);
    fake.stats.insert(7, stat(1, 30));
    left.attached_exited(&mut fake, leader(7), None, Signal::TERM, SEC, t0);
    assert!(fake.signals.is_empty() && left.is_empty());

    // The leader's own: started between the leader and its exit, in its session.
    let (mut fake, mut left) = (Fake::default(), Leftovers::default());
    fake.populated.insert(7);
    fake.stats.insert(7, None);
    fake.stats.insert(1007, stat(1, 20));
    fake.ticks = 25;
    left.attached_exited(&mut fake, leader(7), None, Signal::TERM, SEC, t0);
    assert_eq!(fake.signals, [(7, Signal::TERM)]);
    // What they fork later is theirs too while one of them holds the group's id.
    fake.extra.insert(7, vec![50]);
    fake.stats.insert(50, stat(1, 40));
    fake.ticks = 45;
    left.check(&mut fake, t0 + SEC);
    assert_eq!(fake.signals[1..], [(7, Signal::KILL)]);
    // The first is gone, the forked one held the id: still theirs.
    fake.populated.clear();
    fake.ticks = 50;
    left.check(&mut fake, t0 + SEC);
    assert_eq!(fake.signals[2..], [(7, Signal::KILL)]);
    // All gone, and a stranger's group got the id between two looks: forgotten, not
    // signalled.
    fake.extra.insert(7, vec![60]);
    fake.stats.insert(60, stat(1, 55));
    left.check(&mut fake, t0 + SEC);
    assert_eq!(fake.signals.len(), 3, "the stranger is not signalled");
    assert!(left.is_empty());
}

#[test]
fn a_reexecs_state_keeps_its_field_names() {
    let mut fake = Fake::default();
    fake.populated.insert(7);
    fake.stats.insert(7, None);
    let mut left = Leftovers::default();
    let t0 = Instant::now();
    left.attached_exited(&mut fake, leader(7), None, Signal::TERM, 3 * SEC, t0);
    let json = serde_json::to_value(left.export(Epoch::at(t0 + SEC))).unwrap();
    assert_eq!(
        json,
        serde_json::json!([{
            "pgid": 7,
            "slot": 0,
            "whose": "attached",
            "deadline_in_ms": 2000,
            "leader": {"pid": 7, "start_time": 5, "session": 1, "seen_exit": 20},
            "known": [[1007, 10]],
        }])
    );
    // An older herd's state: a worker's group, with no owner, leader or known processes.
    let old = serde_json::json!([{"pgid": 9, "slot": 2, "deadline_in_ms": 0}]);
    let left = Leftovers::import(serde_json::from_value(old).unwrap(), Epoch::at(t0));
    assert_eq!(left.status(t0)[0].pid, 9);
    assert_eq!(left.status(t0)[0].slot, 2);
}
