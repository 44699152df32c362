//! What the supervisor answers a control client: a response, and the sockets handed over with
//! it (the `sockets` command's).

use super::protocol::Response;

/// A socket a reply hands over: on Unix an fd sent with the response line (`SCM_RIGHTS`).
#[cfg(unix)]
pub type Handed = std::os::unix::io::OwnedFd;

/// A socket a reply hands over: on Windows one to duplicate for the client's process.
#[cfg(windows)]
pub type Handed = std::os::windows::io::OwnedSocket;

/// A response, and the sockets that travel with it.
#[derive(Debug)]
pub struct Reply {
    /// The JSON response.
    pub response: Response,
    /// Sent with the response line (on Unix in batches of at most 252).
    pub fds: Vec<Handed>,
}

impl From<Response> for Reply {
    fn from(response: Response) -> Reply {
        Reply {
            response,
            fds: Vec::new(),
        }
    }
}
