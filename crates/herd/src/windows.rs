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

/// What [`supervise`] reports as it goes, for the caller to log.
#[derive(Debug)]
pub enum Event<'a> {
    /// Worker `slot` started as `pid`.
    Started {
        /// Its slot, 0 to N-1 (`HERD_WORKER`).
        slot: usize,
        /// Its process id.
        pid: u32,
    },
    /// Worker `slot` (`pid`) exited; its successor starts after `restart_in`.
    Exited {
        /// Its slot.
        slot: usize,
        /// Its process id.
        pid: u32,
        /// How it exited.
        status: std::process::ExitStatus,
        /// The backoff before its successor.
        restart_in: std::time::Duration,
    },
    /// Worker `slot` could not be started; the next try is after `retry_in`.
    SpawnFailed {
        /// Its slot.
        slot: usize,
        /// Why.
        error: &'a io::Error,
        /// The backoff before the next try.
        retry_in: std::time::Duration,
    },
}

/// Runs `workers` workers, each started with `command(slot)` and handed `sockets`, and restarts
/// each one that exits, after the shared restart backoff, until `stop()`
/// returns true (checked every 50 ms); then terminates them (Windows console programs have no
/// graceful stop signal) and waits for them. The sockets stay open throughout, so a restarting
/// worker's clients wait in the accept queue instead of being refused.
pub fn supervise(
    mut command: impl FnMut(usize) -> Command,
    sockets: &[Shared<'_>],
    workers: usize,
    mut stop: impl FnMut() -> bool,
    mut report: impl FnMut(Event<'_>),
) {
    use herd_core::{Backoff, BackoffPolicy};
    use std::time::{Duration, Instant};

    struct Slot {
        child: Option<Child>,
        started: Instant,
        restart_at: Option<Instant>,
        backoff: Backoff,
    }
    let policy = BackoffPolicy::default();
    let mut slots: Vec<Slot> = (0..workers)
        .map(|_| Slot {
            child: None,
            started: Instant::now(),
            restart_at: Some(Instant::now()),
            backoff: Backoff::default(),
        })
        .collect();
    while !stop() {
        for (i, slot) in slots.iter_mut().enumerate() {
            if let Some(child) = &mut slot.child {
                if let Ok(Some(status)) = child.try_wait() {
                    let uptime = slot.started.elapsed();
                    let delay = slot.backoff.next_delay(&policy, Some(uptime));
                    report(Event::Exited {
                        slot: i,
                        pid: child.id(),
                        status,
                        restart_in: delay,
                    });
                    slot.child = None;
                    slot.restart_at = Some(Instant::now() + delay);
                }
            }
            let due = slot.restart_at.map_or(false, |t| t <= Instant::now());
            if slot.child.is_none() && due {
                let mut cmd = command(i);
                cmd.env("HERD_WORKER", i.to_string());
                match spawn(&mut cmd, sockets) {
                    Ok(child) => {
                        report(Event::Started {
                            slot: i,
                            pid: child.id(),
                        });
                        slot.child = Some(child);
                        slot.started = Instant::now();
                        slot.restart_at = None;
                    }
                    Err(error) => {
                        let delay = slot.backoff.next_delay(&policy, None);
                        report(Event::SpawnFailed {
                            slot: i,
                            error: &error,
                            retry_in: delay,
                        });
                        slot.restart_at = Some(Instant::now() + delay);
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for slot in &mut slots {
        if let Some(child) = &mut slot.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
