use std::collections::{BTreeMap, HashSet};
use std::os::unix::process::ExitStatusExt;

use super::*;

const SEC: Duration = Duration::from_secs(1);
/// herd's own process group in these tests.
const HERD_GROUP: u32 = 1;
/// No worker has warmed up lowered (`--starting-nice`).
const NONE: &[LoweredSpan] = &[];
const MS: Duration = Duration::from_millis(1);

/// Worker `pid` warmed up lowered from `from`, until `until` (going on: `None`).
fn span(pid: u32, from: Instant, until: Option<Instant>) -> [LoweredSpan; 1] {
    [LoweredSpan { pid, from, until }]
}

/// Children as a test describes them.
#[derive(Default)]
struct Fake {
    /// The children: pid to (group, exited with this raw status).
    children: BTreeMap<u32, (u32, Option<i32>)>,
    /// Children that appear once these are reaped (re-parented as they exit): reaped pid to
    /// (pid, group).
    behind: BTreeMap<u32, (u32, u32)>,
    /// Every pid reaped, in order.
    reaped: Vec<u32>,
    /// Every signal sent, in order.
    signals: Vec<(u32, Signal)>,
    /// Every pid looked at closely, in order.
    described: Vec<u32>,
    /// Every pid given herd's priority back, in order.
    raised: Vec<u32>,
    /// When children were born, for those a test says.
    born: BTreeMap<u32, Instant>,
    /// Children that hold herd's socket `web`.
    holding: HashSet<u32>,
}

impl Fake {
    fn child(&mut self, pid: u32, group: u32) {
        self.children.insert(pid, (group, None));
    }

    /// Child `pid` of group `group`, born at `at`.
    fn born(&mut self, pid: u32, group: u32, at: Instant) {
        self.child(pid, group);
        self.born.insert(pid, at);
    }

    /// A look at `now`, beside `lowered`, with `workers`.
    fn look(
        &mut self,
        orphans: &mut Orphans,
        workers: &[u32],
        lowered: &[LoweredSpan],
        now: Instant,
    ) {
        orphans.look(self, &workers.iter().copied().collect(), lowered, now);
    }

    fn exit(&mut self, pid: u32, raw: i32) {
        self.children.get_mut(&pid).unwrap().1 = Some(raw);
    }
}

impl Family for Fake {
    fn children(&mut self) -> Vec<u32> {
        self.children.keys().copied().collect()
    }

    fn describe(&mut self, pid: u32) -> Option<Child> {
        self.described.push(pid);
        let &(group, _) = self.children.get(&pid)?;
        let name = format!("p{pid}");
        Some(Child { pid, group, name })
    }

    fn own_group(&mut self) -> u32 {
        HERD_GROUP
    }

    fn reap(&mut self, pid: u32) -> Option<ExitStatus> {
        let raw = self.children.get(&pid)?.1?;
        self.children.remove(&pid);
        self.reaped.push(pid);
        if let Some((orphan, group)) = self.behind.remove(&pid) {
            self.child(orphan, group);
        }
        Some(ExitStatus::from_raw(raw))
    }

    fn signal(&mut self, pid: u32, signal: Signal) {
        self.signals.push((pid, signal));
    }

    fn sockets_held(&mut self, pid: u32) -> Vec<String> {
        match self.holding.contains(&pid) {
            true => vec!["web".to_string()],
            false => Vec::new(),
        }
    }

    fn restore_priority(&mut self, pid: u32) -> std::io::Result<usize> {
        self.raised.push(pid);
        Ok(1)
    }

    fn born_at(&mut self, pid: u32) -> Option<Instant> {
        self.born.get(&pid).copied()
    }
}

fn pids(orphans: &Orphans, now: Instant) -> Vec<u32> {
    orphans.status(now).iter().map(|o| o.pid).collect()
}

