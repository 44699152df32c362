//! Orphans: processes a worker started and left behind (a daemon that double-forked or called
//! `setsid`), which the kernel re-parents to herd, a child subreaper. herd finds them among its
//! children, reaps those that exit, lists the living ones in `herd status`, and when it stops,
//! stops them with the workers: the stop signal, `SIGKILL` once the grace period is over, and
//! gives up on one still there [`KILL_WAIT`] after (stuck in the kernel), so that `herd stop`
//! always ends.
//!
//! One born while its worker warmed up at `--starting-nice` inherited the starting priority,
//! which the worker's raise does not reach once it left the worker's tree: herd gives it its
//! priority once no worker warms up lowered any more (so its start-up, too, leaves the CPU
//! to the serving workers), at most [`RAISE_WAIT`] after it was found. Only one born during
//! a lowered warm-up ([`LoweredSpan`]), and not in the group of another live worker (a
//! serving worker's daemon that kept its group), can have been born so: the others keep the
//! priority they chose.
//!
//! An orphan is a child of herd that is none of its own: not a worker, a re-exec check or an
//! exited leader herd holds unreaped on purpose ([`leftovers`](super::leftovers)), and not in
//! herd's own process group (those are [`reap`](super::reap)'s). Each is reaped by its pid,
//! never with `waitpid(-1)`. Being herd's child, an orphan's pid cannot name another process
//! until herd reaps it, so signalling it by pid is safe. Nothing is remembered across a
//! re-exec: the new image finds them again.
//!
//! Lines about orphans are limited ([`lines`]): a worker that leaves a daemon behind at every
//! request must not flood herd's log.
//!
//! The policy is pure; the system calls go through [`Family`], so it is unit-tested without
//! processes.

use std::collections::{BTreeMap, HashSet};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use herd_sys::process::{Child, Signal};

use super::grace::{Stopping, KILL_WAIT};
use super::platform::describe_exit;
use super::warm_up::LoweredSpan;
use crate::logging::LogEvent;

mod lines;
use lines::{name_a_few, Held, Kind, Lines};

/// How often herd looks for new orphans (an orphan's exit wakes it at once: it is a child).
pub const SCAN_EVERY: Duration = Duration::from_secs(1);
/// How often, while herd stops and orphans remain, they are looked at.
pub const STOP_CHECK_EVERY: Duration = Duration::from_millis(50);
/// The longest an orphan found while workers warm up lowered waits for them to end before it
/// gets herd's priority: a worker's own warm-up lasts at most this long.
pub const RAISE_WAIT: Duration = crate::supervisor::warm_up::MAX_WARM_UP;
/// How far a process's birth, as `/proc` tells it (in clock ticks), may be off.
const BIRTH_SLACK: Duration = Duration::from_millis(20);
/// How many times one look lists the children again after reaping some (whose own children
/// were re-parented to herd as they exited).
const ROUNDS: usize = 8;

/// What orphans need of the system.
pub trait Family {
    /// The pids of herd's children, exited or not.
    fn children(&mut self) -> Vec<u32>;
    /// Child `pid`'s group and name; `None` if it is gone.
    fn describe(&mut self, pid: u32) -> Option<Child>;
    /// herd's own process group.
    fn own_group(&mut self) -> u32;
    /// Reaps child `pid` if it has exited; `None` while it runs (or cannot be waited for).
    fn reap(&mut self, pid: u32) -> Option<ExitStatus>;
    /// Sends `signal` to `pid` (and `SIGCONT` after a stop signal, so a paused one can act).
    fn signal(&mut self, pid: u32, signal: Signal);
    /// The names of herd's sockets that `pid` holds.
    fn sockets_held(&mut self, pid: u32) -> Vec<String>;
    /// `--starting-nice`: gives `pid` and the processes it started herd's priority back where
    /// they still run at the starting one (a worker's start-up lowered them before they left
    /// its tree); how many threads it raised (none if it is gone).
    fn restore_priority(&mut self, pid: u32) -> std::io::Result<usize>;
    /// When `pid` was born, on the clock of `Instant`; `None` if it is gone or the system
    /// does not say.
    fn born_at(&mut self, pid: u32) -> Option<Instant>;
}

/// A living orphan.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Orphan {
    /// Its command name, as of the last look.
    name: String,
    /// When herd found it.
    since: Instant,
}

