//! The threads that let go of what others may have prepared (see
//! [`close_in_background`](super::close_in_background)): jobs (a close, the taking of a
//! datagram whose files the kernel then releases) taken from one queue, in order, by up to
//! [`MAX_TAKERS`] threads, `herd-closer` (a new one starts while every one is busy). On Linux a
//! watcher, `herd-closer-watch`, interrupts a job that has waited [`PATIENCE`], and gives up on
//! one still waiting after [`GIVE_UP`] (a hung filesystem's wait, which no signal ends): that
//! thread is left to it, and another takes the queue, so that one such job no longer holds
//! every job after it. Once [`MAX_LEFT`] threads are left so, no new one starts (those under
//! way may still be given up on): the queue waits for one of them, up to [`MAX_QUEUED`] jobs; a
//! job past those runs on a thread of its own ([`Busy::detached`]), up to [`MAX_DETACHED`] at
//! once, and the queue grows past them (each close job holds an fd, which herd's fd limit
//! bounds). No job runs on the thread that queued it (herd's event loop): where no thread can
//! start, jobs wait, and the watcher tries again every [`RETRY`] (a watcher that could not
//! start is tried again at the next job).

use std::collections::VecDeque;
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

/// The most threads taking jobs at once: a release can wait up to [`PATIENCE`] (a lingering
/// socket's), and a notify socket's queue (10 datagrams by default) must not fill behind one.
pub(crate) const MAX_TAKERS: usize = 4;

/// How many jobs may be queued while every thread that could take them is busy or left
/// waiting before the next runs on a thread of its own.
pub(crate) const MAX_QUEUED: usize = 1024;

/// The most jobs run on threads of their own at once (the queue was full); past that, jobs
/// wait in the queue.
pub(crate) const MAX_DETACHED: usize = MAX_LEFT;

/// How often the watcher tries again to start a thread for queued jobs none could take.
const RETRY: Duration = Duration::from_millis(100);

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

    /// The same job, running `given_up` (on the watcher's thread: it must not panic, nor
    /// wait) once it is given up on.
    #[cfg_attr(not(any(target_os = "linux", target_os = "android")), allow(dead_code))] // the notify takings'
    pub(crate) fn or_when_given_up(mut self, given_up: impl FnOnce() + Send + 'static) -> Job {
        self.given_up = Some(Box::new(given_up));
        self
    }
}

/// The closing threads and their queue.
struct Pool {
    /// Jobs not begun, oldest first.
    queue: VecDeque<Job>,
    /// Every closing thread alive.
    threads: Vec<Closer>,
    /// How many threads take jobs from the queue (those not given up on).
    taking: usize,
    next_id: u64,
    /// Whether the watcher's signal is caught, so that it may be sent.
    signals: bool,
    /// Jobs run on threads of their own (the queue was full), not ended yet.
    detached: usize,
    /// Whether the watcher runs.
    watched: bool,
}

/// What keeps the closing threads busy (see [`wait_idle`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Busy {
    /// Jobs queued, not begun.
    pub queued: usize,
    /// Jobs under way, not given up on.
    pub under_way: usize,
    /// Threads left to a job that still waits after a second (a hung filesystem's wait).
    pub left_waiting: usize,
    /// Jobs run on threads of their own (the queue was full), not ended yet.
    pub detached: usize,
}

impl Busy {
    fn of(pool: &Pool) -> Busy {
        Busy {
            queued: pool.queue.len(),
            under_way: (pool.threads.iter())
                .filter(|t| !t.given_up && t.under_way.is_some())
                .count(),
            left_waiting: left_in(pool),
            detached: pool.detached,
        }
    }

    fn is_idle(&self) -> bool {
        *self == Busy::default()
    }
}

