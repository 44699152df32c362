//! Attached processes: those that fetched the sockets with `herd attach`. Not children and not
//! restarted, but held by a pidfd (a reused pid is never signalled), listed in status, and
//! stopped with the workers: the stop signal, then SIGKILL once the grace period is over, and
//! herd does not exit before they are gone. A pidfd becomes readable when its process exits,
//! which wakes herd's loop ([`take_to_watch`](AttachedSet::take_to_watch) hands each new pidfd
//! to the loop once). Without pidfds (not Linux, or a kernel before 5.3) a process is known by
//! its pid and start time instead, and looked at every [`CHECK_EVERY`], and every
//! [`STOP_CHECK_EVERY`](super::grace::STOP_CHECK_EVERY) while herd stops and waits for it.
//!
//! `herd attach` makes the process lead a process group of its own, and herd stops that group as
//! it stops a worker's: the stop signal (then `SIGCONT`) and `SIGKILL` go to the whole group
//! while the process lives (it holds the group's id), and what remains of the group once it has
//! exited becomes one of [`super::leftovers`]' groups, waited for like a worker's. The group is
//! taken as the process's only if, when it registers, no other process is in it (read from
//! `/proc` by herd, not taken from the client): a process that already led a group shared with
//! others (a shell pipeline's, a script's run with `setsid`, a container's) is signalled alone.
//! What herd knows of the process ([`ExitedLeader`]: start time, session, when its exit was
//! seen) tells its group's processes from a stranger's group that got the same id.
//!
//! The policy ([`AttachedSet`]: stop signal, grace, SIGKILL, [`KILL_WAIT`]) is pure and shared
//! with Windows ([`HeldSet`]); what Unix adds is the exited leaders' groups and the pidfds to
//! watch. The system calls go through [`Processes`] and the time is given, so it is
//! unit-tested without processes.

use std::os::unix::io::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use herd_core::{Ago, Epoch};
use herd_sys::pidfd::PidFd;
use herd_sys::process::{self, Signal};

mod system;
use crate::logging::LogEvent;
pub use system::System;

/// How often attached processes held without a pidfd are checked for having exited (every
/// process is also checked at every turn of herd's loop: a `poll` of each pidfd).
pub const CHECK_EVERY: Duration = Duration::from_millis(200);
pub use super::grace::KILL_WAIT;
use super::grace::{Held, HeldSet, Stopper};

/// A process that fetched the sockets with `herd attach`.
#[derive(Clone, Debug)]
pub struct Attached {
    /// Its pid.
    pub pid: u32,
    /// Its start time (`/proc/PID/stat`), so that a reused pid is not mistaken for it.
    pub start_time: u64,
    /// When it attached.
    pub since: Instant,
    /// The sockets it took.
    pub sockets: Vec<String>,
    /// The process itself, where pidfds exist.
    pidfd: Option<Arc<PidFd>>,
    /// Whether it led its own process group, with no other process in it, when it attached
    /// (`herd attach` makes it): the group then stops with it.
    pub group: bool,
    /// Its session, read when it attached (`None` where `/proc` does not say).
    pub session: Option<u32>,
}

/// An attached process in a re-exec's state.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Saved {
    /// Its pid.
    pub pid: u32,
    /// Its start time, against pid reuse.
    pub start_time: u64,
    /// When it attached.
    pub age_ms: Ago,
    /// The sockets it took.
    pub sockets: Vec<String>,
    /// Its pidfd's number across the exec, if it has one.
    #[serde(default)]
    pub pidfd: Option<RawFd>,
    /// Whether it leads its own process group, which herd stops with it.
    #[serde(default)]
    pub group: bool,
    /// Its session (absent in an older herd's state).
    #[serde(default)]
    pub session: Option<u32>,
}

/// An attached process that led its own group and has exited: what tells its group's
/// remaining processes from those of a stranger that got the same id later (see
/// [`super::leftovers`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExitedLeader {
    /// Its pid, its group's id.
    pub pid: u32,
    /// Its start time, in clock ticks since boot.
    pub start_time: u64,
    /// Its session.
    pub session: Option<u32>,
    /// When herd saw it had exited, in clock ticks since boot: what it left started before.
    pub seen_exit: u64,
}

impl Attached {
    /// The process `pid`, which started at `start_time`, attached at `now` (`None` if it has
    /// exited since). Where the caller could not hold the process from the moment it knew its
    /// pid, another process that got the same pid and started before `start_time` was read
    /// would be taken for it: [`with_pidfd`](Attached::with_pidfd) is exact.
    pub fn new(pid: u32, start_time: u64, sockets: Vec<String>, now: Instant) -> Option<Attached> {
        let pidfd = open_checked(pid, start_time)?;
        Some(Attached {
            pid,
            start_time,
            since: now,
            sockets,
            pidfd,
            group: own_group(pid),
            session: process::session_of(pid),
        })
    }

