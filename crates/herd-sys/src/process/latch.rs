//! A stop latch: signals whose handler sets a flag for good and makes a pipe readable for good,
//! so that a program can wait for them with a timeout, or `poll` the pipe beside its sockets.
//!
//! The handler is async-signal-safe: an atomic swap, `getpid`, and at most one `write` of one
//! byte into a non-blocking pipe nobody drains (so it never fills), with `errno` saved and
//! restored. It sets the same flag as [`catch`](super::catch) (so [`caught`](super::caught)
//! sees the signal too) and, like it, has no `SA_RESTART`. A handler the program had installed
//! for the signal before is called after it, with the same arguments: the latch replaces
//! only the default action (ending the process).
//!
//! It never catches a fault's signal (SEGV, BUS, FPE, ILL): [`latchable`].
//!
//! The pipe belongs to one process: a child forked after the latch was set up gets its own
//! pipe the next time it uses the latch, and until then its handler writes to no pipe (its
//! parent's waiters never wake for a signal that was not theirs). Which pipe is the process's
//! is published with one atomic pointer, no lock, so a child forked while another thread was
//! setting the pipe up (a prefork worker of a threaded program) cannot wait for a lock
//! nobody in it will release.

use std::io;
use std::os::unix::io::{BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::time::Duration;

use super::Signal;

/// Set by the first latching signal, never cleared.
static LATCHED: AtomicBool = AtomicBool::new(false);
/// The latest pipe made, null before the latch is set up. A pipe once published here is never
/// closed nor freed, so an fd [`Latch::as_fd`] lent out stays valid, and the handler may read
/// it at any time.
static PIPE: AtomicPtr<Pipe> = AtomicPtr::new(std::ptr::null_mut());

/// A process's pipe.
struct Pipe {
    /// The process it belongs to (a forked child sees its parent's until it makes its own).
    owner: libc::pid_t,
    read: RawFd,
    write: RawFd,
}

/// The pipe published in [`PIPE`], if any.
fn published() -> Option<&'static Pipe> {
    // SAFETY: PIPE holds null or a pointer from Box::into_raw that is never freed once
    // published, and a Pipe is never written after it is.
    unsafe { PIPE.load(Ordering::SeqCst).as_ref() }
}

/// Per signal number: the handler it had before the latch's, called after it (0: none, the
/// default action or ignoring it), and whether that one takes `SA_SIGINFO`'s three arguments.
static PREVIOUS: [(AtomicUsize, AtomicBool); 65] = {
    #[allow(clippy::declare_interior_mutable_const)]
    const NONE: (AtomicUsize, AtomicBool) = (AtomicUsize::new(0), AtomicBool::new(false));
    [NONE; 65]
};

/// A latch that the signals given to [`latch`] set; cheap to copy, every copy is the same latch.
#[derive(Clone, Copy, Debug)]
pub struct Latch(());

/// The signals the latch never catches: KILL and STOP cannot be caught; a fault's (SEGV, BUS,
/// FPE, ILL) must not be, for its handler's return would run the faulting instruction again,
/// forever: a program that really crashed would spin instead of ending.
const NEVER_LATCHED: [libc::c_int; 6] = [
    libc::SIGKILL,
    libc::SIGSTOP,
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGFPE,
    libc::SIGILL,
];

/// Whether [`latch`] catches `signal`: any but KILL and STOP, which cannot be caught, and a
/// fault's (SEGV, BUS, FPE, ILL), whose handler's return would run the faulting instruction
/// again, forever.
pub fn latchable(signal: Signal) -> bool {
    !NEVER_LATCHED.contains(&signal.0)
}

/// Sets up the latch (once per process; again in a forked child) and catches `signals` with
/// its handler (`sigaction`; a handler installed before is kept, and called after the
/// latch's). Fails, catching none of them, when one is not [`latchable`] (`InvalidInput`);
/// fails when no pipe can be made or a signal cannot be caught.
pub fn latch(signals: &[Signal]) -> io::Result<Latch> {
    if let Some(never) = signals.iter().find(|s| !latchable(**s)) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{never} is never latched: it cannot or must not be caught"),
        ));
    }
    own_pipe()?;
    for signal in signals {
        keep_previous(*signal)?;
        // SAFETY: the handler is async-signal-safe (see the module docs) and has the
        // three-argument form SA_SIGINFO announces; sigaction reads a zeroed-then-filled
        // struct we own.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as Handler as libc::sighandler_t;
            action.sa_flags = libc::SA_SIGINFO;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(signal.0, &action, std::ptr::null_mut()) < 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(Latch(()))
}

