//! The inherited sockets, by name and by index, each taken once and checked for its kind.

use std::net::{TcpListener, UdpSocket};
use std::os::unix::io::{AsFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::sync::Mutex;

use herd_sys::socket::{self, Family, SockType, SocketInfo};

use crate::error::{Error, ErrorKind, Result};
use crate::shared_memory::SharedMemory;
use herd_core::{parse_listen_env, LISTEN_FDS_START};

/// The fds this process inherited, claimed once from the environment on first use; the
/// sockets not yet handed out, shared by [`Sockets::from_env`] and [`crate::shm`].
static INHERITED: Mutex<Option<Sockets>> = Mutex::new(None);

/// The environment variables of the socket-activation protocol, cleared once read.
const LISTEN_VARS: [&str; 4] = [
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "LISTEN_PIDFDID",
];

/// The sockets this process inherited from herd (or systemd, or anything that speaks the
/// socket-activation protocol).
///
/// Each socket can be taken once, by name or by index; taking it again gives `Ok(None)`.
/// Asking for the wrong kind (a TCP listener from a UDP socket), or a socket in the wrong mode
/// (a blocking one for tokio, a non-blocking one for a balanced listener), is an error and
/// leaves the socket in place, so the program can take it another way.
#[derive(Debug, Default)]
pub struct Sockets {
    entries: Vec<Entry>,
}

#[derive(Debug)]
struct Entry {
    name: String,
    fd: Option<OwnedFd>,
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Want {
    Any,
    SharedMemory,
    TcpListener,
    UdpSocket,
    UnixListener,
}

enum Select<'a> {
    Name(&'a str),
    Index(usize),
}

impl Sockets {
    /// Reads `LISTEN_FDS`, `LISTEN_PID` and `LISTEN_FDNAMES`, takes ownership of fds 3, 4, ...,
    /// marks them close-on-exec, and removes the variables from the environment so that child
    /// processes do not mistake them for their own (as `sd_listen_fds(1)` does).
    ///
    /// Without the variables, or when `LISTEN_PID` names another process, there are no
    /// sockets. Only the first call in a process claims the fds; later calls return no sockets.
    /// Call it early, before the program starts threads, since it changes the environment.
    pub fn from_env() -> Result<Sockets> {
        with_inherited(|inherited| Ok(std::mem::take(inherited)))
    }

    /// Reads and claims the environment's fds (once per process).
    fn claim_env() -> Result<Sockets> {
        let parsed = parse_listen_env(
            env_var("LISTEN_FDS")?.as_deref(),
            env_var("LISTEN_PID")?.as_deref(),
            env_var("LISTEN_FDNAMES")?.as_deref(),
            std::process::id(),
        )
        .map_err(|why| Error::new(ErrorKind::InvalidEnvironment, why))?;
        let names = match parsed {
            None => return Ok(Sockets::default()),
            Some(names) => names,
        };
        for name in LISTEN_VARS {
            std::env::remove_var(name);
        }
        let mut entries = Vec::with_capacity(names.len());
        for (i, name) in names.into_iter().enumerate() {
            let raw = LISTEN_FDS_START + i as i32;
            // LISTEN_PID named this process, so fds 3..3+LISTEN_FDS were handed to it by its
            // parent; herd-sys refuses a second claim of a number.
            let fd = herd_sys::fd::claim_inherited(raw).map_err(|e| {
                Error::new(
                    ErrorKind::InvalidEnvironment,
                    format!("LISTEN_FDS promises fd {raw} ({name:?}) but it is not open: {e}"),
                )
            })?;
            entries.push(Entry { name, fd: Some(fd) });
        }
        Ok(Sockets { entries })
    }

    /// Takes the shared memory named `name` (`herd run --shm NAME=SIZE`) and maps it.
    pub fn take_shm(&mut self, name: &str) -> Result<Option<SharedMemory>> {
        let fd = match self.take(Select::Name(name), Want::SharedMemory)? {
            Some(fd) => fd,
            None => return Ok(None),
        };
        SharedMemory::map(fd).map(Some)
    }

    /// A set of named sockets obtained some other way (fetched from herd, say).
    pub(crate) fn from_named(sockets: Vec<(String, OwnedFd)>) -> Sockets {
        Sockets {
            entries: sockets
                .into_iter()
                .map(|(name, fd)| Entry { name, fd: Some(fd) })
                .collect(),
        }
    }

    /// How many sockets were inherited, taken or not.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no sockets were inherited.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The sockets' names in fd order (from `LISTEN_FDNAMES`).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.name.as_str())
    }

    /// Takes the socket named `name` as a raw fd, whatever its kind.
    pub fn take_fd(&mut self, name: &str) -> Result<Option<OwnedFd>> {
        self.take(Select::Name(name), Want::Any)
    }

    /// Takes the socket at `index` (fd `3 + index`) as a raw fd, whatever its kind.
    pub fn take_fd_at(&mut self, index: usize) -> Result<Option<OwnedFd>> {
        self.take(Select::Index(index), Want::Any)
    }

    /// Takes the listening TCP socket named `name`.
    pub fn take_tcp_listener(&mut self, name: &str) -> Result<Option<TcpListener>> {
        Ok(self
            .take(Select::Name(name), Want::TcpListener)?
            .map(TcpListener::from))
    }

    /// Takes the listening TCP socket at `index`.
    pub fn take_tcp_listener_at(&mut self, index: usize) -> Result<Option<TcpListener>> {
        Ok(self
            .take(Select::Index(index), Want::TcpListener)?
            .map(TcpListener::from))
    }

    /// Takes the UDP socket named `name`.
    pub fn take_udp_socket(&mut self, name: &str) -> Result<Option<UdpSocket>> {
        Ok(self
            .take(Select::Name(name), Want::UdpSocket)?
            .map(UdpSocket::from))
    }

    /// Takes the UDP socket at `index`.
    pub fn take_udp_socket_at(&mut self, index: usize) -> Result<Option<UdpSocket>> {
        Ok(self
            .take(Select::Index(index), Want::UdpSocket)?
            .map(UdpSocket::from))
    }

    /// Takes the listening Unix stream socket named `name`.
    pub fn take_unix_listener(&mut self, name: &str) -> Result<Option<UnixListener>> {
        Ok(self
            .take(Select::Name(name), Want::UnixListener)?
            .map(UnixListener::from))
    }

    /// Takes the listening Unix stream socket at `index`.
    pub fn take_unix_listener_at(&mut self, index: usize) -> Result<Option<UnixListener>> {
        Ok(self
            .take(Select::Index(index), Want::UnixListener)?
            .map(UnixListener::from))
    }

    fn take(&mut self, select: Select<'_>, want: Want) -> Result<Option<OwnedFd>> {
        Ok(self
            .find(select, want)?
            .and_then(|index| self.entries[index].fd.take()))
    }

    /// Takes the socket named `name`, of kind `want`, as whatever `convert` makes of it; if
    /// `convert` fails (a blocking socket where a non-blocking one is needed, say), the socket
    /// stays in place and the error is returned. `convert` borrows the fd: it duplicates it if
    /// it needs to own one, and the original is closed once `convert` succeeded.
    #[cfg(feature = "tokio")]
    pub(crate) fn take_with<T>(
        &mut self,
        name: &str,
        want: Want,
        convert: impl FnOnce(&str, std::os::unix::io::BorrowedFd<'_>) -> Result<T>,
    ) -> Result<Option<T>> {
        let index = match self.find(Select::Name(name), want)? {
            None => return Ok(None),
            Some(index) => index,
        };
        let converted = match &self.entries[index].fd {
            None => return Ok(None),
            Some(fd) => convert(name, fd.as_fd())?,
        };
        self.entries[index].fd = None;
        Ok(Some(converted))
    }

    /// The index of the socket `select` names, checked to be of kind `want`; `None` if it
    /// was taken already.
    fn find(&self, select: Select<'_>, want: Want) -> Result<Option<usize>> {
        let index = match select {
            Select::Index(i) if i < self.entries.len() => i,
            Select::Index(i) => {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!(
                        "no inherited socket at index {i} (there are {})",
                        self.len()
                    ),
                ))
            }
            Select::Name(name) => {
                let mut matching = self
                    .entries
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| e.name == name);
                let first = match matching.next() {
                    Some((i, _)) => i,
                    None => return Err(self.unknown_name(name)),
                };
                // Names may repeat (systemd allows it): take the first one still present.
                std::iter::once(first)
                    .chain(matching.map(|(i, _)| i))
                    .find(|&i| self.entries[i].fd.is_some())
                    .unwrap_or(first)
            }
        };
        let entry = &self.entries[index];
        let fd = match &entry.fd {
            None => return Ok(None),
            Some(fd) => fd,
        };
        if let Want::SharedMemory = want {
            let size = herd_sys::shm::size_of(fd.as_fd())
                .map_err(|e| Error::io(format!("cannot inspect {:?}", entry.name), e))?;
            if size.is_none() {
                return Err(Error::new(
                    ErrorKind::WrongKind,
                    format!(
                        "{:?} (fd {}) is not shared memory",
                        entry.name,
                        LISTEN_FDS_START + index as i32
                    ),
                ));
            }
            return Ok(Some(index));
        }
        let info = socket::inspect(fd.as_fd())
            .map_err(|e| Error::io(format!("cannot inspect socket {:?}", entry.name), e))?;
        if !matches_kind(info, want) {
            return Err(Error::new(
                ErrorKind::WrongKind,
                format!(
                    "socket {:?} (fd {}) is {}, not {}",
                    entry.name,
                    LISTEN_FDS_START + index as i32,
                    describe(info),
                    wanted(want)
                ),
            ));
        }
        Ok(Some(index))
    }

    fn unknown_name(&self, name: &str) -> Error {
        let known: Vec<&str> = self.names().collect();
        let known = if known.is_empty() {
            "none were inherited".to_string()
        } else {
            format!("known: {}", known.join(", "))
        };
        Error::new(
            ErrorKind::NotFound,
            format!("no inherited socket is named {name:?} ({known})"),
        )
    }
}

