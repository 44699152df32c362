//! Keeps the shared TCP sockets listening.
//!
//! `shutdown()` acts on a socket, not on one process's descriptor of it: a worker that shuts
//! down its inherited listener (Sanic's multi-process mode does on exit) stops it for every
//! holder. The other workers' `accept()` fails with `EINVAL`, and the port refuses connections.
//! herd's own copy shows it (`SO_ACCEPTCONN` is off), and `listen()` on that copy brings the
//! socket back for everyone; a socket bound to port 0 has lost its port as well and is bound
//! again to the same address first.
//!
//! Unix stream sockets cannot be repaired this way: after `shutdown()` they still report
//! listening and refuse connections for good (Linux keeps the shutdown flag across `listen()`).
//! herd tells them by `POLLRDHUP` and says so, once.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use herd_sys::socket::accept_queue;
use socket2::SockRef;
use std::os::unix::io::BorrowedFd;

use crate::logging::LogEvent;
use crate::spec::{somaxconn, Listener, SocketKind};

/// How often the sockets are checked (besides right after each worker exit).
pub const CHECK_EVERY: Duration = Duration::from_millis(250);

/// For how long after a socket is found shut down the exits of new workers do not fail an
/// upgrade: their `accept()` failed on the shut-down socket, through no fault of their own.
pub const EXCUSE: Duration = Duration::from_secs(2);

/// How long worker exits are remembered, to name the one that shut a socket down.
const REMEMBER: Duration = Duration::from_secs(5);

/// How long after a socket is found shut down the culprit may still exit and be named: a
/// worker shuts the socket down on its way out, so it often exits just after.
const WAIT_FOR_CULPRIT: Duration = Duration::from_secs(1);

/// Who shut a socket down when no worker exited around that time.
const UNKNOWN: &str = "a process that holds it (a worker, or a process it started)";

/// A worker's exit, remembered to name it.
#[derive(Clone, Copy, Debug)]
struct Exit {
    slot: usize,
    pid: u32,
    /// Exited with status 0 or when herd asked it to stop: what a server that shuts its
    /// socket down on exit does. The others, whose `accept()` failed, usually crash.
    clean: bool,
    at: Instant,
}

/// A socket restored, whose culprit is still to be named.
#[derive(Debug)]
struct Incident {
    socket: String,
    address: String,
    /// When the socket was last seen listening: the culprit exited after that.
    since: Instant,
    found: Instant,
    /// The workers that held the socket when it was found shut down, `(slot, pid)`: if none
    /// of them exits cleanly, the culprit is likely one that still runs.
    holders: Vec<(usize, u32)>,
}

/// Who shut a socket down, as far as herd can tell.
#[derive(Debug, PartialEq, Eq)]
enum Culprit {
    /// A worker that exited cleanly right after: what a server that shuts its socket down on
    /// its way out does.
    Exited(String),
    /// Nobody exited cleanly: likely one of the workers that still run (`live`); those that
    /// exited since (`crashed`) likely failed on the shut-down socket.
    Unsure {
        live: Vec<String>,
        crashed: Vec<String>,
    },
}

/// Watches the listeners; see the module docs.
#[derive(Debug, Default)]
pub struct Guard {
    /// Each socket's backlog and when it was last seen listening: `(listener name, index)`.
    seen: HashMap<(String, usize), (u32, Instant)>,
    /// Recent worker exits, oldest first.
    exits: Vec<Exit>,
    /// Sockets whose restoration failed, logged once until they listen again.
    failing: HashSet<(String, usize)>,
    /// Restored sockets waiting for their culprit's exit.
    pending: Vec<Incident>,
}

impl Guard {
    /// Remembers that worker `pid` of `slot` exited at `at`; `clean` as in [`Exit`].
    pub fn worker_exited(&mut self, slot: usize, pid: u32, clean: bool, at: Instant) {
        self.exits.retain(|e| at.duration_since(e.at) < REMEMBER);
        self.exits.push(Exit {
            slot,
            pid,
            clean,
            at,
        });
        self.report_pending(at);
    }

