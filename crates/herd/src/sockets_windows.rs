//! Windows: the sockets herd handed this worker over its stdin (see [`crate::share`]), or that
//! a process fetched from a running herd ([`Sockets::from_control`]), with the same "by name or
//! index, each taken once, kind checked" API as on Unix.

use std::net::{TcpListener, UdpSocket};
use std::os::windows::io::OwnedSocket;
use std::sync::Mutex;

use crate::error::{Error, ErrorKind, Result};
use crate::share::{self, Kind};

static TAKEN: Mutex<bool> = Mutex::new(false);

/// The sockets this worker was given.
#[derive(Debug, Default)]
pub struct Sockets {
    entries: Vec<Entry>,
}

#[derive(Debug)]
struct Entry {
    name: String,
    kind: Kind,
    /// `None` once taken.
    source: Option<Source>,
}

/// Where an entry's socket comes from.
#[derive(Debug)]
enum Source {
    /// A blob to rebuild it from, read from stdin.
    Blob(Vec<u8>),
    /// The socket itself, fetched and rebuilt already.
    Socket(OwnedSocket),
}

impl Sockets {
    /// Reads the sockets from stdin when `HERD_SOCKETS=stdin` says herd wrote them there
    /// (once per process; later calls return no sockets). Without it, there are none.
    pub fn from_env() -> Result<Sockets> {
        if std::env::var("HERD_SOCKETS").ok().as_deref() != Some("stdin") {
            return Ok(Sockets::default());
        }
        let mut taken = TAKEN.lock().unwrap_or_else(|p| p.into_inner());
        if *taken {
            return Ok(Sockets::default());
        }
        *taken = true;
        std::env::remove_var("HERD_SOCKETS");
        let entries = share::decode(&mut std::io::stdin().lock())?;
        Ok(Sockets {
            entries: entries
                .into_iter()
                .map(|e| Entry {
                    name: e.name,
                    kind: e.kind,
                    source: Some(Source::Blob(e.blob)),
                })
                .collect(),
        })
    }

    /// The sockets fetched from a herd, by the kind herd said they are.
    pub(crate) fn from_fetched(fetched: Vec<crate::fetch::Fetched>) -> Result<Sockets> {
        let entry = |f: crate::fetch::Fetched| {
            let kind = match f.kind.as_str() {
                "tcp" => Kind::TcpListener,
                "udp" => Kind::Udp,
                other => {
                    return Err(Error::new(
                        ErrorKind::WrongKind,
                        format!(
                            "herd shared socket {:?} as a {other:?} socket, which Windows has not",
                            f.name
                        ),
                    ))
                }
            };
            Ok(Entry {
                name: f.name,
                kind,
                source: Some(Source::Socket(f.socket)),
            })
        };
        let entries = fetched.into_iter().map(entry).collect::<Result<_>>()?;
        Ok(Sockets { entries })
    }

    /// How many sockets were given, taken or not.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none were given.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Their names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.name.as_str())
    }

    /// Takes the listening TCP socket named `name`.
    pub fn take_tcp_listener(&mut self, name: &str) -> Result<Option<TcpListener>> {
        let i = self.index_of(name)?;
        self.take_tcp_listener_at(i)
    }

    /// Takes the listening TCP socket at `index`.
    pub fn take_tcp_listener_at(&mut self, index: usize) -> Result<Option<TcpListener>> {
        Ok(self.take(index, Kind::TcpListener)?.map(TcpListener::from))
    }

    /// Takes the UDP socket named `name`.
    pub fn take_udp_socket(&mut self, name: &str) -> Result<Option<UdpSocket>> {
        let i = self.index_of(name)?;
        self.take_udp_socket_at(i)
    }

    /// Takes the UDP socket at `index`.
    pub fn take_udp_socket_at(&mut self, index: usize) -> Result<Option<UdpSocket>> {
        Ok(self.take(index, Kind::Udp)?.map(UdpSocket::from))
    }

    fn index_of(&self, name: &str) -> Result<usize> {
        self.entries
            .iter()
            .position(|e| e.name == name)
            .ok_or_else(|| {
                let known: Vec<&str> = self.names().collect();
                Error::new(
                    ErrorKind::NotFound,
                    format!("no socket is named {name:?} (known: {})", known.join(", ")),
                )
            })
    }

    fn take(&mut self, index: usize, kind: Kind) -> Result<Option<OwnedSocket>> {
        let len = self.entries.len();
        let entry = self.entries.get_mut(index).ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!("no socket at index {index} (there are {len})"),
            )
        })?;
        if entry.kind != kind {
            return Err(Error::new(
                ErrorKind::WrongKind,
                format!(
                    "socket {:?} is a {:?}, not a {kind:?}",
                    entry.name, entry.kind
                ),
            ));
        }
        match entry.source.take() {
            None => Ok(None),
            Some(Source::Socket(socket)) => Ok(Some(socket)),
            Some(Source::Blob(blob)) => herd_sys::wsa::from_blob(&blob).map(Some).map_err(|e| {
                Error::io(
                    format!("cannot rebuild socket {:?} from its blob", entry.name),
                    e,
                )
            }),
        }
    }
}
