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
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use herd_core::{Action, BackoffPolicy, Pool, PoolConfig, Readiness, StopMode, WorkerExit};
use herd_sys::process::{self, Forked, Signal};

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

    /// The pool's settings: every child is ready once started, and none is upgraded.
    fn pool_config(&self) -> PoolConfig {
        PoolConfig {
            workers: self.workers,
            grace: self.grace,
            backoff: self.backoff,
            readiness: Readiness::Delay(Duration::ZERO),
            watchdog: None,
            max_surge: herd_core::MaxSurge::Workers(1),
            max_starting: 1,
            min_ready: Duration::ZERO,
            drain: None,
        }
    }

    /// Drives the shared [`Pool`]: reaps, forks what is due, waits for a signal or the next
    /// deadline, and turns the signal into a stop or a scale.
    fn supervise<F: Fn(&Worker) -> i32>(&self, serve: &F) -> Result<()> {
        let parent = std::process::id();
        let mut pool = Pool::new(self.pool_config());
        loop {
            let actions = reap(&mut pool);
            execute(&mut pool, actions, parent, serve);
            if pool.is_stopped() {
                return Ok(());
            }
            let actions = pool.due(Instant::now());
            execute(&mut pool, actions, parent, serve);
            let timeout = pool
                .next_deadline()
                .map(|t| t.saturating_duration_since(Instant::now()));
            let signal = process::wait_for_signal(&PARENT_SIGNALS, timeout)
                .map_err(|e| Error::io("cannot wait for signals", e))?;
            let actions = match signal {
                Some(signal) => on_signal(&mut pool, signal, Instant::now()),
                None => Vec::new(),
            };
            execute(&mut pool, actions, parent, serve);
        }
    }
}

/// What a signal to the parent means: the first `TERM` or `INT` stops gracefully (`TERM`
/// again changes nothing); `INT` again, or `QUIT`, stops at once; `TTIN` adds a child and
/// `TTOU` removes one (never the last). `CHLD` only wakes the loop, which reaps.
fn on_signal(pool: &mut Pool, signal: Signal, now: Instant) -> Vec<Action> {
    let stopping = pool.is_stopping();
    let desired = pool.desired();
    if signal == Signal::TERM || (signal == Signal::INT && !stopping) {
        pool.stop(true, None, now)
    } else if signal == Signal::INT || signal == Signal::QUIT {
        pool.stop(false, None, now)
    } else if signal == Signal::TTIN {
        pool.scale(desired + 1, now).unwrap_or_default()
    } else if signal == Signal::TTOU && desired > 1 {
        pool.scale(desired - 1, now).unwrap_or_default()
    } else {
        Vec::new()
    }
}

/// Carries out the pool's actions: forks children, signals them.
fn execute<F: Fn(&Worker) -> i32>(pool: &mut Pool, actions: Vec<Action>, parent: u32, serve: &F) {
    let mut queue: std::collections::VecDeque<Action> = actions.into();
    while let Some(action) = queue.pop_front() {
        match action {
            Action::Spawn { slot, generation } => {
                queue.extend(start(pool, slot, generation, parent, serve));
            }
            Action::Stop { pid, mode, .. } => {
                let signal = match mode {
                    StopMode::Graceful => Signal::TERM,
                    StopMode::Kill => Signal::KILL,
                };
                let _ = process::signal_process(pid, signal);
            }
            Action::Ready { .. } | Action::UpgradeEnded(_) | Action::DrainTimedOut { .. } => {}
        }
    }
}

/// Forks the child for `slot`, which runs `serve` and exits with its code.
fn start<F: Fn(&Worker) -> i32>(
    pool: &mut Pool,
    slot: usize,
    generation: u64,
    parent: u32,
    serve: &F,
) -> Vec<Action> {
    match process::fork_single_threaded() {
        Ok(Forked::Child) => {
            // The child: default mask, a flag for the stop signals, death with the parent.
            let _ = process::unblock_signals(&PARENT_SIGNALS);
            let _ = process::catch(Signal::TERM);
            let _ = process::catch(Signal::INT);
            process::die_with_parent(Signal::KILL, parent);
            let code = serve(&Worker { slot });
            std::process::exit(code);
        }
        Ok(Forked::Parent(pid)) => {
            if !pool.spawned(slot, generation, pid, Instant::now()) {
                // Unreachable by construction; never leave a child unsupervised.
                let _ = process::signal_process(pid, Signal::KILL);
            }
            Vec::new()
        }
        Err(e) => {
            // Out of processes or memory: retry later, as a crash would be.
            let (retry, actions) = pool.spawn_failed(slot, &e.to_string(), Instant::now());
            match retry {
                Some(delay) => note(format_args!(
                    "prefork: cannot fork worker {slot}: {e}; retrying in {delay:?}"
                )),
                None => note(format_args!(
                    "prefork: cannot fork worker {slot}: {e}; its slot's worker serves on"
                )),
            }
            actions
        }
    }
}

/// Writes one line to stderr, ignoring a failure: not eprintln!, which panics when stderr
/// cannot be written (its reader gone, a full disk), and the supervisor must go on.
fn note(line: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Reaps every exited child and tells the pool.
fn reap(pool: &mut Pool) -> Vec<Action> {
    let mut actions = Vec::new();
    while let Ok(Some((pid, status))) = process::reap_any() {
        if let Some((exit, more)) = pool.exited(pid, worker_exit(status), Instant::now()) {
            if let Some(delay) = exit.restart_in {
                note(format_args!(
                    "prefork: worker {pid} exited ({status}); restarting in {delay:?}"
                ));
            }
            actions.extend(more);
        }
    }
    actions
}

/// What the pool needs of a child's exit status.
fn worker_exit(status: ExitStatus) -> WorkerExit {
    WorkerExit {
        success: status.success(),
        killed: status.signal() == Some(Signal::KILL.number()),
        description: status.to_string(),
        raw: status.into_raw(),
    }
}