/// A handler that takes `SA_SIGINFO`'s three arguments.
type Handler = extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void);

/// Notes the handler `signal` has now, to call after the latch's, unless it is the latch's
/// own (set up before) or none (`SIG_DFL`, `SIG_IGN`).
fn keep_previous(signal: Signal) -> io::Result<()> {
    let slot = match PREVIOUS.get(signal.0 as usize) {
        Some(slot) => slot,
        None => return Err(io::Error::from_raw_os_error(libc::EINVAL)),
    };
    // SAFETY: sigaction with no new action writes the current one into a struct we own.
    let old = unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(signal.0, std::ptr::null(), &mut old) < 0 {
            return Err(io::Error::last_os_error());
        }
        old
    };
    let handler = old.sa_sigaction;
    if handler == on_signal as Handler as libc::sighandler_t {
        return Ok(());
    }
    let none = handler == libc::SIG_DFL || handler == libc::SIG_IGN;
    slot.1
        .store(old.sa_flags & libc::SA_SIGINFO != 0, Ordering::SeqCst);
    slot.0
        .store(if none { 0 } else { handler as usize }, Ordering::SeqCst);
    Ok(())
}

impl Latch {
    /// Whether a latching signal has arrived.
    pub fn is_set(&self) -> bool {
        LATCHED.load(Ordering::SeqCst)
    }

    /// Waits until a latching signal has arrived, or `timeout` passes (`None`: as long as it
    /// takes); whether one has. A signal that interrupts the wait is looked at at once.
    pub fn wait(&self, timeout: Option<Duration>) -> io::Result<bool> {
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        loop {
            let fd = own_pipe()?;
            if self.is_set() {
                return Ok(true);
            }
            let left = deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()));
            if left == Some(Duration::ZERO) {
                return Ok(false);
            }
            // SAFETY: a published pipe's read end is never closed.
            let fd = unsafe { BorrowedFd::borrow_raw(fd) };
            // Rounded up, so that a short timeout is not a busy loop of zero-length polls.
            let left = left.map(|l| l.max(Duration::from_millis(1)));
            crate::fd::wait_readable(&[fd], left)?;
        }
    }

    /// The pipe's read end: readable once a latching signal has arrived, and for good (nobody
    /// reads it), for a program that waits in `poll`/`epoll` beside its sockets.
    pub fn as_fd(&self) -> io::Result<BorrowedFd<'static>> {
        let fd = own_pipe()?;
        // SAFETY: a published pipe's read end is never closed.
        Ok(unsafe { BorrowedFd::borrow_raw(fd) })
    }
}

/// The read end of this process's pipe, made now if this process has none yet (the first use,
/// or the first in a forked child). A signal that latched before the pipe existed is written
/// into it here. Lock-free: of two threads making one at once, one publishes its pipe and the
/// other closes its own and takes that one.
fn own_pipe() -> io::Result<RawFd> {
    // SAFETY: getpid cannot fail.
    let me = unsafe { libc::getpid() };
    loop {
        let current = PIPE.load(Ordering::SeqCst);
        // SAFETY: as in `published`: null or a published pipe, never freed.
        if let Some(pipe) = unsafe { current.as_ref() } {
            if pipe.owner == me {
                return Ok(pipe.read);
            }
        }
        let (read, write) = nonblocking_pipe()?;
        let fresh = Box::into_raw(Box::new(Pipe {
            owner: me,
            read: read.into_raw_fd(),
            write: write.into_raw_fd(),
        }));
        match PIPE.compare_exchange(current, fresh, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => {
                if LATCHED.load(Ordering::SeqCst) {
                    wake();
                }
                // SAFETY: published now, never freed.
                return Ok(unsafe { (*fresh).read });
            }
            // Another thread published first: ours was never seen by anyone, so it goes.
            Err(_) => {
                // SAFETY: `fresh` came from Box::into_raw above and was not published; its
                // fds were made above and are owned by nobody else.
                unsafe {
                    let lost = Box::from_raw(fresh);
                    drop((
                        OwnedFd::from_raw_fd(lost.read),
                        OwnedFd::from_raw_fd(lost.write),
                    ));
                }
            }
        }
    }
}

