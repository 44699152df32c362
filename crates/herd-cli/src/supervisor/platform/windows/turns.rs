//! What the loop asks of the platform, on Windows: the notify pipe's messages, the attached
//! processes held by handle, and no-ops where Windows has nothing (re-exec, process groups,
//! reuseport slots, resource-limit hints). The loop ([`driver`](crate::supervisor::driver)
//! and the files beside it) calls these by the same names on every platform.

use std::process::ExitStatus;
use std::time::Instant;

use herd_core::WorkerState;
use herd_sys::windows::process::Process;

use super::inputs::{Input, Wants};
use super::{ControlFile, NotifySocket, SharedMemories};
use crate::control::protocol::{ErrorCode, Response};
use crate::control::request::Connection;
use crate::supervisor::attached::Attached;
use crate::supervisor::effects::{Client, Effect};
use crate::supervisor::sources::Sources;
use crate::supervisor::waiters::Answer;
use crate::supervisor::Supervisor;

/// Why `herd reexec` is refused on Windows.
const NO_REEXEC: &str = "herd cannot re-execute itself on Windows, which has no exec; start \
                         the new binary as `herd run --takeover NAME ...`, which takes the \
                         sockets over";

impl Supervisor {
    /// Shares `memories` (`--shm`) with every worker.
    pub fn share_memory(&mut self, memories: SharedMemories) {
        self.effects.spawner().share_memory(memories);
    }

    /// Process `sender` alone: only a worker's own process is heard on Windows.
    pub(in crate::supervisor) fn lineage(&self, sender: u32) -> Vec<u32> {
        vec![sender]
    }

    /// Nothing of Windows' own to wait for on a turn.
    pub(in crate::supervisor) fn platform_wants(&self) -> Wants {
        Wants
    }

    /// Handles an input only Windows has.
    pub(in crate::supervisor) fn handle_platform(
        &mut self,
        input: Input,
        _sources: &mut Sources,
        _control_file: &mut ControlFile,
        _notify: &mut NotifySocket,
    ) {
        match input {
            // The pipe says who sent it; only a worker's own process is heard.
            Input::Notified(pid, message) => {
                let worker = self.pool.worker(pid).is_some().then_some(pid);
                let cut = super::NotifyPipe::is_cut(&message);
                self.notified(Some((pid, worker)), &message, cut);
            }
        }
    }

    /// `herd reexec`: refused, pointing to `--takeover` (no signal carries it on Windows).
    pub(in crate::supervisor) fn reexec_requested(
        &mut self,
        client: Option<Client>,
        _sources: &Sources,
    ) {
        if let Some(client) = client {
            let response = Response::error(ErrorCode::InvalidArgument, NO_REEXEC);
            self.effects
                .execute([Effect::Answer(Answer::new(client, response))]);
        }
    }

    /// Nothing: herd never re-executes on Windows.
    pub(in crate::supervisor) fn announce_reexec(&mut self) {}

    /// Nothing of Windows' own on each turn (attached processes' exits wake the loop as the
    /// workers' do; no reuseport slots drain).
    pub(in crate::supervisor) fn platform_after_turn(&mut self, _sources: &Sources) {}

    /// Nothing to learn of a named pipe's place (Unix: the control socket's directory).
    pub(in crate::supervisor) fn control_bound(&mut self, _control: &super::Control) {}

    /// Nothing, as a turn begins or before a look at the children: each notify pipe
    /// connection is read as it comes, by a task of its own, and its message is an input of
    /// its own (after a stall of herd's, the deadlines moved: `Pool::resumed_after`).
    pub(in crate::supervisor) fn read_waiting_notifications(&mut self, _sources: &Sources) {}

    /// Nothing after a look at the children: every child is a worker, and Windows has no
    /// process groups to wait for.
    pub(in crate::supervisor) fn reaped(
        &mut self,
        _checks: Vec<(u32, ExitStatus)>,
        _lost_checks: Vec<u32>,
        _exits: Vec<(u32, usize, Option<WorkerState>)>,
    ) {
    }

    /// Nothing before an exit is judged: a worker cannot shut herd's copy of a socket down.
    pub(in crate::supervisor) fn worker_exiting(&mut self) {}

    /// Nothing to add to an exit's description: Windows has no resource limits that kill.
    pub(in crate::supervisor) fn worker_gone(
        &mut self,
        _slot: usize,
        _pid: u32,
        _status: ExitStatus,
        _stopped: bool,
    ) -> Option<String> {
        None
    }

    /// Nothing more to stop as herd starts to stop: no re-exec checks.
    pub(in crate::supervisor) fn platform_stop_effects(&mut self) -> Vec<Effect> {
        Vec::new()
    }

    /// Nothing more to stop: no process groups are left behind.
    pub(in crate::supervisor) fn platform_stopping(&mut self, _deadline: Instant, _now: Instant) {}

    /// Holds process `pid`, the pipe's client, as an attached process holding the sockets
    /// `names`, attached at `now` (by `connection`: its process, opened while it was
    /// connected); the value of its stop event in it (see [`crate::supervisor::attached`]). A
    /// process attached already is the same one (its held handle keeps its pid from being
    /// reused): it keeps its entry and gets another copy of its stop event.
    pub(in crate::supervisor) fn hold_attached(
        &mut self,
        pid: u32,
        connection: Option<&Connection>,
        names: Vec<String>,
        now: Instant,
    ) -> Result<Option<u64>, String> {
        let cannot_hold =
            |e: std::io::Error| format!("cannot hold the attaching process {pid}: {e}");
        if let Some(held) = self.attached.get_mut(pid) {
            return held.attach_again(names, now).map(Some).map_err(cannot_hold);
        }
        let process = held_process(connection).map_err(cannot_hold)?;
        let (attached, stop_event) = Attached::open(process, names, now).map_err(cannot_hold)?;
        self.attached.add(attached);
        Ok(Some(stop_event))
    }
}

/// Another handle to the attaching process the pipe server opened, or why there is none (the
/// system's reason when it could not be opened).
fn held_process(connection: Option<&Connection>) -> std::io::Result<Process> {
    match connection {
        Some(Ok(process)) => process.try_clone(),
        Some(Err(e)) => Err(std::io::Error::new(e.kind(), e.to_string())),
        None => Err(std::io::Error::other(
            "its process was not opened while it was connected",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_that_could_not_be_opened_is_refused_with_the_systems_reason() {
        let reason = std::io::Error::from_raw_os_error(5).to_string(); // ERROR_ACCESS_DENIED
        let denied = Err(std::io::Error::from_raw_os_error(5));
        let refused = held_process(Some(&denied)).unwrap_err();
        assert_eq!(refused.to_string(), reason);
        assert!(held_process(None).is_err());
        let me = Ok(Process::open(std::process::id()).unwrap());
        assert_eq!(held_process(Some(&me)).unwrap().pid(), std::process::id());
    }
}