/// A closing thread.
struct Closer {
    id: u64,
    /// What the watcher needs to interrupt it.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))] // signalled on Linux only
    handle: watch::Handle,
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
/// Wakes the watcher: a job began, or no thread could start for one queued.
static BEGAN: Condvar = Condvar::new();
/// Wakes [`wait_idle`]: a job ended or was given up on.
static ENDED: Condvar = Condvar::new();

fn lock() -> MutexGuard<'static, Option<Pool>> {
    match POOL.lock() {
        Ok(pool) => pool,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Queues `job` for a closing thread, started (with its watcher) at the first call. It never
/// runs here: where no thread can start, it waits for the watcher to start one.
pub(crate) fn run_later(job: Job) {
    let mut guard = lock();
    let pool = guard.get_or_insert_with(|| Pool {
        queue: VecDeque::new(),
        threads: Vec::new(),
        taking: 0,
        next_id: 0,
        // The watcher's signal is caught before it can be sent: uncaught, it would end herd.
        signals: watch::catch(),
        detached: 0,
        watched: false,
    });
    if !pool.watched {
        pool.watched = !refused() && watch::start();
    }
    let job = if pool.queue.len() >= MAX_QUEUED && pool.detached < MAX_DETACHED {
        // Every thread is busy or left waiting, and so many jobs wait already: one more in the
        // queue would keep what it holds (an fd) for as long as those waits last.
        match detach(pool, job) {
            Ok(()) => return,
            Err(job) => job,
        }
    } else {
        job
    };
    pool.queue.push_back(job);
    // With every thread left to a job that waits, the job waits in the queue for one of them.
    add_taker(pool);
    QUEUED.notify_one();
}

/// Starts one more taking thread if `pool` wants one ([`wants_taker`]); where none can start,
/// wakes the watcher, which tries again.
fn add_taker(pool: &mut Pool) {
    if wants_taker(pool) && !start(pool) {
        BEGAN.notify_all();
    }
}

/// Starts the watcher, and a taking thread for queued jobs, where they could not start before.
pub(crate) fn retry() {
    let mut guard = lock();
    let pool = match guard.as_mut() {
        Some(pool) => pool,
        None => return,
    };
    if !pool.watched {
        pool.watched = !refused() && watch::start();
    }
    add_taker(pool);
}

/// Runs `job` on a thread of its own; `Err` with it if none could start.
fn detach(pool: &mut Pool, job: Job) -> Result<(), Job> {
    let slot = std::sync::Arc::new(Mutex::new(Some(job)));
    let on_thread = std::sync::Arc::clone(&slot);
    let detached = std::thread::Builder::new()
        .name("herd-closer".to_string())
        .spawn(move || {
            let job = on_thread.lock().ok().and_then(|mut job| job.take());
            if let Some(job) = job {
                (job.work)();
            }
            detach_ended();
        });
    if detached.is_ok() {
        pool.detached += 1;
        return Ok(());
    }
    // The thread did not start: the job is still in its slot.
    match slot.lock().ok().and_then(|mut job| job.take()) {
        Some(job) => Err(job),
        None => Ok(()),
    }
}

/// A job run on a thread of its own ended.
fn detach_ended() {
    if let Some(pool) = lock().as_mut() {
        pool.detached -= 1;
    }
    ENDED.notify_all();
}

/// Whether `pool` should start one more taking thread: jobs are queued, no thread is free to
/// take them, and fewer than [`MAX_TAKERS`] take jobs and [`MAX_LEFT`] are left waiting.
fn wants_taker(pool: &Pool) -> bool {
    let free = (pool.threads.iter())
        .filter(|t| !t.given_up && t.under_way.is_none())
        .count();
    !pool.queue.is_empty() && free == 0 && pool.taking < MAX_TAKERS && left_in(pool) < MAX_LEFT
}

/// Starts a closing thread that takes jobs from `pool`'s queue; whether one started.
fn start(pool: &mut Pool) -> bool {
    if refused() {
        return false;
    }
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
                handle: watch::keep(handle),
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

/// Never: threads start where they can.
#[cfg(not(test))]
fn refused() -> bool {
    false
}

/// Whether a test refuses the threads this thread would start.
#[cfg(test)]
use tests::no_threads_here as refused;

/// A closing thread's life: jobs, one after another, until one is given up on.
fn take_jobs(id: u64) {
    loop {
        let mut guard = lock();
        let job = loop {
            let pool = match guard.as_mut() {
                Some(pool) => pool,
                None => return,
            };
            if let Some(job) = pool.queue.pop_front() {
                break job;
            }
            guard = QUEUED.wait(guard).unwrap_or_else(|p| p.into_inner());
        };
        let Job { work, given_up } = job;
        let pool = guard.as_mut().expect("taken from it");
        // Never found is never: a thread is listed before it can lock.
        let not_listed = match pool.threads.iter_mut().find(|t| t.id == id) {
            Some(me) => {
                me.under_way = Some((Instant::now(), false));
                me.instead = given_up;
                None
            }
            None => given_up,
        };
        // Jobs still queued, and every thread busy: one more takes them.
        add_taker(pool);
        BEGAN.notify_all();
        drop(guard);
        drop(not_listed);
        work();
        let mut guard = lock();
        let pool = match guard.as_mut() {
            Some(pool) => pool,
            None => return,
        };
        let at = pool.threads.iter().position(|t| t.id == id);
        let given_up = at.map_or(true, |at| pool.threads[at].given_up);
        // What it holds is let go of with the lock released: it may be the last reference to
        // a socket whose queued files a hung filesystem keeps.
        let instead = at.and_then(|at| pool.threads[at].instead.take());
        if given_up {
            // Another thread took the queue: this one ends.
            if let Some(at) = at {
                pool.threads.remove(at);
            }
            add_taker(pool);
            ENDED.notify_all();
            drop(guard);
            drop(instead);
            return;
        }
        if let Some(at) = at {
            pool.threads[at].under_way = None;
        }
        ENDED.notify_all();
        drop(guard);
        drop(instead);
    }
}

/// Waits at most `within` until the closing threads are idle: no job queued or under way, no
/// thread left to a job that waits. `Err` with what keeps them busy otherwise. Checked under
/// the lock the watcher gives up under: a job given up on while this waits is seen.
pub(crate) fn wait_idle(within: Duration) -> Result<(), Busy> {
    let deadline = Instant::now() + within;
    let mut guard = lock();
    loop {
        let busy = guard.as_ref().map_or_else(Busy::default, Busy::of);
        if busy.is_idle() {
            return Ok(());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(busy);
        }
        guard =
            (ENDED.wait_timeout(guard, left)).map_or_else(|p| p.into_inner().0, |(guard, _)| guard);
    }
}

/// How many closing threads are left to a job that still waits (a close, or the release of a
/// file, that a hung filesystem keeps waiting). A process cannot `execve` while one of its
/// threads waits so: the exec would wait with it.
pub(crate) fn left_waiting() -> usize {
    lock().as_ref().map_or(0, left_in)
}

/// What the watcher does next: the given-up jobs' `instead`, run with the lock released, and
/// how long until it looks again, if it must.
struct Look {
    instead: Vec<Box<dyn FnOnce() + Send>>,
    next: Option<Duration>,
}

/// Gives up on the jobs that have waited [`GIVE_UP`] (a new thread takes the queue while
/// fewer than [`MAX_LEFT`] are left waiting), interrupting on the way those that have waited
/// [`PATIENCE`] (Linux), and starts a thread for queued jobs none could take.
fn look(pool: &mut Pool, now: Instant) -> Look {
    let mut next: Option<Duration> = None;
    let mut instead = Vec::new();
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
            instead.extend(thread.instead.take());
            continue;
        }
        let left = patience.map_or(GIVE_UP - waited, |p| p.min(GIVE_UP - waited));
        next = Some(next.map_or(left, |next| next.min(left)));
    }
    pool.taking -= gave_up;
    if gave_up > 0 {
        ENDED.notify_all();
    }
    // After a give-up, or where no thread could start for jobs queued.
    if wants_taker(pool) && !start(pool) {
        next = Some(next.map_or(RETRY, |next| next.min(RETRY)));
    }
    Look { instead, next }
}

/// How many of `pool`'s threads are left to a job that waits.
fn left_in(pool: &Pool) -> usize {
    pool.threads.iter().filter(|t| t.given_up).count()
}

/// Watches the closing threads' jobs ([`look`]) for as long as the process lives.
fn watching() {
    let mut guard = lock();
    loop {
        let Look { instead, next } = match guard.as_mut() {
            Some(pool) => look(pool, Instant::now()),
            None => Look {
                instead: Vec::new(),
                next: None,
            },
        };
        if !instead.is_empty() {
            drop(guard);
            instead.into_iter().for_each(|instead| instead());
            // A job may have begun meanwhile: looked at before any wait.
            guard = lock();
            continue;
        }
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

    /// A closing thread, to signal. Never joined: a thread that ended is still a valid target.
    pub(super) type Handle = Option<std::thread::JoinHandle<()>>;

    pub(super) fn keep(handle: std::thread::JoinHandle<()>) -> Handle {
        Some(handle)
    }

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

    /// Starts the watcher; whether it started.
    pub(super) fn start() -> bool {
        (std::thread::Builder::new().name("herd-closer-watch".to_string()))
            .spawn(super::watching)
            .is_ok()
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
    /// Nothing: no thread is signalled.
    pub(super) type Handle = ();

    pub(super) fn keep(_handle: std::thread::JoinHandle<()>) -> Handle {}

    pub(super) fn catch() -> bool {
        false
    }

    pub(super) fn unblock() {}

    pub(super) fn start() -> bool {
        (std::thread::Builder::new().name("herd-closer-watch".to_string()))
            .spawn(super::watching)
            .is_ok()
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

#[cfg(test)]
mod tests;
