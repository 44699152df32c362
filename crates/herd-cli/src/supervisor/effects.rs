//! The supervisor's hands: the one place where it acts on the workers and the world around
//! them. Starting a worker (its slot's sockets prepared, then fork/exec), stopping and
//! signalling workers, steering the reuseport sockets, telling the service manager, counting
//! for `--metrics`. What to do is decided elsewhere (the pool, the [phase](super::phase), the
//! policies); a port to another platform implements this anew.

use std::os::unix::io::{AsFd, BorrowedFd, OwnedFd};

use anyhow::Context;
use herd_sys::process::{self, Signal};

use super::pool::{Pool, StopMode};
use super::{balance, metrics, systemd};
use crate::command::{StartError, WorkerCommand};
use crate::spec::Listener;

/// What the supervisor acts with.
pub struct Effects {
    /// The listening sockets.
    pub listeners: Vec<Listener>,
    command: WorkerCommand,
    /// The workers' standard input (`/dev/null`).
    stdin: OwnedFd,
    /// What asks a worker to stop ([`StopMode::Graceful`]).
    stop_signal: Signal,
    /// herd's own service manager, if any.
    pub service: systemd::ServiceNotifier,
    /// Counters for `--metrics`.
    pub counters: metrics::Counters,
}

impl Effects {
    /// The effects for `listeners` (already bound) and `command`.
    pub fn new(
        listeners: Vec<Listener>,
        command: WorkerCommand,
        stop_signal: Signal,
    ) -> anyhow::Result<Effects> {
        Ok(Effects {
            listeners,
            command,
            stdin: herd_sys::fd::open_dev_null().context("cannot open /dev/null")?,
            stop_signal,
            service: systemd::ServiceNotifier::from_env(),
            counters: metrics::Counters::default(),
        })
    }

    /// The signal that asks a worker to stop.
    pub fn stop_signal(&self) -> Signal {
        self.stop_signal
    }

    /// Starts a worker of `generation` in `slot`, with the slot's sockets; its pid.
    pub fn spawn(&mut self, slot: usize, generation: u64) -> Result<u32, StartError> {
        let failed = |message: String| StartError {
            cannot_execute: false,
            message,
        };
        for listener in &mut self.listeners {
            listener
                .prepare_slot(slot)
                .map_err(|e| failed(format!("{e:#}")))?;
        }
        let fds: Option<Vec<BorrowedFd<'_>>> =
            self.listeners.iter().map(|l| l.fd_for_slot(slot)).collect();
        let fds = fds.ok_or_else(|| failed("the sockets are closed".to_string()))?;
        self.command
            .spawn(slot, generation, &fds, self.stdin.as_fd())
    }

    /// Stops worker `pid` and its process group: the stop signal (then `SIGCONT`, so that a
    /// paused worker can act on it), or `SIGKILL`. Returns the signal sent.
    pub fn stop(&self, pid: u32, mode: StopMode) -> (Signal, std::io::Result<()>) {
        let signal = match mode {
            StopMode::Graceful => self.stop_signal,
            StopMode::Kill => Signal::KILL,
        };
        let sent = process::send_stop(signal, |s| process::signal_group(pid, s));
        (signal, sent)
    }

    /// Sends `signal`, and only that, to worker `pid` itself (`herd signal`).
    pub fn signal(&self, pid: u32, signal: Signal) -> std::io::Result<()> {
        process::signal_process(pid, signal)
    }

    /// Kills a worker that must not run (started where no slot was free), with its group.
    pub fn kill(&self, pid: u32) {
        let _ = process::signal_group(pid, Signal::KILL);
    }

    /// Points the reuseport sockets at the slots that should get new connections.
    pub fn steer(&mut self, pool: &Pool) {
        balance::steer(&mut self.listeners, pool);
    }

    /// The `--rlimit` options whose limit sends `signal` to a worker that passes it.
    pub fn limits_behind(&self, signal: i32) -> Vec<&str> {
        self.command.options().limits_behind(signal)
    }

    /// Closes herd's own copies of the sockets: once the workers have closed theirs, new
    /// clients are refused at once instead of waiting in a queue nobody serves.
    pub fn close_sockets(&mut self) {
        self.listeners.iter_mut().for_each(Listener::close);
    }
}
