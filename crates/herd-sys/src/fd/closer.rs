//! The threads that let go of what others may have prepared (see
//! [`close_in_background`](super::close_in_background)): jobs (a close, the taking of a
//! datagram whose files the kernel then releases) done in order by a thread, `herd-closer`.
//! On Linux a watcher, `herd-closer-watch`, interrupts a job that has waited [`PATIENCE`], and
//! gives up on one still waiting after [`GIVE_UP`] (a hung filesystem's wait, which no signal
//! ends): that thread is left to it, and a new one takes the queue, so that one such job no
//! longer holds every job after it. At most [`MAX_LEFT`] threads are left so at once; past
//! that, the queue waits for one of them.

use std::os::unix::io::OwnedFd;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long a job may wait before its thread is interrupted (a signal, which ends the kernel's
/// interruptible waits: `SO_LINGER`'s).
#[cfg(target_os = "linux")]
const PATIENCE: Duration = Duration::from_millis(100);

/// How long a job may wait before its thread is left to it and another takes the queue.
const GIVE_UP: Duration = Duration::from_secs(1);

/// The most threads left to jobs that wait at once.
pub(crate) const MAX_LEFT: usize = 8;

/// One thing to do on a closing thread, and what to do instead of waiting for it, should the
/// watcher give up on it.
pub(crate) struct Job {
    work: Box<dyn FnOnce() + Send>,
    given_up: Option<Box<dyn FnOnce() + Send>>,
}

impl Job {
    /// A job doing `work`.
    pub(crate) fn new(work: impl FnOnce() + Send + 'static) -> Job {
        Job {
            work: Box::new(work),
            given_up: None,
        }
    }

    /// The same job, running `given_up` (on the watcher's thread) once it is given up on.
    pub(crate) fn or_when_given_up(mut self, given_up: impl FnOnce() + Send + 'static) -> Job {
        self.given_up = Some(Box::new(given_up));
        self
    }
}

/// The closing threads and their queue.
struct Pool {
    /// Jobs not begun, oldest first.
    queue: Vec<Job>,
    /// Every closing thread alive.
    threads: Vec<Closer>,
    /// How many threads take jobs from the queue (those not given up on).
    taking: usize,
    next_id: u64,
    /// Whether the watcher's signal is caught, so that it may be sent.
    signals: bool,
}

/// A closing thread.
struct Closer {
    id: u64,
    /// Never joined: a thread that ended is still a valid target for a signal.
    handle: Option<std::thread::JoinHandle<()>>,
    /// When its job began, and whether it was interrupted.
    under_way: Option<(Instant, bool)>,
    /// What to do instead of waiting for its job.
    instead: Option<Box<dyn FnOnce() + Send>>,
    /// Whether the watcher gave up on its job: it ends with it.
    given_up: bool,
}

static POOL: Mutex<Option<Pool>> = Mutex::new(None);
/// Wakes the closing threads: a job was queued.
static QUEUED: Condvar = Condvar::new();
/// Wakes the watcher: a job began.
static BEGAN: Condvar = Condvar::new();

fn lock() -> MutexGuard<'static, Option<Pool>> {
    match POOL.lock() {
        Ok(pool) => pool,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Queues `job` for a closing thread, started (with its watcher) at the first call. Where no
/// thread can start, the job is done here.
pub(crate) fn run_later(job: Job) {
    let mut guard = lock();
    if guard.is_none() {
        // The watcher's signal is caught before it can be sent: uncaught, it would end herd.
        let signals = watch::catch();
        *guard = Some(Pool {
            queue: Vec::new(),
            threads: Vec::new(),
            taking: 0,
            next_id: 0,
            signals,
        });
        watch::start();
    }
    let pool = guard.as_mut().expect("just made");
    // With every thread left to a job that waits, the job waits in the queue for one of them.
    if pool.taking == 0 && left_in(pool) < MAX_LEFT && !start(pool) {
        drop(guard);
        (job.work)();
        return;
    }
    pool.queue.push(job);
    QUEUED.notify_one();
}

/// Starts a closing thread that takes jobs from `pool`'s queue; whether one started.
fn start(pool: &mut Pool) -> bool {
    let id = pool.next_id;
    pool.next_id += 1;
    let signals = pool.signals;
    let started = std::thread::Builder::new()
        .name("herd-closer".to_string())
        .spawn(move || {
            if signals {
                watch::unblock();
            }
            take_jobs(id)
        });
    match started {
        Ok(handle) => {
            pool.threads.push(Closer {
                id,
                handle: Some(handle),
                under_way: None,
                instead: None,
                given_up: false,
            });
            pool.taking += 1;
            true
        }
        Err(_) => false,
    }
}

/// A closing thread's life: jobs, one after another, until one is given up on.
fn take_jobs(id: u64) {
    loop {
        let mut guard = lock();
        let job = loop {
            let pool = match guard.as_mut() {
                Some(pool) => pool,
                None => return,
            };
            if !pool.queue.is_empty() {
                break pool.queue.remove(0);
            }
            guard = QUEUED.wait(guard).unwrap_or_else(|p| p.into_inner());
        };
        let pool = guard.as_mut().expect("taken from it");
        if let Some(me) = pool.threads.iter_mut().find(|t| t.id == id) {
            me.under_way = Some((Instant::now(), false));
            me.instead = job.given_up;
        }
        BEGAN.notify_all();
        drop(guard);
        (job.work)();
        let mut guard = lock();
        let pool = match guard.as_mut() {
            Some(pool) => pool,
            None => return,
        };
        let at = pool.threads.iter().position(|t| t.id == id);
        let given_up = at.map_or(true, |at| pool.threads[at].given_up);
        if given_up {
            // Another thread took the queue: this one ends.
            if let Some(at) = at {
                pool.threads.remove(at);
            }
            if pool.taking == 0 && left_in(pool) < MAX_LEFT {
                start(pool);
            }
            return;
        }
        if let Some(at) = at {
            pool.threads[at].under_way = None;
            pool.threads[at].instead = None;
        }
    }
}

/// How many closing threads are left to a job that still waits (a close, or the release of a
/// file, that a hung filesystem keeps waiting). A process cannot `execve` while one of its
/// threads waits so: the exec would wait with it.
pub(crate) fn left_waiting() -> usize {
    lock().as_ref().map_or(0, left_in)
}

/// Gives up on the jobs that have waited [`GIVE_UP`] (each one's `instead` is run, and a new
/// thread takes the queue while fewer than [`MAX_LEFT`] are left waiting), interrupting on
/// the way those that have waited [`PATIENCE`] (Linux); how long until the next of these
/// moments, if a job is under way.
fn look(pool: &mut Pool, now: Instant) -> Option<Duration> {
    let mut next: Option<Duration> = None;
    let mut gave_up = 0;
    let signals = pool.signals;
    for thread in pool.threads.iter_mut().filter(|t| !t.given_up) {
        let began = match thread.under_way {
            Some((began, _)) => began,
            None => continue,
        };
        let waited = now.saturating_duration_since(began);
        let patience = watch::interrupt_when_due(thread, waited, signals);
        if waited >= GIVE_UP {
            thread.given_up = true;
            gave_up += 1;
            if let Some(instead) = thread.instead.take() {
                instead();
            }
            continue;
        }
        let left = patience.map_or(GIVE_UP - waited, |p| p.min(GIVE_UP - waited));
        next = Some(next.map_or(left, |next| next.min(left)));
    }
    pool.taking -= gave_up;
    if gave_up > 0 && pool.taking == 0 && left_in(pool) < MAX_LEFT {
        start(pool);
    }
    next
}

/// How many of `pool`'s threads are left to a job that waits.
fn left_in(pool: &Pool) -> usize {
    pool.threads.iter().filter(|t| t.given_up).count()
}

/// Watches the closing threads' jobs ([`look`]) for as long as the process lives.
fn watching() {
    let mut guard = lock();
    loop {
        let next = match guard.as_mut() {
            Some(pool) => look(pool, Instant::now()),
            None => None,
        };
        guard = match next {
            Some(wait) => BEGAN
                .wait_timeout(guard, wait + Duration::from_millis(1))
                .map_or_else(|p| p.into_inner().0, |(guard, _)| guard),
            None => BEGAN.wait(guard).unwrap_or_else(|p| p.into_inner()),
        };
    }
}

/// The signal that interrupts a closing thread (Linux): one of the real-time signals, which
/// nothing else in herd uses. One signal a job: it stays pending until the job returns, so
/// every wait in it ends; more would only queue (real-time signals queue, each against
/// `RLIMIT_SIGPENDING`) behind a wait that no signal but a kill ends.
#[cfg(target_os = "linux")]
mod watch {
    use crate::process::Signal;

    fn signal() -> libc::c_int {
        libc::SIGRTMIN() + 3
    }

    extern "C" fn nothing(_: libc::c_int) {}

    /// Catches [`signal`] in this process with a handler that does nothing (`SA_RESTART`: a
    /// stray one sent from outside restarts what it interrupts where the kernel can).
    /// `false` if it could not: the watcher must not send it then.
    pub(super) fn catch() -> bool {
        // SAFETY: the handler does nothing, so it is async-signal-safe; sigaction reads a
        // zeroed-then-filled struct we own.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = nothing as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal(), &action, std::ptr::null_mut()) == 0
        }
    }

    /// Unblocks [`signal`] in the calling thread (a closing one); where that fails, a signal
    /// stays pending there and interrupts nothing.
    pub(super) fn unblock() {
        // SAFETY: pthread_sigmask reads a zeroed-then-filled set we own.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, signal());
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        }
    }

    /// Starts the watcher.
    pub(super) fn start() {
        let _ = std::thread::Builder::new()
            .name("herd-closer-watch".to_string())
            .spawn(super::watching);
    }

    /// Sends [`signal`] to `thread`, whose job has waited `waited`, if that is
    /// [`PATIENCE`](super::PATIENCE) and it was not sent yet (`signals`: if it is caught);
    /// how long until it is due otherwise.
    pub(super) fn interrupt_when_due(
        thread: &mut super::Closer,
        waited: std::time::Duration,
        signals: bool,
    ) -> Option<std::time::Duration> {
        let interrupted = match thread.under_way.as_mut() {
            Some((_, interrupted)) => interrupted,
            None => return None,
        };
        if *interrupted {
            return None;
        }
        if waited < super::PATIENCE {
            return Some(super::PATIENCE - waited);
        }
        *interrupted = true;
        // Sent under the pool's lock: the job it is for is still under way (it may just have
        // returned, and then the signal only runs the handler).
        let signal = Signal::from_number(signal());
        if let (true, Some(signal), Some(handle)) = (signals, signal, thread.handle.as_ref()) {
            let _ = crate::process::signal_thread(handle, signal);
        }
        None
    }
}

/// Elsewhere, jobs wait as long as they take, but are still given up on after a while.
#[cfg(not(target_os = "linux"))]
mod watch {
    pub(super) fn catch() -> bool {
        false
    }

    pub(super) fn unblock() {}

    pub(super) fn start() {
        let _ = std::thread::Builder::new()
            .name("herd-closer-watch".to_string())
            .spawn(super::watching);
    }

    pub(super) fn interrupt_when_due(
        _thread: &mut super::Closer,
        _waited: std::time::Duration,
        _signals: bool,
    ) -> Option<std::time::Duration> {
        None
    }
}

/// Closes `fd` on a closing thread.
pub(super) fn close_later(fd: OwnedFd) {
    run_later(Job::new(move || drop(fd)));
}
