//! Windows, the parent side: spawn a worker and hand it sockets, the way `herd run` does on
//! Unix with inherited fds. There is no fork and socket handles are not reliably inheritable
//! (layered service providers, IOCP association), so each socket is duplicated for exactly the
//! new worker's pid (`WSADuplicateSocketW`) and the blobs go to its stdin, a pipe only it
//! holds, in the [`share`](crate::share) format.
//!
//! Handles that are not sockets (the worker's stop event, shared memory) are inherited
//! instead ([`spawn_with`]), and named in the worker's environment. [`spawn_suspended`] lets
//! the caller act on the worker before it runs (herd places it in its Job Object).

use std::io::{self, Write};
use std::net::{TcpListener, UdpSocket};
use std::os::windows::io::{AsSocket, BorrowedHandle, BorrowedSocket};
use std::os::windows::process::CommandExt;
use std::process::{Child, Command, Stdio};

use herd_sys::windows::{handle, process};

use crate::handle_env::{self, SHM, STOP_EVENT};
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

/// A handle for a worker to inherit, and what it is to the worker.
#[derive(Clone, Copy, Debug)]
pub enum Inherited<'a> {
    /// Its stop request: an event ([`herd_sys::windows::event::Event`]) that herd sets when
    /// the worker should stop, named in `HERD_STOP_EVENT` ([`crate::stop_requested`]). One per
    /// worker: a worker's event must not be inherited by another.
    StopEvent(BorrowedHandle<'a>),
    /// Shared memory (a file mapping, [`herd_sys::windows::shm::create`]) by name, named in
    /// `HERD_SHM` ([`crate::shm`]).
    SharedMemory(&'a str, BorrowedHandle<'a>),
}

/// Spawns `command` with `HERD_SOCKETS=stdin` and writes `sockets`, duplicated for its pid, to
/// its stdin. A worker that dies before reading them is reaped and reported as an error (the
/// duplicates die with it).
pub fn spawn(command: &mut Command, sockets: &[Shared<'_>]) -> io::Result<Child> {
    spawn_with(command, sockets, &[])
}

/// [`spawn`], and the worker inherits the handles `inherit`, at the same values, named in its
/// environment (`HERD_STOP_EVENT`, `HERD_SHM`: see [`Inherited`]). Each handle is inheritable
/// only during this spawn; no other process may be spawned meanwhile, on any thread, or it
/// would inherit them too. Two stop events, or two shared memories of one name, or a name
/// that is not a `--shm` name, are refused (`InvalidInput`).
pub fn spawn_with(
    command: &mut Command,
    sockets: &[Shared<'_>],
    inherit: &[Inherited<'_>],
) -> io::Result<Child> {
    start(command, sockets, inherit, |command| command.spawn())
}

/// [`spawn_with`], and `before_run` gets the new process before it runs anything of its own:
/// it is created suspended (`CREATE_SUSPENDED`) and resumed after `before_run`, then handed
/// its sockets. Placing it in a Job Object there keeps whatever it starts in the job too.
/// `creation_flags` replace `command`'s (std cannot add one to those set before): give here
/// what the worker needs besides (`CREATE_NEW_PROCESS_GROUP`...). When `before_run` fails the
/// process is ended and the error returned.
pub fn spawn_suspended(
    command: &mut Command,
    creation_flags: u32,
    sockets: &[Shared<'_>],
    inherit: &[Inherited<'_>],
    before_run: impl FnOnce(&Child) -> io::Result<()>,
) -> io::Result<Child> {
    command.creation_flags(creation_flags | process::CREATE_SUSPENDED);
    start(command, sockets, inherit, |command| {
        let mut child = command.spawn()?;
        let ran = before_run(&child).and_then(|()| process::resume(&child));
        if let Err(e) = ran {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
        Ok(child)
    })
}

/// Starts `command` with `spawn`, inheriting `inherit`, then hands it `sockets`.
fn start(
    command: &mut Command,
    sockets: &[Shared<'_>],
    inherit: &[Inherited<'_>],
    spawn: impl FnOnce(&mut Command) -> io::Result<Child>,
) -> io::Result<Child> {
    name_inherited(command, inherit)?;
    let handles: Vec<BorrowedHandle<'_>> = inherit
        .iter()
        .map(|i| match i {
            Inherited::StopEvent(h) | Inherited::SharedMemory(_, h) => *h,
        })
        .collect();
    let command = command.env("HERD_SOCKETS", "stdin").stdin(Stdio::piped());
    let mut child = with_inheritable(&handles, || spawn(command))?;
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

/// Names the handles in `command`'s environment.
fn name_inherited(command: &mut Command, inherit: &[Inherited<'_>]) -> io::Result<()> {
    let invalid = |message: String| io::Error::new(io::ErrorKind::InvalidInput, message);
    let mut stop_events = 0;
    let mut memories = Vec::new();
    for i in inherit {
        match i {
            Inherited::StopEvent(h) => {
                stop_events += 1;
                command.env(STOP_EVENT, handle::value(*h).to_string());
            }
            Inherited::SharedMemory(name, h) => memories.push((*name, handle::value(*h))),
        }
    }
    if stop_events > 1 {
        return Err(invalid(
            "a worker has one stop event, not several".to_string(),
        ));
    }
    if !memories.is_empty() {
        command.env(SHM, handle_env::format_list(&memories).map_err(invalid)?);
    }
    Ok(())
}

/// Runs `spawn` with `handles` inheritable, then puts back their inheritability as it was,
/// also when `spawn` failed.
fn with_inheritable<T>(
    handles: &[BorrowedHandle<'_>],
    spawn: impl FnOnce() -> io::Result<T>,
) -> io::Result<T> {
    let mut made = Vec::with_capacity(handles.len());
    let mut result = Ok(());
    for h in handles {
        match handle::is_inheritable(*h) {
            Ok(true) => {}
            Ok(false) => {
                made.push(*h);
                result = handle::set_inheritable(*h, true);
            }
            Err(e) => result = Err(e),
        }
        if result.is_err() {
            break;
        }
    }
    let spawned = result.and_then(|()| spawn());
    for h in made {
        // Cannot fail on a live handle; if it did, the next spawn would inherit it too.
        let _ = handle::set_inheritable(h, false);
    }
    spawned
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
    // Dropping the pipe's end gives the worker end of file after the message.
    if message.len() <= PIPE_BUFFER {
        return stdin.write_all(&message);
    }
    // More than a pipe holds waits for the worker to read it, which a slow starter does late
    // and a careless one never: a thread of its own writes it, so that the caller (herd's
    // loop) goes on; it ends once it is written or the worker is gone.
    std::thread::Builder::new()
        .name("herd-hand-off".into())
        .spawn(move || {
            let _ = stdin.write_all(&message);
        })
        .map(drop)
}

/// What an anonymous pipe holds before its writer waits: Windows' default buffer is 4 KiB.
const PIPE_BUFFER: usize = 4096;