    /// Checks every TCP listener herd holds and makes those no longer listening listen again;
    /// `holders` are the workers (`(slot, pid)`) that hold them. Returns how many were
    /// restored. The system calls are here; what they mean for the
    /// bookkeeping is in [`listening`](Guard::listening), [`shut_down`](Guard::shut_down),
    /// [`restored`](Guard::restored) and [`failed`](Guard::failed).
    pub fn check(&mut self, listeners: &[Listener], holders: &[(usize, u32)], now: Instant) -> u64 {
        self.report_pending(now);
        let mut restored = 0;
        for listener in listeners.iter().filter(|l| l.kind == SocketKind::Tcp) {
            let sockets: Vec<(usize, BorrowedFd<'_>)> = match listener.group() {
                Some(group) => group.sockets().enumerate().collect(),
                None => listener.fd().map(|fd| (0, fd)).into_iter().collect(),
            };
            for (index, fd) in sockets {
                let key = (listener.name.clone(), index);
                if is_listening(fd) {
                    let backlog = match accept_queue(fd) {
                        Ok(Some((_, limit))) => limit,
                        _ => somaxconn(),
                    };
                    self.listening(key, backlog, now);
                    continue;
                }
                let (backlog, since) = self.shut_down(&key, somaxconn(), now);
                match relisten(fd, backlog) {
                    Ok(()) => {
                        restored += 1;
                        let at = (since, now);
                        self.restored(key, &listener.address, backlog, at, holders);
                    }
                    Err(e) if self.failed(key) => tracing::error!(
                        event = LogEvent::SocketLost.as_str(),
                        socket = %listener.name,
                        address = %listener.address,
                        "socket {} was shut down (by a worker or a process it started) and \
                         cannot listen again: {e}; restart herd to bind it anew",
                        listener.name
                    ),
                    Err(_) => {}
                }
            }
        }
        self.report_pending(now);
        for listener in listeners.iter().filter(|l| l.kind == SocketKind::Unix) {
            self.check_unix(listener);
        }
        restored
    }

    /// Says, once, that the Unix socket of `listener` was shut down: it refuses every
    /// connection from then on, and cannot be made to listen again (see the module docs).
    fn check_unix(&mut self, listener: &Listener) {
        let Some(fd) = listener.fd() else {
            return;
        };
        let key = (listener.name.clone(), 0);
        if herd_sys::socket::shut_for_reading(fd).unwrap_or(false) && self.failed(key) {
            tracing::error!(
                event = LogEvent::SocketLost.as_str(),
                socket = %listener.name,
                address = %listener.address,
                "socket {} was shut down (by a worker or a process it started) and refuses every \
                 connection: a Unix socket cannot listen again after that; restart herd to bind \
                 it anew",
                listener.name
            );
        }
    }

    /// Socket `key` listens, with this `backlog`, at `now`.
    fn listening(&mut self, key: (String, usize), backlog: u32, now: Instant) {
        self.failing.remove(&key);
        self.seen.insert(key, (backlog, now));
    }

    /// Socket `key` was found not listening at `now`: the backlog to listen with again (its
    /// last one, else `default`) and since when it may have been shut down (when it was last
    /// seen listening, else as long ago as exits are remembered).
    fn shut_down(&self, key: &(String, usize), default: u32, now: Instant) -> (u32, Instant) {
        self.seen
            .get(key)
            .copied()
            .unwrap_or_else(|| (default, now.checked_sub(REMEMBER).unwrap_or(now)))
    }

    /// Socket `key` (at `address`) listens again since `now`, with `backlog`, where `at` is
    /// `(since, now)`; its culprit, a worker that exited after `since` or one of `holders`, is
    /// to be named.
    fn restored(
        &mut self,
        key: (String, usize),
        address: &str,
        backlog: u32,
        (since, now): (Instant, Instant),
        holders: &[(usize, u32)],
    ) {
        self.pending.push(Incident {
            socket: key.0.clone(),
            address: address.to_string(),
            since,
            found: now,
            holders: holders.to_vec(),
        });
        self.listening(key, backlog, now);
    }

    /// Socket `key` could not listen again; whether to say so (once, until it listens again).
    fn failed(&mut self, key: (String, usize)) -> bool {
        self.failing.insert(key)
    }

    /// Reports each pending incident once its culprit is known: a worker that exited cleanly
    /// since the socket last listened, or, once [`WAIT_FOR_CULPRIT`] has passed, the workers
    /// that may have done it (see [`Culprit::Unsure`]).
    fn report_pending(&mut self, now: Instant) {
        for (incident, culprit) in self.resolve(now) {
            report(&incident, &culprit);
        }
    }

