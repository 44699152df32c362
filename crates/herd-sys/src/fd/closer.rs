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
        // The watcher's signal is caught before it can be sent: uncaught, it would end herd.
        let watched = watch::catch();
        let started = std::thread::Builder::new()
            .name("herd-closer".to_string())
            .spawn(move || {
                if watched {
                    watch::unblock();
                }
                for fd in rx {
                    closing.began();
                    drop(fd);
                    closing.ended();
                }
            });
        if let Ok(thread) = started {
            if watched {
                watch::start(thread);
            }
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

/// The watcher: a signal to the closing thread, once a close has waited [`PATIENCE`], ends
/// the kernel's wait (`SO_LINGER`'s `sk_stream_wait_close`, and the waits of the sockets an
/// fd's release closes with it, which all look for a pending signal). One signal a close: it
/// stays pending until the close returns, so every wait in it ends; more would only queue
/// (real-time signals queue, each against `RLIMIT_SIGPENDING`) behind a wait that no signal
/// but a kill ends.
#[cfg(target_os = "linux")]
mod watch {
    use std::sync::{Condvar, Mutex};
    use std::time::Instant;

    use super::PATIENCE;
    use crate::process::Signal;

    /// The close under way, if one is: its number and when it began.
    static UNDER_WAY: Mutex<Option<(u64, Instant)>> = Mutex::new(None);
    static CHANGED: Condvar = Condvar::new();

    /// The closing thread's record of its closes.
    pub(super) struct Closing {
        closes: std::cell::Cell<u64>,
    }

    impl Closing {
        pub(super) fn new() -> Closing {
            Closing {
                closes: std::cell::Cell::new(0),
            }
        }

        pub(super) fn began(&self) {
            self.closes.set(self.closes.get().wrapping_add(1));
            *lock() = Some((self.closes.get(), Instant::now()));
            CHANGED.notify_all();
        }

        pub(super) fn ended(&self) {
            *lock() = None;
        }
    }

    fn lock() -> std::sync::MutexGuard<'static, Option<(u64, Instant)>> {
        match UNDER_WAY.lock() {
            Ok(under_way) => under_way,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The signal that interrupts the closing thread: one of the real-time signals, which
    /// nothing else in herd uses.
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

    /// Unblocks [`signal`] in the calling thread (the closing one); where that fails, a
    /// signal stays pending there and interrupts nothing.
    pub(super) fn unblock() {
        // SAFETY: pthread_sigmask reads a zeroed-then-filled set we own.
        unsafe {
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
        let signal = match Signal::from_number(signal()) {
            Some(signal) => signal,
            None => return,
        };
        let mut under_way = lock();
        let mut interrupted = None;
        loop {
            let (close, began) = match *under_way {
                Some((close, began)) if interrupted != Some(close) => (close, began),
                // None, or one interrupted already (its signal is pending until it returns).
                _ => {
                    under_way = CHANGED.wait(under_way).unwrap_or_else(|p| p.into_inner());
                    continue;
                }
            };
            let waited = began.elapsed();
            if waited < PATIENCE {
                under_way = (CHANGED.wait_timeout(under_way, PATIENCE - waited))
                    .map_or_else(|p| p.into_inner().0, |(under_way, _)| under_way);
                continue;
            }
            interrupted = Some(close);
            // Sent under the lock: the close it is for is still under way (it may just have
            // returned, and then the signal only runs the handler).
            let _ = crate::process::signal_thread(closer, signal);
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

    pub(super) fn catch() -> bool {
        false
    }

    pub(super) fn unblock() {}

    pub(super) fn start(_closer: std::thread::JoinHandle<()>) {}
}
