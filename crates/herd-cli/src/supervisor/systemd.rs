//! herd's own reports to its service manager, when it has one (`NOTIFY_SOCKET` in herd's
//! environment): `READY=1` once the first generation is ready, `RELOADING=1` and `READY=1`
//! around rolling upgrades, `STOPPING=1`, and `STATUS=` lines. Workers never see herd's
//! `NOTIFY_SOCKET`; they get herd's own.

use std::ffi::OsString;

use crate::logging::LogEvent;

/// The channel to the service manager; does nothing without `NOTIFY_SOCKET`.
#[derive(Debug)]
pub struct ServiceNotifier {
    socket: Option<OsString>,
    ready_sent: bool,
    failed: bool,
}

impl ServiceNotifier {
    /// Reads `NOTIFY_SOCKET` from herd's environment.
    pub fn from_env() -> ServiceNotifier {
        ServiceNotifier {
            socket: std::env::var_os("NOTIFY_SOCKET").filter(|s| !s.is_empty()),
            ready_sent: false,
            failed: false,
        }
    }

    /// Whether the service manager was told `READY=1` already.
    pub fn ready_sent(&self) -> bool {
        self.ready_sent
    }

    /// Records that `READY=1` was sent (by the previous image, before a re-exec).
    pub fn set_ready_sent(&mut self, sent: bool) {
        self.ready_sent = sent;
    }

    /// `READY=1` with a status line.
    pub fn ready(&mut self, status: &str) {
        self.ready_sent = true;
        self.send(&format!("READY=1\nSTATUS={status}"));
    }

    /// `RELOADING=1` with a status line (an upgrade started).
    pub fn reloading(&mut self, status: &str) {
        let now = herd_sys::process::monotonic_usec();
        self.send(&format!(
            "RELOADING=1\nMONOTONIC_USEC={now}\nSTATUS={status}"
        ));
    }

    /// `STOPPING=1`.
    pub fn stopping(&mut self) {
        self.send("STOPPING=1\nSTATUS=stopping");
    }

    /// A `STATUS=` line.
    pub fn status(&mut self, status: &str) {
        self.send(&format!("STATUS={status}"));
    }

    fn send(&mut self, message: &str) {
        let Some(socket) = &self.socket else {
            return;
        };
        if let Err(e) = herd_sys::notify::send(socket, message.as_bytes()) {
            if !self.failed {
                tracing::warn!(
                    event = LogEvent::SystemError.as_str(),
                    "cannot notify the service manager at {socket:?}: {e}"
                );
                self.failed = true;
            }
        }
    }
}
