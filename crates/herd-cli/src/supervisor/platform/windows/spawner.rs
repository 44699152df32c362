//! Starting workers on Windows: each gets the sockets duplicated for its pid on its standard
//! input, a stop event of its own, the `--shm` mappings, and is held by its process handle.

use std::os::windows::io::AsHandle;

use super::{OwnChildren, SharedMemories};
use crate::command::{StartError, WorkerCommand};
use crate::spec::Listener;
use crate::supervisor::reload::Commands;
use crate::supervisor::warm_up::{Lowered, Lowering, PriorityClass, Spawned};
use herd_sys::windows::priority;

/// What starts workers.
pub struct Spawner {
    /// The worker command of each generation.
    command: Commands<WorkerCommand>,
    /// `--shm` mappings, which every worker inherits (on Unix they are listeners).
    shared_memory: SharedMemories,
}

impl Spawner {
    /// Starts workers with `command`.
    pub fn new(command: WorkerCommand) -> anyhow::Result<Spawner> {
        Ok(Spawner {
            command: Commands::new(command),
            shared_memory: SharedMemories::default(),
        })
    }

    /// Gives worker `pid`, which herd lowered as `how`, the class herd's workers start in
    /// back (`--starting-nice`: `serving`, a [`PriorityClass::raw`] value): the worker and
    /// every process it started that is still in the starting class
    /// (Windows starts the children of an `IDLE` or `BELOW_NORMAL` process in its class); one
    /// in another chose it and keeps it. A worker gone meanwhile is no error.
    pub fn restore_priority(&self, pid: u32, how: Lowered, serving: i32) -> std::io::Result<()> {
        let from = PriorityClass::starting(how).raw();
        priority::raise_tree(pid, from, serving as u32).map(drop)
    }

    /// Windows keeps no run-queue waits, so no warm-up is found starved and none trickles.
    pub fn nice_values(&self, _pid: u32) -> Vec<i32> {
        Vec::new()
    }

    /// Windows keeps no run-queue waits, so no warm-up is found starved and none trickles.
    pub fn trickle(&self, _pid: u32, _serving: i32, _nice: i32) -> std::io::Result<()> {
        Err(std::io::ErrorKind::Unsupported.into())
    }

    /// Windows keeps no run-queue waits: a warm-up ends with its budget.
    pub fn can_sample(&self) -> bool {
        false
    }

    /// A worker's scheduler figures: unknown on Windows.
    pub fn sched_stat(&self, _pid: u32) -> Option<crate::supervisor::warm_up::SchedStat> {
        None
    }

    /// Shares `memories` with every worker started from now on.
    pub fn share_memory(&mut self, memories: SharedMemories) {
        self.shared_memory = memories;
    }

    /// How many starts one call of [`spawn_all`](Self::spawn_all) takes: one, so that a
    /// turn of the loop can end after any slow start (under Wine, a large part of a second).
    pub const BATCH: usize = 1;

    /// How many starts the next call of [`spawn_all`](Self::spawn_all) should take:
    /// [`BATCH`](Self::BATCH) (Windows has no fork server).
    pub fn batch(&self) -> usize {
        Self::BATCH
    }

    /// Starts each of `starts` (slot, generation, starting priority) in turn, as
    /// [`spawn`](Self::spawn) does: their pids, or why not, in order (each `Some`: no start
    /// awaits a fork server's reply on Windows).
    pub fn spawn_all(
        &mut self,
        listeners: &mut [Listener],
        children: &mut OwnChildren,
        starts: &[(usize, u64, Option<Lowering>)],
    ) -> Vec<Option<Result<Spawned, StartError>>> {
        starts
            .iter()
            .map(|&(slot, generation, lowering)| {
                Some(self.spawn(listeners, children, slot, generation, lowering))
            })
            .collect()
    }