#[test]
fn only_children_that_are_none_of_herds_own_are_orphans() {
    let mut fake = Fake::default();
    fake.child(10, 10); // a worker
    fake.child(11, 11); // a re-exec check
    fake.child(12, HERD_GROUP); // in herd's own group: reap's
    fake.child(20, 20); // left behind by a worker, in a session of its own
    fake.child(21, 10); // left behind in a worker's group
    let mut orphans = Orphans::default();
    let t0 = Instant::now();
    orphans.look(&mut fake, &HashSet::from([10, 11]), NONE, t0);
    assert_eq!(pids(&orphans, t0), [20, 21]);
    let status = orphans.status(t0 + SEC);
    assert_eq!((status[0].name.as_str(), status[0].known_ms), ("p20", 1000));
    assert!(fake.reaped.is_empty() && fake.signals.is_empty());
    assert_eq!(
        fake.described,
        [12, 20, 21],
        "herd's own are not looked at closely"
    );
    assert!(!orphans.finished(), "herd waits for them");
}

#[test]
fn an_orphan_that_exits_is_reaped_by_its_pid_and_forgotten() {
    let mut fake = Fake::default();
    fake.child(10, 10);
    fake.child(20, 20);
    let mut orphans = Orphans::default();
    let t0 = Instant::now();
    orphans.look(&mut fake, &HashSet::from([10]), NONE, t0);
    fake.exit(20, 0);
    fake.exit(10, 0); // a worker's exit is not the orphans' to reap
    orphans.look(&mut fake, &HashSet::from([10]), NONE, t0);
    assert_eq!(fake.reaped, [20]);
    assert!(orphans.finished() && pids(&orphans, t0).is_empty());
}

#[test]
fn what_an_exiting_orphan_leaves_is_found_in_the_same_look() {
    let mut fake = Fake::default();
    fake.child(20, 20);
    fake.exit(20, 0);
    fake.behind.insert(20, (30, 20));
    let mut orphans = Orphans::default();
    let t0 = Instant::now();
    orphans.look(&mut fake, &HashSet::new(), NONE, t0);
    assert_eq!(pids(&orphans, t0), [30]);
}

#[test]
fn herd_stops_them_then_kills_those_left_after_the_grace_then_gives_up() {
    let mut fake = Fake::default();
    fake.child(20, 20);
    fake.child(21, 21);
    let mut orphans = Orphans::default();
    let t0 = Instant::now();
    orphans.look(&mut fake, &HashSet::new(), NONE, t0);
    assert!(!orphans.waited_for());
    orphans.stop(&mut fake, Signal::TERM, 2 * SEC, t0);
    assert_eq!(fake.signals, [(20, Signal::TERM), (21, Signal::TERM)]);
    assert!(orphans.waited_for());
    // 20 obeys; 21 ignores it.
    fake.exit(20, 0);
    orphans.look(&mut fake, &HashSet::new(), NONE, t0 + SEC);
    assert_eq!(fake.signals.len(), 2, "not killed before the grace is over");
    // One left behind during the stop gets the stop signal at once.
    fake.child(22, 22);
    orphans.look(&mut fake, &HashSet::new(), NONE, t0 + SEC);
    assert_eq!(fake.signals[2], (22, Signal::TERM));
    orphans.look(&mut fake, &HashSet::new(), NONE, t0 + 2 * SEC);
    assert_eq!(fake.signals[3..], [(21, Signal::KILL), (22, Signal::KILL)]);
    // Found after the kill: killed at once.
    fake.child(23, 23);
    orphans.look(&mut fake, &HashSet::new(), NONE, t0 + 3 * SEC);
    assert_eq!(fake.signals[5], (23, Signal::KILL));
    assert!(!orphans.finished());
    // Still there KILL_WAIT after the kill: given up, and not adopted again.
    orphans.look(&mut fake, &HashSet::new(), NONE, t0 + 2 * SEC + KILL_WAIT);
    assert!(orphans.finished() && !orphans.waited_for());
    orphans.look(&mut fake, &HashSet::new(), NONE, t0 + 3 * SEC + KILL_WAIT);
    assert!(orphans.finished());
    assert_eq!(fake.signals.len(), 6);
    // One given up that exits at last is still reaped.
    fake.exit(21, 9);
    orphans.look(&mut fake, &HashSet::new(), NONE, t0 + 9 * SEC);
    assert_eq!(fake.reaped, [20, 21]);
}

