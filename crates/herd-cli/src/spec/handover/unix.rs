//! What a `--bind` spec may ask of a socket taken over on Unix.

use std::os::unix::io::AsFd;

use anyhow::{bail, Context};

use super::super::parse::{Address, BindSpec};
use super::Inherited;

/// A socket taken over: a file descriptor.
pub type OwnedSocket = std::os::unix::io::OwnedFd;

/// Applies the options that can change on a live socket, and refuses those that cannot.
pub(super) fn apply_options(spec: &BindSpec, socket: &Inherited) -> anyhow::Result<()> {
    let options = &spec.options;
    let fd = socket.fd.as_fd();
    let nonblocking = herd_sys::fd::is_nonblocking(fd)?;
    if options.nonblocking != nonblocking {
        let (is, asked) = if nonblocking {
            ("non-blocking", "without 'nonblocking'")
        } else {
            ("blocking", "with 'nonblocking'")
        };
        bail!(
            "conflicts with the inherited socket {:?}: it is {is}, and its workers share that \
             mode; bind it {asked} to match, or under another name",
            socket.name
        );
    }
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
    if let (Some(mode), Address::UnixPath(path)) = (options.mode, &spec.address) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}
