//! Starting workers on Unix: the slot's sockets prepared, then fork/exec with them at fds 3,
//! 4, ... and `/dev/null` as standard input (or the socket of `--bind ...,stdin`); and the
//! re-exec's check children.

use std::os::unix::io::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use herd_sys::spawn::Job;

use anyhow::Context;

use super::{fork_servers, OwnChildren};
use crate::command::{StartError, WorkerCommand};
use crate::logging::LogEvent;
use crate::spec::Listener;
use crate::supervisor::fork_server::{Ended, ForkServers, Gate, Opened};
use crate::supervisor::reload::Commands;
use crate::supervisor::warm_up::{Lowered, Lowering, SchedStat, Spawned};

/// What starts workers.
pub struct Spawner {
    /// The worker command of each generation.
    command: Commands<WorkerCommand>,
    /// The workers' standard input (`/dev/null`).
    stdin: OwnedFd,
    /// `--fork-server`'s fork servers, with herd's end of each one's socket.
    forks: ForkServers<socket2::Socket>,
}

impl Spawner {
    /// Starts workers with `command`.
    pub fn new(command: WorkerCommand) -> anyhow::Result<Spawner> {
        Ok(Spawner {
            command: Commands::new(command),
            stdin: herd_sys::fd::open_dev_null().context("cannot open /dev/null")?,
            forks: ForkServers::default(),
        })
    }

    /// How many starts one call of [`spawn_all`](Self::spawn_all) takes at most: the
    /// children of a call run their steps and `execve` side by side, herd waiting once.
    pub const BATCH: usize = crate::supervisor::starts::PER_TURN;

    /// How many starts the next call of [`spawn_all`](Self::spawn_all) should take: [`BATCH`],
    /// or one while a fork server forks the workers (`--fork-server`). A fork server is asked
    /// for one worker after the other, each answer waited for up to a second, so a batch of
    /// them held the loop up for all of theirs (control requests, signals, readiness unread);
    /// one a call lets the turn end after any slow one, and batching gains them nothing.
    ///
    /// [`BATCH`]: Self::BATCH
    pub fn batch(&self) -> usize {
        match self.command.all().any(|c| c.options().fork_server) {
            true => 1,
            false => Self::BATCH,
        }
    }

    /// Starts several workers at once, each as [`spawn`](Self::spawn) would (`starts`: slot,
    /// generation, how to lower it), their children executing side by side
    /// ([`herd_sys::spawn::spawn_all`]): each one's pid and how it was lowered, or why it
    /// could not start, in order.
    pub fn spawn_all(
        &mut self,
        listeners: &mut [Listener],
        _children: &mut OwnChildren,
        starts: &[(usize, u64, Option<Lowering>)],
    ) -> Vec<Result<Spawned, StartError>> {
        let failed = |message: String| StartError {
            cannot_execute: false,
            message,
        };
        let slots_ready: Vec<Result<(), StartError>> = starts
            .iter()
            .map(|&(slot, _, _)| {
                listeners
                    .iter_mut()
                    .try_for_each(|l| l.prepare_slot(slot))
                    .map_err(|e| failed(format!("{e:#}")))
            })
            .collect();
        let listeners = &*listeners;
        let Spawner {
            command,
            stdin,
            forks,
        } = self;
        // Each start's sockets and standard input, its plan, and whether a fork server forks it.
        let prepared: Vec<Result<_, StartError>> = starts
            .iter()
            .zip(slots_ready)
            .map(|(&(slot, generation, lowered), ready)| {
                ready?;
                let fds: Option<Vec<BorrowedFd<'_>>> =
                    listeners.iter().map(|l| l.fd_for_slot(slot)).collect();
                let fds = fds.ok_or_else(|| failed("the sockets are closed".to_string()))?;
                let stdin = stdin_for(stdin.as_fd(), listeners, &fds);
                let command = command.for_generation(generation);
                let start = command.prepare(slot, generation, fds.len(), lowered)?;
                let forked = command.options().fork_server;
                Ok((command, start, fds, stdin, generation, forked))
            })
            .collect();
        let jobs: Vec<Job<'_>> = prepared
            .iter()
            .flatten()
            .filter(|(.., forked)| !forked)
            .map(|(_, start, fds, stdin, ..)| Job {
                plan: start.plan(),
                fds,
                stdio: start.stdio(*stdin),
            })
            .collect();
        let mut spawned = herd_sys::spawn::spawn_all(&jobs).into_iter();
        drop(jobs);
        prepared
            .into_iter()
            .map(|prepared| {
                let (command, start, fds, stdin, generation, forked) = prepared?;
                if forked {
                    let stdio = start.stdio(stdin);
                    let pid = fork_servers::fork(forks, generation, start.plan(), &stdio, &fds);
                    return command.forked(start, pid);
                }
                // spawn_all answers every job.
                match spawned.next() {
                    Some(result) => command.started(start, result),
                    None => Err(failed("the worker was never started".to_string())),
                }
            })
            .collect()
    }