    /// The process `pidfd` holds, whose pid is `pid`, attached at `now` (`None` if it has
    /// exited).
    pub fn with_pidfd(
        pid: u32,
        pidfd: PidFd,
        sockets: Vec<String>,
        now: Instant,
    ) -> Option<Attached> {
        let start_time = process::start_time(pid)?;
        let group = own_group(pid);
        let session = process::session_of(pid);
        // Read while the pidfd's process was alive, so its pid was still its own.
        if pidfd.has_exited() {
            return None;
        }
        Some(Attached {
            pid,
            start_time,
            since: now,
            sockets,
            pidfd: Some(Arc::new(pidfd)),
            group,
            session,
        })
    }

    /// An attached process handed over by a re-exec, with its pidfd if it had one (an older
    /// herd's state has none: it is opened anew, by pid and start time). `Err` if it has
    /// exited meanwhile: with what its group needs if it led one.
    pub fn restore(
        saved: Saved,
        pidfd: Option<OwnedFd>,
        epoch: Epoch,
    ) -> Result<Attached, Option<ExitedLeader>> {
        let exited = ExitedLeader {
            pid: saved.pid,
            start_time: saved.start_time,
            session: saved.session,
            seen_exit: boot_ticks(),
        };
        let exited = saved.group.then_some(exited);
        let pidfd = match pidfd {
            Some(fd) => Some(Arc::new(PidFd::from(fd))),
            None => open_checked(saved.pid, saved.start_time).ok_or(exited)?,
        };
        let attached = Attached {
            pid: saved.pid,
            start_time: saved.start_time,
            since: epoch.past(saved.age_ms),
            sockets: saved.sockets,
            pidfd,
            group: saved.group,
            session: saved.session,
        };
        match attached.exited() {
            true => Err(exited),
            false => Ok(attached),
        }
    }

    /// What a re-exec hands over, at `epoch`. Every field is named, so that one added later
    /// does not compile until it is handed over too.
    pub fn save(&self, epoch: Epoch) -> Saved {
        use std::os::unix::io::AsRawFd;
        let Attached {
            pid,
            start_time,
            since,
            sockets,
            pidfd,
            group,
            session,
        } = self;
        Saved {
            pid: *pid,
            start_time: *start_time,
            age_ms: epoch.ago(*since),
            sockets: sockets.clone(),
            pidfd: pidfd.as_deref().map(|fd| fd.as_fd().as_raw_fd()),
            group: *group,
            session: *session,
        }
    }

    /// Its pidfd, if it has one.
    pub fn pidfd(&self) -> Option<BorrowedFd<'_>> {
        self.pidfd.as_deref().map(AsFd::as_fd)
    }

    /// Whether it has exited.
    fn exited(&self) -> bool {
        match &self.pidfd {
            Some(pidfd) => pidfd.has_exited(),
            None => process::start_time(self.pid) != Some(self.start_time),
        }
    }
}

/// Whether `pid` leads a process group that no other process is in (from `/proc`): only then
/// is the group taken as its own, to stop with it. One that leads a group shared with others
/// (started before it attached: a pipeline's other commands, a script's background jobs) is
/// logged and signalled alone.
fn own_group(pid: u32) -> bool {
    if process::group_of(pid) != Some(pid) {
        return false;
    }
    let others = process::group_members(pid);
    if others.is_empty() {
        return true;
    }
    let pids: Vec<String> = others.iter().map(u32::to_string).collect();
    tracing::warn!(
        event = LogEvent::AttachedGroupShared.as_str(),
        pid,
        "attached process {pid} leads a process group that other processes it did not start \
         are in too (pids {}): herd will signal only the process, not its group",
        pids.join(", ")
    );
    false
}

/// The time since boot in clock ticks, the clock and unit of a process's start time, one tick
/// more (so that a process started in the same tick counts as started before); `u64::MAX`
/// where the system does not say.
pub fn boot_ticks() -> u64 {
    process::boot_ticks().map_or(u64::MAX, |t| t.saturating_add(1))
}

/// The system calls the policy needs.
pub trait Processes {
    /// Whether `attached` has exited.
    fn exited(&mut self, attached: &Attached) -> bool;
    /// The time since boot in clock ticks (see [`boot_ticks`]).
    fn now_ticks(&mut self) -> u64;
    /// Sends `signal` to `attached`, and to its group if it leads one; a stop signal is
    /// followed by `SIGCONT`, so that a paused process can act on it.
    fn signal(&mut self, attached: &Attached, signal: Signal) -> std::io::Result<()>;
}

/// A pidfd for `pid`, if it still is the process that started at `start_time`: `Some(None)`
/// where pidfds do not exist, `None` if the process has exited.
fn open_checked(pid: u32, start_time: u64) -> Option<Option<Arc<PidFd>>> {
    let pidfd = PidFd::open(pid).ok();
    // Checked after opening: the pidfd holds the process whose start time this is.
    if process::start_time(pid) != Some(start_time) {
        return None;
    }
    Some(pidfd.map(Arc::new))
}

