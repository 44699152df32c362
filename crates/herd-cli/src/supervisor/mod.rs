//! The supervisor: a thin async driver around the [`pool::Pool`] state machine. It turns
//! signals, child exits and timers into pool events, and the pool's actions into `fork`/`exec`
//! and `kill` calls.
//!
//! It runs on a current-thread runtime, on the process's main thread, so that every worker is
//! forked by a thread that lives as long as herd: `PR_SET_PDEATHSIG` fires when the forking
//! *thread* exits.

pub mod backoff;
pub mod pool;

use std::os::unix::io::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use herd_sys::process::{self, Signal};
use tokio::signal::unix::{signal, SignalKind};

use crate::command::WorkerCommand;
use crate::spec::Listener;
use pool::{Action, Pool, PoolConfig};

/// A running herd: its sockets, its command and its pool.
pub struct Supervisor {
    pool: Pool,
    listeners: Vec<Listener>,
    command: WorkerCommand,
    stdin: OwnedFd,
    /// Set when the first generation cannot be started: herd stops and reports it.
    failure: Option<anyhow::Error>,
}

impl Supervisor {
    /// A supervisor for `listeners` (already bound) and `command`.
    pub fn new(
        listeners: Vec<Listener>,
        command: WorkerCommand,
        config: PoolConfig,
    ) -> anyhow::Result<Supervisor> {
        Ok(Supervisor {
            pool: Pool::new(config, Instant::now()),
            listeners,
            command,
            stdin: herd_sys::fd::open_dev_null().context("cannot open /dev/null")?,
            failure: None,
        })
    }

    /// Runs until a stop signal has been handled and every worker is gone. Returns an error
    /// when the workers could not be started at all.
    pub async fn run(mut self) -> anyhow::Result<()> {
        // Register every handler before the first fork, so that no exit or signal is missed.
        let mut sigchld = signal(SignalKind::child())?;
        let mut sigterm = signal(SignalKind::terminate())?;
        let mut sigint = signal(SignalKind::interrupt())?;
        let mut sigquit = signal(SignalKind::quit())?;
        let mut sighup = signal(SignalKind::hangup())?;

        let first = self.pool.due(Instant::now());
        self.apply(first, true);
        while !self.pool.is_stopped() {
            let deadline = self.pool.next_deadline();
            let sleep = tokio::time::sleep_until(
                deadline.map_or_else(far_future, tokio::time::Instant::from_std),
            );
            tokio::select! {
                _ = sigchld.recv() => self.reap(),
                _ = sigterm.recv() => self.stop("SIGTERM", true),
                _ = sigint.recv() => {
                    // A second Ctrl-C stops at once.
                    let graceful = !self.pool.is_stopping();
                    self.stop("SIGINT", graceful);
                }
                _ = sigquit.recv() => self.stop("SIGQUIT", false),
                _ = sighup.recv() => tracing::warn!("SIGHUP ignored: rolling upgrades are not supported yet"),
                _ = sleep, if deadline.is_some() => {}
            }
            let actions = self.pool.due(Instant::now());
            self.apply(actions, false);
        }
        tracing::info!("all workers have exited; herd stops");
        match self.failure.take() {
            Some(failure) => Err(failure),
            None => Ok(()),
        }
    }

    fn stop(&mut self, reason: &str, graceful: bool) {
        if graceful && self.pool.is_stopping() {
            tracing::info!(
                signal = reason,
                "already stopping; send SIGQUIT to stop at once"
            );
            return;
        }
        if graceful {
            tracing::info!(
                signal = reason,
                "stopping gracefully: workers get {} and {} to finish",
                self.pool_stop_signal(),
                humantime::format_duration(self.pool_grace())
            );
        } else {
            tracing::info!(signal = reason, "stopping at once: killing every worker");
        }
        // herd's own copies of the sockets close now: once the workers have closed theirs,
        // new clients are refused at once instead of waiting in a queue nobody serves.
        for listener in &mut self.listeners {
            listener.close();
        }
        let actions = self.pool.stop(graceful, Instant::now());
        self.apply(actions, false);
    }

