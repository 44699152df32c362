//! The control endpoint on Windows: herd's named pipe, whose first instance is created before
//! any worker starts (so the name is herd's), served once the loop runs.

use tokio::sync::mpsc;

use crate::control::pipe_server::PipeServer;
use crate::control::request::ControlRequest;
use crate::logging::LogEvent;

/// herd's control pipe, created and not yet served.
#[derive(Debug)]
pub struct Control {
    /// The pipe's first instance.
    pub server: PipeServer,
    /// Its name, for the log.
    pub name: String,
}

/// A pipe has no file to move: nothing.
pub type ControlFile = ();

impl Control {
    /// The endpoint's file (none), and what the loop serves.
    pub fn split(self) -> (ControlFile, Control) {
        ((), self)
    }

    /// Serves the pipe in a task, each request sent to `requests`.
    pub fn serve(self, requests: mpsc::Sender<ControlRequest>) -> tokio::task::JoinHandle<()> {
        let Control { server, name } = self;
        tokio::spawn(async move {
            if let Err(e) = server.forward(requests).await {
                tracing::error!(
                    event = LogEvent::SystemError.as_str(),
                    "control pipe {name}: cannot create the next instance, no more control \
                     clients can connect: {e}"
                );
            }
        })
    }
}
