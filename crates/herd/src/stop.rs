//! herd's request that this worker stop gracefully: on Windows, which has no SIGTERM, an event
//! herd gives each worker and sets when the worker should finish its work and exit.
//!
//! ```no_run
//! if let Some(stop) = herd::stop_requested()? {
//!     // Serve on other threads; this one waits for herd's word.
//!     stop.wait();
//!     // Stop accepting, finish the requests in flight, then exit before `--grace` ends.
//! }
//! # Ok::<(), herd::Error>(())
//! ```
//!
//! On Unix herd asks with a signal (`--stop-signal`, SIGTERM by default), which a worker
//! handles as it likes (`tokio::signal::unix`, `signal-hook`): [`stop_requested`] is always
//! `None` there. The library does not install a SIGTERM handler for you, because that would
//! change what SIGTERM does to the whole process.

#[cfg(windows)]
#[path = "stop_windows.rs"]
mod imp;

#[cfg(unix)]
mod imp {
    use std::time::Duration;

    use crate::error::Result;

    /// No value: there is no stop request on Unix.
    #[derive(Clone, Copy, Debug)]
    enum Never {}

    /// herd's stop request (Windows only; on Unix herd sends `--stop-signal`).
    #[derive(Clone, Copy, Debug)]
    pub struct StopRequest(Never);

    /// herd's stop request for this worker; always `None` on Unix, where herd sends a signal
    /// (`--stop-signal`, SIGTERM by default) instead.
    pub fn stop_requested() -> Result<Option<StopRequest>> {
        Ok(None)
    }

    impl StopRequest {
        /// Whether herd has asked this worker to stop.
        pub fn is_requested(&self) -> bool {
            match self.0 {}
        }

        /// Waits until herd asks this worker to stop.
        pub fn wait(&self) {
            match self.0 {}
        }

        /// Waits up to `timeout` for herd to ask this worker to stop; whether it has.
        pub fn wait_timeout(&self, _timeout: Duration) -> bool {
            match self.0 {}
        }
    }
}

pub use imp::{stop_requested, StopRequest};

#[cfg(all(test, unix))]
mod tests {
    #[test]
    fn unix_has_no_stop_request_herd_sends_a_signal() {
        assert!(super::stop_requested().unwrap().is_none());
    }
}
