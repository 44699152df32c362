//! What an exited worker leaves behind: the processes still in its process group (children it
//! forked, which inherited its sockets). They get the stop signal, then `SIGKILL` after the
//! grace period, and herd does not finish stopping until they are gone.
//!
//! Every worker leads a process group whose id is its pid. A group's id cannot be reused while
//! the group has members, but once it is empty, a new process may get that pid and lead a new,
//! unrelated group; so signalling a group id after the group may have emptied could reach a
//! stranger. herd avoids that by keeping the exited worker *unreaped* while its group has other
//! members: the zombie holds its pid, so the group id stays ours, and signals to it reach only
//! the worker's leftovers. Once no live process remains in the group, the zombie is reaped and
//! the group forgotten.
//!
//! Looking at groups means reading every `/proc/*/stat`; it is done once per batch of exits
//! ([`Leftovers::exited`] takes them all) and once per [`Leftovers::check`], never once per
//! group.
//!
//! A process stuck in the kernel (state `D`) may not die even of `SIGKILL`: a group still
//! populated [`KILL_WAIT`] after its `SIGKILL` deadline is logged with its pids and given up
//! (its leader is reaped: the members keep the group's id in use, so it cannot name a
//! stranger), so that `herd stop` always ends.
//!
//! The bookkeeping is pure; the system calls go through [`Groups`], so the ordering is
//! unit-tested without processes.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use herd_sys::process::{self, Signal};

use super::pool::WorkerState;

/// How often groups with leftovers are looked at.
pub const CHECK_EVERY: Duration = Duration::from_millis(50);
/// How long after its `SIGKILL` deadline a group is still waited for (the same wait as for
/// attached processes).
pub const KILL_WAIT: Duration = super::attached::KILL_WAIT;

/// The system calls leftovers need, on a group whose leader (`pgid`) is an exited, unreaped
/// child of herd.
pub trait Groups {
    /// Takes a fresh look at every group, before several are asked about.
    fn refresh(&mut self);
    /// The live processes other than the leader that remain in the group, as of the last
    /// [`refresh`](Groups::refresh).
    fn members(&mut self, pgid: u32) -> Vec<u32>;
    /// Sends `signal` to the group.
    fn signal(&mut self, pgid: u32, signal: Signal);
    /// Reaps the leader; `false` if it has not exited (yet).
    fn reap(&mut self, pgid: u32) -> bool;
}

/// The real system: `/proc`, `kill(-pgid)`, `waitpid`.
#[derive(Default)]
pub struct System {
    /// Every process group's live processes, as [`Groups::refresh`] read them all at once.
    snapshot: HashMap<u32, Vec<u32>>,
}

impl Groups for System {
    fn refresh(&mut self) {
        self.snapshot = process::process_groups();
    }

    fn members(&mut self, pgid: u32) -> Vec<u32> {
        let mut pids = self.snapshot.get(&pgid).cloned().unwrap_or_default();
        pids.retain(|&p| p != pgid);
        pids
    }

    fn signal(&mut self, pgid: u32, signal: Signal) {
        // A stop signal is followed by SIGCONT, so that a paused process can act on it.
        if let Err(e) = super::balance::deliver_stop(pgid, signal, true) {
            tracing::warn!(
                pgid,
                "cannot send {signal} to what process {pgid} left: {e}"
            );
        }
    }

    fn reap(&mut self, pgid: u32) -> bool {
        match process::reap(pgid) {
            Ok(reaped) => reaped.is_some(),
            // Not (or no longer) our child: nothing to hold.
            Err(_) => true,
        }
    }
}

/// Whose group it is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum Whose {
    /// A worker's, held as a zombie.
    #[default]
    Worker,
    /// An attached process's (`herd attach`), which is not herd's child: its group's id stays
    /// in use as long as the group has members, and herd looks at it often while stopping
    /// (see [`Leftovers::attached_exited`]).
    Attached,
    /// A re-exec check child's, held as a zombie.
    Check,
}

/// A group whose leader has exited while other processes remain in it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Group {
    /// The group's id: the exited leader's pid.
    pgid: u32,
    /// The worker's slot, for the log.
    slot: usize,
    /// Whose group it is.
    #[serde(default)]
    whose: Whose,
    /// When what remains gets `SIGKILL`.
    #[serde(skip, default = "Instant::now")]
    deadline: Instant,
    /// Milliseconds to the deadline, in a re-exec's state.
    #[serde(default)]
    deadline_in_ms: u64,
}

impl Group {
    /// The group's leader, for the log: "worker 2 (pid 7)".
    fn leader(&self) -> String {
        match self.whose {
            Whose::Worker => format!("worker {} (pid {})", self.slot, self.pgid),
            Whose::Attached => format!("attached process {}", self.pgid),
            Whose::Check => format!("the re-exec check (pid {})", self.pgid),
        }
    }
}

