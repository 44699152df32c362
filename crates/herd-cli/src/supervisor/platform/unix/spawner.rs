//! Starting workers on Unix: the slot's sockets prepared, then fork/exec with them at fds 3,
//! 4, ... and `/dev/null` as standard input (or the socket of `--bind ...,stdin`); and the
//! re-exec's check children.

use std::os::unix::io::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use herd_sys::spawn::{ExecPlan, Job};

use anyhow::Context;

use super::fork_servers::{self, Outcome};
use super::OwnChildren;
use crate::command::{StartError, WorkerCommand};
use crate::logging::LogEvent;
use crate::spec::Listener;
use crate::supervisor::fork_server::{Ended, Gate, Opened, Replied, Unanswered};
use crate::supervisor::reexec_check::CheckChild;
use crate::supervisor::reload::Commands;
use crate::supervisor::warm_up::{Lowered, Lowering, SchedStat, Spawned};

/// What starts workers.
pub struct Spawner {
    /// The worker command of each generation.
    command: Commands<WorkerCommand>,
    /// The workers' standard input (`/dev/null`).
    stdin: OwnedFd,
    /// `--fork-server`'s fork servers, with herd's end of each one's socket.
    forks: fork_servers::Servers,
    /// Starts that awaited their fork server's reply and ended, for the loop to take.
    replied: Vec<Replied>,
}

impl Spawner {
    /// Starts workers with `command`.
    pub fn new(command: WorkerCommand) -> anyhow::Result<Spawner> {
        Ok(Spawner {
            command: Commands::new(command),
            stdin: herd_sys::fd::open_dev_null().context("cannot open /dev/null")?,
            forks: Default::default(),
            replied: Vec::new(),
        })
    }

    /// How many starts one call of [`spawn_all`](Self::spawn_all) takes at most: the
    /// children of a call run their steps and `execve` side by side, herd waiting once.
    pub const BATCH: usize = crate::supervisor::starts::PER_TURN;

    /// How many starts the next call of [`spawn_all`](Self::spawn_all) should take: [`BATCH`],
    /// or one while a fork server forks the workers (`--fork-server`). A fork server is asked
    /// for one worker at a time (the next start waits for its reply, [`Gate::Busy`]), and a
    /// batch's starts pass the gate before any of them asks: one a call lets the next start
    /// see that its fork server is busy.
    ///
    /// [`BATCH`]: Self::BATCH
    pub fn batch(&self) -> usize {
        match self.command.all().any(|c| c.options().fork_server) {
            true => 1,
            false => Self::BATCH,
        }
    }

    /// Starts several workers at once (`starts`: slot, generation, how to lower it), their
    /// children executing side by side ([`herd_sys::spawn::spawn_all`]): each one's pid and
    /// how it was lowered, or why it could not start, in order; `None` for a start that asked
    /// its fork server (`--fork-server`), which ends when it answers
    /// ([`take_replied`](Self::take_replied)).
    pub fn spawn_all(
        &mut self,
        listeners: &mut [Listener],
        _children: &mut OwnChildren,
        starts: &[(usize, u64, Option<Lowering>)],
    ) -> Vec<Option<Result<Spawned, StartError>>> {
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
            ..
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
                Ok((command, start, fds, stdin, slot, generation, forked))
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
                let (command, start, fds, stdin, slot, generation, forked) = match prepared {
                    Ok(prepared) => prepared,
                    Err(e) => return Some(Err(e)),
                };
                if forked {
                    let asked = fork_servers::ask(forks, (slot, generation), start, stdin, &fds);
                    return asked.err().map(|why| Err(failed(why)));
                }
                // spawn_all answers every job.
                Some(match spawned.next() {
                    Some(result) => command.started(start, result),
                    None => Err(failed("the worker was never started".to_string())),
                })
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
            Gate::Loading | Gate::Busy => Ok(Opened::Wait),
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
        let generation = self.forks.said_ready(pid)?;
        tracing::info!(
            event = LogEvent::ForkServerReady.as_str(),
            pid,
            generation,
            "fork server ready: it forks its generation's workers from now on"
        );
        self.close_fork_servers_before(generation);
        Some(generation)
    }

    /// Fork server `server`'s socket became readable while a start awaited its reply, and
    /// `read` is what herd read there: the start ends ([`take_replied`](Self::take_replied)),
    /// or the fork server is killed (its exit fails the start).
    pub fn fork_replied(&mut self, server: u32, read: std::io::Result<Vec<u8>>) {
        let Some(generation) = self.forks.generation_of(server) else {
            return;
        };
        match fork_servers::replied(&mut self.forks, server, read) {
            Some(Outcome::Start { slot, start, pid }) => {
                let command = self.command.for_generation(generation);
                let result = command.forked(*start, pid);
                self.replied.push(Replied::Start {
                    slot,
                    generation,
                    result,
                });
            }
            Some(Outcome::Unwanted { slot, pid }) => {
                self.replied.push(Replied::Unwanted { slot, pid })
            }
            None => {}
        }
    }

