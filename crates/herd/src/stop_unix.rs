//! Unix: SIGTERM, caught by a handler that sets a latch for good (`herd_sys::process::latch`).

use std::net::{TcpListener, TcpStream};
use std::os::unix::io::{AsFd, BorrowedFd};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use herd_sys::process::{self, Latch, Signal};

use crate::error::{Error, Result};

/// herd's stop request for this worker: SIGTERM, which herd sends (its default
/// `--stop-signal`), as do systemd, Docker and `kill`, or herd's other `--stop-signal`, which
/// it names in `HERD_STOP_SIGNAL` (or in its answer to a process that attached itself).
/// Cheap to copy; every copy sees the same request.
#[derive(Clone, Copy, Debug)]
pub struct StopRequest(Latch);

/// Where herd names its `--stop-signal` (`TERM`, `INT`, or a real-time signal's number).
const STOP_SIGNAL: &str = "HERD_STOP_SIGNAL";

/// Which herd stops this process, and whether its signals are caught yet.
struct Stopper {
    /// The stop signal of the herd this process attached itself to last (SIGTERM when that
    /// herd named none): it stands instead of `HERD_STOP_SIGNAL`, another herd's.
    attached: Option<Signal>,
    /// Whether [`stop_requested`] has caught the stop signals.
    caught: bool,
}

/// The process's one [`Stopper`]. (A `Mutex`, not a `OnceLock`: the crate builds with Rust
/// 1.63.)
static STOPPER: Mutex<Stopper> = Mutex::new(Stopper {
    attached: None,
    caught: false,
});

fn stopper() -> MutexGuard<'static, Stopper> {
    STOPPER.lock().unwrap_or_else(|p| p.into_inner())
}

/// herd's stop request for this worker. The first call catches SIGTERM, and herd's
/// `--stop-signal` if another, for the whole process: from then on they no longer end the
/// process, they set the request (and interrupt a blocking system call, such as `accept`, on
/// the thread they land on), and the program decides when to exit. herd's signal is the one
/// its answer named if this process attached itself ([`fetch`](crate::fetch::fetch) with
/// `attach`), else the one `HERD_STOP_SIGNAL` names. A handler the program installed before is
/// still called, after the request is set. Always `Some` on Unix; later calls return the
/// same request.
///
/// Fails when a signal cannot be caught or its pipe cannot be made (no fds left).
pub fn stop_requested() -> Result<Option<StopRequest>> {
    let mut stopper = stopper();
    let named = std::env::var(STOP_SIGNAL).ok();
    let latch = catch(&stop_signals(stopper.attached, named.as_deref()))?;
    stopper.caught = true;
    Ok(Some(StopRequest(latch)))
}

/// This process attached itself to a herd that stops it with `signal` (`None`: it named
/// none, so SIGTERM), which from now on stands instead of `HERD_STOP_SIGNAL`; caught at once
/// if [`stop_requested`] caught the others already (a signal caught before stays caught).
pub(crate) fn attached(signal: Option<Signal>) -> Result<()> {
    let mut stopper = stopper();
    stopper.attached = Some(signal.unwrap_or(Signal::TERM));
    if stopper.caught {
        catch(&stop_signals(stopper.attached, None))?;
    }
    Ok(())
}

fn catch(signals: &[Signal]) -> Result<Latch> {
    process::latch(signals).map_err(|e| Error::io("cannot catch SIGTERM for a graceful stop", e))
}

/// The signals that ask this worker to stop: SIGTERM, and herd's: the `attached` herd's, else
/// the one `HERD_STOP_SIGNAL` names (`named`), unless the latch never catches it (KILL, STOP
/// and a fault's: [`process::latchable`]); herd's stop by one of those ends the worker, as its
/// default does.
fn stop_signals(attached: Option<Signal>, named: Option<&str>) -> Vec<Signal> {
    let mut signals = vec![Signal::TERM];
    if let Some(signal) = attached.or_else(|| named.and_then(Signal::from_name)) {
        if !signals.contains(&signal) && process::latchable(signal) {
            signals.push(signal);
        }
    }
    signals
}