    fn pool_stop_signal(&self) -> Signal {
        self.pool.config().stop_signal
    }

    fn pool_grace(&self) -> Duration {
        self.pool.config().grace
    }

    fn apply(&mut self, actions: Vec<Action>, first_generation: bool) {
        for action in actions {
            match action {
                // A stop decided while this batch ran (the first generation failed) cancels
                // the spawns still in it.
                Action::Spawn { .. } if self.pool.is_stopping() => {}
                Action::Spawn { slot } => self.spawn(slot, first_generation),
                Action::Signal { slot, pid, signal } => {
                    if signal == Signal::KILL && self.pool.is_stopping() {
                        tracing::warn!(slot, pid, "worker did not stop in time; killing it");
                    }
                    if let Err(e) = process::signal_group(pid, signal) {
                        tracing::warn!(slot, pid, "cannot send {signal}: {e}");
                    }
                }
            }
        }
    }

    fn spawn(&mut self, slot: usize, first_generation: bool) {
        let fds: Option<Vec<BorrowedFd<'_>>> = self.listeners.iter().map(Listener::fd).collect();
        let fds = match fds {
            Some(fds) => fds,
            None => {
                self.pool.spawn_failed(slot, Instant::now());
                return;
            }
        };
        match self.command.spawn(slot, &fds, self.stdin.as_fd()) {
            Ok(pid) => {
                tracing::info!(slot, pid, "worker started");
                if !self.pool.spawned(slot, pid, Instant::now()) {
                    // Unreachable by construction; never leave a process unsupervised.
                    tracing::error!(
                        slot,
                        pid,
                        "worker started in a slot that was not free; killing it"
                    );
                    let _ = process::signal_group(pid, Signal::KILL);
                }
            }
            Err(e) if first_generation && e.cannot_execute => {
                self.pool.spawn_failed(slot, Instant::now());
                if self.failure.is_none() {
                    self.failure = Some(anyhow!(e.message));
                    let actions = self.pool.stop(false, Instant::now());
                    self.apply(actions, false);
                }
            }
            Err(e) => {
                let delay = self.pool.spawn_failed(slot, Instant::now());
                tracing::error!(
                    slot,
                    retry_in = %humantime::format_duration(delay),
                    "cannot start worker: {}",
                    e.message
                );
            }
        }
    }

    fn reap(&mut self) {
        loop {
            let (pid, status) = match process::reap_any() {
                Ok(Some(reaped)) => reaped,
                Ok(None) => return,
                Err(e) => {
                    tracing::error!("waitpid failed: {e}");
                    return;
                }
            };
            let exit = match self.pool.exited(pid, status, Instant::now()) {
                Some(exit) => exit,
                None => {
                    tracing::debug!(pid, "reaped a process that was not a worker");
                    continue;
                }
            };
            let how = describe_exit(status);
            let uptime = format!("{:.3}s", exit.uptime.as_secs_f64());
            match exit.restart_in {
                None => tracing::info!(slot = exit.slot, pid, %uptime, "worker exited: {how}"),
                Some(delay) if delay.is_zero() => tracing::warn!(
                    slot = exit.slot,
                    pid,
                    %uptime,
                    "worker exited: {how}; restarting it"
                ),
                Some(delay) => tracing::warn!(
                    slot = exit.slot,
                    pid,
                    %uptime,
                    failures = self.pool.failures(exit.slot),
                    "worker exited: {how}; restarting it in {} (crash-loop backoff)",
                    humantime::format_duration(delay)
                ),
            }
        }
    }
}

/// `exit code 3`, `killed by SIGKILL`, `killed by SIGSEGV (core dumped)`.
pub fn describe_exit(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exit code {code}");
    }
    match status.signal() {
        Some(n) => {
            let name =
                Signal::from_number(n).map_or_else(|| format!("signal {n}"), |s| s.to_string());
            let core = if status.core_dumped() {
                " (core dumped)"
            } else {
                ""
            };
            format!("killed by {name}{core}")
        }
        None => format!("{status}"),
    }
}

fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86400 * 365)
}
