//! Starting workers on Windows: each gets the sockets duplicated for its pid on its standard
//! input, a stop event of its own, the `--shm` mappings, and is held by its process handle.

use std::os::windows::io::AsHandle;

use super::{OwnChildren, SharedMemories};
use crate::command::{StartError, WorkerCommand};
use crate::spec::Listener;
use crate::supervisor::reload::Commands;
use crate::supervisor::warm_up::{Lowered, Lowering, Spawned};

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

    /// `--starting-nice` is refused on Windows (docs/windows.md): nothing to restore.
    pub fn restore_priority(&self, _pid: u32, _how: Lowered, _serving: i32) -> std::io::Result<()> {
        Ok(())
    }

    /// `--starting-nice` is refused on Windows: no run-queue waits to read.
    pub fn can_sample(&self) -> bool {
        false
    }

    /// A worker's scheduler figures (`--starting-nice`, refused on Windows): unknown.
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

    /// Starts each of `starts` (slot, generation, starting priority) in turn, as
    /// [`spawn`](Self::spawn) does: their pids, or why not, in order.
    pub fn spawn_all(
        &mut self,
        listeners: &mut [Listener],
        children: &mut OwnChildren,
        starts: &[(usize, u64, Option<Lowering>)],
    ) -> Vec<Result<Spawned, StartError>> {
        starts
            .iter()
            .map(|&(slot, generation, _)| {
                let pid = self.spawn(listeners, children, slot, generation)?;
                Ok(Spawned { pid, lowered: None })
            })
            .collect()
    }

    /// Starts a worker of `generation` in `slot`, with the sockets of `listeners`, held by
    /// `children`; its pid.
    pub fn spawn(
        &mut self,
        listeners: &mut [Listener],
        children: &mut OwnChildren,
        slot: usize,
        generation: u64,
    ) -> Result<u32, StartError> {
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
        let child = self.command.for_generation(generation).spawn(
            slot,
            generation,
            &shared,
            &inherit,
            |child| {
                children.enter_job(child);
                Ok(())
            },
        )?;
        children
            .adopt(child, stop)
            .map_err(|e| failed("cannot watch the worker", e))
    }

    /// The worker commands, for a reloaded config's.
    pub fn commands(&mut self) -> &mut Commands<WorkerCommand> {
        &mut self.command
    }
}
