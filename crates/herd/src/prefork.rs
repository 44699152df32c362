//! In-process prefork: bind your sockets, then fork N children that serve them, supervised, as
//! the classic `fork()`-after-`listen()` servers do.
//!
//! ```no_run
//! use std::io::Write;
//! use std::net::TcpListener;
//!
//! let listener = TcpListener::bind("127.0.0.1:8080")?;
//! herd::prefork::Prefork::new(4).run(|worker| {
//!     // In each child: the listener is shared, one accept queue for all children.
//!     // `accept` returns None once the child is asked to stop.
//!     while let Ok(Some(mut stream)) = worker.accept(&listener) {
//!         let _ = write!(stream, "HTTP/1.0 200 OK\r\n\r\nworker {}\n", worker.slot());
//!     }
//!     0
//! })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The parent supervises: a child that exits is restarted in its slot (with the same backoff as
//! `herd run`); `SIGTERM` or `SIGINT` stop gracefully (children get `SIGTERM`, which sets their
//! [`Worker::should_stop`] and interrupts a blocking call, and `SIGKILL` after the grace
//! period; a second `SIGINT` or `SIGQUIT` kills at once); `SIGTTIN`/`SIGTTOU` add or remove a
//! child (the one removed is stopped as in a graceful stop: `SIGTERM`, then `SIGKILL` after the
//! grace period). On Linux, children die with the parent.
//!
//! [`Prefork::run`] must be called before the program starts any thread: `fork()` copies only
//! the calling thread, so a lock held by another thread (the allocator's, stdout's) would stay
//! locked in every child. It checks, and refuses with [`ErrorKind::ThreadsRunning`].
//!
//! [`ErrorKind::ThreadsRunning`]: crate::ErrorKind::ThreadsRunning

use std::net::{TcpListener, TcpStream};
use std::os::unix::io::AsFd;
use std::time::{Duration, Instant};

use herd_sys::process::{self, Forked, Signal};

use crate::backoff::{Backoff, BackoffPolicy};
use crate::error::{Error, ErrorKind, Result};

/// What a child knows about itself.
#[derive(Debug)]
pub struct Worker {
    slot: usize,
}

impl Worker {
    /// The child's slot, 0 to N-1, kept by the child that replaces it.
    pub fn slot(&self) -> usize {
        self.slot
    }

    /// Whether the parent asked this child to stop (`SIGTERM` or `SIGINT` arrived): finish the
    /// request in hand and return.
    pub fn should_stop(&self) -> bool {
        process::caught(Signal::TERM) || process::caught(Signal::INT)
    }

