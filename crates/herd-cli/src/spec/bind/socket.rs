//! Binding one socket of a spec: TCP (names resolved, `:PORT` dual-stack), UDP, Unix; its
//! listen backlog; and what a failed bind means, said plainly.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::os::unix::prelude::OsStrExt;

use anyhow::{anyhow, Context};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::logging::LogEvent;
use crate::spec::parse::{Address, BindSpec, Host, HostPort};
use crate::spec::reuseport::GroupOptions;
use crate::spec::socket_file::{self, SocketFile};
use crate::spec::twice::InUse;

/// Binds one TCP listener for herd's own use (`--metrics`), as `--bind` would bind `spec`:
/// names resolved, `:PORT` dual-stack.
pub fn bind_tcp(spec: &BindSpec) -> anyhow::Result<std::net::TcpListener> {
    let (socket, _, _, _) = bind_one(spec, false)?;
    Ok(socket.into())
}

/// A bound socket: the socket, its address as shown, its port (IP), its socket file (Unix).
pub(super) type Bound = (Socket, String, Option<u16>, Option<SocketFile>);

/// Binds `spec` (not a systemd one), with `SO_REUSEPORT` for a per-slot group.
pub(super) fn bind_one(spec: &BindSpec, reuseport: bool) -> anyhow::Result<Bound> {
    match &spec.address {
        Address::Tcp(hp) => bind_ip(spec, hp, Type::STREAM, reuseport),
        Address::Udp(hp) => bind_ip(spec, hp, Type::DGRAM, false),
        Address::UnixPath(path) => {
            let _lock = socket_file::lock_dir_of(path);
            socket_file::prepare(path)?;
            let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
            let shown = format!("unix:{}", path.display());
            socket
                .bind(&SockAddr::unix(path)?)
                .map_err(|e| unix_bind_error(e, &shown))?;
            let file = SocketFile::created(path)?;
            match (
                spec.options.mode,
                socket_file::set_mode(path, spec.options.mode),
            ) {
                (_, Ok(())) => {}
                (Some(mode), Err(e)) => {
                    return Err(e)
                        .with_context(|| format!("cannot set mode {mode:o} on {}", path.display()))
                }
                // No mode was asked for: a socket file whose own bits cannot be set again
                // (and so not made sticky) costs no socket.
                (None, Err(e)) => tracing::warn!(
                    event = crate::logging::LogEvent::SetupNote.as_str(),
                    path = %path.display(),
                    "cannot set the sticky bit on {} ({e}): a cleaner of its directory \
                     (systemd-tmpfiles) may remove it after days; serving on",
                    path.display()
                ),
            }
            listen(&socket, spec)?;
            Ok((socket, shown, None, Some(file)))
        }
        Address::SystemdAll | Address::SystemdNamed(_) => {
            unreachable!("adopted in bind_all")
        }
        Address::UnixAbstract(name) => {
            let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
            let shown = format!("unix:@{name}");
            let mut raw = vec![0u8];
            raw.extend_from_slice(std::ffi::OsStr::new(name).as_bytes());
            let addr = SockAddr::unix(std::ffi::OsStr::from_bytes(&raw))?;
            socket.bind(&addr).map_err(|e| unix_bind_error(e, &shown))?;
            listen(&socket, spec)?;
            Ok((socket, shown, None, None))
        }
    }
}

