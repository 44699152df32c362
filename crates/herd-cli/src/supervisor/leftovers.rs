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

use std::time::{Duration, Instant};

use herd_core::{Ahead, Epoch};
use herd_sys::process::Signal;

use super::attached::ExitedLeader;
use super::pool::WorkerState;
use crate::logging::LogEvent;

mod members;
mod system;
pub use members::may_have_members;
pub use system::System;

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
#[derive(Clone, Debug, PartialEq, Eq)]
struct Group {
    /// The group's id: the exited leader's pid.
    pgid: u32,
    /// The worker's slot, for the log.
    slot: usize,
    /// Whose group it is.
    whose: Whose,
    /// When what remains gets `SIGKILL`.
    deadline: Instant,
    /// An attached process's group: what tells its processes from a stranger's. Its
    /// `seen_exit` moves on to each look that found them there.
    leader: Option<ExitedLeader>,
    /// The processes (pid, start time) the last look found in an attached process's group.
    known: Vec<(u32, u64)>,
}

/// A [`Group`] in a re-exec's state: its deadline relative to the moment of export.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct SavedGroup {
    pgid: u32,
    slot: usize,
    #[serde(default)]
    whose: Whose,
    /// The deadline.
    #[serde(default)]
    deadline_in_ms: Ahead,
    /// Absent in an older herd's state.
    #[serde(default)]
    leader: Option<ExitedLeader>,
    #[serde(default)]
    known: Vec<(u32, u64)>,
}

impl Group {
    /// The group `pgid` of `whose` (a worker's `slot`), whose remains get `SIGKILL` at
    /// `deadline`.
    fn new(pgid: u32, slot: usize, whose: Whose, deadline: Instant) -> Group {
        Group {
            pgid,
            slot,
            whose,
            deadline,
            leader: None,
            known: Vec::new(),
        }
    }

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

    /// The worker's slot, for the log's `slot` field (an attached process has none).
    fn worker_slot(&self) -> Option<u64> {
        (self.whose == Whose::Worker).then_some(self.slot as u64)
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
pub struct Saved(Vec<SavedGroup>);

impl Leftovers {
    /// Whether no group is being waited for.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
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
        self.groups
            .push(Group::new(pid, slot, Whose::Worker, deadline));
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
                if !groups.reap(g.pgid) {
                    return true;
                }
                // Every re-exec check's group is looked at once it exits; it is news only
                // when the check left something, which was killed (`leftovers_killed`).
                if g.whose == Whose::Check {
                    tracing::debug!(pid = g.pgid, "the re-exec check's group is empty");
                } else {
                    tracing::info!(
                        event = LogEvent::LeftoversGone.as_str(),
                        slot = g.worker_slot(),
                        pid = g.pgid,
                        "the processes {} left are gone",
                        g.leader()
                    );
                }
                return false;
            }
            if now.saturating_duration_since(g.deadline) >= KILL_WAIT {
                let pids: Vec<String> = members.iter().map(u32::to_string).collect();
                tracing::error!(
                    event = LogEvent::LeftoversStuck.as_str(),
                    slot = g.worker_slot(),
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
                    slot = g.worker_slot(),
                    pid = g.pgid,
                    "killing the processes {} left: they did not stop in time",
                    g.leader()
                );
                groups.signal(g.pgid, Signal::KILL);
            }
            true
        });
    }

    /// The groups' ids: the exited leaders' pids, which herd holds unreaped.
    pub fn leaders(&self) -> impl Iterator<Item = u32> + '_ {
        self.groups.iter().map(|g| g.pgid)
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
        self.groups.push(Group::new(pid, slot, Whose::Worker, now));
    }

    /// Tracks the re-exec check child `pid`, which leads its own process group and has exited
    /// (not yet reaped): whatever it left in its group is killed at once, and the leader is
    /// reaped once the group is empty.
    pub fn check_exited(&mut self, pid: u32, now: Instant) {
        self.groups.push(Group::new(pid, 0, Whose::Check, now));
    }

    /// The state to hand to a re-exec, at `epoch`.
    pub fn export(&self, epoch: Epoch) -> Saved {
        let Leftovers { groups } = self;
        Saved(groups.iter().map(|g| g.save(epoch)).collect())
    }

    /// Continues from a re-exec's state, at `epoch`.
    pub fn import(saved: Saved, epoch: Epoch) -> Leftovers {
        Leftovers {
            groups: saved
                .0
                .into_iter()
                .map(|g| Group {
                    pgid: g.pgid,
                    slot: g.slot,
                    whose: g.whose,
                    deadline: epoch.future(g.deadline_in_ms),
                    leader: g.leader,
                    known: g.known,
                })
                .collect(),
        }
    }
}

impl Group {
    /// The group in a re-exec's state. Every field is named, so that one added later does
    /// not compile until it is handed over too.
    fn save(&self, epoch: Epoch) -> SavedGroup {
        let Group {
            pgid,
            slot,
            whose,
            deadline,
            leader,
            known,
        } = self;
        SavedGroup {
            pgid: *pgid,
            slot: *slot,
            whose: *whose,
            deadline_in_ms: epoch.ahead(*deadline),
            leader: *leader,
            known: known.clone(),
        }
    }
}

/// `d` rounded down to milliseconds, for messages.
fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

#[cfg(test)]
mod tests;
