//! Adopting sockets that systemd (or anything speaking socket activation) passed to herd
//! itself: `--bind systemd` takes them all, `--bind fd:NAME` one by name.

use std::os::unix::io::{AsFd, OwnedFd};
use std::sync::Mutex;

use anyhow::{anyhow, bail, Context};
use herd_sys::socket::{Family, SockType};
use socket2::SockRef;

use super::kind::SocketKind;

/// The sockets passed to herd, read once from `LISTEN_FDS`, `LISTEN_FDNAMES`, `LISTEN_PID`.
pub struct Passed {
    sockets: herd::Sockets,
}

/// What [`claim_early`] found, for the first `--bind systemd` or `fd:NAME` to adopt.
static EARLY: Mutex<Option<Result<herd::Sockets, String>>> = Mutex::new(None);

/// Claims the fds passed to herd, before herd opens any fd of its own: otherwise an fd number
/// that `LISTEN_FDS` promises but that was not really passed could by then belong to herd
/// itself, and be handed to workers as a socket. A malformed environment is reported only if
/// a `--bind` asks for the passed sockets.
pub fn claim_early() {
    let claimed = herd::Sockets::from_env().map_err(|e| e.to_string());
    if let Ok(mut early) = EARLY.lock() {
        *early = Some(claimed);
    }
    // Counted now, while every socket among fds 3 on is one herd was given, not its own.
    let elsewhere = passed_to_another().map(|(pid, count)| (pid, count, sockets_at(count)));
    if let Ok(mut passed) = ELSEWHERE.lock() {
        *passed = elsewhere;
    }
}

/// What [`claim_early`] found passed to another process: `LISTEN_PID`, `LISTEN_FDS`, and how
/// many of those fds are sockets open in herd.
static ELSEWHERE: Mutex<Option<(u32, usize, usize)>> = Mutex::new(None);

/// How many of the `count` fds from 3 on are open sockets (0 where `/proc` does not say).
fn sockets_at(count: usize) -> usize {
    (0..count.min(4096))
        .map(|i| herd::LISTEN_FDS_START + i as i32)
        .filter(|fd| {
            std::fs::read_link(format!("/proc/self/fd/{fd}"))
                .is_ok_and(|to| to.to_string_lossy().starts_with("socket:"))
        })
        .count()
}

/// Takes the fds passed to herd whose names start with `prefix` (systemd's fd store hands back
/// herd's own as `herd.NAME`), with `prefix` stripped; the others stay for `--bind systemd`
/// and `fd:NAME`. None when the passed fds were not claimed, or could not be: their variables
/// are malformed or an fd they promise is not open (said here, once: none of the store's is
/// adopted, so herd binds anew and the ports they held close; a `--bind` that adopts refuses).
pub fn take_with_prefix(prefix: &str) -> anyhow::Result<Vec<(String, OwnedFd)>> {
    let mut early = EARLY
        .lock()
        .map_err(|_| anyhow!("the passed sockets' lock is poisoned"))?;
    let sockets = match early.as_mut() {
        Some(Ok(sockets)) => sockets,
        Some(Err(why)) => {
            tracing::warn!(
                event = crate::logging::LogEvent::FdstoreReplaced.as_str(),
                "cannot take the fds passed to herd, so none from systemd's fd store is adopted: \
                 {why}; herd binds and creates anew (the ports they held close) and stores its own"
            );
            return Ok(Vec::new());
        }
        None => return Ok(Vec::new()),
    };
    let names: Vec<String> = sockets.names().map(str::to_string).collect();
    let mut taken = Vec::new();
    for (i, name) in names.iter().enumerate() {
        if let Some(stripped) = name.strip_prefix(prefix) {
            if let Some(fd) = sockets.take_fd_at(i)? {
                taken.push((stripped.to_string(), fd));
            }
        }
    }
    Ok(taken)
}

