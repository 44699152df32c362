//! herd's own reports to its service manager, when it has one (`NOTIFY_SOCKET` in herd's
//! environment): `READY=1` once the first generation is ready, `RELOADING=1` and `READY=1`
//! around rolling upgrades, `STOPPING=1`, and `STATUS=` lines. Workers never see herd's
//! `NOTIFY_SOCKET`; they get herd's own.

use std::cell::Cell;
use std::ffi::OsString;

use crate::logging::LogEvent;

/// The channel to the service manager; does nothing without `NOTIFY_SOCKET`.
#[derive(Debug)]
pub struct ServiceNotifier {
    socket: Option<OsString>,
    /// Whether a failure to send was logged (once is enough).
    failed: Cell<bool>,
}

impl ServiceNotifier {
    /// Reads `NOTIFY_SOCKET` from herd's environment.
    pub fn from_env() -> ServiceNotifier {
        ServiceNotifier {
            socket: std::env::var_os("NOTIFY_SOCKET").filter(|s| !s.is_empty()),
            failed: Cell::new(false),
        }
    }

    /// Tells the service manager `report`.
    pub fn report(&self, report: super::phase::Report) {
        use super::phase::Report;
        match report {
            Report::Ready(status) => self.ready(&status),
            Report::Reloading(status) => self.reloading(&status),
            Report::Stopping => self.stopping(),
            Report::Status(status) => self.status(&status),
        }
    }

    /// `READY=1` with a status line.
    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={status}"));
    }

    /// `RELOADING=1` with a status line (an upgrade started).
    pub fn reloading(&self, status: &str) {
        let now = herd_sys::process::monotonic_usec();
        self.send(&format!(
            "RELOADING=1\nMONOTONIC_USEC={now}\nSTATUS={status}"
        ));
    }

    /// `STOPPING=1`.
    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=stopping");
    }

    /// A `STATUS=` line.
    pub fn status(&self, status: &str) {
        self.send(&format!("STATUS={status}"));
    }

    fn send(&self, message: &str) {
        let Some(socket) = &self.socket else {
            return;
        };
        if let Err(e) = herd_sys::notify::send(socket, message.as_bytes()) {
            if !self.failed.replace(true) {
                tracing::warn!(
                    event = LogEvent::SystemError.as_str(),
                    "cannot notify the service manager at {socket:?}: {e}"
                );
            }
        }
    }
}