/// The orphans herd holds, and where they are in herd's stop.
#[derive(Debug, Default)]
pub struct Orphans {
    known: BTreeMap<u32, Orphan>,
    /// Those born during a lowered warm-up, to be given herd's priority once no worker warms
    /// up lowered (at most [`RAISE_WAIT`] after they were found).
    to_raise: BTreeMap<u32, Instant>,
    /// Those that survived `SIGKILL`, which herd no longer waits for (but reaps).
    given_up: HashSet<u32>,
    /// The signal herd stops them with, once it stops.
    signal: Option<Signal>,
    stopping: Stopping,
    /// New ones are not adopted yet (see [`hold_adoptions`](Self::hold_adoptions)).
    adoptions_held: bool,
    /// How many lines about orphans coming and going were written, and held back.
    lines: Lines,
    /// herd re-executed: the next look finds again the orphans the old image knew, counted in
    /// one line (`Some(count)` during that look), not announced as new.
    refinding: Option<usize>,
}

impl Orphans {
    /// Whether looks adopt no new orphan for now (`--fork-server`: while a start awaits its
    /// fork server's reply, the worker it forked is herd's child before herd knows its pid);
    /// they still reap those that exited. A later look adopts them.
    pub fn hold_adoptions(&mut self, held: bool) {
        self.adoptions_held = held;
    }

    /// herd runs on after a re-exec: the orphans the next look finds are the old image's, said
    /// in one line (those holding herd's sockets still one each).
    pub fn after_reexec(&mut self) {
        self.refinding = Some(0);
    }

    /// Looks at herd's children: orphans that exited are reaped, new ones adopted (and, while
    /// herd stops, stopped at once); `not_orphans` are herd's own children (workers, re-exec
    /// checks, held leaders). New ones born during a warm-up of `lowered` get herd's priority
    /// once no worker warms up lowered. While herd stops, those left are killed once the grace
    /// period is over, and given up [`KILL_WAIT`] after.
    pub fn look(
        &mut self,
        family: &mut impl Family,
        not_orphans: &HashSet<u32>,
        lowered: &[LoweredSpan],
        now: Instant,
    ) {
        let own_group = family.own_group();
        for _ in 0..ROUNDS {
            let mut reaped = false;
            let mut present = HashSet::new();
            let pids = family.children().into_iter();
            let others = pids.filter(|pid| !not_orphans.contains(pid));
            let children: Vec<Child> = others.filter_map(|pid| family.describe(pid)).collect();
            for child in children.into_iter().filter(|c| c.group != own_group) {
                match family.reap(child.pid) {
                    Some(status) => {
                        reaped = true;
                        self.exited(child, status, now);
                    }
                    None if self.given_up.contains(&child.pid) => {
                        present.insert(child.pid);
                    }
                    None => {
                        present.insert(child.pid);
                        match self.known.get_mut(&child.pid) {
                            // It may have exec'd another program since.
                            Some(known) => known.name = child.name,
                            None if self.adoptions_held => {}
                            None => {
                                if born_lowered(family, &child, lowered, not_orphans) {
                                    self.to_raise.insert(child.pid, now);
                                }
                                self.adopt(family, child, now);
                            }
                        }
                    }
                }
            }
            self.known.retain(|pid, _| present.contains(pid));
            self.given_up.retain(|pid| present.contains(pid));
            self.to_raise.retain(|pid, _| present.contains(pid));
            if !reaped {
                break;
            }
        }
        // The first look that adopts ends the finding (while adoptions are held, none did).
        let found = match self.adoptions_held {
            true => None,
            false => self.refinding.take().filter(|&n| n > 0),
        };
        if let Some(found) = found {
            tracing::info!(
                event = LogEvent::OrphanAdopted.as_str(),
                found,
                "found after the re-exec: {found} orphans the old image had left (`herd status \
                 --json` lists them); herd reaps them and stops them when it stops"
            );
        }
        let warming = lowered.iter().any(|span| span.until.is_none());
        self.raise_due(family, warming, now);
        self.enforce(family, now);
        // Once herd is done with its orphans (it stops and none is left), what is held back is
        // said now: herd may exit before the window ends.
        let held = match self.stopping != Stopping::No && self.known.is_empty() {
            true => self.lines.take(),
            false => self.lines.end_window(now),
        };
        self.say_held(held);
    }

    /// Whether a line of `kind` may be written at `now`, after saying what the window before
    /// held back.
    fn line(&mut self, kind: Kind, now: Instant) -> bool {
        let (allowed, held) = self.lines.allow(kind, now);
        self.say_held(held);
        allowed
    }