fn matches_kind(info: Option<SocketInfo>, want: Want) -> bool {
    let info = match (want, info) {
        (Want::Any, _) => return true,
        (Want::SharedMemory, _) => return false,
        (_, None) => return false,
        (_, Some(info)) => info,
    };
    let inet = matches!(info.family, Family::Inet | Family::Inet6);
    match want {
        Want::Any | Want::SharedMemory => true,
        Want::TcpListener => inet && info.sock_type == SockType::Stream && info.listening,
        Want::UdpSocket => inet && info.sock_type == SockType::Datagram,
        Want::UnixListener => {
            info.family == Family::Unix && info.sock_type == SockType::Stream && info.listening
        }
    }
}

fn wanted(want: Want) -> &'static str {
    match want {
        Want::Any => "any fd",
        Want::SharedMemory => "shared memory",
        Want::TcpListener => "a listening TCP socket",
        Want::UdpSocket => "a UDP socket",
        Want::UnixListener => "a listening Unix stream socket",
    }
}

fn describe(info: Option<SocketInfo>) -> String {
    let info = match info {
        None => return "not a socket".to_string(),
        Some(info) => info,
    };
    let family = match info.family {
        Family::Inet | Family::Inet6 => match info.sock_type {
            SockType::Stream => "TCP",
            SockType::Datagram => "UDP",
            _ => "IP",
        },
        Family::Unix => "Unix",
        Family::Other(_) => "non-IP",
    };
    let ty = match info.sock_type {
        SockType::Stream => "stream",
        SockType::Datagram => "datagram",
        SockType::SeqPacket => "seqpacket",
        SockType::Other(_) => "unusual",
    };
    let listening = if info.listening { "listening " } else { "" };
    format!("a {listening}{family} {ty} socket")
}

