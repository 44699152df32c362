//! Takeover: using the sockets fetched from a running herd instead of binding anew. A
//! `--bind` spec takes the inherited socket with the same name, or else the same address; what
//! it asks for must agree with what the socket already is.

use std::net::{SocketAddr, ToSocketAddrs};
use std::os::unix::io::{AsFd, OwnedFd};

use anyhow::{bail, Context};

use super::kind::SocketKind;
use super::parse::{Address, BindSpec, Host, HostPort};

/// A socket fetched from the herd being taken over.
#[derive(Debug)]
pub struct Inherited {
    /// Its name there.
    pub name: String,
    /// What it is there; `None` for a kind this herd does not know.
    pub kind: Option<SocketKind>,
    /// Where it is bound, as that herd shows it.
    pub address: String,
    /// The socket.
    pub fd: OwnedFd,
    /// The socket file that herd created for it (absolute path, device, inode), which becomes
    /// the taking-over herd's once that herd has stopped.
    pub file: Option<(std::path::PathBuf, u64, u64)>,
}

/// Takes the inherited socket `spec` designates, if any: by name, else by address.
pub fn take_matching(
    spec: &BindSpec,
    inherited: &mut Vec<Inherited>,
) -> anyhow::Result<Option<Inherited>> {
    let by_name = spec
        .name
        .as_ref()
        .and_then(|n| inherited.iter().position(|i| &i.name == n));
    let index = match by_name {
        Some(i) => Some(i),
        None => inherited
            .iter()
            .position(|i| same_address(&spec.address, i)),
    };
    let Some(index) = index else {
        return Ok(None);
    };
    let socket = inherited.remove(index);
    if !same_address(&spec.address, &socket) {
        bail!(
            "conflicts with the inherited socket {:?} at {}: a socket of the same name must keep \
             its address (give it another name to bind a new socket)",
            socket.name,
            socket.address
        );
    }
    apply_options(spec, &socket)?;
    Ok(Some(socket))
}

/// Whether `address` (as given to `--bind`) describes the inherited socket.
fn same_address(address: &Address, socket: &Inherited) -> bool {
    let ip = |text: &str| text.parse::<SocketAddr>().ok();
    match address {
        Address::Tcp(hp) if socket.kind == Some(SocketKind::Tcp) => {
            ip(&socket.address).is_some_and(|a| matches_ip(hp, a))
        }
        Address::Udp(hp) if socket.kind == Some(SocketKind::Udp) => socket
            .address
            .strip_prefix("udp://")
            .and_then(ip)
            .is_some_and(|a| matches_ip(hp, a)),
        Address::UnixPath(path) => socket.address == format!("unix:{}", path.display()),
        Address::UnixAbstract(name) => socket.address == format!("unix:@{name}"),
        _ => false,
    }
}

fn matches_ip(hp: &HostPort, actual: SocketAddr) -> bool {
    if hp.port != 0 && hp.port != actual.port() {
        return false;
    }
    match &hp.host {
        Host::Any => actual.ip().is_unspecified(),
        Host::Ip(ip) => *ip == actual.ip(),
        Host::Name(name) => (name.as_str(), actual.port())
            .to_socket_addrs()
            .map(|mut addrs| addrs.any(|a| a.ip() == actual.ip()))
            .unwrap_or(false),
    }
}

/// Applies the options that can change on a live socket, and refuses those that cannot.
fn apply_options(spec: &BindSpec, socket: &Inherited) -> anyhow::Result<()> {
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
