//! Binding parsed specs into listening sockets, once, in `--bind` order.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::io::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::prelude::OsStrExt;
use std::path::PathBuf;

use anyhow::{anyhow, Context};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::handover::{self, Inherited};
use super::inherit::{self, Passed};
use super::kind::{Balance, SocketKind};
use super::names;
use super::parse::{Address, BindSpec, Host, HostPort};
use super::reuseport::{GroupOptions, SlotSockets};
use super::shm::ShmSpec;
use super::socket_file::{self, SocketFile};
use super::twice::{self, InUse};
use crate::logging::LogEvent;

/// A bound socket, held by the supervisor for as long as it runs.
#[derive(Debug)]
pub struct Listener {
    /// Its name in `LISTEN_FDNAMES`.
    pub name: String,
    /// What it is.
    pub kind: SocketKind,
    /// Where it is bound, with the real port (`127.0.0.1:41234`, `unix:/run/app.sock`).
    pub address: String,
    /// The socket (or shared memory); `None` once herd closed its copy (workers may still
    /// hold theirs), and for per-slot sockets.
    fd: Option<OwnedFd>,
    /// Under `--balance reuseport`, one socket per worker slot instead of `fd`.
    group: Option<SlotSockets>,
    /// Removes the socket file when the listener is dropped (Unix paths only).
    _file: Option<SocketFile>,
    /// The socket file of a socket taken over, which becomes this herd's when the takeover
    /// completes (until then the old herd owns it).
    takeover_file: Option<(PathBuf, u64, u64)>,
    /// The option it comes from (`--bind '...'`, `--shm '...'`), for the error if two
    /// listeners end up with one name; empty when restored after a re-exec.
    origin: String,
}

impl Listener {
    /// A listener restored after a re-exec, from what [`parts`](Listener::parts) said.
    pub fn restore(
        name: String,
        kind: SocketKind,
        address: String,
        fd: OwnedFd,
        file: Option<SocketFile>,
    ) -> Listener {
        Listener {
            name,
            kind,
            address,
            fd: Some(fd),
            group: None,
            _file: file,
            takeover_file: None,
            origin: String::new(),
        }
    }

    /// A per-slot listener restored after a re-exec.
    pub fn restore_group(name: String, address: String, group: SlotSockets) -> Listener {
        Listener {
            name,
            kind: SocketKind::Tcp,
            address,
            fd: None,
            group: Some(group),
            _file: None,
            takeover_file: None,
            origin: String::new(),
        }
    }

    /// Its socket file, if herd created one.
    pub fn file(&self) -> Option<&SocketFile> {
        self._file.as_ref()
    }

    /// The socket's fd (slot 0's, for per-slot sockets); `None` once closed.
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        match &self.group {
            Some(group) => group.get(0),
            None => self.fd.as_ref().map(|s| s.as_fd()),
        }
    }

    /// How the workers share it: `Reuseport` when it has per-slot sockets.
    pub fn balance(&self) -> Balance {
        match self.group {
            Some(_) => Balance::Reuseport,
            None => Balance::Shared,
        }
    }

    /// The per-slot sockets, under `--balance reuseport`.
    pub fn group(&self) -> Option<&SlotSockets> {
        self.group.as_ref()
    }

    /// The per-slot sockets, to bind more or steer them.
    pub fn group_mut(&mut self) -> Option<&mut SlotSockets> {
        self.group.as_mut()
    }

    /// Binds slot `slot`'s socket under `--balance reuseport`, if it has none yet.
    pub fn prepare_slot(&mut self, slot: usize) -> anyhow::Result<()> {
        match &mut self.group {
            Some(group) => group.ensure(slot),
            None => Ok(()),
        }
    }

    /// The fd for slot `slot`'s worker: its own socket under `--balance reuseport` (once
    /// [`prepare_slot`](Self::prepare_slot) bound it), else the one socket.
    pub fn fd_for_slot(&self, slot: usize) -> Option<BorrowedFd<'_>> {
        match &self.group {
            Some(group) => group.get(slot),
            None => self.fd.as_ref().map(|s| s.as_fd()),
        }
    }

    /// A TCP socket's accept queue, `(waiting, limit)`, summed over the per-slot sockets.
    pub fn accept_queue(&self) -> Option<(u32, u32)> {
        if self.kind != SocketKind::Tcp {
            return None;
        }
        let queue = |fd| herd_sys::socket::accept_queue(fd).ok().flatten();
        match &self.group {
            Some(group) => group
                .sockets()
                .filter_map(queue)
                .reduce(|a, b| (a.0 + b.0, a.1 + b.1)),
            None => queue(self.fd.as_ref()?.as_fd()),
        }
    }

    /// Makes the socket file of a socket taken over this herd's, to remove when it stops: called
    /// when the takeover completes (the old herd then leaves it in place).
    /// Returns the path of a file it could not take (gone, or replaced by another file).
    pub fn adopt_file(&mut self) -> Option<PathBuf> {
        let (path, dev, ino) = self.takeover_file.take()?;
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_socket() && meta.dev() == dev && meta.ino() == ino => {
                self._file = Some(SocketFile::from_parts(path, dev, ino));
                return None;
            }
            Ok(_) => tracing::warn!(
                event = LogEvent::SocketFileNotTaken.as_str(),
                path = %path.display(),
                "not taking over the socket file: another file has replaced the old herd's there"
            ),
            Err(e) => {
                tracing::warn!(event = LogEvent::SocketFileNotTaken.as_str(), path = %path.display(), "cannot take over the socket file: {e}")
            }
        }
        Some(path)
    }

    /// Gives up the claim to the socket file of a socket taken over (the old herd keeps it, or
    /// removes it as it exits); returns its path.
    pub fn forget_takeover_file(&mut self) -> Option<PathBuf> {
        self.takeover_file.take().map(|(path, _, _)| path)
    }

    /// Gives up the socket file, leaving it in place: a herd that took over owns it now.
    pub fn release_file(&mut self) {
        if let Some(file) = self._file.take() {
            file.release();
        }
    }

    /// Closes herd's copy of the socket (every per-slot socket); the socket file stays until
    /// the listener is dropped.
    pub fn close(&mut self) {
        self.fd = None;
        self.group = None;
    }
}