    /// Accepts the next connection on `listener`, or returns `Ok(None)` once this child was
    /// asked to stop: the stop signal interrupts a blocking accept (std's `accept` would retry
    /// and keep waiting). Connections are never taken from the shared queue after the stop.
    ///
    /// A stop that lands in the instant between the check and the system call is noticed at
    /// the next connection, or ends with `SIGKILL` after the grace period.
    pub fn accept(&self, listener: &TcpListener) -> std::io::Result<Option<TcpStream>> {
        loop {
            if self.should_stop() {
                return Ok(None);
            }
            match herd_sys::socket::accept_once(listener.as_fd()) {
                Ok(fd) => return Ok(Some(TcpStream::from(fd))),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

/// A prefork supervisor, configured before [`run`](Prefork::run).
#[derive(Clone, Debug)]
pub struct Prefork {
    workers: usize,
    grace: Duration,
    backoff: BackoffPolicy,
}

/// The signals the parent handles, blocked and read with `sigtimedwait`.
const PARENT_SIGNALS: [Signal; 6] = [
    Signal::CHLD,
    Signal::TERM,
    Signal::INT,
    Signal::QUIT,
    Signal::TTIN,
    Signal::TTOU,
];

#[derive(Clone, Debug, Default)]
struct Slot {
    pid: Option<u32>,
    started: Option<Instant>,
    restart_at: Option<Instant>,
    backoff: Backoff,
    retired: bool,
    /// When the child, asked to stop by a scale-down, gets `SIGKILL` if it still runs.
    kill_at: Option<Instant>,
}

impl Prefork {
    /// A supervisor for `workers` children (at least 1), with a 30 s grace period.
    pub fn new(workers: usize) -> Prefork {
        Prefork {
            workers: workers.max(1),
            grace: Duration::from_secs(30),
            backoff: BackoffPolicy::default(),
        }
    }

    /// How long stopping children (all of them on a stop, or the one a `SIGTTOU` removes) may
    /// take before they get `SIGKILL`.
    pub fn grace(mut self, grace: Duration) -> Prefork {
        self.grace = grace;
        self
    }

    /// Forks the children, each running `serve` and exiting with the code it returns, and
    /// supervises them until a stop signal has been handled and every child is gone.
    pub fn run<F>(self, serve: F) -> Result<()>
    where
        F: Fn(&Worker) -> i32,
    {
        if let Some(n) = process::thread_count().filter(|&n| n > 1) {
            return Err(Error::new(
                ErrorKind::ThreadsRunning,
                format!(
                    "prefork must run before the program starts any thread ({n} are running): \
                     fork() copies only the calling thread, and locks other threads hold would \
                     stay locked in every child"
                ),
            ));
        }
        process::block_signals(&PARENT_SIGNALS)
            .map_err(|e| Error::io("cannot block signals", e))?;
        let result = self.supervise(&serve);
        let _ = process::unblock_signals(&PARENT_SIGNALS);
        result
    }

    fn supervise<F: Fn(&Worker) -> i32>(&self, serve: &F) -> Result<()> {
        let parent = std::process::id();
        let mut slots: Vec<Slot> = vec![Slot::default(); self.workers];
        let mut desired = self.workers;
        let mut stopping: Option<Instant> = None;
        loop {
            self.reap(&mut slots, stopping.is_some());
            if stopping.is_some() && slots.iter().all(|s| s.pid.is_none()) {
                return Ok(());
            }
            if stopping.is_none() {
                for (i, slot) in slots.iter_mut().enumerate().take(desired) {
                    let due = slot.restart_at.map_or(true, |t| t <= Instant::now());
                    if slot.pid.is_none() && due && !slot.retired {
                        slot.restart_at = None;
                        self.start(i, slot, parent, serve)?;
                    }
                }
            }
            let now = Instant::now();
            kill_overdue(&mut slots, now);
            let next = match stopping {
                Some(deadline) => Some(deadline),
                None => slots
                    .iter()
                    .filter_map(|s| s.restart_at)
                    .chain(slots.iter().filter_map(|s| s.kill_at))
                    .min(),
            };
            let timeout = next.map(|t| t.saturating_duration_since(now));
            let signal = process::wait_for_signal(&PARENT_SIGNALS, timeout)
                .map_err(|e| Error::io("cannot wait for signals", e))?;
            match signal {
                // The first TERM or INT stops gracefully; TERM again changes nothing.
                Some(s) if (s == Signal::TERM || s == Signal::INT) && stopping.is_none() => {
                    stopping = Some(Instant::now() + self.grace);
                    signal_all(&slots, Signal::TERM);
                }
                Some(s) if s == Signal::TERM => {}
                // INT again, or QUIT: at once.
                Some(s) if s == Signal::INT || s == Signal::QUIT => {
                    stopping = Some(Instant::now());
                    signal_all(&slots, Signal::KILL);
                }
                Some(s) if s == Signal::TTIN && stopping.is_none() => {
                    desired += 1;
                    if slots.len() < desired {
                        slots.push(Slot::default());
                    }
                    slots[desired - 1].retired = false;
                }
                Some(s) if s == Signal::TTOU && stopping.is_none() && desired > 1 => {
                    desired -= 1;
                    let slot = &mut slots[desired];
                    slot.retired = true;
                    slot.restart_at = None;
                    if let Some(pid) = slot.pid {
                        let _ = process::signal_process(pid, Signal::TERM);
                        slot.kill_at = Some(Instant::now() + self.grace);
                    }
                }
                // The grace period is over.
                None if stopping.map_or(false, |deadline| Instant::now() >= deadline) => {
                    signal_all(&slots, Signal::KILL);
                }
                _ => {}
            }
        }
    }

    fn start<F: Fn(&Worker) -> i32>(
        &self,
        i: usize,
        slot: &mut Slot,
        parent: u32,
        serve: &F,
    ) -> Result<()> {
        match process::fork_single_threaded() {
            Ok(Forked::Child) => {
                // The child: default mask, a flag for the stop signals, death with the parent.
                let _ = process::unblock_signals(&PARENT_SIGNALS);
                let _ = process::catch(Signal::TERM);
                let _ = process::catch(Signal::INT);
                process::die_with_parent(Signal::KILL, parent);
                let code = serve(&Worker { slot: i });
                std::process::exit(code);
            }
            Ok(Forked::Parent(pid)) => {
                slot.pid = Some(pid);
                slot.started = Some(Instant::now());
                Ok(())
            }
            Err(e) => {
                // Out of processes or memory: retry later, as a crash would be.
                let delay = slot.backoff.next_delay(&self.backoff, None);
                slot.restart_at = Some(Instant::now() + delay);
                eprintln!("prefork: cannot fork worker {i}: {e}; retrying in {delay:?}");
                Ok(())
            }
        }
    }

    fn reap(&self, slots: &mut [Slot], stopping: bool) {
        while let Ok(Some((pid, status))) = process::reap_any() {
            let slot = match slots.iter_mut().find(|s| s.pid == Some(pid)) {
                Some(slot) => slot,
                None => continue,
            };
            slot.pid = None;
            slot.kill_at = None;
            if stopping || slot.retired {
                continue;
            }
            let uptime = slot.started.map(|t| t.elapsed());
            let delay = slot.backoff.next_delay(&self.backoff, uptime);
            slot.restart_at = Some(Instant::now() + delay);
            eprintln!("prefork: worker {pid} exited ({status}); restarting in {delay:?}");
        }
    }
}

/// Kills the children removed by a scale-down whose grace period is over.
fn kill_overdue(slots: &mut [Slot], now: Instant) {
    for slot in slots.iter_mut() {
        if let (Some(pid), Some(at)) = (slot.pid, slot.kill_at) {
            if at <= now {
                let _ = process::signal_process(pid, Signal::KILL);
                slot.kill_at = None;
            }
        }
    }
}

fn signal_all(slots: &[Slot], signal: Signal) {
    for pid in slots.iter().filter_map(|s| s.pid) {
        let _ = process::signal_process(pid, signal);
    }
}