    /// The pending incidents whose culprit is known now, with it; see [`report_pending`].
    ///
    /// [`report_pending`]: Guard::report_pending
    fn resolve(&mut self, now: Instant) -> Vec<(Incident, Culprit)> {
        let mut resolved = Vec::new();
        for incident in std::mem::take(&mut self.pending) {
            let after: Vec<&Exit> = self
                .exits
                .iter()
                .filter(|e| e.at >= incident.since)
                .collect();
            let culprit = match after.iter().find(|e| e.clean) {
                Some(e) => Some(Culprit::Exited(name(e.slot, e.pid))),
                None if now.duration_since(incident.found) >= WAIT_FOR_CULPRIT => {
                    let exited = |pid: u32| after.iter().any(|e| e.pid == pid);
                    Some(Culprit::Unsure {
                        live: incident
                            .holders
                            .iter()
                            .filter(|(_, pid)| !exited(*pid))
                            .map(|&(slot, pid)| name(slot, pid))
                            .collect(),
                        crashed: after.iter().map(|e| name(e.slot, e.pid)).collect(),
                    })
                }
                None => None,
            };
            match culprit {
                Some(culprit) => resolved.push((incident, culprit)),
                None => self.pending.push(incident),
            }
        }
        resolved
    }
}

fn name(slot: usize, pid: u32) -> String {
    format!("worker {slot} (pid {pid})")
}

/// At most this many workers are named in one line; the rest are counted.
const MAX_NAMED: usize = 8;

/// `names`, comma-separated, at most [`MAX_NAMED`] of them.
fn list(names: &[String]) -> String {
    let mut shown = names
        .iter()
        .take(MAX_NAMED)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > MAX_NAMED {
        shown.push_str(&format!(" and {} more", names.len() - MAX_NAMED));
    }
    shown
}

/// Who did it, for the log line: `worker 0 (pid 200)`, or what herd can tell when unsure.
fn describe(culprit: &Culprit) -> String {
    match culprit {
        Culprit::Exited(name) => name.clone(),
        Culprit::Unsure { live, crashed } => {
            let mut text = UNKNOWN.to_string();
            if !live.is_empty() {
                text.push_str(&format!(
                    "; no worker exited cleanly around then, so likely one that still runs, \
                     one of: {}",
                    list(live)
                ));
            }
            if !crashed.is_empty() {
                text.push_str(&format!(
                    "; {} exited since, likely failing on the shut-down socket",
                    list(crashed)
                ));
            }
            text
        }
    }
}

/// The one log line of a restored socket.
fn report(incident: &Incident, culprit: &Culprit) {
    let culprit = describe(culprit);
    tracing::warn!(
        event = LogEvent::SocketRestored.as_str(),
        socket = %incident.socket,
        address = %incident.address,
        culprit = %culprit,
        "socket {} had been shut down by {culprit}; that stops it for every worker; herd made \
         it listen again",
        incident.socket
    );
}

/// Whether `fd` listens (`SO_ACCEPTCONN`); `true` where that cannot be read.
#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
fn is_listening(fd: BorrowedFd<'_>) -> bool {
    SockRef::from(&fd).is_listener().unwrap_or(true)
}

/// Always `true`: socket2 reads `SO_ACCEPTCONN` only on Linux and FreeBSD, so a socket a
/// worker shut down is not listened on again here.
#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
fn is_listening(_fd: BorrowedFd<'_>) -> bool {
    true
}