extern "C" fn on_signal(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    super::receive::set_caught(signal);
    if !LATCHED.swap(true, Ordering::SeqCst) {
        wake();
    }
    let (handler, siginfo) = match PREVIOUS.get(signal as usize) {
        Some(slot) => (slot.0.load(Ordering::SeqCst), slot.1.load(Ordering::SeqCst)),
        None => return,
    };
    if handler == 0 {
        return;
    }
    // SAFETY: `handler` is the address sigaction gave as this signal's handler before the
    // latch's (neither SIG_DFL nor SIG_IGN), with the form its SA_SIGINFO flag announced; it
    // is called as the kernel would have, with the kernel's arguments.
    unsafe {
        if siginfo {
            let handler: Handler = std::mem::transmute(handler);
            handler(signal, info, context);
        } else {
            let handler: extern "C" fn(libc::c_int) = std::mem::transmute(handler);
            handler(signal);
        }
    }
}

/// Writes one byte into this process's pipe, if it has one (called from the handler: an
/// atomic load, plain reads, `getpid` and `write`).
fn wake() {
    let pipe = match published() {
        Some(pipe) => pipe,
        None => return,
    };
    // SAFETY: getpid is async-signal-safe and cannot fail.
    if unsafe { libc::getpid() } != pipe.owner {
        return;
    }
    let saved = errno::get();
    // SAFETY: write is async-signal-safe; it reads one byte of a static; a published pipe's
    // fds are never closed. A failure (a full pipe, which the few bytes written never make)
    // is harmless: the flag is set.
    unsafe { libc::write(pipe.write, b"!".as_ptr().cast(), 1) };
    errno::set(saved);
}

fn nonblocking_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1 as RawFd; 2];
    // SAFETY: pipe writes two fds into the array we pass.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds are fresh and owned by nobody else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    for fd in [&read, &write] {
        let fd = std::os::unix::io::AsFd::as_fd(fd);
        crate::fd::set_cloexec(fd, true)?;
        crate::fd::set_nonblocking(fd)?;
    }
    Ok((read, write))
}

/// `errno`, which the handler must leave as it found it.
mod errno {
    #[cfg(any(target_os = "netbsd", target_os = "openbsd"))]
    use libc::__errno as location;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    use libc::__errno_location as location;
    #[cfg(any(target_os = "macos", target_os = "ios", target_os = "freebsd"))]
    use libc::__error as location;

    pub(super) fn get() -> libc::c_int {
        // SAFETY: errno is this thread's own variable, always valid to read.
        unsafe { *location() }
    }

    pub(super) fn set(value: libc::c_int) {
        // SAFETY: errno is this thread's own variable, always valid to write.
        unsafe { *location() = value }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The handler `signal` has now.
    fn handler_of(signal: libc::c_int) -> libc::sighandler_t {
        // SAFETY: sigaction with no new action writes the current one into a struct we own.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            assert_eq!(libc::sigaction(signal, std::ptr::null(), &mut old), 0);
            old.sa_sigaction
        }
    }

    #[test]
    fn a_faults_signal_is_never_latched_nor_are_the_others_asked_with_it() {
        let before: Vec<_> = NEVER_LATCHED.iter().map(|&n| handler_of(n)).collect();
        let usr1 = Signal(libc::SIGUSR1);
        let usr1_before = handler_of(libc::SIGUSR1);
        for n in NEVER_LATCHED {
            assert!(!latchable(Signal(n)), "{n}");
            let e = latch(&[usr1, Signal(n)]).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{n}: {e}");
            assert!(e
                .to_string()
                .ends_with("is never latched: it cannot or must not be caught"));
        }
        let after: Vec<_> = NEVER_LATCHED.iter().map(|&n| handler_of(n)).collect();
        assert_eq!(before, after, "no fault's handler changed");
        assert_eq!(handler_of(libc::SIGUSR1), usr1_before, "nor USR1's");
        assert!(latchable(Signal::TERM) && latchable(usr1));
    }