    /// herd re-executes: what is held back is said now (the new image finds the orphans again).
    pub fn before_reexec(&mut self) {
        let held = self.lines.take();
        self.say_held(held);
    }

    /// One line for the lines about orphans held back (if any): a warning if it held back
    /// adoptions (each one is), else information.
    fn say_held(&self, held: Option<Held>) {
        let Some(held) = held else { return };
        let text = format!(
            "{} more lines about orphans held back (at most {} every {}s): {} adopted, {} exited, \
             {} given herd's priority; `herd status --json` lists the living",
            held.total(),
            lines::BURST,
            lines::WINDOW.as_secs(),
            held.adopted,
            held.exited,
            held.raised,
        );
        let (event, adopted, exited, raised) = (
            LogEvent::OrphanLinesHeld.as_str(),
            held.adopted,
            held.exited,
            held.raised,
        );
        match adopted {
            0 => tracing::info!(event, adopted, exited, raised, "{text}"),
            _ => tracing::warn!(event, adopted, exited, raised, "{text}"),
        }
    }

    /// Orphans found while workers warmed up lowered get herd's priority: all once none warms
    /// up lowered (`warming` false), else those found [`RAISE_WAIT`] ago.
    fn raise_due(&mut self, family: &mut impl Family, warming: bool, now: Instant) {
        let due: Vec<u32> = self
            .to_raise
            .iter()
            .filter(|&(_, &found)| !warming || now.saturating_duration_since(found) >= RAISE_WAIT)
            .map(|(&pid, _)| pid)
            .collect();
        for pid in due {
            self.to_raise.remove(&pid);
            let Some(name) = self.known.get(&pid).map(|o| o.name.clone()) else {
                continue;
            };
            match family.restore_priority(pid) {
                Ok(0) => {}
                Ok(threads) if self.line(Kind::Raised, now) => said_raised(pid, &name, threads),
                Ok(_) => {}
                Err(e) => tracing::warn!(
                    event = LogEvent::PriorityNotRestored.as_str(),
                    pid,
                    "cannot give orphan {pid} ({name}) herd's priority back from \
                     --starting-nice's starting priority: {e}"
                ),
            }
        }
    }

    /// herd stops: each orphan gets `signal` (`SIGKILL`: at once), then `SIGKILL` after
    /// `grace`.
    pub fn stop(
        &mut self,
        family: &mut impl Family,
        signal: Signal,
        grace: Duration,
        now: Instant,
    ) {
        if !self.stopping.begin(signal == Signal::KILL, grace, now) {
            return;
        }
        self.signal = Some(signal);
        let held = self.lines.take();
        self.say_held(held);
        let event = LogEvent::OrphanSignalled.as_str();
        let more = name_a_few(
            &self.known,
            |(pid, orphan)| {
                let (pid, name) = (**pid, &orphan.name);
                tracing::info!(event, pid, "sending {signal} to orphan {pid} ({name})")
            },
            |(&pid, _)| family.signal(pid, signal),
        );
        if more > 0 {
            tracing::info!(
                event,
                more,
                "sending {signal} to {more} more orphans (`herd status --json` lists them)"
            );
        }
    }

    /// Whether none keeps herd from exiting: none is left, or herd gave up on those left.
    pub fn finished(&self) -> bool {
        self.known.is_empty()
    }

    /// Whether herd is stopping and waits for some: they are looked at every
    /// [`STOP_CHECK_EVERY`].
    pub fn waited_for(&self) -> bool {
        self.stopping != Stopping::No && !self.known.is_empty()
    }

    /// The living orphans, for `herd status`.
    pub fn status(&self, now: Instant) -> Vec<super::status::OrphanStatus> {
        let status = |(&pid, o): (&u32, &Orphan)| super::status::OrphanStatus {
            pid,
            name: o.name.clone(),
            known_ms: super::status::ms(now.saturating_duration_since(o.since)),
        };
        self.known.iter().map(status).collect()
    }

    /// Orphan `child` exited with `status` and was reaped.
    fn exited(&mut self, child: Child, status: ExitStatus, now: Instant) {
        self.known.remove(&child.pid);
        if !self.line(Kind::Exited, now) {
            return;
        }
        tracing::info!(
            event = LogEvent::OrphanExited.as_str(),
            pid = child.pid,
            "orphan {} ({}) exited: {}",
            child.pid,
            child.name,
            describe_exit(status)
        );
    }