/// The groups herd is waiting for.
#[derive(Debug, Default)]
pub struct Leftovers {
    groups: Vec<Group>,
}

/// The leftovers, for re-exec: deadlines become offsets from the moment of export.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Saved(Vec<Group>);

impl Leftovers {
    /// Whether no group is being waited for.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// How many groups are being waited for.
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    /// Workers have exited (not yet reaped), each `(pid, slot, state it was in)`: one look at
    /// every group, then each is looked at as [`exited_one`](Leftovers::exited_one) says.
    /// Returns how many leave processes behind.
    pub fn exited(
        &mut self,
        groups: &mut impl Groups,
        exits: &[(u32, usize, Option<WorkerState>)],
        stop_signal: Signal,
        grace: Duration,
        now: Instant,
    ) -> usize {
        if exits.is_empty() {
            return 0;
        }
        groups.refresh();
        exits
            .iter()
            .filter(|&&(pid, slot, state)| {
                self.exited_one(groups, pid, slot, state, stop_signal, grace, now)
            })
            .count()
    }

    /// Worker `pid` of `slot` has exited (not yet reaped) while it was in `state`, and
    /// `groups` was refreshed since. Reaps it if its group is empty; otherwise what remains
    /// gets `stop_signal` (unless herd already sent the group a stop or a kill) and `SIGKILL`
    /// at the worker's own deadline, or after `grace`. Returns whether leftovers are now
    /// tracked.
    #[allow(clippy::too_many_arguments)]
    fn exited_one(
        &mut self,
        groups: &mut impl Groups,
        pid: u32,
        slot: usize,
        state: Option<WorkerState>,
        stop_signal: Signal,
        grace: Duration,
        now: Instant,
    ) -> bool {
        if groups.members(pid).is_empty() {
            groups.reap(pid);
            return false;
        }
        let deadline = match state {
            Some(WorkerState::Stopping {
                killed: true,
                deadline,
                ..
            }) => deadline.min(now),
            Some(WorkerState::Stopping { deadline, .. }) => deadline,
            _ => {
                groups.signal(pid, stop_signal);
                now.checked_add(grace).unwrap_or(now)
            }
        };
        tracing::warn!(
            slot,
            pid,
            "worker {slot} (pid {pid}) exited, but processes it started remain in its group: \
             stopping them (SIGKILL in {})",
            humantime::format_duration(round_ms(deadline.saturating_duration_since(now)))
        );
        self.groups.push(Group {
            pgid: pid,
            slot,
            whose: Whose::Worker,
            deadline,
            deadline_in_ms: 0,
        });
        true
    }

    /// Attached process `pid`, which led its own process group, has exited. If processes
    /// remain in its group, they get `stop_signal` and `SIGKILL` after `grace`; or, when herd
    /// already sent the group its stop (`stopping`: the time of its `SIGKILL`), `SIGKILL` then.
    ///
    /// herd is not its parent and cannot hold its pid: the group's id stays in use only while
    /// the group has members. herd looks at it every [`CHECK_EVERY`] and forgets it once it is
    /// empty; a stranger could get that id only if the group emptied and the pid was reused
    /// within one such interval.
    pub fn attached_exited(
        &mut self,
        groups: &mut impl Groups,
        pid: u32,
        stopping: Option<Instant>,
        stop_signal: Signal,
        grace: Duration,
        now: Instant,
    ) {
        groups.refresh();
        if groups.members(pid).is_empty() {
            return;
        }
        let deadline = match stopping {
            Some(deadline) => deadline,
            None => {
                groups.signal(pid, stop_signal);
                now.checked_add(grace).unwrap_or(now)
            }
        };
        let group = Group {
            pgid: pid,
            slot: 0,
            whose: Whose::Attached,
            deadline,
            deadline_in_ms: 0,
        };
        tracing::warn!(
            pid,
            "{} exited, but processes it started remain in its group: stopping them (SIGKILL \
             in {})",
            group.leader(),
            humantime::format_duration(round_ms(deadline.saturating_duration_since(now)))
        );
        self.groups.push(group);
    }