fn bind_ip(spec: &BindSpec, hp: &HostPort, ty: Type, reuseport: bool) -> anyhow::Result<Bound> {
    let protocol = if ty == Type::STREAM {
        Protocol::TCP
    } else {
        Protocol::UDP
    };
    let (socket, requested) = match &hp.host {
        Host::Any => {
            // Dual-stack [::] where the system has IPv6, else 0.0.0.0.
            let v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), hp.port);
            match Socket::new(Domain::IPV6, ty, Some(protocol)) {
                Ok(socket) => (socket, v6),
                Err(e) if e.raw_os_error() == Some(libc::EAFNOSUPPORT) && !spec.options.v6only => {
                    let v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), hp.port);
                    (Socket::new(Domain::IPV4, ty, Some(protocol))?, v4)
                }
                Err(e) => return Err(e.into()),
            }
        }
        Host::Ip(ip) => {
            let addr = match ip {
                IpAddr::V6(v6) if hp.scope != 0 => {
                    SocketAddr::V6(std::net::SocketAddrV6::new(*v6, hp.port, 0, hp.scope))
                }
                _ => SocketAddr::new(*ip, hp.port),
            };
            (
                Socket::new(Domain::for_address(addr), ty, Some(protocol))?,
                addr,
            )
        }
        Host::Name(name) => {
            let addr = resolve(name, hp.port)?;
            if spec.options.v6only && addr.is_ipv4() {
                anyhow::bail!("'{name}' resolved to {addr}, an IPv4 address; v6only needs IPv6");
            }
            (
                Socket::new(Domain::for_address(addr), ty, Some(protocol))?,
                addr,
            )
        }
    };
    if requested.is_ipv6() {
        socket.set_only_v6(spec.options.v6only)?;
    }
    if ty == Type::STREAM {
        // Lets a restarted herd bind while old connections sit in TIME_WAIT.
        socket.set_reuse_address(true)?;
        if spec.options.nodelay {
            socket.set_tcp_nodelay(true)?;
        }
        if reuseport {
            socket.set_reuse_port(true)?;
        }
    }
    socket
        .bind(&requested.into())
        .map_err(|e| ip_bind_error(e, requested, ty == Type::DGRAM))?;
    if ty == Type::STREAM {
        listen(&socket, spec)?;
    } else if spec.options.nonblocking {
        socket.set_nonblocking(true)?;
    }
    let local = socket
        .local_addr()?
        .as_socket()
        .ok_or_else(|| anyhow!("bound socket has no IP address"))?;
    let shown = if ty == Type::STREAM {
        local.to_string()
    } else {
        format!("udp://{local}")
    };
    Ok((socket, shown, Some(local.port()), None))
}

/// How the per-slot sockets of `spec` are made.
pub(super) fn group_options(spec: &BindSpec) -> GroupOptions {
    GroupOptions {
        backlog: spec.options.backlog.unwrap_or_else(somaxconn),
        nodelay: spec.options.nodelay,
        nonblocking: spec.options.nonblocking,
        v6only: spec.options.v6only,
    }
}

fn listen(socket: &Socket, spec: &BindSpec) -> anyhow::Result<()> {
    let limit = somaxconn();
    let backlog = spec.options.backlog.unwrap_or(limit);
    if backlog > limit {
        tracing::warn!(
            event = LogEvent::SetupNote.as_str(),
            "backlog {backlog} in --bind '{}' exceeds net.core.somaxconn ({limit}); \
             the kernel uses {limit}",
            spec.text
        );
    }
    socket.listen(backlog.min(i32::MAX as u32) as i32)?;
    if spec.options.nonblocking {
        socket.set_nonblocking(true)?;
    }
    Ok(())
}

/// The system's cap on listen backlogs (`net.core.somaxconn`), the default backlog.
pub fn somaxconn() -> u32 {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(libc::SOMAXCONN as u32)
}

fn resolve(name: &str, port: u16) -> anyhow::Result<SocketAddr> {
    let mut addrs = (name, port).to_socket_addrs().map_err(|e| {
        anyhow!("cannot resolve host '{name}': {e}; use an IP address or a resolvable name")
    })?;
    addrs
        .next()
        .ok_or_else(|| anyhow!("host '{name}' has no addresses; use an IP address"))
}

fn ip_bind_error(err: io::Error, addr: SocketAddr, udp: bool) -> anyhow::Error {
    match err.raw_os_error() {
        Some(libc::EADDRINUSE) => {
            let holders = crate::spec::holders::holders(addr, udp);
            anyhow::Error::new(InUse(
                addr,
                crate::spec::holders::describe(&holders),
                holders.len(),
            ))
        }
        Some(libc::EACCES) if addr.port() < 1024 => anyhow!(
            "permission denied binding {addr}: ports below 1024 need root or \
             CAP_NET_BIND_SERVICE; run herd with that privilege or use a port above 1023"
        ),
        Some(libc::EADDRNOTAVAIL) => anyhow!(
            "address {addr} is not available on this machine: use the address of a local \
             interface, or :PORT for all of them"
        ),
        _ => anyhow!("cannot bind {addr}: {err}"),
    }
}

fn unix_bind_error(err: io::Error, shown: &str) -> anyhow::Error {
    match err.raw_os_error() {
        Some(libc::EADDRINUSE) => anyhow!("{shown} is already in use: choose another name"),
        Some(libc::EACCES) => {
            anyhow!("permission denied creating {shown}: its directory must be writable by herd")
        }
        Some(libc::ENOENT) => anyhow!("cannot create {shown}: its directory does not exist"),
        _ => anyhow!("cannot bind {shown}: {err}"),
    }
}
