//! What a `--bind` spec may ask of a socket taken over on Windows (`nonblocking` and Unix
//! sockets were refused with the command line).

use super::super::parse::BindSpec;
use super::Inherited;

/// A socket taken over: a handle made for this process (`WSASocketW` from the old herd's
/// `WSADuplicateSocketW` block).
pub type OwnedSocket = std::os::windows::io::OwnedSocket;

/// Applies the options that can change on a live socket, and refuses those that cannot: what
/// every platform checks, nothing more.
pub(super) fn apply_options(spec: &BindSpec, socket: &Inherited) -> anyhow::Result<()> {
    super::apply_socket_options(spec, socket)
}
