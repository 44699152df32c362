//! Attached processes: those that fetched the sockets with `herd attach`. Not children and not
//! restarted, but held by a pidfd (a reused pid is never signalled), listed in status, and
//! stopped with the workers: the stop signal, then SIGKILL once the grace period is over, and
//! herd does not exit before they are gone. Their exits are noticed within [`CHECK_EVERY`],
//! and within [`STOP_CHECK_EVERY`] while herd stops. Without pidfds (not Linux, or a kernel
//! before 5.3) a process is known by its pid and start time instead.

use std::os::unix::io::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use herd_sys::pidfd::PidFd;
use herd_sys::process::{self, Signal};

use super::reexec::SavedAttached;

/// How often attached processes are checked for having exited.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);
/// How often while herd stops, which waits for them.
pub const STOP_CHECK_EVERY: Duration = Duration::from_millis(10);
/// How long herd waits for killed processes to go (one stuck in the kernel may never).
pub const KILL_WAIT: Duration = Duration::from_secs(5);

/// A process that fetched the sockets with `herd attach`.
#[derive(Clone, Debug)]
pub struct Attached {
    /// Its pid.
    pub pid: u32,
    /// Its start time (`/proc/PID/stat`), so that a reused pid is not mistaken for it.
    pub start_time: u64,
    /// When it attached.
    pub since: Instant,
    /// The sockets it took.
    pub sockets: Vec<String>,
    /// The process itself, where pidfds exist.
    pidfd: Option<Arc<PidFd>>,
}

impl Attached {
    /// The process `pid`, which started at `start_time` (`None` if it has exited since).
    pub fn new(pid: u32, start_time: u64, sockets: Vec<String>) -> Option<Attached> {
        let pidfd = open_checked(pid, start_time)?;
        Some(Attached {
            pid,
            start_time,
            since: Instant::now(),
            sockets,
            pidfd,
        })
    }

    /// An attached process handed over by a re-exec, with its pidfd if it had one (an older
    /// herd's state has none: it is opened anew, by pid and start time). `None` if it has
    /// exited.
    pub fn restore(saved: SavedAttached, pidfd: Option<OwnedFd>, now: Instant) -> Option<Attached> {
        let pidfd = match pidfd {
            Some(fd) => Some(Arc::new(PidFd::from(fd))),
            None => open_checked(saved.pid, saved.start_time)?,
        };
        let attached = Attached {
            pid: saved.pid,
            start_time: saved.start_time,
            since: now
                .checked_sub(Duration::from_millis(saved.age_ms))
                .unwrap_or(now),
            sockets: saved.sockets,
            pidfd,
        };
        (!attached.exited()).then_some(attached)
    }

    /// What a re-exec hands over.
    pub fn save(&self, now: Instant) -> SavedAttached {
        use std::os::unix::io::AsRawFd;
        SavedAttached {
            pid: self.pid,
            start_time: self.start_time,
            age_ms: now.saturating_duration_since(self.since).as_millis() as u64,
            sockets: self.sockets.clone(),
            pidfd: self.pidfd().map(|fd| fd.as_raw_fd()),
        }
    }

    /// Its pidfd, if it has one.
    pub fn pidfd(&self) -> Option<BorrowedFd<'_>> {
        self.pidfd.as_deref().map(AsFd::as_fd)
    }

    /// Whether it has exited.
    pub fn exited(&self) -> bool {
        match &self.pidfd {
            Some(pidfd) => pidfd.has_exited(),
            None => process::start_time(self.pid) != Some(self.start_time),
        }
    }

    fn signal(&self, signal: Signal) -> std::io::Result<()> {
        match &self.pidfd {
            Some(pidfd) => pidfd.signal(signal),
            None => process::signal_process(self.pid, signal),
        }
    }
}

