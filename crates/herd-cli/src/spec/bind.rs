//! Binding parsed specs into listening sockets, once, in `--bind` order.

use std::net::SocketAddr;
use std::os::unix::io::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use anyhow::{anyhow, Context};

use super::handover::{self, Inherited, UntakenFile};
use super::inherit::{self, Passed};
use super::kind::{Balance, SocketKind};
use super::names;
use super::parse::{Address, BindSpec};
use super::reuseport::SlotSockets;
use super::shm::ShmSpec;
use super::socket_file::SocketFile;
use super::twice;
use crate::logging::LogEvent;

mod socket;

use socket::{bind_one, group_options};
pub use socket::{bind_tcp, somaxconn};

/// How a listener's origin ends when systemd passed its socket.
const PASSED_BY_SYSTEMD: &str = " (passed by systemd)";

/// A bound socket, held by the supervisor for as long as it runs.
#[derive(Debug)]
pub struct Listener {
    /// Its name in `LISTEN_FDNAMES`.
    pub name: String,
    /// What it is.
    pub kind: SocketKind,
    /// Where it is bound, with the real port (`127.0.0.1:41234`, `unix:/run/app.sock`).
    pub address: String,
    /// Whether workers also get it as fd 0 (`--bind ...,stdin`).
    pub stdin: bool,
    /// A TCP socket's backlog as herd listened (or found it, for sockets passed to herd),
    /// before any worker could change it.
    pub backlog_set: Option<u32>,
    /// Whether the socket is non-blocking (`O_NONBLOCK`, shared by every holder) as herd set
    /// it (or found it, for sockets passed to herd), before any worker could change it.
    pub nonblocking_set: Option<bool>,
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
    /// The inodes of the sockets herd closed its copies of ([`close`](Self::close)), to tell
    /// who else still holds them as herd stops.
    closed: Vec<u64>,
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
            stdin: false,
            backlog_set: None,
            nonblocking_set: None,
            fd: Some(fd),
            group: None,
            _file: file,
            takeover_file: None,
            closed: Vec::new(),
            origin: String::new(),
        }
    }

    /// A per-slot listener restored after a re-exec.
    pub fn restore_group(name: String, address: String, group: SlotSockets) -> Listener {
        Listener {
            name,
            kind: SocketKind::Tcp,
            address,
            stdin: false,
            backlog_set: None,
            nonblocking_set: None,
            fd: None,
            group: Some(group),
            _file: None,
            takeover_file: None,
            closed: Vec::new(),
            origin: String::new(),
        }
    }

    /// Whether the socket (slot 0's, under `--balance reuseport`) is non-blocking now; `None`
    /// for shared memory and a closed socket.
    pub fn nonblocking_now(&self) -> Option<bool> {
        let fd = self.fd_for_slot(0)?;
        match self.kind {
            SocketKind::Shm => None,
            _ => herd_sys::fd::is_nonblocking(fd).ok(),
        }
    }

    /// Whether systemd passed it (`--bind systemd`, `fd:NAME`) to this image of herd.
    pub fn passed_by_systemd(&self) -> bool {
        self.origin.ends_with(PASSED_BY_SYSTEMD)
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

    /// A TCP socket's backlog now (slot 0's socket's, for per-slot sockets).
    pub fn backlog_now(&self) -> Option<u32> {
        let fd = self.fd().filter(|_| self.kind == SocketKind::Tcp)?;
        herd_sys::socket::accept_queue(fd)
            .ok()
            .flatten()
            .map(|(_, backlog)| backlog)
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
            Ok(meta) if super::socket_file::is_socket_file(&meta, (dev, ino)) => {
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

    /// Every socket herd holds for it: the one, or each slot's (`--balance reuseport`).
    pub fn sockets(&self) -> impl Iterator<Item = BorrowedFd<'_>> {
        let fds = self.fd.iter().map(AsFd::as_fd);
        fds.chain(self.group.iter().flat_map(|g| g.sockets()))
    }

    /// Closes herd's copy of the socket (every per-slot socket), remembering which sockets
    /// they were ([`closed_sockets`](Self::closed_sockets)); the socket file stays until the
    /// listener is dropped.
    pub fn close(&mut self) {
        let closed: Vec<u64> = self.sockets().filter_map(super::socket_inode_of).collect();
        self.closed.extend(closed);
        self.fd = None;
        self.group = None;
    }

    /// The inodes of the sockets herd closed its copies of as it began to stop.
    pub fn closed_sockets(&self) -> &[u64] {
        &self.closed
    }
}

/// Binds every spec in order (adopting the sockets passed to herd for `systemd` and
/// `fd:NAME`). On any error, the sockets bound so far are closed and their socket files
/// removed, so nothing is left behind.
///
/// With `inherited` (a takeover), each spec first looks for its socket among them; without
/// any spec, every inherited socket is taken as it is. Returns the listeners, and the socket
/// files of the inherited sockets no spec took ([`UntakenFile`]).
///
/// With `reuseport`, each TCP socket herd binds itself is the first of a per-slot group
/// ([`SlotSockets`]).
pub fn bind_all(
    specs: &[BindSpec],
    shm: &[ShmSpec],
    mut inherited: Vec<Inherited>,
    reuseport: bool,
) -> anyhow::Result<(Vec<Listener>, Vec<UntakenFile>)> {
    let mut listeners: Vec<Listener> = Vec::with_capacity(specs.len());
    if specs.is_empty() && shm.is_empty() {
        for socket in inherited {
            listeners.push(Listener::inherited(socket)?);
        }
        inherit::close_unadopted(None);
        return Ok((listeners, Vec::new()));
    }
    twice::check(specs)?;
    let mut binding = Binding {
        explicit: specs.iter().filter_map(|s| s.name.clone()).collect(),
        passed: None,
        bound: Vec::new(),
        files: Vec::new(),
        reuseport,
    };
    for spec in specs {
        match &spec.address {
            Address::SystemdAll | Address::SystemdNamed(_) => {
                listeners.extend(binding.adopt(spec)?);
            }
            _ => {
                let listener = binding.bind(spec, &mut inherited, &listeners)?;
                listeners.push(listener);
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
    let untaken = handover::leave_untaken(inherited);
    inherit::close_unadopted(binding.passed.take());
    for listener in &mut listeners {
        listener.backlog_set = listener.backlog_now();
        listener.nonblocking_set = listener.nonblocking_now();
    }
    Ok((listeners, untaken))
}

/// What [`bind_all`] carries from one spec to the next.
struct Binding {
    /// The names given with NAME=, which no default name may take.
    explicit: Vec<String>,
    /// The sockets systemd passed to herd, read at the first spec that asks for them.
    passed: Option<Passed>,
    /// What this herd bound so far, to tell "given twice" from "in use by another program".
    bound: Vec<(String, &'static str, SocketAddr)>,
    /// The socket files this herd bound so far (device and inode), likewise.
    files: Vec<(String, (u64, u64))>,
    /// Whether each TCP socket herd binds itself is the first of a per-slot group.
    reuseport: bool,
}

impl Binding {
    /// The sockets systemd passed to herd that `spec` (`systemd` or `fd:NAME`) names.
    fn adopt(&mut self, spec: &BindSpec) -> anyhow::Result<Vec<Listener>> {
        let context = || format!("--bind '{}'", spec.text);
        let passed = match &mut self.passed {
            Some(p) => p,
            None => self
                .passed
                .insert(Passed::from_env().with_context(context)?),
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
        let mut listeners = Vec::with_capacity(adopted.len());
        for (name, fd) in adopted {
            let (kind, address) = inherit::describe(&fd).with_context(context)?;
            listeners.push(Listener {
                name,
                kind,
                address,
                stdin: false,
                backlog_set: None,
                nonblocking_set: None,
                fd: Some(fd),
                group: None,
                _file: None,
                takeover_file: None,
                closed: Vec::new(),
                origin: format!("--bind '{}'{PASSED_BY_SYSTEMD}", spec.text),
            });
        }
        Ok(listeners)
    }

    /// The socket for `spec`: one of `inherited` that matches it (a takeover), else one herd
    /// binds, named unlike every name given and every one of `earlier`.
    fn bind(
        &mut self,
        spec: &BindSpec,
        inherited: &mut Vec<Inherited>,
        earlier: &[Listener],
    ) -> anyhow::Result<Listener> {
        let context = || format!("--bind '{}'", spec.text);
        if let Some(socket) = handover::take_matching(spec, inherited).with_context(context)? {
            let mut listener = Listener::inherited(socket)?;
            if let Some(name) = &spec.name {
                listener.name = name.clone();
            }
            listener.origin = format!("--bind '{}'", spec.text);
            listener.stdin = spec.options.stdin;
            return Ok(listener);
        }
        let per_slot = self.reuseport && matches!(spec.address, Address::Tcp(_));
        let (socket, address, port, file) = bind_one(spec, per_slot)
            .map_err(|e| twice::explain(e, spec, &self.bound))
            .map_err(|e| twice::explain_file(e, spec, &self.files))
            .with_context(context)?;
        if let Some(file) = &file {
            let (_, dev, ino) = file.parts();
            self.files.push((spec.text.clone(), (dev, ino)));
        }
        if let Some(local) = socket.local_addr().ok().and_then(|a| a.as_socket()) {
            self.bound
                .push((spec.text.clone(), spec.address.kind(), local));
        }
        let name = match &spec.name {
            Some(name) => name.clone(),
            None => {
                let mut taken = self.explicit.clone();
                taken.extend(earlier.iter().map(|l| l.name.clone()));
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
        Ok(Listener {
            name,
            kind: match spec.address {
                Address::Udp(_) => SocketKind::Udp,
                Address::UnixPath(_) | Address::UnixAbstract(_) => SocketKind::Unix,
                // Sockets systemd passes are adopted above, with their own kind.
                Address::Tcp(_) | Address::SystemdAll | Address::SystemdNamed(_) => SocketKind::Tcp,
            },
            address,
            stdin: spec.options.stdin,
            backlog_set: None,
            nonblocking_set: None,
            fd,
            group,
            _file: file,
            takeover_file: None,
            closed: Vec::new(),
            origin: format!("--bind '{}'", spec.text),
        })
    }
}

/// Shared memory for `spec`: the inherited segment of that name (taking over), else a new one.
fn shared_memory(spec: &ShmSpec, inherited: &mut Vec<Inherited>) -> anyhow::Result<Listener> {
    if let Some(i) = inherited
        .iter()
        .position(|x| x.kind == Some(SocketKind::Shm) && x.name == spec.name)
    {
        let segment = inherited.remove(i);
        let size = herd_sys::shm::size_of(segment.fd.as_fd())?.unwrap_or(0);
        if size != spec.size && segment.from_store {
            let wanted = format!("--shm {}={}", spec.name, spec.size);
            handover::replace_stored(&segment, &wanted);
        } else if size != spec.size {
            anyhow::bail!(
                "conflicts with the inherited shared memory {:?} of {size} bytes: its size cannot change",
                spec.name
            );
        } else {
            return Listener::inherited(segment);
        }
    }
    let fd = herd_sys::shm::create(&spec.name, spec.size).context("cannot create shared memory")?;
    Ok(Listener {
        name: spec.name.clone(),
        kind: SocketKind::Shm,
        address: format!("shm:{}", spec.size),
        stdin: false,
        backlog_set: None,
        nonblocking_set: None,
        fd: Some(fd),
        group: None,
        _file: None,
        takeover_file: None,
        closed: Vec::new(),
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
            stdin: false,
            backlog_set: None,
            nonblocking_set: None,
            fd: Some(socket.fd),
            group: None,
            _file: None,
            takeover_file,
            origin: String::new(),
            closed: Vec::new(),
        })
    }
}
