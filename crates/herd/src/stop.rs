//! herd's request that this worker stop gracefully, the same for the caller on every platform:
//! on Unix SIGTERM (herd's default `--stop-signal`), which the first call to
//! [`stop_requested`] catches; on Windows, which has no SIGTERM, an event herd gives each
//! worker and sets when the worker should finish its work and exit.
//!
//! ```no_run
//! use std::io::Write;
//!
//! let mut sockets = herd::Sockets::from_env()?;
//! let listener = sockets.take_tcp_listener("http")?.expect("a socket named http");
//! let stop = herd::stop_requested()?.expect("started by herd");
//! // Connections until herd asks this worker to stop: the one in hand is always finished.
//! while let Some(mut stream) = stop.accept(&listener)? {
//!     stream.write_all(b"HTTP/1.0 200 OK\r\n\r\nhello\n")?;
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A worker that serves on other threads waits for the request on one
//! ([`StopRequest::wait`]), then stops accepting, finishes the requests in flight and exits
//! before `--grace` ends.
//!
//! On Unix, catching SIGTERM changes what it does to the whole process: once
//! [`stop_requested`] has been called, SIGTERM no longer ends the program, it only sets the
//! request. A worker that handles signals itself (`tokio::signal::unix`, `signal-hook`) need
//! not call it; if it does, a SIGTERM handler it installed before is still called, after the
//! request is set. With a `--stop-signal` other than SIGTERM, herd's request is that signal,
//! which herd names in `HERD_STOP_SIGNAL`: it is caught the same way, as well as SIGTERM. A
//! program that attached itself to a herd (`herd::fetch::attach`) learns
//! that herd's signal from its answer, which then stands instead of `HERD_STOP_SIGNAL` (set by
//! another herd, whose worker the program may be). On Windows the answer carries that herd's
//! stop event for this process, which from then on sets the request too (as well as
//! `HERD_STOP_EVENT`'s, if another herd started the program): a program that started on its
//! own has a request once it attached.

#[cfg(windows)]
#[path = "stop_windows.rs"]
mod imp;

#[cfg(unix)]
#[path = "stop_unix.rs"]
mod imp;

pub(crate) use imp::attached;
pub use imp::{stop_requested, StopRequest};

#[cfg(all(test, unix))]
mod tests {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;

    /// One test for the process-wide request: once SIGTERM has arrived it stays set.
    #[test]
    fn sigterm_sets_the_request_and_accept_returns_none_from_then_on() {
        let stop = super::stop_requested()
            .unwrap()
            .expect("always Some on Unix");
        assert!(!stop.is_requested());
        assert!(!stop.wait_timeout(Duration::from_millis(1)));
        // A connection waiting is accepted, blocking.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let mut served = stop.accept(&listener).unwrap().expect("a connection");
        served.write_all(b"x").unwrap();
        let mut byte = [0];
        client.read_exact(&mut byte).unwrap();
        // A non-blocking listener waits for SIGTERM too, and wakes for it.
        listener.set_nonblocking(true).unwrap();
        let waiter = std::thread::spawn(move || stop.accept(&listener).unwrap().is_none());
        herd_sys::process::signal_process(std::process::id(), herd_sys::process::Signal::TERM)
            .unwrap();
        assert!(
            waiter.join().unwrap(),
            "accept returns None once asked to stop"
        );
        assert!(stop.is_requested() && stop.wait_timeout(Duration::ZERO));
        stop.wait();
        let again = super::stop_requested().unwrap().unwrap();
        assert!(again.is_requested(), "every request is the same one");
    }
}
