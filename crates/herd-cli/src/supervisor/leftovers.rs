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

use super::attached::ExitedLeader;
use super::pool::WorkerState;
use crate::logging::LogEvent;

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
    /// What `/proc/PID/stat` says of `pid`, zombie or not (`None` if there is no such
    /// process).
    fn stat(&mut self, pid: u32) -> Option<Stat>;
    /// The time since boot in clock ticks, the unit of [`Stat::start_time`].
    fn now_ticks(&mut self) -> u64;
    /// Reaps the leader; `false` if it has not exited (yet).
    fn reap(&mut self, pgid: u32) -> bool;
}

/// A process as `/proc/PID/stat` shows it: what tells an attached process's leftovers from a
/// stranger's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    /// Its session (field 6).
    pub session: u32,
    /// Its start time in clock ticks since boot (field 22).
    pub start_time: u64,
}

/// Whether the process `pid` (the exited `leader`'s pid), which is there, is a stranger that got
/// the pid since: the group's id is then no longer the leader's (the kernel does not reuse a
/// pid while a group of that id has members, so the group emptied).
fn stranger_leads(leader: &ExitedLeader, there: Option<Stat>) -> bool {
    matches!(there, Some(s) if s.start_time != leader.start_time)
}

/// Whether `member`, in the exited `leader`'s group, is one of its leftovers: in its session,
/// started after it and before herd saw it exit. A process of a stranger's group that got the
/// same id is not, having started after the group emptied (or in another session).
fn left_by(leader: &ExitedLeader, member: Option<Stat>) -> bool {
    match member {
        Some(m) => {
            leader.session.is_none_or(|s| s == m.session)
                && m.start_time >= leader.start_time
                && m.start_time <= leader.seen_exit
        }
        None => false,
    }
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
        // The group alone, never a process that got its leader's pid (an attached leader is
        // not held by herd). A stop signal is followed by SIGCONT, so that a paused process can
        // act on it.
        let sent = process::send_stop(signal, |signal| process::signal_group_only(pgid, signal));
        // An empty group (ESRCH) has nothing left to stop: the next look forgets it.
        if let Err(e) = sent.or_else(|e| match e.raw_os_error() {
            Some(libc::ESRCH) => Ok(()),
            _ => Err(e),
        }) {
            tracing::warn!(
                event = LogEvent::SignalFailed.as_str(),
                pgid,
                "cannot send {signal} to what process {pgid} left: {e}"
            );
        }
    }

    fn stat(&mut self, pid: u32) -> Option<Stat> {
        let (session, start_time) = process::session_and_start_time(pid)?;
        Some(Stat {
            session,
            start_time,
        })
    }

    fn now_ticks(&mut self) -> u64 {
        super::attached::boot_ticks()
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
    /// An attached process's group: what tells its processes from a stranger's (absent in
    /// an older herd's state). Its `seen_exit` moves on to each look that found them there.
    #[serde(default)]
    leader: Option<ExitedLeader>,
    /// The processes (pid, start time) the last look found in an attached process's group.
    #[serde(default)]
    known: Vec<(u32, u64)>,
}

impl Group {
    /// The processes that remain in the group; `None` if its id is now a stranger's. An
    /// attached process's group is not held by a zombie, so its members are checked: the
    /// group is still the leader's if one of the processes seen in it at the last look is
    /// still there (they held its id meanwhile), or if every process in it is one the leader
    /// left (see [`left_by`]); else it emptied and its id went to a stranger.
    fn members(&mut self, groups: &mut impl Groups) -> Option<Vec<u32>> {
        let members = groups.members(self.pgid);
        let Some(leader) = &mut self.leader else {
            return Some(members);
        };
        if stranger_leads(leader, groups.stat(self.pgid)) {
            return None;
        }
        let now = groups.now_ticks();
        // Those gone since the scan are left out.
        let there: Vec<(u32, Stat)> = members
            .iter()
            .filter_map(|&p| Some((p, groups.stat(p)?)))
            .collect();
        let held = there
            .iter()
            .any(|&(p, s)| self.known.contains(&(p, s.start_time)));
        if !held && !there.iter().all(|&(_, s)| left_by(leader, Some(s))) {
            return None;
        }
        self.known = there.iter().map(|&(p, s)| (p, s.start_time)).collect();
        if !there.is_empty() {
            leader.seen_exit = leader.seen_exit.max(now);
        }
        Some(there.into_iter().map(|(p, _)| p).collect())
    }

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
            event = LogEvent::LeftoversStopping.as_str(),
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
            leader: None,
            known: Vec::new(),
        });
        true
    }

    /// Attached process `leader`, which led its own process group, has exited. If processes
    /// it left remain in its group, they get `stop_signal` and `SIGKILL` after `grace`; or,
    /// when herd already sent the group its stop (`stopping`: the time of its `SIGKILL`),
    /// `SIGKILL` then.
    ///
    /// herd is not its parent and cannot hold its pid: the group's id stays in use only while
    /// the group has members, and once it is empty a stranger may get the pid and lead a group
    /// of that id. So the group counts as the leader's only while no stranger has its pid and
    /// its members are the leader's: in its session, started after it and before herd saw it
    /// exit (see [`left_by`]). herd looks at it every [`CHECK_EVERY`] and forgets it once
    /// empty.
    pub fn attached_exited(
        &mut self,
        groups: &mut impl Groups,
        leader: ExitedLeader,
        stopping: Option<Instant>,
        stop_signal: Signal,
        grace: Duration,
        now: Instant,
    ) {
        let pid = leader.pid;
        groups.refresh();
        let mut group = Group {
            pgid: pid,
            slot: 0,
            whose: Whose::Attached,
            deadline: now,
            deadline_in_ms: 0,
            leader: Some(leader),
            known: Vec::new(),
        };
        if group.members(groups).is_none_or(|m| m.is_empty()) {
            return;
        }
        let deadline = match stopping {
            Some(deadline) => deadline,
            None => {
                groups.signal(pid, stop_signal);
                now.checked_add(grace).unwrap_or(now)
            }
        };
        group.deadline = deadline;
        tracing::warn!(
            event = LogEvent::LeftoversStopping.as_str(),
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
        self.groups.retain_mut(|g| {
            let Some(members) = g.members(groups) else {
                tracing::info!(
                    event = LogEvent::LeftoversGone.as_str(),
                    pid = g.pgid,
                    "the processes {} left are gone (its group's id is another process's now)",
                    g.leader()
                );
                return false;
            };
            if members.is_empty() {
                if groups.reap(g.pgid) {
                    tracing::info!(
                        event = LogEvent::LeftoversGone.as_str(),
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
                    event = LogEvent::LeftoversStuck.as_str(),
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
                    event = LogEvent::LeftoversKilled.as_str(),
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
            leader: None,
            known: Vec::new(),
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
            leader: None,
            known: Vec::new(),
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
}