/// Closes herd's copies of the sockets passed to it that no `--bind` adopted (left in
/// `passed`, or never asked for), and says which: the clients of a `.socket` unit whose sockets
/// herd ignores (a forgotten `--bind systemd`) wait in a queue no worker serves.
pub fn close_unadopted(passed: Option<Passed>) {
    let early = EARLY.lock().ok().and_then(|mut e| e.take());
    let mut sockets = match (passed, early) {
        (Some(passed), _) => passed.sockets,
        (None, Some(Ok(sockets))) => sockets,
        _ => return,
    };
    if sockets.is_empty() {
        return warn_if_passed_to_another();
    }
    let names: Vec<String> = sockets.names().map(str::to_string).collect();
    let mut unadopted = Vec::new();
    for (i, name) in names.into_iter().enumerate() {
        if let Ok(Some(fd)) = sockets.take_fd_at(i) {
            drop(fd);
            let number = herd::LISTEN_FDS_START + i as i32;
            // `--bind systemd` never takes these: they are herd's, from a store now off.
            let store = match name.starts_with(crate::fdstore::PREFIX) {
                true => ", from systemd's fd store, which herd does not use without FDSTORE= or --fdstore",
                false => "",
            };
            unadopted.push(format!("{name:?} (fd {number}{store})"));
        }
    }
    if !unadopted.is_empty() {
        tracing::warn!(
            event = crate::logging::LogEvent::SetupNote.as_str(),
            "{} socket(s) passed to herd (LISTEN_FDS) that no --bind adopts: {}; herd closes \
             its copies, and their clients wait for no worker: adopt them with --bind systemd \
             or --bind NAME=fd:SYSTEMD_NAME, or remove them from the .socket unit",
            unadopted.len(),
            unadopted.join(", ")
        );
    }
}

/// `(LISTEN_PID, LISTEN_FDS)` when this environment passes sockets to another process than
/// herd: a wrapper (a shell without `exec`) ran herd, and its pid is in `LISTEN_PID`.
fn passed_to_another() -> Option<(u32, usize)> {
    let var = |name| std::env::var(name).ok();
    herd_core::passed_to_another(
        var("LISTEN_FDS").as_deref(),
        var("LISTEN_PID").as_deref(),
        std::process::id(),
    )
}

/// Why a wrapper's sockets are not herd's, and what to do.
fn passed_to_another_why(pid: u32, count: usize) -> String {
    format!(
        "LISTEN_FDS={count} passes its sockets to pid {pid} (LISTEN_PID), not to herd (pid {}): \
         a wrapper between systemd and herd must run it with exec (`exec herd run ...`)",
        std::process::id()
    )
}

/// Warns when herd holds sockets passed to another process (fds 3 on, which herd leaves
/// alone), as [`claim_early`] found them: their clients wait in a queue no worker serves.
fn warn_if_passed_to_another() {
    let elsewhere = ELSEWHERE.lock().ok().and_then(|mut e| e.take());
    if let Some((pid, count, held @ 1..)) = elsewhere {
        tracing::warn!(
            event = crate::logging::LogEvent::SetupNote.as_str(),
            "herd holds {held} socket(s) passed to pid {pid} (LISTEN_PID, LISTEN_FDS={count}), \
             not to herd (pid {}): none is adopted, and their clients wait for no worker; run \
             herd with exec from its wrapper",
            std::process::id()
        );
    }
}

impl Passed {
    /// The sockets [`claim_early`] claimed (validated by the worker library: a `LISTEN_PID`
    /// that is not herd's means there are none).
    pub fn from_env() -> anyhow::Result<Passed> {
        let early = EARLY.lock().ok().and_then(|mut e| e.take());
        let sockets = match early {
            Some(claimed) => claimed,
            None => herd::Sockets::from_env().map_err(|e| e.to_string()),
        }
        .map_err(|e| anyhow!("cannot adopt the sockets passed to herd: {e}"))?;
        Ok(Passed { sockets })
    }