    /// The starts that awaited their fork server's reply and ended since the last call.
    pub fn take_replied(&mut self) -> Vec<Replied> {
        std::mem::take(&mut self.replied)
    }

    /// The sockets of the fork servers whose reply a start awaits, with their pids.
    pub fn fork_replies_awaited(&self) -> Vec<(u32, fork_servers::Handle)> {
        let awaited = self.forks.awaited();
        awaited
            .map(|(pid, h)| (pid, std::sync::Arc::clone(h)))
            .collect()
    }

    /// Whether a start awaits its fork server's reply.
    pub fn awaits_fork_replies(&self) -> bool {
        self.forks.awaiting()
    }

    /// A start that will get no reply fails, if it is still wanted.
    fn unanswered(&mut self, unanswered: Unanswered<crate::command::PreparedStart>) {
        let Unanswered {
            slot,
            generation,
            request,
            why,
        } = unanswered;
        if request.is_none() {
            return tracing::info!(slot, "a start no longer wanted got no worker: {why}");
        }
        let result = Err(StartError {
            cannot_execute: false,
            message: why,
        });
        self.replied.push(Replied::Start {
            slot,
            generation,
            result,
        });
    }

    /// herd's child `pid` exited, as `how` says: what that means if it was a fork server (a
    /// start that awaited its reply fails).
    pub fn fork_server_exited(&mut self, pid: u32, how: &str) -> Option<Ended> {
        if let Some(unanswered) = self.forks.unanswered(pid, how) {
            self.unanswered(unanswered);
        }
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
        for (pid, generation, timeout, loaded) in self.forks.slow(now) {
            let full = crate::supervisor::fork_server::SLOW_LOAD;
            // Loaded longer than that: it warmed up at --starting-nice first.
            let at_full = match loaded > full + Duration::from_millis(500) {
                true => format!(
                    " ({} of it at herd's priority)",
                    humantime::format_duration(full)
                ),
                false => String::new(),
            };
            let loaded = Duration::from_secs(loaded.as_secs());
            tracing::warn!(
                event = LogEvent::ForkServerSlow.as_str(),
                pid,
                generation,
                "fork server has not said READY=1 after {}{at_full}: its generation's workers \
                 wait for it, until --ready-timeout ({}) kills it. On a busy machine one \
                 loading at --starting-nice may only be slow; else, does the command speak \
                 herd's fork-server protocol? Run a Python server through \
                 python/herd_fork.py (docs/fork-server.md)",
                humantime::format_duration(loaded),
                humantime::format_duration(timeout)
            );
        }
        for pid in self.forks.timed_out(now) {
            let _ = herd_sys::process::signal_process(pid, herd_sys::process::Signal::KILL);
        }
        for (pid, unanswered) in self.forks.overdue(now) {
            let _ = herd_sys::process::signal_process(pid, herd_sys::process::Signal::KILL);
            tracing::error!(
                event = LogEvent::ForkServerExited.as_str(),
                pid,
                generation = unanswered.generation,
                "fork server did not answer in time; killed it: the next start starts another"
            );
            self.unanswered(unanswered);
        }
    }

    /// When the next fork server still loading runs out of time, or a reply is late.
    pub fn fork_server_deadline(&self) -> Option<Instant> {
        self.forks.next_deadline()
    }

    /// herd could not act for `gap`: no fork server's load or reply counts it
    /// ([`ForkServers::resumed_after`](crate::supervisor::fork_server::ForkServers::resumed_after)).
    pub fn resumed_after(&mut self, gap: std::time::Duration) {
        self.forks.resumed_after(gap);
    }

    /// Fork server `pid`, loading at `--starting-nice`, got herd's priority at `now`.
    pub fn fork_server_raised(&mut self, pid: u32, now: Instant) {
        self.forks.raised(pid, now);
    }

    /// The fork servers' pids (herd's children that are no orphans).
    pub fn fork_server_pids(&self) -> Vec<u32> {
        self.forks.pids().collect()
    }

    /// The fork servers, for `herd status`.
    pub fn fork_server_statuses(&self) -> Vec<crate::supervisor::status::ForkServerStatus> {
        self.forks.statuses()
    }

    /// Closes every fork server (herd stops), as [`close_fork_servers_after`](Self::close_fork_servers_after) does.
    pub fn close_fork_servers(&mut self) {
        let loading = self.forks.loading(|_| true);
        drop(self.forks.close_all());
        fork_servers::kill_loading(loading, "a stopping herd's");
    }

