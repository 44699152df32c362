//! The control endpoint on Windows: herd's named pipe, whose first instance is created before
//! any worker starts (so the name is herd's), served once the loop runs. A herd taking over
//! serves a pipe of its own meanwhile, and takes the old herd's name once that herd is gone.

use std::time::{Duration, Instant};

use herd_sys::windows::pipe::SecurePipe;
use herd_sys::windows::sid::Sid;
use tokio::sync::{mpsc, oneshot};

use crate::control::pipe_server::PipeServer;
use crate::control::request::ControlRequest;
use crate::logging::LogEvent;

/// herd's control pipe, created and not yet served.
#[derive(Debug)]
pub struct Control {
    /// The pipe's first instance.
    pub server: PipeServer,
    /// During a takeover: the old herd's pipe, to serve too once it is free.
    pub moves_to: Option<MoveTo>,
}

/// The old herd's pipe, which a herd taking over serves once told the old herd is gone.
#[derive(Debug)]
pub struct MoveTo {
    /// The old herd's pipe.
    pub pipe: String,
    /// Told once the old herd is gone, with where to say which herd took the name first;
    /// dropped if the takeover is aborted.
    pub vacated: oneshot::Receiver<oneshot::Sender<u32>>,
    /// Who may open it besides herd's user (`--control-allow-user`), as on the first pipe.
    pub allowed: Vec<Sid>,
    /// The old herd's pid: its pipe's last instances are not another herd's.
    pub old_pid: u32,
}

/// A pipe has no file to move: nothing.
pub type ControlFile = ();

/// How long the old herd's pipe may take to be free once the old herd is gone (its last
/// instances close as it exits), and how often it is tried meanwhile.
const FREE_WITHIN: Duration = Duration::from_secs(10);
const TRY_EVERY: Duration = Duration::from_millis(50);

impl Control {
    /// The endpoint's file (none), and what the loop serves.
    pub fn split(self) -> (ControlFile, Control) {
        ((), self)
    }

    /// Serves the pipe in a task, each request sent to `requests`; during a takeover, the old
    /// herd's pipe too, once it is free.
    pub fn serve(self, requests: mpsc::Sender<ControlRequest>) -> tokio::task::JoinHandle<()> {
        let Control { server, moves_to } = self;
        if let Some(moves_to) = moves_to {
            tokio::spawn(move_to(moves_to, requests.clone()));
        }
        tokio::spawn(server.forward(requests))
    }
}

/// Once the old herd is gone, creates its pipe (retried while its last instances close) and
/// serves it. Another herd that serves it meanwhile (a takeover of the same herd that got
/// there first) is reported on the channel `vacated` brought: this herd gives up.
async fn move_to(moves_to: MoveTo, requests: mpsc::Sender<ControlRequest>) {
    let MoveTo {
        pipe,
        vacated,
        allowed,
        old_pid,
    } = moves_to;
    let Ok(taken) = vacated.await else {
        return;
    };
    let deadline = Instant::now() + FREE_WITHIN;
    let server = loop {
        let bound = SecurePipe::new(&pipe, &allowed).and_then(PipeServer::bind);
        match bound {
            Ok(server) => break server,
            Err(_) if Instant::now() < deadline => {
                if let Some(pid) = other_server(&pipe, old_pid).await {
                    let _ = taken.send(pid);
                    return;
                }
                tokio::time::sleep(TRY_EVERY).await
            }
            Err(e) => {
                tracing::warn!(
                    event = LogEvent::ControlNotMoved.as_str(),
                    path = %pipe,
                    "the control pipe stays at its takeover name: cannot create {pipe}: {e}"
                );
                return;
            }
        }
    };
    drop(taken);
    tracing::info!(event = LogEvent::ControlMoved.as_str(), path = %pipe, "control pipe moved to the old herd's name");
    server.forward(requests).await;
}

/// The pid of another process than this herd and the old one (`old_pid`) that serves `pipe`
/// (as the system says), if one does.
async fn other_server(pipe: &str, old_pid: u32) -> Option<u32> {
    let path = std::path::PathBuf::from(pipe);
    let served = crate::off_loop::run("herd-pipe-probe", move || {
        crate::control::client::Client::connect(&path)
            .ok()?
            .server_pid()
            .ok()
    });
    // No thread to ask with: none is known to serve it, and the next try asks again.
    served
        .ok()?
        .await
        .ok()
        .flatten()
        .filter(|&pid| pid != std::process::id() && pid != old_pid)
}