    /// Takes every socket not taken yet, with its name; each is checked to be a socket herd can
    /// pass on, and the names to be unique.
    pub fn take_all(&mut self) -> anyhow::Result<Vec<(String, OwnedFd)>> {
        if self.sockets.is_empty() {
            if let Some((pid, count)) = passed_to_another() {
                bail!("{}", passed_to_another_why(pid, count));
            }
            let var = |name| std::env::var(name).ok();
            let why = match (var("LISTEN_FDS"), var("LISTEN_PID")) {
                (None, _) => "LISTEN_FDS is unset".to_string(),
                (Some(_), None) => "LISTEN_FDS is set but LISTEN_PID, herd's pid, is not".into(),
                (Some(n), Some(_)) => format!("LISTEN_FDS={n}"),
            };
            bail!(
                "no sockets were passed to herd ({why}): run herd from a systemd .socket unit, \
                 or bind an address"
            );
        }
        let names: Vec<String> = self.sockets.names().map(str::to_string).collect();
        if let Some(name) = names.iter().find(|n| self.count(n) > 1) {
            bail!(
                "{}",
                self.ambiguous(name, "the workers could not tell them apart")
            );
        }
        let mut taken = Vec::new();
        for (i, name) in names.into_iter().enumerate() {
            // herd's own, from systemd's fd store: adopted by `--bind` and `--shm`, if at all.
            if name.starts_with(crate::fdstore::PREFIX) {
                continue;
            }
            if let Some(fd) = self.sockets.take_fd_at(i)? {
                check_passed(&fd, i, &name)?;
                taken.push((name, fd));
            }
        }
        Ok(taken)
    }

    /// Takes the socket passed under `name`, checked to be a socket herd can pass on.
    pub fn take(&mut self, name: &str) -> anyhow::Result<OwnedFd> {
        let names: Vec<&str> = self.sockets.names().collect();
        let known = if let (true, Some((pid, count))) = (names.is_empty(), passed_to_another()) {
            passed_to_another_why(pid, count)
        } else if names.is_empty() {
            "none were passed".to_string()
        } else {
            format!("passed: {}", names.join(", "))
        };
        if self.count(name) > 1 {
            bail!("{}", self.ambiguous(name, "fd:NAME cannot tell them apart"));
        }
        let index = names.iter().position(|n| *n == name);
        match (self.sockets.take_fd(name), index) {
            (Ok(Some(fd)), Some(index)) => {
                check_passed(&fd, index, name)?;
                Ok(fd)
            }
            (Ok(_), _) => bail!("the socket {name:?} passed to herd is adopted twice"),
            (Err(_), _) => bail!("no socket named {name:?} was passed to herd ({known})"),
        }
    }

    /// How many passed sockets are named `name`.
    fn count(&self, name: &str) -> usize {
        self.sockets.names().filter(|n| *n == name).count()
    }

    /// The error for a name systemd gave to several sockets.
    fn ambiguous(&self, name: &str, why: &str) -> String {
        let fds: Vec<String> = self
            .sockets
            .names()
            .enumerate()
            .filter(|(_, n)| *n == name)
            .map(|(i, _)| (herd::LISTEN_FDS_START + i as i32).to_string())
            .collect();
        format!(
            "{} sockets were passed to herd under the one name {name:?} (fds {}), and {why}: \
             give each its own FileDescriptorName= in the .socket unit",
            fds.len(),
            fds.join(", ")
        )
    }
}

/// Checks that the fd passed to herd at `3 + index` under `name` is a socket herd can hand to
/// its workers, as `sd_is_socket(3)` would: a socket (`fstat`), of a family herd knows, and
/// listening if it is a stream (`SO_TYPE`, `SO_ACCEPTCONN`).
fn check_passed(fd: &OwnedFd, index: usize, name: &str) -> anyhow::Result<()> {
    let number = herd::LISTEN_FDS_START + index as i32;
    let info = herd_sys::socket::inspect(fd.as_fd())
        .with_context(|| format!("cannot inspect fd {number} passed to herd as {name:?}"))?;
    let info = match info {
        Some(info) => info,
        None => bail!(
            "fd {number} passed to herd as {name:?} is {}, not a socket: herd adopts only \
             sockets (ListenStream=, ListenDatagram=, ... in a .socket unit)",
            file_kind(fd)
        ),
    };
    match (info.family, info.sock_type) {
        (Family::Other(family), _) => bail!(
            "fd {number} passed to herd as {name:?} is a socket of address family {family}: \
             herd adopts TCP, UDP and Unix sockets"
        ),
        (_, SockType::Other(ty)) => bail!(
            "fd {number} passed to herd as {name:?} is a socket of type {ty}: herd adopts \
             stream, datagram and seqpacket sockets"
        ),
        (_, SockType::Stream | SockType::SeqPacket) if !info.listening => bail!(
            "fd {number} passed to herd as {name:?} is {}",
            not_listening(fd)
        ),
        _ => Ok(()),
    }
}