/// A pidfd for `pid`, if it still is the process that started at `start_time`: `Some(None)`
/// where pidfds do not exist, `None` if the process has exited.
fn open_checked(pid: u32, start_time: u64) -> Option<Option<Arc<PidFd>>> {
    let pidfd = PidFd::open(pid).ok();
    // Checked after opening: the pidfd holds the process whose start time this is.
    if process::start_time(pid) != Some(start_time) {
        return None;
    }
    Some(pidfd.map(Arc::new))
}

/// Where attached processes are in herd's stop.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Stopping {
    No,
    /// Signalled; SIGKILL at this time.
    Until(Instant),
    /// Killed, at this time.
    Killed(Instant),
}

/// The attached processes.
pub struct AttachedSet {
    list: Vec<Attached>,
    stopping: Stopping,
}

impl Default for AttachedSet {
    fn default() -> AttachedSet {
        AttachedSet {
            list: Vec::new(),
            stopping: Stopping::No,
        }
    }
}

impl AttachedSet {
    /// Adds `attached`, replacing an entry of the same pid.
    pub fn add(&mut self, attached: Attached) {
        self.list.retain(|a| a.pid != attached.pid);
        self.list.push(attached);
    }

    /// Adds processes (restored after a re-exec).
    pub fn extend(&mut self, attached: impl IntoIterator<Item = Attached>) {
        for a in attached {
            self.add(a);
        }
    }

    /// The processes.
    pub fn as_slice(&self) -> &[Attached] {
        &self.list
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Forgets those that have exited.
    pub fn remove_exited(&mut self) {
        self.list.retain(|a| {
            let exited = a.exited();
            if exited {
                tracing::info!(pid = a.pid, "attached worker exited");
            }
            !exited
        });
    }

    /// Stops them as herd stops: `signal`, then SIGKILL after `grace` (SIGKILL at once, or a
    /// second stop that is not graceful, kills those left).
    pub fn stop(&mut self, signal: Signal, grace: Duration, now: Instant) {
        let signal = match self.stopping {
            Stopping::Killed(_) => return,
            Stopping::Until(_) if signal != Signal::KILL => return,
            _ => signal,
        };
        self.stopping = if signal == Signal::KILL {
            Stopping::Killed(now)
        } else {
            Stopping::Until(now.checked_add(grace).unwrap_or(now))
        };
        self.remove_exited();
        for a in &self.list {
            tracing::info!(pid = a.pid, "sending {signal} to attached worker");
            if let Err(e) = a.signal(signal) {
                tracing::warn!(pid = a.pid, "cannot send {signal} to attached worker: {e}");
            }
        }
    }

    /// While herd stops and some are left: when to look at them next (and kill those left
    /// once their grace period is over).
    pub fn deadline(&self, now: Instant) -> Option<Instant> {
        if self.list.is_empty() {
            return None;
        }
        let next = now + STOP_CHECK_EVERY;
        match self.stopping {
            Stopping::No => None,
            Stopping::Until(at) => Some(at.min(next)),
            Stopping::Killed(_) => Some(next),
        }
    }

    /// While herd stops: forgets those that have exited, and kills those left once their
    /// grace period is over.
    pub fn due(&mut self, now: Instant) {
        if self.stopping == Stopping::No {
            return;
        }
        self.remove_exited();
        if let Stopping::Killed(at) = self.stopping {
            if now.saturating_duration_since(at) >= KILL_WAIT {
                for a in self.list.drain(..) {
                    tracing::warn!(
                        pid = a.pid,
                        "attached worker still there {}s after SIGKILL; herd stops without it",
                        KILL_WAIT.as_secs()
                    );
                }
            }
        }
        if matches!(self.stopping, Stopping::Until(at) if at <= now && !self.list.is_empty()) {
            for a in &self.list {
                tracing::warn!(
                    pid = a.pid,
                    "killing attached worker: it did not stop within the grace period"
                );
            }
            self.stop(Signal::KILL, Duration::ZERO, now);
        }
    }
}
