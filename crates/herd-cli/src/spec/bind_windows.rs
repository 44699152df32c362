//! Binding on Windows: TCP and UDP only (no Unix sockets, no `--balance reuseport`, refused
//! with the command line), each socket not inheritable: workers get it duplicated for them.

use std::net::{
    IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6, TcpListener, ToSocketAddrs, UdpSocket,
};

use anyhow::{anyhow, Context};
use herd::windows::Shared;
use socket2::{Domain, Protocol, Type};

use super::handover::{self, Inherited};
use super::SocketKind;
use super::{default_name, unique_name, Address, Balance, BindOptions, BindSpec, Host, HostPort};
use crate::logging::LogEvent;

/// A bound socket, shared with every worker.
#[derive(Debug)]
pub struct Listener {
    /// Its name, as workers see it.
    pub name: String,
    /// What it is.
    pub kind: SocketKind,
    /// Where it is bound, with the real port (`127.0.0.1:41234`, `udp://[::]:53`).
    pub address: String,
    /// The socket; `None` once herd closed its copy (a stop).
    socket: Option<Socket>,
}

/// A listening TCP socket or a UDP socket.
#[derive(Debug)]
enum Socket {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

impl Listener {
    /// The socket taken over from another herd (`--takeover`), under its name there:
    /// a TCP socket becomes a listener, a UDP socket stays one. Errors: a kind Windows
    /// cannot share.
    pub fn inherited(socket: Inherited) -> anyhow::Result<Listener> {
        let (kind, socket_now) = match socket.kind {
            Some(SocketKind::Tcp) => (SocketKind::Tcp, Socket::Tcp(socket.fd.into())),
            Some(SocketKind::Udp) => (SocketKind::Udp, Socket::Udp(socket.fd.into())),
            _ => anyhow::bail!(
                "cannot take over the socket {:?} at {}: only TCP and UDP sockets can be shared on Windows",
                socket.name,
                socket.address
            ),
        };
        Ok(Listener {
            name: socket.name,
            kind,
            address: socket.address,
            socket: Some(socket_now),
        })
    }

    /// The socket as the worker library shares it; `None` once closed.
    pub fn shared(&self) -> Option<Shared<'_>> {
        match self.socket.as_ref()? {
            Socket::Tcp(s) => Some(Shared::Tcp(&self.name, s)),
            Socket::Udp(s) => Some(Shared::Udp(&self.name, s)),
        }
    }

    /// A socket taken over has no socket file on Windows to adopt: none.
    pub fn adopt_file(&mut self) -> Option<std::path::PathBuf> {
        None
    }

    /// A socket taken over has no socket file on Windows to give up: none.
    pub fn forget_takeover_file(&mut self) -> Option<std::path::PathBuf> {
        None
    }

    /// Windows sockets have no socket file to leave in place when herd is taken over: nothing.
    pub fn release_file(&mut self) {}

    /// How workers share it: always one socket for all on Windows.
    pub fn balance(&self) -> Balance {
        Balance::Shared
    }

    /// Connections waiting to be accepted, and the limit: Windows does not tell.
    pub fn accept_queue(&self) -> Option<(u32, u32)> {
        None
    }

    /// Closes herd's copy (a stop): once the workers have closed theirs, new clients are
    /// refused at once instead of waiting in a queue nobody serves.
    pub fn close(&mut self) {
        self.socket = None;
    }
}

/// Binds every `--bind` (TCP or UDP: the rest was refused before) and logs where it listens.
/// With `inherited` (a takeover), each spec first takes its socket from them (by name, else
/// by address, as on Unix); without any spec, every inherited socket is taken as it is.
/// Errors: an address that cannot be bound, a spec at odds with the socket it names (names
/// were checked by [`check_names`](super::check_names)).
pub fn bind_all(
    specs: &[BindSpec],
    mut inherited: Vec<Inherited>,
) -> anyhow::Result<Vec<Listener>> {
    let mut bound: Vec<Listener> = Vec::new();
    if specs.is_empty() {
        for socket in inherited {
            bound.push(log_listening(Listener::inherited(socket)?));
        }
        return Ok(bound);
    }
    for spec in specs {
        let context = || format!("--bind '{}'", spec.text);
        if let Some(socket) = handover::take_matching(spec, &mut inherited).with_context(context)? {
            let mut listener = Listener::inherited(socket).with_context(context)?;
            if let Some(name) = &spec.name {
                listener.name = name.clone();
            }
            bound.push(log_listening(listener));
            continue;
        }
        let listener = bind_spec(spec, &bound).with_context(context)?;
        bound.push(log_listening(listener));
    }
    // Windows refuses Unix sockets: none taken over has a socket file.
    handover::leave_untaken(inherited);
    Ok(bound)
}

/// Binds `spec`, named unlike every one of `earlier` unless it has a name.
fn bind_spec(spec: &BindSpec, earlier: &[Listener]) -> anyhow::Result<Listener> {
    let (udp, host_port) = match &spec.address {
        Address::Tcp(hp) => (false, hp),
        Address::Udp(hp) => (true, hp),
        _ => anyhow::bail!("not on Windows"),
    };
    let (socket, local) = bind_one(host_port, &spec.options, udp)?;
    let names: Vec<String> = earlier.iter().map(|l| l.name.clone()).collect();
    let name = match &spec.name {
        Some(name) => name.clone(),
        None => unique_name(default_name(&spec.address, Some(local.port())), &names),
    };
    let (kind, address) = match udp {
        true => (SocketKind::Udp, format!("udp://{local}")),
        false => (SocketKind::Tcp, local.to_string()),
    };
    Ok(Listener {
        name,
        kind,
        address,
        socket: Some(socket),
    })
}

