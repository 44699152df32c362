//! What a listener is, and how workers share it: closed lists whose `Display` and serde form
//! are the strings of `herd status`, the log and the re-exec state.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What kind of file a listener is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SocketKind {
    /// A TCP socket (`tcp`).
    Tcp,
    /// A UDP socket (`udp`).
    Udp,
    /// A Unix stream or datagram socket (`unix`).
    Unix,
    /// Shared memory (`--shm`), passed along like a socket (`shm`).
    Shm,
}

impl SocketKind {
    /// The kind named `name` (as [`as_str`](Self::as_str) writes it), if herd knows it.
    pub fn from_name(name: &str) -> Option<SocketKind> {
        [
            SocketKind::Tcp,
            SocketKind::Udp,
            SocketKind::Unix,
            SocketKind::Shm,
        ]
        .into_iter()
        .find(|k| k.as_str() == name)
    }

    /// Its name: `tcp`, `udp`, `unix` or `shm`.
    pub fn as_str(self) -> &'static str {
        match self {
            SocketKind::Tcp => "tcp",
            SocketKind::Udp => "udp",
            SocketKind::Unix => "unix",
            SocketKind::Shm => "shm",
        }
    }
}

impl fmt::Display for SocketKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the workers share a TCP socket (`--balance`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Balance {
    /// One socket, one accept queue for every worker.
    #[default]
    Shared,
    /// One SO_REUSEPORT socket, and accept queue, per worker slot.
    Reuseport,
}

impl Balance {
    /// Its name: `shared` or `reuseport`.
    pub fn as_str(self) -> &'static str {
        match self {
            Balance::Shared => "shared",
            Balance::Reuseport => "reuseport",
        }
    }
}

impl fmt::Display for Balance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_balance_modes_keep_their_wire_strings() {
        for (kind, text) in [
            (SocketKind::Tcp, "tcp"),
            (SocketKind::Udp, "udp"),
            (SocketKind::Unix, "unix"),
            (SocketKind::Shm, "shm"),
        ] {
            assert_eq!(kind.to_string(), text);
            assert_eq!(SocketKind::from_name(text), Some(kind));
            assert_eq!(serde_json::to_value(kind).unwrap(), text);
            assert_eq!(
                serde_json::from_value::<SocketKind>(text.into()).unwrap(),
                kind
            );
        }
        for (mode, text) in [
            (Balance::Shared, "shared"),
            (Balance::Reuseport, "reuseport"),
        ] {
            assert_eq!(mode.to_string(), text);
            assert_eq!(serde_json::to_value(mode).unwrap(), text);
            assert_eq!(
                serde_json::from_value::<Balance>(text.into()).unwrap(),
                mode
            );
            let value = clap::ValueEnum::to_possible_value(&mode).unwrap();
            assert_eq!(value.get_name(), text);
        }
        assert!(serde_json::from_value::<SocketKind>("sctp".into()).is_err());
        assert_eq!(SocketKind::from_name("sctp"), None);
    }
}