    /// Closes the fork servers of generations after `generation` (an upgrade to them was
    /// aborted): each exits as its socket closes (once it has answered, if a start awaits its
    /// reply); a later start of theirs starts another. The slots whose starts awaited a reply
    /// from one: they are no longer wanted (a worker forked for one is stopped).
    pub fn close_fork_servers_after(&mut self, generation: u64) -> Vec<usize> {
        let loading = self.forks.loading(|g| g > generation);
        let (closed, cancelled) = self.forks.close_after(generation);
        for (pid, _socket) in closed {
            tracing::debug!(pid, "closing the fork server of an aborted upgrade");
        }
        fork_servers::kill_loading(loading, "an aborted upgrade's");
        cancelled
    }

    /// Closes the fork servers of generations before `generation` (each exits as its socket
    /// closes, once it has answered if a start awaits its reply; one still loading is killed):
    /// when `generation`'s says `READY=1`, and once no start of theirs is to come.
    pub fn close_fork_servers_before(&mut self, generation: u64) {
        let loading = self.forks.loading(|g| g < generation);
        for (pid, _socket) in self.forks.close_before(generation) {
            tracing::debug!(pid, "closing an older generation's fork server");
        }
        fork_servers::kill_loading(loading, "an older generation's");
    }

    /// Gives worker `pid`, which herd lowered as `how`, herd's priority back (`--starting-nice`:
    /// nice `serving`, the workers' own): every thread of it and of the processes it started
    /// that still runs at the starting priority (`SCHED_IDLE`, or the starting nice value); one
    /// at another chose it and keeps it. A worker gone meanwhile is no error.
    pub fn restore_priority(&self, pid: u32, how: Lowered, serving: i32) -> std::io::Result<()> {
        raise_lowered(pid, how, serving).map(drop)
    }

    /// `--starting-nice`: the nice values the threads of worker `pid` and of the processes it
    /// started run at (none if it is gone), for the choice of its trickle's
    /// ([`on_starvation`](crate::supervisor::warm_up::on_starvation)).
    pub fn nice_values(&self, pid: u32) -> Vec<i32> {
        herd_sys::process::nice_values_of_tree(pid).unwrap_or_default()
    }

    /// `--starting-nice`: worker `pid`, starved in `SCHED_IDLE`, trickles: every thread of it
    /// and of the processes it started still at `serving`'s nice value goes to `nice`, then
    /// every one still in `SCHED_IDLE` to `SCHED_OTHER` (in that order, so that none runs at
    /// `serving` meanwhile). A worker gone meanwhile is no error.
    /// On an error, the nice values it moved are moved back to `serving`, so that the caller's
    /// raise from `SCHED_IDLE` leaves no thread at `nice`.
    pub fn trickle(&self, pid: u32, serving: i32, nice: i32) -> std::io::Result<()> {
        let moved = herd_sys::process::raise_nice_tree(pid, serving, nice)
            .and_then(|_| herd_sys::process::raise_idle_tree(pid));
        match moved {
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
            Err(e) => {
                let _ = herd_sys::process::raise_nice_tree(pid, nice, serving);
                Err(e)
            }
            Ok(_) => Ok(()),
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
    pub fn start_check(&self, plan: &ExecPlan) -> Result<CheckChild, String> {
        let (stdin, to_stdin) = std::io::pipe().map_err(|e| e.to_string())?;
        let (from_stdout, stdout) = std::io::pipe().map_err(|e| e.to_string())?;
        let (from_stderr, stderr) = std::io::pipe().map_err(|e| e.to_string())?;
        let stdio = herd_sys::spawn::Stdio {
            stdin: Some(stdin.as_fd()),
            stdout: Some(stdout.as_fd()),
            stderr: Some(stderr.as_fd()),
        };
        let pid = plan.spawn_with(&[], &stdio).map_err(|e| match e.stage() {
            // "cannot run it to check it: Exec format error", not "...: cannot execute: ...".
            herd_sys::spawn::Stage::Exec => {
                std::error::Error::source(&e).map_or(e.to_string(), |e| e.to_string())
            }
            _ => e.to_string(),
        })?;
        Ok(CheckChild {
            pid,
            stdin: to_stdin.into(),
            stdout: from_stdout.into(),
            stderr: from_stderr.into(),
        })
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

/// `--starting-nice`: every thread of `pid` and of the processes it started that still runs
/// at the starting priority (`how`: `SCHED_IDLE`, or the starting nice value) gets herd's back
/// (nice `serving`); how many threads moved, none if `pid` is gone. The worker's raise, and an
/// orphan's it left ([`OwnFamily`](super::OwnFamily)).
pub(super) fn raise_lowered(pid: u32, how: Lowered, serving: i32) -> std::io::Result<usize> {
    let raised = match how {
        Lowered::Idle => herd_sys::process::raise_idle_tree(pid),
        Lowered::Nice(nice) => herd_sys::process::raise_nice_tree(pid, nice, serving),
    };
    match raised {
        Ok(raised) => Ok(raised.threads),
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(0),
        Err(e) => Err(e),
    }
}