    /// Whether a start of `generation` may go ahead now, or waits for its fork server
    /// (`--fork-server`), which this starts if it has none (it may load for `limits.0`, lowered
    /// as `limits.1` says); `Err` if it could not be started.
    pub fn fork_gate(
        &mut self,
        generation: u64,
        limits: (Duration, Option<Lowering>),
    ) -> Result<Opened, StartError> {
        let command = self.command.for_generation(generation);
        if !command.options().fork_server {
            return Ok(Opened::Go);
        }
        match self.forks.gate(generation) {
            Gate::Ready => Ok(Opened::Go),
            Gate::Loading => Ok(Opened::Wait),
            Gate::Missing => {
                let stdin = self.stdin.as_fd();
                let (pid, lowered) =
                    fork_servers::start(&mut self.forks, command, generation, stdin, limits)?;
                Ok(Opened::Started { pid, lowered })
            }
        }
    }

    /// Process `pid` said `READY=1`: the generation whose fork server it is, if it is one
    /// that was loading; the older generations' fork servers are closed (they exit).
    pub fn fork_server_ready(&mut self, pid: u32) -> Option<u64> {
        let (generation, older) = self.forks.said_ready(pid)?;
        tracing::info!(
            event = LogEvent::ForkServerReady.as_str(),
            pid,
            generation,
            "fork server ready: it forks its generation's workers from now on"
        );
        for (pid, socket) in older {
            tracing::debug!(pid, "closing an older generation's fork server");
            drop(socket);
        }
        Some(generation)
    }

    /// herd's child `pid` exited, as `how` says: what that means if it was a fork server.
    pub fn fork_server_exited(&mut self, pid: u32, how: &str) -> Option<Ended> {
        let ended = self.forks.exited(pid, how)?;
        match &ended {
            Ended::WasReady { generation } => tracing::warn!(
                event = LogEvent::ForkServerExited.as_str(),
                pid,
                generation,
                "fork server {how}; the workers it forked serve on, and the next start of its \
                 generation starts another"
            ),
            Ended::Failed { generation, why } => tracing::error!(
                event = LogEvent::ForkServerExited.as_str(),
                pid,
                generation,
                "generation {generation}'s workers cannot start: {why}"
            ),
            Ended::Superseded { generation } => tracing::warn!(
                event = LogEvent::ForkServerExited.as_str(),
                pid,
                generation,
                "fork server {how}, killed for loading too long; its generation's starts wait \
                 for the one started since"
            ),
        }
        Some(ended)
    }

    /// Kills the fork servers still loading past their time at `now` (their exits fail
    /// their generations' starts), and says once of each that has loaded for
    /// [`SLOW_LOAD`](crate::supervisor::fork_server::SLOW_LOAD) that it has not said `READY=1`.
    pub fn fork_servers_timed_out(&mut self, now: Instant) {
        for (pid, generation, timeout) in self.forks.slow(now) {
            tracing::warn!(
                event = LogEvent::ForkServerSlow.as_str(),
                pid,
                generation,
                "fork server has not said READY=1 after {}: its generation's workers wait for \
                 it, until --ready-timeout ({}) kills it. Does the command speak herd's \
                 fork-server protocol? Run a Python server through python/herd_fork.py \
                 (docs/fork-server.md)",
                humantime::format_duration(crate::supervisor::fork_server::SLOW_LOAD),
                humantime::format_duration(timeout)
            );
        }
        for pid in self.forks.timed_out(now) {
            let _ = herd_sys::process::signal_process(pid, herd_sys::process::Signal::KILL);
        }
    }

