//! Starting workers on Unix: the slot's sockets prepared, then fork/exec with them at fds 3,
//! 4, ... and `/dev/null` as standard input (or the socket of `--bind ...,stdin`); and the
//! re-exec's check children.

use std::os::unix::io::{AsFd, BorrowedFd, OwnedFd};

use anyhow::Context;

use super::OwnChildren;
use crate::command::{StartError, WorkerCommand};
use crate::spec::Listener;
use crate::supervisor::reload::Commands;
use crate::supervisor::warm_up::{Lowered, WarmUp};

/// What starts workers.
pub struct Spawner {
    /// The worker command of each generation.
    command: Commands<WorkerCommand>,
    /// The workers' standard input (`/dev/null`).
    stdin: OwnedFd,
}

impl Spawner {
    /// Starts workers with `command`.
    pub fn new(command: WorkerCommand) -> anyhow::Result<Spawner> {
        Ok(Spawner {
            command: Commands::new(command),
            stdin: herd_sys::fd::open_dev_null().context("cannot open /dev/null")?,
        })
    }

    /// Starts a worker of `generation` in `slot`, with the slot's sockets of `listeners`; its
    /// pid (a child of herd's, which `waitid` reports: nothing to hold in `_children`).
    pub fn spawn(
        &mut self,
        listeners: &mut [Listener],
        _children: &mut OwnChildren,
        slot: usize,
        generation: u64,
        lowered: Option<Lowered>,
    ) -> Result<u32, StartError> {
        let failed = |message: String| StartError {
            cannot_execute: false,
            message,
        };
        for listener in listeners.iter_mut() {
            listener
                .prepare_slot(slot)
                .map_err(|e| failed(format!("{e:#}")))?;
        }
        let fds: Option<Vec<BorrowedFd<'_>>> =
            listeners.iter().map(|l| l.fd_for_slot(slot)).collect();
        let fds = fds.ok_or_else(|| failed("the sockets are closed".to_string()))?;
        // `--bind ...,stdin`: that socket is fd 0 as well (the child dup2s it there).
        let stdin = listeners
            .iter()
            .zip(&fds)
            .find(|(l, _)| l.stdin)
            .map_or(self.stdin.as_fd(), |(_, fd)| *fd);
        self.command
            .for_generation(generation)
            .spawn(slot, generation, &fds, stdin, lowered)
    }

    /// Gives worker `pid` herd's priority back (`--starting-nice`): every thread of it and of
    /// the processes it started that still runs at the starting priority (`SCHED_IDLE`, or the
    /// starting nice value); one at another chose it and keeps it. A worker gone meanwhile is
    /// no error.
    pub fn restore_priority(&self, pid: u32, warm_up: &WarmUp) -> std::io::Result<()> {
        let raised = match warm_up.starting {
            Lowered::Idle => herd_sys::process::raise_idle_tree(pid),
            Lowered::Nice(nice) => herd_sys::process::raise_nice_tree(pid, nice, warm_up.serving),
        };
        match raised {
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
            other => other.map(drop),
        }
    }

    /// The worker commands, for a reloaded config's.
    pub fn commands(&mut self) -> &mut Commands<WorkerCommand> {
        &mut self.command
    }

    /// Starts a re-exec check child (see [`reexec_check`](crate::supervisor::reexec_check)).
    pub fn start_check(
        &self,
        mut command: std::process::Command,
    ) -> std::io::Result<std::process::Child> {
        command.spawn()
    }

    /// The `--rlimit` options whose limit sends `signal` to a worker that passes it.
    pub fn limits_behind(&self, signal: i32) -> Vec<&str> {
        self.command.current().options().limits_behind(signal)
    }
}