/// `listen()` again; first `bind()` to the same address when the shutdown released the port
/// (an ephemeral port: `EINVAL` from `bind` means the socket kept its port).
fn relisten(fd: BorrowedFd<'_>, backlog: u32) -> std::io::Result<()> {
    let socket = SockRef::from(&fd);
    let address = socket.local_addr()?;
    match socket.bind(&address) {
        Err(e) if e.raw_os_error() != Some(libc::EINVAL) => return Err(e),
        _ => {}
    }
    socket.listen(backlog.min(i32::MAX as u32) as i32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::os::unix::io::AsFd;

    #[test]
    fn a_shut_down_socket_listens_again_on_the_same_address() {
        // An ephemeral port (released by the shutdown), then a port asked for (kept).
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        for requested in [0, port] {
            let listener = TcpListener::bind(("127.0.0.1", requested)).unwrap();
            let address = listener.local_addr().unwrap();
            SockRef::from(&listener).shutdown(Shutdown::Both).unwrap();
            assert!(!SockRef::from(&listener).is_listener().unwrap());
            relisten(listener.as_fd(), 16).unwrap();
            assert_eq!(listener.local_addr().unwrap(), address);
            let _client = TcpStream::connect(address).unwrap();
            listener.accept().unwrap();
        }
    }

    #[test]
    fn a_restored_socket_remembers_its_backlog_and_since_when_it_was_down() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let key = || ("http".to_string(), 0);
        let mut guard = Guard::default();
        // Never seen listening: the default backlog, and any remembered exit may be the culprit.
        assert_eq!(guard.shut_down(&key(), 128, ms(6000)), (128, ms(1000)));
        guard.listening(key(), 511, ms(100));
        assert_eq!(guard.shut_down(&key(), 128, ms(400)), (511, ms(100)));
        // A failure is said once, until the socket listens again.
        assert!(guard.failed(key()));
        assert!(!guard.failed(key()));
        guard.restored(key(), "127.0.0.1:1", 511, (ms(100), ms(400)), &[(0, 7)]);
        assert!(guard.failed(key()), "listening again resets it");
        assert_eq!(guard.pending.len(), 1);
        assert_eq!(guard.pending[0].since, ms(100));
        assert_eq!(guard.shut_down(&key(), 128, ms(500)), (511, ms(400)));
    }

    #[test]
    fn the_worker_that_exited_cleanly_is_named() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let incident = |since| Incident {
            socket: "http".into(),
            address: "127.0.0.1:1".into(),
            since,
            found: ms(100),
            holders: vec![(0, 100), (3, 300), (4, 400), (5, 500)],
        };
        let named = |resolved: Vec<(Incident, Culprit)>| -> Vec<String> {
            resolved
                .into_iter()
                .map(|(_, culprit)| describe(&culprit))
                .collect()
        };
        let exit = |slot, pid, clean, at| Exit {
            slot,
            pid,
            clean,
            at,
        };
        // Found before anyone exited: a crash (an innocent worker whose accept() failed) does
        // not name anyone yet, a clean exit does, even after it.
        let mut guard = Guard::default();
        guard.pending.push(incident(ms(50)));
        guard.exits.push(exit(1, 100, false, ms(110)));
        assert!(guard.resolve(ms(110)).is_empty());
        guard.exits.push(exit(0, 200, true, ms(120)));
        assert_eq!(named(guard.resolve(ms(120))), ["worker 0 (pid 200)"]);
        assert!(guard.pending.is_empty());
        // Only crashes since it last listened: once the wait is over, the workers that still
        // run are the likely culprits, and the crashed ones are named as likely victims.
        let mut guard = Guard::default();
        guard.exits.push(exit(3, 300, true, ms(10)));
        guard.exits.push(exit(4, 400, false, ms(60)));
        guard.exits.push(exit(5, 500, false, ms(70)));
        guard.pending.push(incident(ms(50)));
        assert!(guard.resolve(ms(500)).is_empty(), "waits for a clean exit");
        let resolved = guard.resolve(ms(100) + WAIT_FOR_CULPRIT);
        assert_eq!(
            resolved[0].1,
            Culprit::Unsure {
                live: vec!["worker 0 (pid 100)".into(), "worker 3 (pid 300)".into()],
                crashed: vec!["worker 4 (pid 400)".into(), "worker 5 (pid 500)".into()],
            }
        );
        assert_eq!(
            named(resolved),
            [format!(
                "{UNKNOWN}; no worker exited cleanly around then, so likely one that still \
                 runs, one of: worker 0 (pid 100), worker 3 (pid 300); worker 4 (pid 400), \
                 worker 5 (pid 500) exited since, likely failing on the shut-down socket"
            )]
        );
        // Nobody held it or exited: nobody is named.
        guard.pending.push(Incident {
            holders: Vec::new(),
            ..incident(ms(900))
        });
        let culprit = named(guard.resolve(ms(100) + WAIT_FOR_CULPRIT));
        assert_eq!(culprit, [UNKNOWN]);
    }

    #[test]
    fn long_lists_are_cut() {
        let names: Vec<String> = (0..10).map(|i| name(i, 100 + i as u32)).collect();
        let shown = list(&names);
        assert!(shown.ends_with("worker 7 (pid 107) and 2 more"), "{shown}");
    }
}