/// Logs where `listener` listens, and gives it back.
fn log_listening(listener: Listener) -> Listener {
    tracing::info!(
        event = LogEvent::Listening.as_str(),
        name = %listener.name,
        address = %listener.address,
        kind = listener.kind.as_str(),
        "listening on {}",
        listener.address
    );
    listener
}

/// `WSAEADDRINUSE`: another socket is bound to the address.
const WSAEADDRINUSE: i32 = 10048;

/// Binds a TCP `spec` (`--metrics`) and listens.
pub fn bind_tcp(spec: &BindSpec) -> anyhow::Result<TcpListener> {
    let Address::Tcp(hp) = &spec.address else {
        anyhow::bail!("'{}' is not a TCP address", spec.text);
    };
    match bind_one(hp, &spec.options, false)?.0 {
        Socket::Tcp(listener) => Ok(listener),
        Socket::Udp(_) => anyhow::bail!("'{}' is not a TCP address", spec.text),
    }
}

/// Binds `HOST:PORT` for TCP (listening) or UDP, with `options` (`nonblocking`: the socket in
/// non-blocking mode, `ioctlsocket(FIONBIO)`, before any worker's descriptor is made from it
/// with `WSADuplicateSocketW`; Microsoft documents a socket's state as held in common by all
/// its descriptors, as Unix workers share `O_NONBLOCK`): `:PORT` on every interface, IPv6 and
/// IPv4 (dual-stack, unless `v6only`) where the system has IPv6, else IPv4; a name at its
/// first address.
fn bind_one(
    hp: &HostPort,
    options: &BindOptions,
    udp: bool,
) -> anyhow::Result<(Socket, SocketAddr)> {
    let (ty, protocol) = match udp {
        true => (Type::DGRAM, Protocol::UDP),
        false => (Type::STREAM, Protocol::TCP),
    };
    let (socket, address) = match &hp.host {
        Host::Any => {
            let v6 = SocketAddr::from((Ipv6Addr::UNSPECIFIED, hp.port));
            match socket2::Socket::new(Domain::IPV6, ty, Some(protocol)) {
                Ok(socket) => (socket, v6),
                Err(_) if !options.v6only => {
                    let v4 = SocketAddr::from((Ipv4Addr::UNSPECIFIED, hp.port));
                    (socket2::Socket::new(Domain::IPV4, ty, Some(protocol))?, v4)
                }
                Err(e) => return Err(e.into()),
            }
        }
        host => {
            let address = socket_address(host, hp)?;
            let socket = socket2::Socket::new(Domain::for_address(address), ty, Some(protocol))?;
            (socket, address)
        }
    };
    if address.is_ipv6() {
        // Windows' default is IPv6 only; herd's, as on Unix, is both unless `v6only`.
        socket.set_only_v6(options.v6only)?;
    }
    if options.nodelay {
        socket.set_tcp_nodelay(true)?;
    }
    if options.nonblocking {
        socket.set_nonblocking(true)?;
    }
    socket
        .bind(&address.into())
        .map_err(|e| match e.raw_os_error() {
            // Wine has no text for it ("FormatMessageW() returned error 317").
            Some(WSAEADDRINUSE) => anyhow!(
                "cannot bind {address}: the address is already in use (another program, or \
             another herd, holds it): stop it or choose another port"
            ),
            _ => anyhow::Error::new(e).context(format!("cannot bind {address}")),
        })?;
    let local = socket
        .local_addr()?
        .as_socket()
        .ok_or_else(|| anyhow!("the bound socket has no IP address"))?;
    let socket = match udp {
        true => Socket::Udp(socket.into()),
        false => {
            let backlog = options
                .backlog
                .map_or(SOMAXCONN, |n| n.min(SOMAXCONN as u32) as i32);
            socket.listen(backlog)?;
            Socket::Tcp(socket.into())
        }
    };
    Ok((socket, local))
}

/// The accept queue's length unless `backlog=` says: Winsock's `SOMAXCONN`, "as long as the
/// system allows" (on Unix herd asks for `net.core.somaxconn`).
const SOMAXCONN: i32 = 0x7fff_ffff;

/// The address of a literal or named host (`:PORT` is IPv4's any address here).
fn socket_address(host: &Host, hp: &HostPort) -> anyhow::Result<SocketAddr> {
    match host {
        Host::Ip(IpAddr::V6(ip)) => {
            Ok(SocketAddr::V6(SocketAddrV6::new(*ip, hp.port, 0, hp.scope)))
        }
        Host::Ip(ip) => Ok(SocketAddr::new(*ip, hp.port)),
        Host::Name(name) => (name.as_str(), hp.port)
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve '{name}'"))?
            .next()
            .ok_or_else(|| anyhow!("'{name}' has no address")),
        Host::Any => Ok(SocketAddr::from((Ipv4Addr::UNSPECIFIED, hp.port))),
    }
}
