//! Receiving signals: this thread's mask, waiting for a blocked signal, catching one with a
//! flag, default dispositions, and signalling one of this process's threads.

use std::io;

use super::Signal;

/// Blocks `signals` for this thread (`pthread_sigmask(SIG_BLOCK)`): they stay pending until
/// unblocked. The mask survives `execve`, which is how herd re-executes itself without losing
/// a signal in between.
pub fn block_signals(signals: &[Signal]) -> io::Result<()> {
    change_mask(libc::SIG_BLOCK, signals)
}

/// Unblocks `signals`; pending ones are delivered now.
pub fn unblock_signals(signals: &[Signal]) -> io::Result<()> {
    change_mask(libc::SIG_UNBLOCK, signals)
}

/// Which of `signals` this thread blocks now.
pub fn blocked_signals(signals: &[Signal]) -> io::Result<Vec<Signal>> {
    // SAFETY: pthread_sigmask with a null set only writes the current mask into `mask`, a
    // zeroed sigset_t we own; sigismember reads it.
    unsafe {
        let mut mask: libc::sigset_t = std::mem::zeroed();
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut mask);
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        Ok(signals
            .iter()
            .copied()
            .filter(|s| libc::sigismember(&mask, s.0) == 1)
            .collect())
    }
}

fn change_mask(how: libc::c_int, signals: &[Signal]) -> io::Result<()> {
    // SAFETY: sigemptyset/sigaddset fill a zeroed sigset_t we own; pthread_sigmask reads it.
    let rc = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in signals {
            libc::sigaddset(&mut set, s.0);
        }
        libc::pthread_sigmask(how, &set, std::ptr::null_mut())
    };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// Waits until one of `signals` (which the caller has blocked) is pending, or `timeout`
/// passes: `Ok(None)` then. The signal is consumed (`sigtimedwait`).
pub fn wait_for_signal(
    signals: &[Signal],
    timeout: Option<std::time::Duration>,
) -> io::Result<Option<Signal>> {
    // SAFETY: sigemptyset/sigaddset fill a zeroed sigset_t we own.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in signals {
            libc::sigaddset(&mut set, s.0);
        }
        set
    };
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    {
        let ts = timeout.map(|t| libc::timespec {
            tv_sec: t.as_secs().try_into().unwrap_or(libc::c_long::MAX as _),
            tv_nsec: t.subsec_nanos() as _,
        });
        let ts_ptr = ts
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: sigtimedwait reads the set and timeout we own; info may be null.
        let rc = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), ts_ptr) };
        if rc > 0 {
            return Ok(Some(Signal(rc)));
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(None),
            _ => Err(err),
        }
    }
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    {
        // No sigtimedwait: poll the pending set.
        let _ = set;
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        loop {
            // SAFETY: sigpending writes into a zeroed set we own; sigwait consumes a signal
            // that is known to be pending, so it does not block.
            unsafe {
                let mut pending: libc::sigset_t = std::mem::zeroed();
                libc::sigpending(&mut pending);
                for s in signals {
                    if libc::sigismember(&pending, s.0) == 1 {
                        let mut got = 0;
                        let mut one: libc::sigset_t = std::mem::zeroed();
                        libc::sigemptyset(&mut one);
                        libc::sigaddset(&mut one, s.0);
                        libc::sigwait(&one, &mut got);
                        return Ok(Some(*s));
                    }
                }
            }
            if deadline.map_or(false, |d| std::time::Instant::now() >= d) {
                return Ok(None);
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}

/// Flags set by [`catch`]'s handler, one per signal number.
static CAUGHT: [std::sync::atomic::AtomicBool; 65] = {
    #[allow(clippy::declare_interior_mutable_const)]
    const CLEAR: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    [CLEAR; 65]
};

/// The handler [`catch`] installs (and the latch's calls): async-signal-safe, one atomic store.
pub(super) extern "C" fn set_caught(signal: libc::c_int) {
    if let Some(flag) = CAUGHT.get(signal as usize) {
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Catches `signal` with a handler that only sets a flag ([`caught`] reads it), without
/// `SA_RESTART`: a blocking call such as `accept()` returns `EINTR`, so the program can look
/// at the flag, finish what it was doing, and exit.
pub fn catch(signal: Signal) -> io::Result<()> {
    // SAFETY: the handler is async-signal-safe (one atomic store); sigaction reads a
    // zeroed-then-filled struct we own.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = set_caught as extern "C" fn(libc::c_int) as libc::sighandler_t;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(signal.0, &action, std::ptr::null_mut()) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Restores `signal`'s default disposition (`SIG_DFL`). An ignored signal stays ignored across
/// `execve`: Rust ignores SIGPIPE, so a program exec'd in place would inherit that.
pub fn default_disposition(signal: Signal) -> io::Result<()> {
    // SAFETY: signal() takes a signal number and SIG_DFL, a valid disposition.
    if unsafe { libc::signal(signal.0, libc::SIG_DFL) } == libc::SIG_ERR {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether `signal` arrived since [`catch`] was called for it.
pub fn caught(signal: Signal) -> bool {
    CAUGHT
        .get(signal.0 as usize)
        .map_or(false, |f| f.load(std::sync::atomic::Ordering::SeqCst))
}

/// Sends `signal` to one thread of this process (`pthread_kill`), e.g. to interrupt its
/// blocking `accept()` after [`catch`] installed a handler without `SA_RESTART`.
pub fn signal_thread<T>(thread: &std::thread::JoinHandle<T>, signal: Signal) -> io::Result<()> {
    use std::os::unix::thread::JoinHandleExt;
    // SAFETY: the JoinHandle is borrowed, so the thread has not been joined and its pthread_t
    // is still valid (a finished but unjoined thread is a valid, if ignored, target).
    // (std's pthread_t is an integer everywhere; the libc crate's is a pointer on musl.)
    let rc = unsafe { libc::pthread_kill(thread.as_pthread_t() as libc::pthread_t, signal.0) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}