    /// When the next fork server still loading runs out of time.
    pub fn fork_server_deadline(&self) -> Option<Instant> {
        self.forks.next_deadline()
    }

    /// The fork servers' pids (herd's children that are no orphans).
    pub fn fork_server_pids(&self) -> Vec<u32> {
        self.forks.pids().collect()
    }

    /// The fork servers, for `herd status`.
    pub fn fork_server_statuses(&self) -> Vec<crate::supervisor::status::ForkServerStatus> {
        self.forks.statuses()
    }

    /// Closes every fork server (herd stops): each exits as its socket closes.
    pub fn close_fork_servers(&mut self) {
        drop(self.forks.close_all());
    }

    /// Closes the fork servers of generations after `generation` (an upgrade to them was
    /// aborted): each exits as its socket closes; a later start of theirs starts another.
    pub fn close_fork_servers_after(&mut self, generation: u64) {
        for (pid, _socket) in self.forks.close_after(generation) {
            tracing::debug!(pid, "closing the fork server of an aborted upgrade");
        }
    }

    /// Gives worker `pid`, which herd lowered as `how`, herd's priority back (`--starting-nice`:
    /// nice `serving`, the workers' own): every thread of it and of the processes it started
    /// that still runs at the starting priority (`SCHED_IDLE`, or the starting nice value); one
    /// at another chose it and keeps it. A worker gone meanwhile is no error.
    pub fn restore_priority(&self, pid: u32, how: Lowered, serving: i32) -> std::io::Result<()> {
        let raised = match how {
            Lowered::Idle => herd_sys::process::raise_idle_tree(pid),
            Lowered::Nice(nice) => herd_sys::process::raise_nice_tree(pid, nice, serving),
        };
        match raised {
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
            other => other.map(drop),
        }
    }

    /// Whether [`sched_stat`](Self::sched_stat) can tell anything here: the kernel keeps
    /// run-queue waits (`/proc/PID/schedstat`, Linux's `CONFIG_SCHED_INFO`), as this
    /// process's own file tells. Checked once, by the caller.
    pub fn can_sample(&self) -> bool {
        std::path::Path::new("/proc/self/schedstat").exists()
    }

    /// What the scheduler says of worker `pid`'s main thread: how long it ran and waited
    /// runnable without running (`/proc/PID/schedstat`, Linux's `CONFIG_SCHED_INFO`), and
    /// whether it is runnable now (`R` in `/proc/PID/stat`); `None` where they cannot be read
    /// (not Linux, a kernel without it, the worker gone).
    pub fn sched_stat(&self, pid: u32) -> Option<SchedStat> {
        let schedstat = std::fs::read_to_string(format!("/proc/{pid}/schedstat")).ok()?;
        let mut nanos = schedstat.split_whitespace().map(|n| n.parse().ok());
        let (ran, waited) = (nanos.next()??, nanos.next()??);
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let state = herd_sys::process::parse_stat_fields(&stat, &[3])?;
        Some(SchedStat {
            ran: Duration::from_nanos(ran),
            waited: Duration::from_nanos(waited),
            runnable: state.first() == Some(&"R"),
        })
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

/// A worker's standard input: `dev_null`, or the socket of `--bind ...,stdin` (the child dup2s
/// it to fd 0 as well), of `fds`, the slot's sockets of `listeners`.
fn stdin_for<'a>(
    dev_null: BorrowedFd<'a>,
    listeners: &[Listener],
    fds: &[BorrowedFd<'a>],
) -> BorrowedFd<'a> {
    listeners
        .iter()
        .zip(fds)
        .find(|(l, _)| l.stdin)
        .map_or(dev_null, |(_, fd)| *fd)
}
