//! herd's own reports to its service manager, when it has one (`NOTIFY_SOCKET` in herd's
//! environment): `READY=1` once the first generation is ready, `RELOADING=1` and `READY=1`
//! around rolling upgrades, `STOPPING=1`, and `STATUS=` lines; and `WATCHDOG=1` while its
//! loop turns, when the service manager watches it (`WATCHDOG_USEC`, systemd's `WatchdogSec=`).
//! Workers never see herd's `NOTIFY_SOCKET`; they get herd's own.

use std::cell::Cell;
use std::ffi::{OsStr, OsString};
use std::time::{Duration, Instant};

use crate::logging::LogEvent;

/// The shortest time between two `WATCHDOG=1`, however short `WATCHDOG_USEC` is, so that a
/// tiny value does not keep the loop turning for pings alone.
const SHORTEST_PING: Duration = Duration::from_millis(10);

/// The longest time between two `WATCHDOG=1`, however long `WATCHDOG_USEC` is (a deadline
/// that far is never reached, and the clock cannot add much more).
const LONGEST_PING: Duration = Duration::from_secs(365 * 24 * 3600);

/// The channel to the service manager; does nothing without `NOTIFY_SOCKET`.
#[derive(Debug)]
pub struct ServiceNotifier {
    socket: Option<OsString>,
    /// Whether a failure to send was logged (once is enough).
    failed: Cell<bool>,
    /// Whether the last send found the service manager's queue full.
    queue_full: Cell<bool>,
    /// How often to send `WATCHDOG=1`, when the service manager watches herd.
    watchdog: Option<Duration>,
    /// When `WATCHDOG=1` is due next.
    ping_due: Cell<Option<Instant>>,
}

impl ServiceNotifier {
    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` from herd's environment.
    pub fn from_env() -> ServiceNotifier {
        let socket = std::env::var_os("NOTIFY_SOCKET").filter(|s| !s.is_empty());
        let watchdog = watchdog_interval(
            std::env::var_os("WATCHDOG_USEC").as_deref(),
            std::env::var_os("WATCHDOG_PID").as_deref(),
            std::process::id(),
        )
        .unwrap_or_else(|why| {
            tracing::warn!(event = LogEvent::SetupNote.as_str(), "{why}");
            None
        })
        .filter(|_| socket.is_some());
        ServiceNotifier {
            socket,
            failed: Cell::new(false),
            queue_full: Cell::new(false),
            watchdog,
            ping_due: Cell::new(watchdog.map(|_| Instant::now())),
        }
    }

    /// When the loop must turn to send the next `WATCHDOG=1`, if the service manager
    /// watches herd.
    pub fn watchdog_due(&self) -> Option<Instant> {
        self.ping_due.get()
    }

    /// Sends `WATCHDOG=1` if it is due at `now` (called after every turn of the loop, so a
    /// loop that stopped turning stops the pings, and the service manager acts).
    pub fn keep_alive(&self, now: Instant) {
        let (Some(every), Some(due)) = (self.watchdog, self.ping_due.get()) else {
            return;
        };
        if now < due {
            return;
        }
        self.send("WATCHDOG=1");
        self.ping_due.set(now.checked_add(every));
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
        // A service manager that left its queue full once is not waited for again (until it
        // takes a message): the loop keeps turning, for signals and clients.
        let wait = match self.queue_full.get() {
            true => Duration::ZERO,
            false => herd_sys::notify::SEND_TIMEOUT,
        };
        let sent = herd_sys::notify::send_within(socket, message.as_bytes(), wait);
        self.queue_full
            .set(matches!(&sent, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock));
        if let Err(e) = sent {
            if !self.failed.replace(true) {
                tracing::warn!(
                    event = LogEvent::SystemError.as_str(),
                    "cannot notify the service manager at {socket:?}: {e}"
                );
            }
        }
    }
}

/// How often herd sends `WATCHDOG=1` for `WATCHDOG_USEC` (half of it, as `sd_watchdog_enabled(3)`
/// advises, within [`SHORTEST_PING`] and [`LONGEST_PING`]), when `WATCHDOG_PID`, if set, is
/// `own_pid`: `Ok(None)` when herd is not watched, `Err` saying why a value is unusable.
fn watchdog_interval(
    usec: Option<&OsStr>,
    pid: Option<&OsStr>,
    own_pid: u32,
) -> Result<Option<Duration>, String> {
    let Some(usec) = usec else {
        return Ok(None);
    };
    if let Some(pid) = pid {
        match pid.to_str().and_then(|p| p.parse::<u32>().ok()) {
            Some(pid) if pid == own_pid => {}
            Some(_) => return Ok(None),
            None => {
                return Err(format!(
                    "WATCHDOG_PID={pid:?} is not a process id: herd does not send WATCHDOG=1, \
                     and a service manager that watches it (WatchdogSec=) will stop it"
                ))
            }
        }
    }
    match usec.to_str().and_then(|u| u.parse::<u64>().ok()) {
        Some(usec) if usec > 0 => Ok(Some(
            (Duration::from_micros(usec) / 2).clamp(SHORTEST_PING, LONGEST_PING),
        )),
        _ => Err(format!(
            "WATCHDOG_USEC={usec:?} is not a positive number of microseconds: herd does not \
             send WATCHDOG=1, and a service manager that watches it (WatchdogSec=) will stop it"
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;
    use std::time::Duration;

    use super::watchdog_interval;

    fn interval(usec: Option<&str>, pid: Option<&str>) -> Result<Option<Duration>, String> {
        watchdog_interval(usec.map(OsStr::new), pid.map(OsStr::new), 42)
    }

    #[test]
    fn herd_pings_at_half_its_watchdog() {
        let half = |ms| Ok(Some(Duration::from_millis(ms)));
        assert_eq!(interval(None, None), Ok(None));
        assert_eq!(interval(None, Some("42")), Ok(None));
        assert_eq!(interval(Some("30000000"), None), half(15_000));
        assert_eq!(interval(Some("30000000"), Some("42")), half(15_000));
        // Another process is watched: not herd.
        assert_eq!(interval(Some("30000000"), Some("7")), Ok(None));
        // Tiny and huge values stay within bounds.
        assert_eq!(interval(Some("1"), None), half(10));
        let huge = interval(Some("18446744073709551615"), None)
            .unwrap()
            .unwrap();
        assert_eq!(huge, super::LONGEST_PING);
    }

    #[test]
    fn an_unusable_watchdog_says_so() {
        for usec in ["0", "", "abc", "-5", "1.5", "99999999999999999999999"] {
            let why = interval(Some(usec), None).unwrap_err();
            assert!(
                why.contains("WATCHDOG_USEC") && why.contains("WatchdogSec="),
                "{why}"
            );
        }
        let why = interval(Some("1000000"), Some("x")).unwrap_err();
        assert!(why.contains("WATCHDOG_PID=\"x\""), "{why}");
    }
}
