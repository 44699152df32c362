//! Takeover: using the sockets fetched from a running herd instead of binding anew. A
//! `--bind` spec takes the inherited socket with the same name, or else the same address; what
//! it asks for must agree with what the socket already is. The matching is the same on every
//! platform; which options a live socket can change is not (`unix.rs`, `windows.rs`).

use std::net::{SocketAddr, ToSocketAddrs};

use anyhow::{bail, Context};

use super::kind::SocketKind;
use super::parse::{Address, BindSpec, Host, HostPort};

#[cfg_attr(unix, path = "handover/unix.rs")]
#[cfg_attr(windows, path = "handover/windows.rs")]
mod imp;

use imp::apply_options;
pub use imp::OwnedSocket;

/// A socket fetched from the herd being taken over.
#[derive(Debug)]
pub struct Inherited {
    /// Its name there.
    pub name: String,
    /// What it is there; `None` for a kind this herd does not know.
    pub kind: Option<SocketKind>,
    /// Where it is bound, as that herd shows it.
    pub address: String,
    /// The socket (a file descriptor on Unix, a socket handle made for this process on
    /// Windows).
    pub fd: OwnedSocket,
    /// The socket file that herd created for it (absolute path, device, inode), which becomes
    /// the taking-over herd's once that herd has stopped.
    pub file: Option<(std::path::PathBuf, u64, u64)>,
    /// Whether systemd's fd store gave it back (not a live herd): one that no longer fits its
    /// `--bind` or `--shm` is then replaced, not refused.
    pub from_store: bool,
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
        if socket.from_store {
            let wanted = format!("--bind '{}'", spec.text);
            replace_stored(&socket, &wanted);
            return take_matching(spec, inherited);
        }
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

/// Says that `stored`, given back by systemd's fd store, no longer fits `wanted` (the
/// `--bind` or `--shm` of its name) and is closed for a new one; the next sync of the store
/// removes it there.
pub fn replace_stored(stored: &Inherited, wanted: &str) {
    tracing::warn!(
        event = crate::logging::LogEvent::FdstoreReplaced.as_str(),
        name = %stored.name,
        address = %stored.address,
        "{:?} from systemd's fd store is at {}, which {wanted} no longer asks for: herd closes \
         it, makes a new one and replaces it in the store",
        stored.name,
        stored.address
    );
}

/// The socket file of a socket taken over that no `--bind` took: the old herd leaves its files
/// to the herd taking over, which removes this one once the old herd has stopped (nothing
/// serves it then).
#[derive(Debug)]
pub struct UntakenFile {
    /// The socket's name in the old herd.
    pub name: String,
    /// The file (absolute path, device, inode), as the old herd created it.
    pub file: (std::path::PathBuf, u64, u64),
}

/// Says, for each of the sockets taken over (or given back by systemd's fd store) that no
/// `--bind` or `--shm` took, that herd closes its copy; returns the socket files of those taken
/// over (to remove once the takeover completes).
pub fn leave_untaken(untaken: Vec<Inherited>) -> Vec<UntakenFile> {
    let mut files = Vec::new();
    for socket in untaken {
        let file = match (&socket.file, socket.from_store) {
            (Some(_), false) => ", and its socket file is removed then",
            _ => "",
        };
        tracing::warn!(
            event = crate::logging::LogEvent::SocketNotTaken.as_str(),
            name = %socket.name,
            address = %socket.address,
            "not taken: no --bind or --shm names this socket; herd closes its copy (one taken \
             over closes when the old herd stops{file})"
        );
        if let (Some(file), false) = (socket.file, socket.from_store) {
            files.push(UntakenFile {
                name: socket.name,
                file,
            });
        }
    }
    files
}

/// Applies the options every platform can change on a live socket (`backlog`, `nodelay`), and
/// refuses `v6only` on one that accepts IPv4 too (it cannot change once bound).
fn apply_socket_options(spec: &BindSpec, socket: &Inherited) -> anyhow::Result<()> {
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

/// Whether `address` (as given to `--bind`) describes the inherited socket (a Unix path also
/// when spelled otherwise than the old herd did, relative to another directory).
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
        // A relative path means another file from another directory: by text only when
        // absolute, else by the file it leads to.
        Address::UnixPath(path) => {
            (path.is_absolute() && socket.address == format!("unix:{}", path.display()))
                || imp::leads_to_its_file(path, socket)
        }
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

#[cfg(test)]
mod tests;
