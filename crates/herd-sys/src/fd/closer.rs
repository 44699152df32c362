//! The thread that closes what others may have prepared (see
//! [`close_in_background`](super::close_in_background)), and on Linux its watcher, which
//! interrupts a close that waits longer than [`PATIENCE`].

use std::os::unix::io::OwnedFd;
use std::sync::mpsc::{channel, Sender};
use std::sync::Mutex;

/// The closing thread's queue, once started.
static CLOSER: Mutex<Option<Sender<OwnedFd>>> = Mutex::new(None);

pub(super) fn close_later(fd: OwnedFd) {
    let mut closer = match CLOSER.lock() {
        Ok(closer) => closer,
        Err(poisoned) => poisoned.into_inner(),
    };
    if closer.is_none() {
        let (tx, rx) = channel::<OwnedFd>();
        let closing = watch::Closing::new();
        let started = std::thread::Builder::new()
            .name("herd-closer".to_string())
            .spawn(move || {
                watch::interruptible();
                for fd in rx {
                    closing.began();
                    drop(fd);
                    closing.ended();
                }
            });
        if let Ok(thread) = started {
            watch::start(thread);
            *closer = Some(tx);
        }
    }
    if let Some(tx) = closer.as_ref() {
        // A queue whose thread is gone gives the fd back, which then closes here.
        let _ = tx.send(fd);
    }
}

/// How long a close may wait before the closing thread is interrupted.
#[cfg(target_os = "linux")]
const PATIENCE: std::time::Duration = std::time::Duration::from_millis(100);

/// The watcher: a signal to the closing thread, while a close has waited [`PATIENCE`] and
/// again each [`PATIENCE`] after, ends the kernel's wait (`SO_LINGER`'s
/// `sk_stream_wait_close`, and the waits of the sockets an fd's release closes with it,
/// which all look for a pending signal).
#[cfg(target_os = "linux")]
mod watch {
    use std::sync::{Condvar, Mutex};
    use std::time::Instant;

    use super::PATIENCE;

    /// When the close under way began, if one is.
    static SINCE: Mutex<Option<Instant>> = Mutex::new(None);
    static CHANGED: Condvar = Condvar::new();

    /// The closing thread's record of its closes.
    pub(super) struct Closing;

    impl Closing {
        pub(super) fn new() -> Closing {
            Closing
        }

        pub(super) fn began(&self) {
            *lock() = Some(Instant::now());
            CHANGED.notify_all();
        }

        pub(super) fn ended(&self) {
            *lock() = None;
        }
    }

    fn lock() -> std::sync::MutexGuard<'static, Option<Instant>> {
        match SINCE.lock() {
            Ok(since) => since,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The signal that interrupts the closing thread: one of the real-time signals, which
    /// nothing else in herd uses.
    fn signal() -> libc::c_int {
        libc::SIGRTMIN() + 3
    }

    extern "C" fn nothing(_: libc::c_int) {}

    /// Makes the calling thread (the closing one) interruptible by [`signal`]: a handler
    /// that does nothing (with `SA_RESTART`, so that a stray one interrupts nothing
    /// elsewhere), and the signal unblocked here.
    pub(super) fn interruptible() {
        // SAFETY: the handler does nothing, so it is async-signal-safe; sigaction and
        // pthread_sigmask read zeroed-then-filled structs we own.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = nothing as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal(), &action, std::ptr::null_mut());
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, signal());
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        }
    }

    /// Starts the watcher of the closing thread `closer`.
    pub(super) fn start(closer: std::thread::JoinHandle<()>) {
        let _ = std::thread::Builder::new()
            .name("herd-closer-watch".to_string())
            .spawn(move || watch(&closer));
    }

    fn watch(closer: &std::thread::JoinHandle<()>) {
        use std::os::unix::thread::JoinHandleExt;
        let mut since = lock();
        loop {
            let Some(began) = *since else {
                since = CHANGED.wait(since).unwrap_or_else(|p| p.into_inner());
                continue;
            };
            let waited = began.elapsed();
            if waited < PATIENCE {
                since = (CHANGED.wait_timeout(since, PATIENCE - waited))
                    .map_or_else(|p| p.into_inner().0, |(since, _)| since);
                continue;
            }
            drop(since);
            // SAFETY: `closer` is borrowed, never joined, so its pthread_t stays valid (a
            // finished but unjoined thread is a valid, if ignored, target).
            unsafe {
                libc::pthread_kill(closer.as_pthread_t() as libc::pthread_t, signal());
            }
            std::thread::sleep(PATIENCE);
            since = lock();
        }
    }
}

/// Elsewhere, closes wait as long as they take.
#[cfg(not(target_os = "linux"))]
mod watch {
    pub(super) struct Closing;

    impl Closing {
        pub(super) fn new() -> Closing {
            Closing
        }
        pub(super) fn began(&self) {}
        pub(super) fn ended(&self) {}
    }

    pub(super) fn interruptible() {}

    pub(super) fn start(_closer: std::thread::JoinHandle<()>) {}
}
