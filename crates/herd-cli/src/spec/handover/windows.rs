//! What a `--bind` spec may ask of a socket taken over on Windows (`nonblocking` and Unix
//! sockets were refused with the command line).

use anyhow::{bail, Context};

use super::super::parse::BindSpec;
use super::Inherited;

/// A socket taken over: a handle made for this process (`WSASocketW` from the old herd's
/// `WSADuplicateSocketW` block).
pub type OwnedSocket = std::os::windows::io::OwnedSocket;

/// Applies the options that can change on a live socket, and refuses those that cannot.
pub(super) fn apply_options(spec: &BindSpec, socket: &Inherited) -> anyhow::Result<()> {
    let options = &spec.options;
    let sock = socket2::SockRef::from(&socket.fd);
    if options.v6only && !sock.only_v6().unwrap_or(false) {
        bail!(
            "conflicts with the inherited socket {:?}: it accepts IPv4 too, and v6only cannot \
             change once it is bound",
            socket.name
        );
    }
    if let Some(backlog) = options.backlog {
        sock.listen(backlog.min(i32::MAX as u32) as i32)
            .context("cannot change the backlog")?;
    }
    if options.nodelay {
        sock.set_tcp_nodelay(true)?;
    }
    Ok(())
}