    /// Starts a worker of `generation` in `slot`, with the sockets of `listeners`, held by
    /// `children`, in the priority class of `lowering` (set while it is still suspended:
    /// it runs nothing before); its pid and how it was lowered (`None`: not, or the class
    /// could not be set, and it runs in the class it was born in).
    pub fn spawn(
        &mut self,
        listeners: &mut [Listener],
        children: &mut OwnChildren,
        slot: usize,
        generation: u64,
        lowering: Option<Lowering>,
    ) -> Result<Spawned, StartError> {
        let shared: Option<Vec<herd::windows::Shared<'_>>> =
            listeners.iter().map(Listener::shared).collect();
        let shared = shared.ok_or_else(|| StartError {
            cannot_execute: false,
            message: "the sockets are closed".to_string(),
        })?;
        let failed = |what: &str, e: std::io::Error| StartError {
            cannot_execute: false,
            message: format!("{what}: {e}"),
        };
        let stop = herd_sys::windows::event::Event::new()
            .map_err(|e| failed("cannot create the worker's stop event", e))?;
        let mut inherit = self.shared_memory.inherited();
        inherit.push(herd::windows::Inherited::StopEvent(stop.as_handle()));
        let mut lowered = None;
        let mut job = None;
        let child = self.command.for_generation(generation).spawn(
            slot,
            generation,
            &shared,
            &inherit,
            |child| {
                job = children.enter_job(child);
                lowered = lowering.and_then(|l| lower(child, l.to));
                Ok(())
            },
        )?;
        let pid = children
            .adopt(child, stop, job)
            .map_err(|e| failed("cannot watch the worker", e))?;
        Ok(Spawned { pid, lowered })
    }

    /// A start may always go ahead: Windows has no fork, and `--fork-server` is refused there.
    pub fn fork_gate(
        &mut self,
        _generation: u64,
        _limits: (std::time::Duration, Option<Lowering>),
    ) -> Result<crate::supervisor::fork_server::Opened, StartError> {
        Ok(crate::supervisor::fork_server::Opened::Go)
    }

    /// Windows runs no fork server: no process is one.
    pub fn fork_server_ready(&mut self, _pid: u32) -> Option<u64> {
        None
    }

    /// Windows runs no fork server: no exit is one's.
    pub fn fork_server_exited(
        &mut self,
        _pid: u32,
        _how: &str,
    ) -> Option<crate::supervisor::fork_server::Ended> {
        None
    }

    /// Windows runs no fork server: none loads too long.
    pub fn fork_servers_timed_out(&mut self, _now: std::time::Instant) {}

    /// Windows runs no fork server: none runs out of time.
    pub fn fork_server_deadline(&self) -> Option<std::time::Instant> {
        None
    }

    /// Windows runs no fork server: no load or reply to wait longer for after herd's stall.
    pub fn resumed_after(&mut self, _gap: std::time::Duration) {}

    /// Windows runs no fork server: none is raised.
    pub fn fork_server_raised(&mut self, _pid: u32, _now: std::time::Instant) {}

    /// Windows runs no fork server.
    pub fn fork_server_pids(&self) -> Vec<u32> {
        Vec::new()
    }

    /// Windows runs no fork server.
    pub fn fork_server_statuses(&self) -> Vec<crate::supervisor::status::ForkServerStatus> {
        Vec::new()
    }

    /// Windows runs no fork server: nothing to close.
    pub fn close_fork_servers(&mut self) {}

    /// Nothing to close: Windows runs no fork server.
    pub fn close_fork_servers_before(&mut self, _generation: u64) {}

    /// Closes the fork servers of an aborted upgrade: Windows has none, so no start awaits one.
    pub fn close_fork_servers_after(&mut self, _generation: u64) -> Vec<usize> {
        Vec::new()
    }

    /// Windows runs no fork server: no start awaits a reply.
    pub fn take_replied(&mut self) -> Vec<crate::supervisor::fork_server::Replied> {
        Vec::new()
    }

    /// Windows runs no fork server: no start awaits a reply.
    pub fn awaits_fork_replies(&self) -> bool {
        false
    }

    /// The worker commands, for a reloaded config's.
    pub fn commands(&mut self) -> &mut Commands<WorkerCommand> {
        &mut self.command
    }
}

/// Puts `child`, still suspended, in the class of `how`: how it was lowered, `None` when it
/// could not be (it then runs in the class it was born in, as Unix leaves a worker it could
/// not lower).
fn lower(child: &std::process::Child, how: Lowered) -> Option<Lowered> {
    let class = PriorityClass::starting(how).raw();
    priority::set_class(child, class).ok().map(|()| how)
}
