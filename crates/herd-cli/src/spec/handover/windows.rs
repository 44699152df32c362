//! What a `--bind` spec may ask of a socket taken over on Windows (Unix sockets were refused
//! with the command line).

use super::super::parse::BindSpec;
use super::Inherited;

/// A socket taken over: a handle made for this process (`WSASocketW` from the old herd's
/// `WSADuplicateSocketW` block).
pub type OwnedSocket = std::os::windows::io::OwnedSocket;

/// Applies the options that can change on a live socket, and refuses those that cannot: what
/// every platform checks, and `nonblocking`, which puts the socket in non-blocking mode before
/// this herd's workers get it. Windows cannot tell a socket's mode, so the mismatch Unix
/// refuses cannot be seen, and a socket is never made blocking here: taken over without
/// `nonblocking` from a herd that bound it with, it stays non-blocking (the old herd's workers
/// still serve on it), and the new workers get it so; taken over with `nonblocking` from a
/// herd that bound it without, the mode, shared by every descriptor of the socket, is the old
/// herd's workers' too until they stop (docs/windows.md says both).
pub(super) fn apply_options(spec: &BindSpec, socket: &Inherited) -> anyhow::Result<()> {
    if spec.options.nonblocking {
        socket2::SockRef::from(&socket.fd).set_nonblocking(true)?;
    }
    super::apply_socket_options(spec, socket)
}

/// Never: Windows takes over no Unix socket.
pub(super) fn leads_to_its_file(_path: &std::path::Path, _socket: &Inherited) -> bool {
    false
}

impl super::UntakenFile {
    /// Nothing to remove: Windows takes over no Unix socket.
    pub fn remove(self) {}
}