/// The environment variable `name`, if set: one that is not UTF-8 is an error, not unset (a
/// socket named in Latin-1 must not silently become "unknown").
fn env_var(name: &str) -> Result<Option<String>> {
    match std::env::var(name) {
        Ok(value) => Ok(Some(value)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(value)) => Err(Error::new(
            ErrorKind::InvalidEnvironment,
            format!("{name}={value:?} is not valid UTF-8 (socket names are printable ASCII)"),
        )),
    }
}

/// Runs `f` on the process's inherited set, claiming it from the environment first if needed.
fn with_inherited<T>(f: impl FnOnce(&mut Sockets) -> Result<T>) -> Result<T> {
    let mut guard = INHERITED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if guard.is_none() {
        *guard = Some(Sockets::claim_env()?);
    }
    match guard.as_mut() {
        Some(inherited) => f(inherited),
        None => Ok(f(&mut Sockets::default())?),
    }
}

/// Maps the shared memory named `name` that herd passed to this process
/// (`herd run --shm NAME=SIZE`). It is taken out of the inherited set: call this before or
/// instead of [`Sockets::from_env`], or take it from your [`Sockets`] with
/// [`Sockets::take_shm`].
pub fn shm(name: &str) -> Result<SharedMemory> {
    with_inherited(|inherited| {
        inherited.take_shm(name)?.ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!("the shared memory {name:?} was already taken"),
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn sockets_of(pairs: Vec<(&str, OwnedFd)>) -> Sockets {
        Sockets {
            entries: pairs
                .into_iter()
                .map(|(name, fd)| Entry {
                    name: name.to_string(),
                    fd: Some(fd),
                })
                .collect(),
        }
    }

    #[test]
    fn takes_by_name_once_and_checks_kind() {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut s = sockets_of(vec![("http", tcp.into()), ("dns", udp.into())]);
        assert_eq!(s.names().collect::<Vec<_>>(), ["http", "dns"]);

        let err = s.take_udp_socket("http").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::WrongKind);
        assert!(
            err.to_string().contains("is a listening TCP stream socket"),
            "{err}"
        );

        assert!(s.take_tcp_listener("http").unwrap().is_some());
        assert!(s.take_tcp_listener("http").unwrap().is_none());
        assert!(s.take_udp_socket_at(1).unwrap().is_some());
        assert_eq!(s.take_fd("nope").unwrap_err().kind(), ErrorKind::NotFound);
        assert_eq!(s.take_fd_at(2).unwrap_err().kind(), ErrorKind::NotFound);
    }

    #[test]
    fn repeated_names_are_taken_in_order() {
        let a = TcpListener::bind("127.0.0.1:0").unwrap();
        let b = TcpListener::bind("127.0.0.1:0").unwrap();
        let (pa, pb) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        let mut s = sockets_of(vec![("web", a.into()), ("web", b.into())]);
        let first = s.take_tcp_listener("web").unwrap().unwrap();
        let second = s.take_tcp_listener("web").unwrap().unwrap();
        assert_eq!(first.local_addr().unwrap(), pa);
        assert_eq!(second.local_addr().unwrap(), pb);
        assert!(s.take_tcp_listener("web").unwrap().is_none());
    }
}
