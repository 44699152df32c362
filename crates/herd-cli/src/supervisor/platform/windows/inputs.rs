//! The supervisor's inputs and state that only Windows has: the notify pipe's messages. herd
//! holds nothing of Windows' own beyond its hands ([`Spawner`](super::Spawner),
//! [`OwnChildren`](super::OwnChildren)).

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{Control, NotifySocket};
use crate::control::request::ControlRequest;
use crate::spec::Listener;
use crate::supervisor::pool::PoolConfig;
use crate::supervisor::sources;
use crate::supervisor::status::Status;

/// An input only Windows has.
pub enum Input {
    /// A worker's notify message came, from this pid (the pipe says who).
    Notified(u32, Vec<u8>),
}

/// What the loop waits for on this turn, of what only Windows has: nothing to ask.
pub struct Wants;

/// What the control endpoint serves: the pipe.
pub type ControlServer = Control;

/// The open input channels only Windows has.
pub struct Inputs {
    notify: NotifySocket,
}

impl Inputs {
    /// Takes the notify pipe's messages and serves the control pipe, each request sent to
    /// `requests`; the server's task.
    pub fn open(
        control: ControlServer,
        notify: &NotifySocket,
        requests: mpsc::Sender<ControlRequest>,
    ) -> anyhow::Result<(Inputs, JoinHandle<()>)> {
        let server = control.serve(requests);
        let notify = std::sync::Arc::clone(notify);
        Ok((Inputs { notify }, server))
    }

    /// Nothing to keep of the `--metrics` and `--health` sockets: herd never re-executes on
    /// Windows.
    pub fn keep_endpoint(
        &mut self,
        _listener: &std::net::TcpListener,
        _endpoint: crate::supervisor::http::Endpoint,
    ) -> std::io::Result<()> {
        Ok(())
    }

    /// Waits for the next of these inputs.
    pub async fn next(&mut self, _wants: &Wants) -> sources::Input {
        let (pid, message) = self.notify.recv().await;
        sources::Input::Platform(Input::Notified(pid, message))
    }
}

/// What only the Windows supervisor holds: nothing (herd never re-executes there, and has no
/// process groups to wait for).
pub struct State;

impl State {
    /// Nothing to hold.
    pub fn new() -> anyhow::Result<State> {
        Ok(State)
    }

    /// Nothing of Windows' own keeps herd from exiting once its workers are gone.
    pub fn finished(&self) -> bool {
        true
    }

    /// No re-exec checks: herd never re-executes on Windows.
    pub fn check_pids(&self) -> Vec<u32> {
        Vec::new()
    }

    /// Nothing to wait for: a worker killed as it started is gone with its process, and what
    /// it started is in the Job Object.
    pub fn abandoned(&mut self, _pid: u32, _slot: usize, _now: std::time::Instant) {}

    /// Nothing to add to `herd status`.
    pub fn add_status(&self, _status: &mut Status, _now: std::time::Instant) {}
}

/// The pool's settings for `listeners`, as given: Windows has no per-slot queues to drain.
pub fn pool_config(config: PoolConfig, _listeners: &[Listener]) -> PoolConfig {
    config
}