#[test]
fn a_stop_at_once_kills_them_and_a_second_graceful_stop_is_not_news() {
    let mut fake = Fake::default();
    fake.child(20, 20);
    let mut orphans = Orphans::default();
    let t0 = Instant::now();
    orphans.look(&mut fake, &HashSet::new(), NONE, t0);
    orphans.stop(&mut fake, Signal::TERM, 5 * SEC, t0);
    orphans.stop(&mut fake, Signal::TERM, 5 * SEC, t0 + SEC);
    assert_eq!(fake.signals, [(20, Signal::TERM)]);
    orphans.stop(&mut fake, Signal::KILL, Duration::ZERO, t0 + SEC);
    assert_eq!(fake.signals[1], (20, Signal::KILL));
}

#[test]
fn held_adoptions_leave_new_children_for_a_later_look_but_reap_the_exited() {
    let (mut fake, mut orphans, now) = (Fake::default(), Orphans::default(), Instant::now());
    fake.child(20, 20);
    orphans.look(&mut fake, &HashSet::new(), NONE, now);
    assert_eq!(pids(&orphans, now), vec![20]);
    orphans.hold_adoptions(true);
    // A fork server's new worker, before herd has read its pid; an orphan that exits.
    fake.child(30, 30);
    fake.exit(20, 0);
    orphans.look(&mut fake, &HashSet::new(), NONE, now);
    assert_eq!(pids(&orphans, now), Vec::<u32>::new());
    assert_eq!(fake.reaped, vec![20]);
    // herd read its pid: a worker now, never adopted.
    orphans.hold_adoptions(false);
    orphans.look(&mut fake, &HashSet::from([30]), NONE, now);
    assert_eq!(pids(&orphans, now), Vec::<u32>::new());
    fake.child(40, 40);
    orphans.look(&mut fake, &HashSet::from([30]), NONE, now);
    assert_eq!(pids(&orphans, now), vec![40]);
}

#[test]
fn an_orphan_born_while_a_worker_warms_up_lowered_gets_herds_priority_once_it_ends() {
    // Born while its worker warmed up in SCHED_IDLE, it inherited the class; the worker's raise
    // walks the worker's tree, which it left. Raised at once, its start-up would take the CPU
    // from the serving workers while its worker still leaves it to them.
    let (mut fake, mut orphans, t0) = (Fake::default(), Orphans::default(), Instant::now());
    fake.born(10, 10, t0 + 100 * MS);
    let going_on = span(5, t0, None);
    fake.look(&mut orphans, &[5], &going_on, t0 + SEC);
    fake.look(&mut orphans, &[5], &going_on, t0 + 2 * SEC);
    assert!(fake.raised.is_empty());
    let ended = span(5, t0, Some(t0 + 2 * SEC));
    fake.look(&mut orphans, &[5], &ended, t0 + 3 * SEC);
    fake.look(&mut orphans, &[5], &ended, t0 + 4 * SEC);
    assert_eq!(fake.raised, vec![10], "once");
}

#[test]
fn warm_ups_that_never_end_hold_an_orphan_at_most_raise_wait() {
    let (mut fake, mut orphans, t0) = (Fake::default(), Orphans::default(), Instant::now());
    fake.born(10, 10, t0 + 100 * MS);
    let going_on = span(5, t0, None);
    fake.look(&mut orphans, &[5], &going_on, t0 + SEC);
    fake.look(&mut orphans, &[5], &going_on, t0 + RAISE_WAIT);
    assert!(fake.raised.is_empty());
    fake.look(&mut orphans, &[5], &going_on, t0 + SEC + RAISE_WAIT);
    assert_eq!(fake.raised, vec![10]);
}

