//! Attached processes on Windows: those that fetched the sockets with `herd attach` (the
//! `herd attach` process itself, which stays COMMAND's parent and ends when it ends). Not
//! children and not restarted, but listed in status and stopped with the workers, by the
//! same policy as on Unix ([`Stopping`]).
//!
//! Each is known by the pid the control pipe reports (`GetNamedPipeClientProcessId`, never a
//! pid it claims) and held by a process handle the pipe server opened while it was connected
//! ([`Connection`](crate::control::request::Connection)), so a reused pid is never mistaken
//! for it. Its exit wakes herd's loop as a worker's does (a thread waits on the handle: one
//! per process, however often it attaches). Its stop request is an event of its own, which
//! herd copies into it when it attaches (the `stop_event` of the `sockets` answer): `herd
//! attach` hands it to COMMAND as a worker's (`HERD_STOP_EVENT`, which `herd::stop_requested`
//! waits on). herd sends it no Ctrl-C: it cannot know whether the process leads a process
//! group, and Ctrl-C to a pid that does not would reach every process on herd's console. Once
//! `--grace` is over, `TerminateProcess` ends it, and COMMAND with it (`herd attach` holds
//! COMMAND in a Job Object that kills it on close).
//!
//! A process that attaches again while held (the same pid: a held handle keeps its pid from
//! being reused) keeps its entry, its waiter and its stop event, of which it gets another copy.

use std::io;
use std::os::windows::io::AsHandle;
use std::time::Instant;

use herd_sys::windows::event::Event;
use herd_sys::windows::handle;
use herd_sys::windows::process::{self, Process};

use super::Signal;
use crate::supervisor::grace::{Held, HeldSet, Stopper};

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
    /// Holds `process` (opened while it was connected to the control pipe, so the pid was its
    /// own), attached at `now` with `sockets`, gives it a copy of its stop event and watches
    /// for its exit; with the copy's handle value in the process.
    pub fn open(
        process: Process,
        sockets: Vec<String>,
        now: Instant,
    ) -> io::Result<(Attached, u64)> {
        let pid = process.pid();
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

    /// It attached again at `now`, with `sockets`: another copy of its stop event, whose
    /// handle value in the process is returned. Its process handle and its waiter stay.
    pub fn attach_again(&mut self, sockets: Vec<String>, now: Instant) -> io::Result<u64> {
        let stop_in_process = handle::duplicate_into(self.stop.as_handle(), &self.process)?;
        self.sockets = sockets;
        self.since = now;
        Ok(stop_in_process)
    }
}

impl Held for Attached {
    fn pid(&self) -> u32 {
        self.pid
    }

    /// Its exit wakes the loop (a thread waits on its handle).
    fn watched(&self) -> bool {
        true
    }
}

/// The real system: the process handle and the stop event.
pub struct System;

impl Stopper<Attached> for System {
    fn exited(&mut self, attached: &Attached) -> bool {
        // A handle that cannot be read any more is of no use: the process is taken as gone.
        !matches!(process::exit_code(&attached.process), Ok(None))
    }

    /// Asks `attached` to stop (its stop event) or ends it (`TerminateProcess`).
    fn signal(&mut self, attached: &Attached, signal: Signal) -> io::Result<()> {
        match signal {
            Signal::Stop => attached.stop.set(),
            Signal::Kill => process::terminate(&attached.process, 1),
        }
    }
}

/// The attached processes, under the stop policy shared with Unix.
pub type AttachedSet = HeldSet<Attached>;
