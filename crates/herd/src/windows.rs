//! Windows, the parent side: spawn a worker and hand it sockets, the way `herd run` does on
//! Unix with inherited fds. There is no fork and socket handles are not reliably inheritable
//! (layered service providers, IOCP association), so each socket is duplicated for exactly the
//! new worker's pid (`WSADuplicateSocketW`) and the blobs go to its stdin, a pipe only it
//! holds, in the [`share`](crate::share) format.

use std::io::{self, Write};
use std::net::{TcpListener, UdpSocket};
use std::os::windows::io::{AsSocket, BorrowedSocket};
use std::process::{Child, Command, Stdio};

use crate::share::{self, Entry, Kind};

/// A socket to share with a worker.
#[derive(Clone, Copy, Debug)]
pub enum Shared<'a> {
    /// A listening TCP socket, by name.
    Tcp(&'a str, &'a TcpListener),
    /// A UDP socket, by name.
    Udp(&'a str, &'a UdpSocket),
}

impl Shared<'_> {
    fn parts(&self) -> (&str, Kind, BorrowedSocket<'_>) {
        match self {
            Shared::Tcp(name, s) => (name, Kind::TcpListener, s.as_socket()),
            Shared::Udp(name, s) => (name, Kind::Udp, s.as_socket()),
        }
    }
}

/// Spawns `command` with `HERD_SOCKETS=stdin` and writes `sockets`, duplicated for its pid, to
/// its stdin. A worker that dies before reading them is reaped and reported as an error (the
/// duplicates die with it).
pub fn spawn(command: &mut Command, sockets: &[Shared<'_>]) -> io::Result<Child> {
    let mut child = command
        .env("HERD_SOCKETS", "stdin")
        .stdin(Stdio::piped())
        .spawn()?;
    let result = hand_over(&mut child, sockets);
    if let Err(e) = result {
        let _ = child.kill();
        let _ = child.wait();
        return Err(io::Error::new(
            e.kind(),
            format!("cannot hand the sockets to worker {}: {e}", child.id()),
        ));
    }
    Ok(child)
}

fn hand_over(child: &mut Child, sockets: &[Shared<'_>]) -> io::Result<()> {
    let pid = child.id();
    let mut entries = Vec::with_capacity(sockets.len());
    for s in sockets {
        let (name, kind, socket) = s.parts();
        let blob = herd_sys::wsa::duplicate_for(socket, pid)?.to_vec();
        entries.push(Entry {
            name: name.to_string(),
            kind,
            blob,
        });
    }
    let message = share::encode(&entries).map_err(io::Error::from)?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| io::Error::new(io::ErrorKind::Other, "the worker has no stdin pipe"))?;
    stdin.write_all(&message)?;
    // Dropping the pipe's end gives the worker end of file after the message.
    Ok(())
}