/// What a stream socket that does not listen is instead, for messages: connected (systemd's
/// `Accept=yes`), bound only, or neither (a fresh socket).
fn not_listening(fd: &OwnedFd) -> String {
    let socket = SockRef::from(fd);
    if socket.peer_addr().is_ok() {
        return "a connected socket, not a listening one: use Accept=no in the .socket unit"
            .to_string();
    }
    let bound = socket.local_addr().ok().and_then(|addr| {
        if let Some(ip) = addr.as_socket() {
            (ip.port() != 0).then(|| ip.to_string())
        } else if let Some(path) = addr.as_pathname() {
            Some(format!("unix:{}", path.display()))
        } else {
            addr.as_abstract_namespace()
                .map(|name| format!("unix:@{}", String::from_utf8_lossy(name)))
        }
    });
    match bound {
        Some(addr) => format!(
            "a socket bound to {addr} but not listening: whatever passed it never called \
             listen(); systemd passes listening sockets (ListenStream= in a .socket unit)"
        ),
        None => "a socket that is neither bound nor listening (a fresh socket): whatever \
                 passed it never bound it; systemd passes listening sockets (ListenStream= in \
                 a .socket unit)"
            .to_string(),
    }
}

/// What kind of file a non-socket fd is, for messages.
fn file_kind(fd: &OwnedFd) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let meta = fd
        .try_clone()
        .map(std::fs::File::from)
        .and_then(|f| f.metadata());
    match meta.map(|m| m.file_type()) {
        Ok(t) if t.is_file() => "a regular file",
        Ok(t) if t.is_dir() => "a directory",
        Ok(t) if t.is_fifo() => "a pipe",
        Ok(t) if t.is_char_device() => "a character device",
        Ok(t) if t.is_block_device() => "a block device",
        _ => "an fd of another kind",
    }
}

/// What an adopted socket is: its kind (`tcp`, `udp`, `unix`) and its address, shown as
/// `--bind` would show it.
pub fn describe(fd: &OwnedFd) -> anyhow::Result<(SocketKind, String)> {
    let info = herd_sys::socket::inspect(fd.as_fd()).context("cannot inspect an adopted socket")?;
    let Some(info) = info else {
        // Not a socket: shared memory (`--shm`), passed along like one.
        return match herd_sys::shm::size_of(fd.as_fd())? {
            Some(size) => match herd_sys::fd::not_read_write(fd.as_fd())? {
                Some(how) => bail!(
                    "an fd passed to herd as shared memory is open {how}: workers map --shm for \
                     reading and writing; pass it open read-write (O_RDWR)"
                ),
                None => match herd_sys::shm::write_seal(fd.as_fd())? {
                    Some(seal) => bail!(
                        "an fd passed to herd as shared memory is sealed with {seal}: workers \
                         map --shm shared for writing, which the seal forbids; pass a memfd \
                         without write seals"
                    ),
                    None => Ok((SocketKind::Shm, format!("shm:{size}"))),
                },
            },
            None => bail!("an fd passed to herd is neither a socket nor shared memory"),
        };
    };
    let addr = SockRef::from(fd).local_addr().context("getsockname")?;
    let kind = match (info.family, info.sock_type) {
        (Family::Inet | Family::Inet6, SockType::Stream) => SocketKind::Tcp,
        (Family::Inet | Family::Inet6, SockType::Datagram) => SocketKind::Udp,
        (Family::Unix, _) => SocketKind::Unix,
        (family, ty) => bail!("an adopted socket is of an unsupported kind ({family:?}, {ty:?})"),
    };
    let shown = if let Some(ip) = addr.as_socket() {
        if kind == SocketKind::Udp {
            format!("udp://{ip}")
        } else {
            ip.to_string()
        }
    } else if let Some(path) = addr.as_pathname() {
        format!("unix:{}", path.display())
    } else if let Some(name) = addr.as_abstract_namespace() {
        format!("unix:@{}", String::from_utf8_lossy(name))
    } else {
        "unix:(unnamed)".to_string()
    };
    if matches!(info.sock_type, SockType::Stream) && !info.listening {
        bail!("the adopted socket at {shown} does not listen (a .socket unit with Accept=no passes listening sockets)");
    }
    Ok((kind, shown))
}