    /// Looks at every group: an empty one is forgotten and its leader reaped; one past its
    /// deadline gets `SIGKILL` (again at each check, so that nothing forked meanwhile escapes);
    /// one still populated [`KILL_WAIT`] after that is given up.
    pub fn check(&mut self, groups: &mut impl Groups, now: Instant) {
        if self.groups.is_empty() {
            return;
        }
        groups.refresh();
        self.groups.retain(|g| {
            let members = groups.members(g.pgid);
            if members.is_empty() {
                if groups.reap(g.pgid) {
                    tracing::info!(
                        slot = g.slot,
                        pid = g.pgid,
                        "the processes {} left are gone",
                        g.leader()
                    );
                    return false;
                }
                return true;
            }
            if now.saturating_duration_since(g.deadline) >= KILL_WAIT {
                let pids: Vec<String> = members.iter().map(u32::to_string).collect();
                tracing::error!(
                    slot = g.slot,
                    pid = g.pgid,
                    "the processes {} left are still there {}s after SIGKILL (stuck in the \
                     kernel?): pids {}; herd no longer waits for them",
                    g.leader(),
                    KILL_WAIT.as_secs(),
                    pids.join(", ")
                );
                // The members hold the group's id: the leader can go.
                groups.reap(g.pgid);
                return false;
            }
            if now >= g.deadline {
                tracing::warn!(
                    slot = g.slot,
                    pid = g.pgid,
                    "killing the processes {} left: they did not stop in time",
                    g.leader()
                );
                groups.signal(g.pgid, Signal::KILL);
            }
            true
        });
    }

    /// The groups, for `herd status`.
    pub fn status(&self, now: Instant) -> Vec<super::status::LeftoverStatus> {
        self.groups
            .iter()
            .map(|g| super::status::LeftoverStatus {
                pid: g.pgid,
                slot: g.slot,
                kill_in_ms: g.deadline.saturating_duration_since(now).as_millis() as u64,
            })
            .collect()
    }

    /// herd is stopping: every group is killed by `deadline` at the latest.
    pub fn stop(&mut self, deadline: Instant) {
        for g in &mut self.groups {
            g.deadline = g.deadline.min(deadline);
        }
    }

    /// Tracks `pid`, a child herd started but cannot supervise and has killed, until it has
    /// exited and its group is empty.
    pub fn abandon(&mut self, pid: u32, slot: usize, now: Instant) {
        self.groups.push(Group {
            pgid: pid,
            slot,
            whose: Whose::Worker,
            deadline: now,
            deadline_in_ms: 0,
        });
    }

    /// Tracks the re-exec check child `pid`, which leads its own process group and has exited
    /// (not yet reaped): whatever it left in its group is killed at once, and the leader is
    /// reaped once the group is empty.
    pub fn check_exited(&mut self, pid: u32, now: Instant) {
        self.groups.push(Group {
            pgid: pid,
            slot: 0,
            whose: Whose::Check,
            deadline: now,
            deadline_in_ms: 0,
        });
    }

    /// The state to hand to a re-exec.
    pub fn export(&self, now: Instant) -> Saved {
        Saved(
            self.groups
                .iter()
                .map(|g| Group {
                    deadline_in_ms: g.deadline.saturating_duration_since(now).as_millis() as u64,
                    ..g.clone()
                })
                .collect(),
        )
    }

    /// Continues from a re-exec's state.
    pub fn import(saved: Saved, now: Instant) -> Leftovers {
        Leftovers {
            groups: saved
                .0
                .into_iter()
                .map(|g| Group {
                    deadline: now + Duration::from_millis(g.deadline_in_ms),
                    ..g
                })
                .collect(),
        }
    }
}

/// `d` rounded down to milliseconds, for messages.
fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
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
    }

    impl Groups for Fake {
        fn refresh(&mut self) {
            self.scans += 1;
        }
        fn members(&mut self, pgid: u32) -> Vec<u32> {
            match self.populated.contains(&pgid) {
                true => vec![pgid + 1000],
                false => Vec::new(),
            }
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
        // Exited on its own: its group gets the stop signal, SIGKILL after the grace.
        left.attached_exited(&mut fake, 7, None, Signal::TERM, 2 * SEC, t0);
        assert_eq!(fake.signals, [(7, Signal::TERM)]);
        left.check(&mut fake, t0 + 2 * SEC);
        assert_eq!(fake.signals[1..], [(7, Signal::KILL)]);
        // Exited while herd stops: the group was signalled with it; SIGKILL at herd's time.
        fake.populated.insert(8);
        left.attached_exited(&mut fake, 8, Some(t0 + 3 * SEC), Signal::TERM, SEC, t0);
        assert_eq!(fake.signals.len(), 2);
        // An empty group is not tracked; a tracked one is forgotten once empty.
        left.attached_exited(&mut fake, 9, None, Signal::TERM, SEC, t0);
        assert_eq!(left.len(), 2);
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
        assert_eq!(left.len(), 1, "still running");
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
        let json = serde_json::to_string(&left.export(t0 + 4 * SEC)).unwrap();
        let later = t0 + 5 * SEC;
        let mut left = Leftovers::import(serde_json::from_str(&json).unwrap(), later);
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
        assert_eq!(left.len(), 1);
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
        assert_eq!(left.len(), 1, "still waited for");
        assert!(fake.reaped.is_empty());
        left.check(&mut fake, t0 + KILL_WAIT);
        assert!(left.is_empty(), "herd stop must not wait for ever");
        assert_eq!(
            fake.reaped,
            [7],
            "the members hold the group id; the zombie can go"
        );
    }
}