    /// `child` is a new orphan; while herd stops it is stopped at once.
    fn adopt(&mut self, family: &mut impl Family, child: Child, now: Instant) {
        let Child { pid, name, .. } = child;
        let held = family.sockets_held(pid);
        // One that holds a socket may take clients from the workers, with the code it started
        // with: after an upgrade, the old code goes on serving some of them.
        let serves = match held.as_slice() {
            [] => String::new(),
            sockets => format!(
                "; it holds socket {} (a leaked fd, or a server that takes clients from the \
                 workers with the code it started with, even after an upgrade): stop it \
                 (kill {pid}) unless it should run; a server that daemonizes (forks into the \
                 background) must stay in the foreground under herd, as under systemd \
                 (nginx -g 'daemon off;', php-fpm -F, no --daemon)",
                sockets.join(", ")
            ),
        };
        // One that holds herd's sockets is always said: `herd status` does not name them.
        let refound = match (&mut self.refinding, held.is_empty()) {
            (Some(found), true) => {
                *found += 1;
                true
            }
            _ => false,
        };
        if !refound && (!held.is_empty() || self.line(Kind::Adopted, now)) {
            tracing::warn!(
                event = LogEvent::OrphanAdopted.as_str(),
                pid,
                sockets = %held.join(","),
                "process {pid} ({name}) was left behind by a worker; herd reaps it and stops it \
                 when it stops{serves}"
            );
        }
        if let Some(signal) = self.signal {
            let signal = match self.stopping {
                Stopping::Until(_) => signal,
                _ => Signal::KILL,
            };
            family.signal(pid, signal);
        }
        self.known.insert(pid, Orphan { name, since: now });
    }

    /// While herd stops: kills those left once the grace period is over, and gives up on
    /// those still there [`KILL_WAIT`] after.
    fn enforce(&mut self, family: &mut impl Family, now: Instant) {
        let (wait, kill) = (KILL_WAIT.as_secs(), Signal::KILL);
        if self.stopping.give_up(now) {
            let event = LogEvent::OrphanStuck.as_str();
            let given_up = &mut self.given_up;
            let more = name_a_few(
                std::mem::take(&mut self.known),
                |(pid, orphan)| {
                    let (pid, name) = (*pid, &orphan.name);
                    tracing::error!(
                        event,
                        pid,
                        "orphan {pid} ({name}) still there {wait}s after {kill}; herd stops \
                         without it"
                    )
                },
                |(pid, _)| {
                    given_up.insert(pid);
                },
            );
            if more > 0 {
                tracing::error!(
                    event,
                    more,
                    "{more} more orphans still there {wait}s after {kill}; herd stops without them"
                );
            }
        }
        if self.stopping.kill_due(now) {
            self.stopping.begin(true, Duration::ZERO, now);
            self.signal = Some(kill);
            let event = LogEvent::OrphanKilled.as_str();
            let more = name_a_few(
                &self.known,
                |(pid, orphan)| {
                    let (pid, name) = (**pid, &orphan.name);
                    tracing::warn!(
                        event,
                        pid,
                        "killing orphan {pid} ({name}): it did not stop within the grace period"
                    )
                },
                |(&pid, _)| family.signal(pid, kill),
            );
            if more > 0 {
                tracing::warn!(
                    event,
                    more,
                    "killing {more} more orphans: they did not stop within the grace period"
                );
            }
        }
    }
}

/// `--starting-nice`: whether orphan `child` may have inherited the starting priority: born
/// during a warm-up of `lowered`, and not in the group of another of herd's own children (a
/// live worker, which leads its group, a fork server, a held leader: `not_orphans`).
fn born_lowered(
    family: &mut impl Family,
    child: &Child,
    lowered: &[LoweredSpan],
    not_orphans: &HashSet<u32>,
) -> bool {
    if lowered.is_empty() {
        return false;
    }
    let Some(born) = family.born_at(child.pid) else {
        return false;
    };
    lowered.iter().any(|span| {
        span.covers(born, BIRTH_SLACK)
            && (child.group == span.pid || !not_orphans.contains(&child.group))
    })
}

/// `--starting-nice`: orphan `pid` (`name`), which may have been born while its worker was
/// lowered, was given herd's priority where it still ran at the starting one (`threads`).
fn said_raised(pid: u32, name: &str, threads: usize) {
    tracing::info!(
        event = LogEvent::OrphanRaised.as_str(),
        pid,
        threads,
        "orphan {pid} ({name}), born while a worker warmed up at --starting-nice, still ran at \
         the starting priority (inherited, or chosen: herd cannot tell): it gets herd's priority"
    );
}

#[cfg(test)]
mod tests;
