//! A control request as the supervisor receives it, from whichever transport: the command,
//! who sent it, and the channels its answer goes back on ([`forward`]).

use tokio::sync::{mpsc, oneshot};

use super::protocol::{Command, ErrorCode, Response};
use super::reply::Reply;

/// The client's connection, kept with a request that is answered from elsewhere: on Unix the
/// socket (`reexec` is answered by the new image, `attach` watches its peer). On Windows, for
/// an `attach`, the client's process, opened by the pipe server as the request came, while the
/// client was connected (so its pid, `GetNamedPipeClientProcessId`, was its own), or why it
/// could not be: herd holds it by that handle, never by a pid that may have been reused since.
#[cfg(unix)]
pub type Connection = std::os::unix::io::OwnedFd;
/// See the Unix definition.
#[cfg(windows)]
pub type Connection = std::io::Result<herd_sys::windows::process::Process>;

/// Who sent a request, as the system reports it (`SO_PEERCRED`; on Windows
/// `GetNamedPipeClientProcessId`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    /// The peer's pid (when the system says).
    pub pid: Option<u32>,
    /// The peer's uid (Unix; on Windows the pipe's security descriptor admitted it).
    pub uid: Option<u32>,
}

/// A command from a client, with the channel for its response.
#[derive(Debug)]
pub struct ControlRequest {
    /// What the client asked.
    pub command: Command,
    /// Who asked.
    pub peer: Peer,
    /// Where the supervisor sends the response.
    pub reply: oneshot::Sender<Reply>,
    /// Resolves once the response has been written to the client (or could not be), so that
    /// a supervisor about to exit can make sure its last answers went out.
    pub written: oneshot::Receiver<()>,
    /// For `reexec`: the client's connection, which the new program answers on; for `sockets`
    /// with `attach`: the connection, whose peer is the attaching process (on Windows: that
    /// process).
    pub connection: Option<Connection>,
}

/// Hands `command` to the supervisor on `requests` and waits for its reply; "herd is
/// stopping" when the supervisor no longer takes requests.
pub async fn forward(
    command: Command,
    peer: Peer,
    written: oneshot::Receiver<()>,
    connection: Option<Connection>,
    requests: &mpsc::Sender<ControlRequest>,
) -> Reply {
    let stopping = || Reply::from(Response::error(ErrorCode::Stopping, "herd is stopping"));
    let (reply, response) = oneshot::channel();
    let request = ControlRequest {
        command,
        peer,
        reply,
        written,
        connection,
    };
    if requests.send(request).await.is_err() {
        return stopping();
    }
    response.await.unwrap_or_else(|_| stopping())
}