impl StopRequest {
    /// Whether herd has asked this worker to stop.
    pub fn is_requested(&self) -> bool {
        self.0.is_set()
    }

    /// Waits until herd asks this worker to stop. (A wait that fails, which a `poll` of the
    /// pipe this library owns cannot, counts as a request.)
    pub fn wait(&self) {
        let _ = self.0.wait(None);
    }

    /// Waits up to `timeout` for herd to ask this worker to stop; whether it has.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.0.wait(Some(timeout)).unwrap_or(true)
    }

    /// Accepts the next connection on `listener`, or returns `Ok(None)` once herd has asked
    /// this worker to stop: a worker that loops on it finishes the request in hand and never
    /// takes a connection from the shared queue after the request. The stream is blocking.
    ///
    /// On a blocking listener it blocks in `accept()` (the kernel hands connections to waiting
    /// workers in turn), and SIGTERM interrupts it when it lands on the thread that waits, as in
    /// a single-threaded worker. A request that lands on another thread, or in the instant
    /// between the check and the system call, is noticed after the next connection, or ends
    /// with herd's `SIGKILL` after `--grace`. (Waiting in `poll` for the listener and the
    /// request together would close that gap, but `poll` wakes every waiting worker for each
    /// connection and the first to run takes it: the workers would no longer take turns.)
    /// On a non-blocking listener it waits in `poll` for a connection or the request, so it
    /// never waits for a connection after the request; a worker with several threads that
    /// must not, makes its listener non-blocking.
    pub fn accept(&self, listener: &TcpListener) -> std::io::Result<Option<TcpStream>> {
        loop {
            if self.is_requested() {
                return Ok(None);
            }
            match herd_sys::socket::accept_once(listener.as_fd()) {
                Ok(fd) => {
                    let stream = TcpStream::from(fd);
                    stream.set_nonblocking(false)?;
                    return Ok(Some(stream));
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    self.wait_for(listener.as_fd())?
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Waits until `fd` is readable or the request arrives.
    fn wait_for(&self, fd: BorrowedFd<'_>) -> std::io::Result<()> {
        let stop = self.0.as_fd()?;
        herd_sys::fd::wait_readable(&[fd, stop], None).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn herds_other_stop_signal_is_caught_as_well_as_sigterm() {
        assert_eq!(stop_signals(None, None), [Signal::TERM]);
        assert_eq!(stop_signals(None, Some("INT")), [Signal::TERM, Signal::INT]);
        let quit = Signal::QUIT;
        assert_eq!(
            stop_signals(None, Some(&quit.number().to_string())),
            [Signal::TERM, quit]
        );
        assert_eq!(stop_signals(None, Some("TERM")), [Signal::TERM]);
        assert_eq!(stop_signals(None, Some("KILL")), [Signal::TERM]);
        assert_eq!(stop_signals(None, Some("STOP")), [Signal::TERM]);
        for fault in ["SEGV", "BUS", "FPE", "ILL"] {
            let signal = Signal::from_name(fault);
            assert_eq!(stop_signals(None, Some(fault)), [Signal::TERM], "{fault}");
            assert_eq!(stop_signals(signal, None), [Signal::TERM], "{fault}");
        }
        assert_eq!(stop_signals(None, Some("nonsense")), [Signal::TERM]);
    }

    #[test]
    fn the_attached_herds_stop_signal_stands_instead_of_herd_stop_signal() {
        let int = Some(Signal::INT);
        assert_eq!(stop_signals(int, Some("QUIT")), [Signal::TERM, Signal::INT]);
        assert_eq!(stop_signals(int, None), [Signal::TERM, Signal::INT]);
        // Attached to a herd that stops with SIGTERM (or named none): another herd's is not.
        let term = Some(Signal::TERM);
        assert_eq!(stop_signals(term, Some("QUIT")), [Signal::TERM]);
    }
}
