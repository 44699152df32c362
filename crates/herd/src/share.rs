//! The wire format in which herd hands sockets to a worker on Windows, over the worker's stdin
//! (a pipe only that worker holds). Versioned and documented, so that a worker in any language
//! can read it: Python does with `socket.fromshare(blob)`.
//!
//! ```text
//! offset  size  field
//! 0       4     magic: the bytes "HERD"
//! 4       2     version: 1 (u16, little-endian)
//! 6       2     count: the number of sockets, at most 1024 (u16, little-endian)
//! then, count times:
//!         1     kind: 1 = TCP listener, 2 = UDP socket
//!         1     name length N, 1 to 255
//!         N     name: printable ASCII except ':' (as in LISTEN_FDNAMES)
//!         2     blob length B, 1 to 4096 (u16, little-endian)
//!         B     blob: the WSAPROTOCOL_INFOW that WSADuplicateSocketW wrote for this worker's
//!               pid (628 bytes on 64-bit Windows), for WSASocketW(FROM_PROTOCOL_INFO) or
//!               Python's socket.fromshare
//! ```
//!
//! Nothing follows the last blob: the reader reads exactly this much, and a worker's stdin
//! reaches end of file after it. A worker learns to read it from `HERD_SOCKETS=stdin`.

use std::io::Read;

use crate::error::{Error, ErrorKind, Result};

/// The first four bytes.
pub const MAGIC: &[u8; 4] = b"HERD";
/// The version this library writes and reads.
pub const VERSION: u16 = 1;
/// The most sockets in one message.
pub const MAX_SOCKETS: usize = 1024;
/// The longest blob accepted.
pub const MAX_BLOB: usize = 4096;

/// What a shared socket is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A listening TCP socket.
    TcpListener,
    /// A UDP socket.
    Udp,
}

/// One socket in a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Its name.
    pub name: String,
    /// Its kind.
    pub kind: Kind,
    /// The duplicated socket's description.
    pub blob: Vec<u8>,
}

/// Writes a message for `entries`.
pub fn encode(entries: &[Entry]) -> Result<Vec<u8>> {
    if entries.len() > MAX_SOCKETS {
        return Err(invalid(format!(
            "at most {MAX_SOCKETS} sockets can be shared"
        )));
    }
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    for e in entries {
        herd_core::validate_name(&e.name).map_err(invalid)?;
        if e.blob.is_empty() || e.blob.len() > MAX_BLOB {
            return Err(invalid(format!(
                "the blob of {:?} is {} bytes",
                e.name,
                e.blob.len()
            )));
        }
        out.push(match e.kind {
            Kind::TcpListener => 1,
            Kind::Udp => 2,
        });
        out.push(e.name.len() as u8);
        out.extend_from_slice(e.name.as_bytes());
        out.extend_from_slice(&(e.blob.len() as u16).to_le_bytes());
        out.extend_from_slice(&e.blob);
    }
    Ok(out)
}

/// Reads one message from `input`, exactly as many bytes as it takes.
pub fn decode(input: &mut impl Read) -> Result<Vec<Entry>> {
    let mut header = [0u8; 8];
    read(input, &mut header, "the header")?;
    if &header[..4] != MAGIC {
        return Err(invalid(
            "the socket hand-off does not start with \"HERD\" (was the worker started by herd?)"
                .to_string(),
        ));
    }
    let version = u16::from_le_bytes([header[4], header[5]]);
    if version != VERSION {
        return Err(invalid(format!(
            "socket hand-off version {version} is not supported (this library reads {VERSION})"
        )));
    }
    let count = u16::from_le_bytes([header[6], header[7]]) as usize;
    if count > MAX_SOCKETS {
        return Err(invalid(format!(
            "{count} sockets announced; at most {MAX_SOCKETS}"
        )));
    }
    let mut entries = Vec::with_capacity(count);
    for i in 0..count {
        let mut head = [0u8; 2];
        read(input, &mut head, "a socket's kind")?;
        let kind = match head[0] {
            1 => Kind::TcpListener,
            2 => Kind::Udp,
            other => return Err(invalid(format!("socket {i} has the unknown kind {other}"))),
        };
        let mut name = vec![0u8; head[1] as usize];
        read(input, &mut name, "a socket's name")?;
        let name = String::from_utf8(name)
            .map_err(|_| invalid(format!("socket {i}'s name is not UTF-8")))?;
        herd_core::validate_name(&name).map_err(invalid)?;
        let mut len = [0u8; 2];
        read(input, &mut len, "a blob's length")?;
        let len = u16::from_le_bytes(len) as usize;
        if len == 0 || len > MAX_BLOB {
            return Err(invalid(format!("the blob of {name:?} is {len} bytes")));
        }
        let mut blob = vec![0u8; len];
        read(input, &mut blob, "a blob")?;
        entries.push(Entry { name, kind, blob });
    }
    Ok(entries)
}

fn read(input: &mut impl Read, buf: &mut [u8], what: &str) -> Result<()> {
    input.read_exact(buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            invalid(format!(
                "the socket hand-off is truncated: {what} is missing"
            ))
        } else {
            Error::io("cannot read the socket hand-off", e)
        }
    })
}

fn invalid(message: String) -> Error {
    Error::new(ErrorKind::InvalidEnvironment, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Entry> {
        vec![
            Entry {
                name: "http".into(),
                kind: Kind::TcpListener,
                blob: vec![7; 628],
            },
            Entry {
                name: "dns".into(),
                kind: Kind::Udp,
                blob: vec![9; 628],
            },
        ]
    }

    #[test]
    fn round_trip_reads_exactly_the_message() {
        let mut bytes = encode(&sample()).unwrap();
        bytes.extend_from_slice(b"rest of stdin");
        let mut input = &bytes[..];
        assert_eq!(decode(&mut input).unwrap(), sample());
        assert_eq!(input, b"rest of stdin");
    }

    #[test]
    fn bad_input_is_a_clear_error() {
        let good = encode(&sample()).unwrap();
        for cut in [0, 3, 7, 9, 15, 100, good.len() - 1] {
            let err = decode(&mut &good[..cut]).unwrap_err();
            assert!(err.to_string().contains("truncated"), "cut at {cut}: {err}");
        }
        let mut forged = good.clone();
        forged[0] = b'X';
        assert!(decode(&mut &forged[..])
            .unwrap_err()
            .to_string()
            .contains("\"HERD\""));
        let mut forged = good.clone();
        forged[4] = 9;
        assert!(decode(&mut &forged[..])
            .unwrap_err()
            .to_string()
            .contains("version 9"));
        let mut forged = good;
        forged[8] = 5;
        assert!(decode(&mut &forged[..])
            .unwrap_err()
            .to_string()
            .contains("unknown kind 5"));
    }
}