impl Held for Attached {
    fn pid(&self) -> u32 {
        self.pid
    }

    fn watched(&self) -> bool {
        self.pidfd.is_some()
    }
}

impl<P: Processes> Stopper<Attached> for P {
    fn exited(&mut self, attached: &Attached) -> bool {
        Processes::exited(self, attached)
    }

    fn signal(&mut self, attached: &Attached, signal: Signal) -> std::io::Result<()> {
        Processes::signal(self, attached, signal)
    }
}

/// The attached processes.
#[derive(Default)]
pub struct AttachedSet {
    held: HeldSet<Attached>,
    exited_leaders: Vec<ExitedLeader>,
    /// The pidfds of processes added since the last [`take_to_watch`](AttachedSet::take_to_watch).
    to_watch: Vec<Arc<PidFd>>,
}

impl AttachedSet {
    /// Adds `attached`, replacing an entry of the same pid.
    pub fn add(&mut self, attached: Attached) {
        self.to_watch.extend(attached.pidfd.clone());
        self.held.add(attached);
    }

    /// Adds a process a re-exec handed over, or, if it has exited since and led its own
    /// group, hands that group on to [`take_exited_leaders`](AttachedSet::take_exited_leaders).
    pub fn restore(&mut self, restored: Result<Attached, Option<ExitedLeader>>) {
        match restored {
            Ok(a) => self.add(a),
            Err(Some(leader)) => {
                tracing::info!(
                    event = LogEvent::AttachedWorkerExited.as_str(),
                    pid = leader.pid,
                    "attached worker exited"
                );
                self.exited_leaders.push(leader);
            }
            Err(None) => {}
        }
    }

    /// The pidfds of the processes added since the last call, each once: the loop waits for
    /// them to become readable (their process exited).
    pub fn take_to_watch(&mut self) -> Vec<Arc<PidFd>> {
        std::mem::take(&mut self.to_watch)
    }

    /// Whether some are held without a pidfd: only regular looks see them exit.
    pub fn any_unwatchable(&self) -> bool {
        self.held.any_unwatchable()
    }

    /// What a re-exec hands over, at `epoch`: every process, in order (the pidfds too are
    /// handed over in that order). A re-exec waits while herd stops.
    pub fn save(&self, epoch: Epoch) -> Vec<Saved> {
        let AttachedSet {
            held,
            // Empty between turns: each turn hands them to the leftovers.
            exited_leaders: _,
            // The new image watches every pidfd it restores.
            to_watch: _,
        } = self;
        held.as_slice().iter().map(|a| a.save(epoch)).collect()
    }

    /// The processes.
    pub fn as_slice(&self) -> &[Attached] {
        self.held.as_slice()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Forgets those that have exited (those that led their own process group are kept for
    /// [`take_exited_leaders`](AttachedSet::take_exited_leaders)).
    pub fn remove_exited(&mut self, processes: &mut impl Processes) {
        let gone = self.held.remove_exited(processes);
        self.keep_leaders(gone, processes);
    }

    /// Keeps those of `gone` that led their own process group, for their groups' sake.
    fn keep_leaders(&mut self, gone: Vec<Attached>, processes: &mut impl Processes) {
        let mut now = None;
        for a in gone.into_iter().filter(|a| a.group) {
            let seen_exit = *now.get_or_insert_with(|| processes.now_ticks());
            self.exited_leaders.push(ExitedLeader {
                pid: a.pid,
                start_time: a.start_time,
                session: a.session,
                seen_exit,
            });
        }
    }

    /// The exited processes that led their own process group, since the last call: what
    /// remains in their groups is for [`super::leftovers`].
    pub fn take_exited_leaders(&mut self) -> Vec<ExitedLeader> {
        std::mem::take(&mut self.exited_leaders)
    }

    /// While herd stops: when what remains of an attached process's group gets `SIGKILL`
    /// (`None` if herd is not stopping).
    pub fn kill_at(&self) -> Option<Instant> {
        self.held.stopping().kill_at()
    }

    /// Stops them as herd stops: `signal`, then SIGKILL after `grace` (SIGKILL at once, or a
    /// second stop that is not graceful, kills those left).
    pub fn stop(
        &mut self,
        processes: &mut impl Processes,
        signal: Signal,
        grace: Duration,
        now: Instant,
    ) {
        let gone = self.held.stop(processes, signal, grace, now);
        self.keep_leaders(gone, processes);
    }

    /// While herd stops and some are left: when to look at them next (and kill those left
    /// once their grace period is over).
    pub fn deadline(&self, now: Instant) -> Option<Instant> {
        self.held.deadline(now)
    }

    /// While herd stops: forgets those that have exited, and kills those left once their
    /// grace period is over.
    pub fn due(&mut self, processes: &mut impl Processes, now: Instant) {
        let gone = self.held.due(processes, now);
        self.keep_leaders(gone, processes);
    }
}

#[cfg(test)]
mod tests;
