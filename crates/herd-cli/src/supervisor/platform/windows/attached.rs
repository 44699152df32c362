//! Attached processes on Windows: those that fetched the sockets with `herd attach` (the
//! `herd attach` process itself, which stays COMMAND's parent and ends when it ends). Not
//! children and not restarted, but listed in status and stopped with the workers, by the
//! same policy as on Unix ([`Stopping`]).
//!
//! Each is known by the pid the control pipe reports (`GetNamedPipeClientProcessId`, never a
//! pid it claims) and held by a process handle opened while it is still connected, so a
//! reused pid is never mistaken for it. Its exit wakes herd's loop as a worker's does (a
//! thread waits on the handle). Its stop request is an event of its own, which herd copies
//! into it when it attaches (the `stop_event` of the `sockets` answer): `herd attach` hands it
//! to COMMAND as a worker's (`HERD_STOP_EVENT`, which `herd::stop_requested` waits on). herd
//! sends it no Ctrl-C: it cannot know whether the process leads a process group, and Ctrl-C to
//! a pid that does not would reach every process on herd's console. Once `--grace` is over,
//! `TerminateProcess` ends it, and COMMAND with it (`herd attach` holds COMMAND in a Job
//! Object that kills it on close).

use std::io;
use std::os::windows::io::AsHandle;
use std::time::{Duration, Instant};

use herd_sys::windows::event::Event;
use herd_sys::windows::handle;
use herd_sys::windows::process::{self, Process};

use super::Signal;
use crate::logging::LogEvent;
use crate::supervisor::grace::{Stopping, KILL_WAIT};

/// A process that fetched the sockets with `herd attach`.
#[derive(Debug)]
pub struct Attached {
    /// Its pid.
    pub pid: u32,
    /// When it attached.
    pub since: Instant,
    /// The sockets it took.
    pub sockets: Vec<String>,
    process: Process,
    /// Its stop request, which it holds a copy of.
    stop: Event,
}

impl Attached {
    /// Holds `pid` (connected to the control pipe now, so the pid is its own), attached at
    /// `now` with `sockets`, gives it a copy of its stop event and watches for its exit; with
    /// the copy's handle value in the process.
    pub fn open(pid: u32, sockets: Vec<String>, now: Instant) -> io::Result<(Attached, u64)> {
        let process = Process::open(pid)?;
        let stop = Event::new()?;
        let stop_in_process = handle::duplicate_into(stop.as_handle(), &process)?;
        super::children::watch(pid, process.as_handle().try_clone_to_owned()?)?;
        let attached = Attached {
            pid,
            since: now,
            sockets,
            process,
            stop,
        };
        Ok((attached, stop_in_process))
    }
}

/// The system calls the policy needs.
pub trait Processes {
    /// Whether `attached` has exited.
    fn exited(&mut self, attached: &Attached) -> bool;
    /// Asks `attached` to stop (its stop event) or ends it (`TerminateProcess`).
    fn signal(&mut self, attached: &Attached, signal: Signal) -> io::Result<()>;
}

/// The real system: the process handle and the stop event.
pub struct System;

impl Processes for System {
    fn exited(&mut self, attached: &Attached) -> bool {
        // A handle that cannot be read any more is of no use: the process is taken as gone.
        !matches!(process::exit_code(&attached.process), Ok(None))
    }

    fn signal(&mut self, attached: &Attached, signal: Signal) -> io::Result<()> {
        match signal {
            Signal::Stop => attached.stop.set(),
            Signal::Kill => process::terminate(&attached.process, 1),
        }
    }
}

/// The attached processes.
#[derive(Debug, Default)]
pub struct AttachedSet {
    list: Vec<Attached>,
    stopping: Stopping,
}

impl AttachedSet {
    /// Adds `attached`, replacing an entry of the same pid.
    pub fn add(&mut self, attached: Attached) {
        self.list.retain(|a| a.pid != attached.pid);
        self.list.push(attached);
    }

    /// The processes.
    pub fn as_slice(&self) -> &[Attached] {
        &self.list
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Forgets those that have exited.
    pub fn remove_exited(&mut self, processes: &mut impl Processes) {
        self.list.retain(|a| {
            let exited = processes.exited(a);
            if exited {
                tracing::info!(
                    event = LogEvent::AttachedWorkerExited.as_str(),
                    pid = a.pid,
                    "attached worker exited"
                );
            }
            !exited
        });
    }

    /// Stops them as herd stops: `signal`, then `TerminateProcess` after `grace`.
    pub fn stop(
        &mut self,
        processes: &mut impl Processes,
        signal: Signal,
        grace: Duration,
        now: Instant,
    ) {
        if !self.stopping.begin(signal == Signal::KILL, grace, now) {
            return;
        }
        self.remove_exited(processes);
        for a in &self.list {
            tracing::info!(
                event = LogEvent::AttachedWorkerSignalled.as_str(),
                pid = a.pid,
                "sending {signal} to attached worker"
            );
            if let Err(e) = processes.signal(a, signal) {
                tracing::warn!(
                    event = LogEvent::SignalFailed.as_str(),
                    pid = a.pid,
                    "cannot send {signal} to attached worker: {e}"
                );
            }
        }
    }

    /// While herd stops and some are left: when to kill those left, or give up on them
    /// (each exit wakes the loop).
    pub fn deadline(&self, now: Instant) -> Option<Instant> {
        match self.list.is_empty() {
            true => None,
            false => self.stopping.deadline(now + KILL_WAIT),
        }
    }

    /// While herd stops: forgets those that have exited, and kills those left once their
    /// grace period is over.
    pub fn due(&mut self, processes: &mut impl Processes, now: Instant) {
        if self.stopping == Stopping::No {
            return;
        }
        self.remove_exited(processes);
        if self.stopping.give_up(now) {
            for a in self.list.drain(..) {
                tracing::warn!(
                    event = LogEvent::AttachedWorkerStuck.as_str(),
                    pid = a.pid,
                    "attached worker still there {}s after TerminateProcess; herd stops \
                     without it",
                    KILL_WAIT.as_secs()
                );
            }
        }
        if self.stopping.kill_due(now) && !self.list.is_empty() {
            for a in &self.list {
                tracing::warn!(
                    event = LogEvent::AttachedWorkerKilled.as_str(),
                    pid = a.pid,
                    "killing attached worker: it did not stop within the grace period"
                );
            }
            self.stop(processes, Signal::KILL, Duration::ZERO, now);
        }
    }
}