#[test]
fn an_orphan_found_after_its_workers_warm_up_ended_gets_herds_priority_at_once() {
    // The worker was ready before any look: its orphan, re-parented while it warmed up, is
    // found after.
    let (mut fake, mut orphans, t0) = (Fake::default(), Orphans::default(), Instant::now());
    fake.born(10, 10, t0 + 100 * MS);
    fake.look(
        &mut orphans,
        &[5],
        &span(5, t0, Some(t0 + 500 * MS)),
        t0 + SEC,
    );
    assert_eq!(fake.raised, vec![10]);
}

#[test]
fn an_orphan_born_outside_every_lowered_warm_up_keeps_its_priority() {
    // A daemon that chose SCHED_IDLE (or nice 19) itself, before a warm-up or after it: a
    // first worker's, or one a worker started once ready, orphaned during a later warm-up.
    let (mut fake, mut orphans, t0) = (Fake::default(), Orphans::default(), Instant::now());
    fake.born(10, 10, t0);
    fake.born(11, 11, t0 + 2 * SEC);
    let lowered = span(5, t0 + SEC, Some(t0 + 1500 * MS));
    fake.look(&mut orphans, &[5], &lowered, t0 + 3 * SEC);
    fake.look(&mut orphans, &[5], NONE, t0 + 4 * SEC);
    assert!(fake.raised.is_empty(), "{:?}", fake.raised);
    assert_eq!(pids(&orphans, t0), [10, 11], "adopted all the same");
}

#[test]
fn an_orphan_in_the_group_of_a_worker_not_lowered_keeps_its_priority() {
    // A serving worker's daemon that kept its group, born while another worker warmed up.
    let (mut fake, mut orphans, t0) = (Fake::default(), Orphans::default(), Instant::now());
    fake.born(10, 7, t0 + 100 * MS);
    fake.born(11, 5, t0 + 100 * MS);
    fake.look(
        &mut orphans,
        &[5, 7],
        &span(5, t0, Some(t0 + SEC)),
        t0 + 2 * SEC,
    );
    assert_eq!(
        fake.raised,
        vec![11],
        "the lowered worker's own group's only"
    );
}

#[test]
fn an_orphan_whose_birth_is_unknown_is_adopted_and_keeps_its_priority() {
    let (mut fake, mut orphans, t0) = (Fake::default(), Orphans::default(), Instant::now());
    fake.child(10, 10);
    fake.look(
        &mut orphans,
        &[5],
        &span(5, t0, Some(t0 + SEC)),
        t0 + 2 * SEC,
    );
    assert!(fake.raised.is_empty());
    assert_eq!(pids(&orphans, t0), [10]);
}

#[test]
fn a_birth_within_the_slack_of_a_span_counts() {
    // /proc tells a start time in ticks of 10 ms.
    let (mut fake, mut orphans, t0) = (Fake::default(), Orphans::default(), Instant::now());
    let lowered = span(5, t0 + SEC, Some(t0 + 2 * SEC));
    fake.born(10, 10, t0 + SEC - 15 * MS);
    fake.born(11, 11, t0 + 2 * SEC + 15 * MS);
    fake.born(12, 12, t0 + SEC - 25 * MS);
    fake.born(13, 13, t0 + 2 * SEC + 25 * MS);
    fake.look(&mut orphans, &[5], &lowered, t0 + 3 * SEC);
    assert_eq!(fake.raised, vec![10, 11]);
}

#[test]
fn an_orphan_not_adopted_yet_is_not_raised_yet() {
    // --fork-server holds adoptions while a fork server's reply is awaited: the child may be
    // the worker it forked.
    let (mut fake, mut orphans, t0) = (Fake::default(), Orphans::default(), Instant::now());
    fake.born(10, 10, t0 + 100 * MS);
    let lowered = span(5, t0, Some(t0 + SEC));
    orphans.hold_adoptions(true);
    fake.look(&mut orphans, &[5], &lowered, t0 + 2 * SEC);
    assert!(fake.raised.is_empty());
    orphans.hold_adoptions(false);
    fake.look(&mut orphans, &[5], &lowered, t0 + 3 * SEC);
    assert_eq!(fake.raised, vec![10]);
}

mod said;