    /// A child forked while another thread is inside the latch's setup (here: always, a thread
    /// calls it in a loop) sets up its own pipe; with a lock there, some child would wait
    /// forever for a lock its copy of that thread held at the fork.
    #[test]
    fn a_child_forked_during_the_setup_in_another_thread_gets_its_pipe() {
        use std::sync::Arc;
        own_pipe().unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let busy = {
            let done = Arc::clone(&done);
            std::thread::spawn(move || {
                while !done.load(Ordering::SeqCst) {
                    own_pipe().unwrap();
                }
            })
        };
        let outcome = (0..200).try_for_each(|_| fork_and_set_up());
        done.store(true, Ordering::SeqCst);
        busy.join().unwrap();
        outcome.unwrap();
    }

    /// Forks a child that sets up its own pipe and reports it over a pipe; fails if it does
    /// not within 10 s, or its pipe is the parent's.
    fn fork_and_set_up() -> Result<(), String> {
        let parent_fd = own_pipe().unwrap();
        let (report_read, report_write) = nonblocking_pipe().unwrap();
        let report = std::os::unix::io::AsRawFd::as_raw_fd(&report_write);
        // SAFETY: the child only sets up the latch's pipe, writes to a pipe and _exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", io::Error::last_os_error());
        if pid == 0 {
            let fd = own_pipe().unwrap_or(-1);
            let byte = u8::from(fd >= 0 && fd != parent_fd);
            // SAFETY: a write of one byte we own to an open pipe, then _exit.
            unsafe {
                libc::write(report, [byte].as_ptr().cast(), 1);
                libc::_exit(0);
            }
        }
        drop(report_write);
        let read = std::os::unix::io::AsFd::as_fd(&report_read);
        let answered = crate::fd::wait_readable(&[read], Some(Duration::from_secs(10)));
        let mut byte = [0u8];
        // SAFETY: a read into a byte we own from an open pipe.
        let n = unsafe {
            libc::read(
                std::os::unix::io::AsRawFd::as_raw_fd(&report_read),
                byte.as_mut_ptr().cast(),
                1,
            )
        };
        // SAFETY: kill and waitpid of our own child (already gone if it answered).
        unsafe {
            if n != 1 {
                libc::kill(pid, libc::SIGKILL);
            }
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
        match (answered, n, byte[0]) {
            (_, 1, 1) => Ok(()),
            (_, 1, _) => Err("the child has no pipe of its own".to_string()),
            (answered, _, _) => Err(format!("the child hung setting up its pipe ({answered:?})")),
        }
    }

    static THEIRS: AtomicUsize = AtomicUsize::new(0);

    extern "C" fn theirs(_signal: libc::c_int) {
        THEIRS.fetch_add(1, Ordering::SeqCst);
    }

    /// One test for the whole process-wide latch: it cannot be unset once a signal arrived.
    #[test]
    fn a_signal_sets_the_latch_for_good_and_wakes_a_waiter() {
        // The program's own handler, installed before the latch: still called.
        // SAFETY: the handler is one atomic add; sigaction reads a struct we own.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = theirs as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            assert_eq!(
                libc::sigaction(Signal::USR2.0, &action, std::ptr::null_mut()),
                0
            );
        }
        let latch = latch(&[Signal::USR2]).unwrap();
        assert!(!latch.is_set());
        assert!(
            !latch.wait(Some(Duration::from_millis(1))).unwrap(),
            "nothing yet"
        );
        let fd = latch.as_fd().unwrap();
        assert!(!crate::fd::wait_readable(&[fd], Some(Duration::ZERO)).unwrap());
        let waiter = std::thread::spawn(move || latch.wait(None).unwrap());
        // SAFETY: raise sends a signal this test caught to this process.
        unsafe { libc::raise(Signal::USR2.0) };
        assert!(waiter.join().unwrap(), "the waiter wakes");
        assert!(latch.is_set() && super::super::caught(Signal::USR2));
        assert_eq!(
            THEIRS.load(Ordering::SeqCst),
            1,
            "the program's handler ran"
        );
        // Set up again (a second stop_requested): the program's handler once per signal.
        let latch = super::latch(&[Signal::USR2]).unwrap();
        // SAFETY: as above.
        unsafe { libc::raise(Signal::USR2.0) };
        assert_eq!(THEIRS.load(Ordering::SeqCst), 2, "once more, no loop");
        assert!(latch.wait(Some(Duration::ZERO)).unwrap(), "and stays set");
        assert!(crate::fd::wait_readable(&[fd], Some(Duration::ZERO)).unwrap());
        assert!(crate::fd::wait_readable(&[fd], Some(Duration::ZERO)).unwrap());
    }
}