/// Binds every spec in order (adopting the sockets passed to herd for `systemd` and
/// `fd:NAME`). On any error, the sockets bound so far are closed and their socket files
/// removed, so nothing is left behind.
///
/// With `inherited` (a takeover), each spec first looks for its socket among them; without
/// any spec, every inherited socket is taken as it is.
///
/// With `reuseport`, each TCP socket herd binds itself is the first of a per-slot group
/// ([`SlotSockets`]).
pub fn bind_all(
    specs: &[BindSpec],
    shm: &[ShmSpec],
    mut inherited: Vec<Inherited>,
    reuseport: bool,
) -> anyhow::Result<Vec<Listener>> {
    let mut listeners: Vec<Listener> = Vec::with_capacity(specs.len());
    if specs.is_empty() && shm.is_empty() {
        for socket in inherited {
            listeners.push(Listener::inherited(socket)?);
        }
        return Ok(listeners);
    }
    twice::check(specs)?;
    let explicit: Vec<String> = specs.iter().filter_map(|s| s.name.clone()).collect();
    let mut passed: Option<Passed> = None;
    // What this herd bound so far, to tell "given twice" from "in use by another program".
    let mut bound: Vec<(String, &'static str, SocketAddr)> = Vec::new();
    for spec in specs {
        let context = || format!("--bind '{}'", spec.text);
        match &spec.address {
            Address::SystemdAll | Address::SystemdNamed(_) => {
                let passed = match &mut passed {
                    Some(p) => p,
                    None => passed.insert(Passed::from_env().with_context(context)?),
                };
                let adopted = match &spec.address {
                    Address::SystemdNamed(name) => {
                        let fd = passed.take(name).with_context(context)?;
                        vec![(spec.name.clone().unwrap_or_else(|| name.clone()), fd)]
                    }
                    _ if spec.name.is_some() => anyhow::bail!(
                        "{}: NAME= does not apply to 'systemd' (all sockets keep their names); \
                         write NAME=fd:SYSTEMD_NAME",
                        context()
                    ),
                    _ => passed.take_all().with_context(context)?,
                };
                for (name, fd) in adopted {
                    let (kind, address) = inherit::describe(&fd).with_context(context)?;
                    listeners.push(Listener {
                        name,
                        kind,
                        address,
                        fd: Some(fd),
                        group: None,
                        _file: None,
                        takeover_file: None,
                        origin: format!("--bind '{}' (passed by systemd)", spec.text),
                    });
                }
            }
            _ => {
                if let Some(socket) =
                    handover::take_matching(spec, &mut inherited).with_context(context)?
                {
                    let mut listener = Listener::inherited(socket)?;
                    if let Some(name) = &spec.name {
                        listener.name = name.clone();
                    }
                    listener.origin = format!("--bind '{}'", spec.text);
                    listeners.push(listener);
                    continue;
                }
                let per_slot = reuseport && matches!(spec.address, Address::Tcp(_));
                let (socket, address, port, file) = bind_one(spec, per_slot)
                    .map_err(|e| twice::explain(e, spec, &bound))
                    .with_context(context)?;
                if let Some(local) = socket.local_addr().ok().and_then(|a| a.as_socket()) {
                    bound.push((spec.text.clone(), spec.address.kind(), local));
                }
                let name = match &spec.name {
                    Some(name) => name.clone(),
                    None => {
                        let mut taken = explicit.clone();
                        taken.extend(listeners.iter().map(|l| l.name.clone()));
                        names::unique(names::default_name(&spec.address, port), &taken)
                    }
                };
                let (fd, group) = if per_slot {
                    let local = socket
                        .local_addr()?
                        .as_socket()
                        .ok_or_else(|| anyhow!("bound socket has no IP address"))?;
                    let group = SlotSockets::new(socket.into(), local, group_options(spec));
                    (None, Some(group))
                } else {
                    (Some(OwnedFd::from(socket)), None)
                };
                listeners.push(Listener {
                    name,
                    kind: match spec.address {
                        Address::Udp(_) => SocketKind::Udp,
                        Address::UnixPath(_) | Address::UnixAbstract(_) => SocketKind::Unix,
                        // Sockets systemd passes are adopted above, with their own kind.
                        Address::Tcp(_) | Address::SystemdAll | Address::SystemdNamed(_) => {
                            SocketKind::Tcp
                        }
                    },
                    address,
                    fd,
                    group,
                    _file: file,
                    takeover_file: None,
                    origin: format!("--bind '{}'", spec.text),
                });
            }
        }
    }
    for spec in shm {
        let origin = format!("--shm '{}={}'", spec.name, spec.size);
        let mut listener = shared_memory(spec, &mut inherited).with_context(|| origin.clone())?;
        listener.origin = origin;
        listeners.push(listener);
    }
    for (i, listener) in listeners.iter().enumerate() {
        if let Some(earlier) = listeners[..i].iter().find(|l| l.name == listener.name) {
            return Err(
                twice::name_given_twice(&listener.name, &earlier.origin, &listener.origin).into(),
            );
        }
    }
    for socket in inherited {
        tracing::warn!(
            event = LogEvent::SocketNotTaken.as_str(),
            name = %socket.name,
            address = %socket.address,
            "not taken over: no --bind names this socket; it closes when the old herd stops"
        );
    }
    Ok(listeners)
}

/// Shared memory for `spec`: the inherited segment of that name (taking over), else a new one.
fn shared_memory(spec: &ShmSpec, inherited: &mut Vec<Inherited>) -> anyhow::Result<Listener> {
    if let Some(i) = inherited
        .iter()
        .position(|x| x.kind == Some(SocketKind::Shm) && x.name == spec.name)
    {
        let segment = inherited.remove(i);
        let size = herd_sys::shm::size_of(segment.fd.as_fd())?.unwrap_or(0);
        if size != spec.size {
            anyhow::bail!(
                "conflicts with the inherited shared memory {:?} of {size} bytes: its size cannot change",
                spec.name
            );
        }
        return Listener::inherited(segment);
    }
    let fd = herd_sys::shm::create(&spec.name, spec.size).context("cannot create shared memory")?;
    Ok(Listener {
        name: spec.name.clone(),
        kind: SocketKind::Shm,
        address: format!("shm:{}", spec.size),
        fd: Some(fd),
        group: None,
        _file: None,
        takeover_file: None,
        origin: String::new(),
    })
}

impl Listener {
    /// A listener for a socket taken over from another herd (which owns its socket file).
    fn inherited(socket: Inherited) -> anyhow::Result<Listener> {
        let (kind, address) = inherit::describe(&socket.fd)?;
        let takeover_file = if kind == SocketKind::Unix {
            socket.file
        } else {
            None
        };
        Ok(Listener {
            name: socket.name,
            kind,
            address,
            fd: Some(socket.fd),
            group: None,
            _file: None,
            takeover_file,
            origin: String::new(),
        })
    }
}

/// Binds one TCP listener for herd's own use (`--metrics`), as `--bind` would bind `spec`:
/// names resolved, `:PORT` dual-stack.
pub fn bind_tcp(spec: &BindSpec) -> anyhow::Result<std::net::TcpListener> {
    let (socket, _, _, _) = bind_one(spec, false)?;
    Ok(socket.into())
}

type Bound = (Socket, String, Option<u16>, Option<SocketFile>);

fn bind_one(spec: &BindSpec, reuseport: bool) -> anyhow::Result<Bound> {
    match &spec.address {
        Address::Tcp(hp) => bind_ip(spec, hp, Type::STREAM, reuseport),
        Address::Udp(hp) => bind_ip(spec, hp, Type::DGRAM, false),
        Address::UnixPath(path) => {
            socket_file::prepare(path)?;
            let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
            let shown = format!("unix:{}", path.display());
            socket
                .bind(&SockAddr::unix(path)?)
                .map_err(|e| unix_bind_error(e, &shown))?;
            let file = SocketFile::created(path)?;
            if let Some(mode) = spec.options.mode {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                    .with_context(|| format!("cannot set mode {mode:o} on {}", path.display()))?;
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
        .map_err(|e| ip_bind_error(e, requested))?;
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
fn group_options(spec: &BindSpec) -> GroupOptions {
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

fn ip_bind_error(err: io::Error, addr: SocketAddr) -> anyhow::Error {
    match err.raw_os_error() {
        Some(libc::EADDRINUSE) => anyhow::Error::new(InUse(addr)),
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
