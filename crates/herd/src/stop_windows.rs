//! Windows: the stop event herd named in `HERD_STOP_EVENT`, claimed once per process.

use std::net::{TcpListener, TcpStream};
use std::sync::Mutex;
use std::time::Duration;

use herd_sys::windows::event::Event;
use herd_sys::windows::handle;

use crate::error::{Error, ErrorKind, Result};
use crate::handle_env::{parse_value, STOP_EVENT};

/// The event, once claimed (`Some(None)` when herd gave none); held while it is claimed, so
/// that two threads do not both claim it. (A `Mutex`, not a `OnceLock`: the crate builds with
/// Rust 1.63.) The event lives as long as the process.
static EVENT: Mutex<Option<Option<&'static Event>>> = Mutex::new(None);

/// herd's stop request for this worker: an event herd sets when this worker should stop.
/// Cheap to copy; every copy sees the same request.
#[derive(Clone, Copy, Debug)]
pub struct StopRequest(&'static Event);

/// herd's stop request for this worker, from `HERD_STOP_EVENT`; `None` when herd gave none
/// (not started by herd, or by a herd that asks in another way). The first call takes the
/// event and removes the variable, so the worker's own children do not take a value that
/// is not theirs; later calls return the same request.
///
/// Fails when `HERD_STOP_EVENT` is not a handle this process inherited.
pub fn stop_requested() -> Result<Option<StopRequest>> {
    let mut claimed = EVENT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(event) = *claimed {
        return Ok(event.map(StopRequest));
    }
    let event: Option<&'static Event> = claim()?.map(|e| &*Box::leak(Box::new(e)));
    *claimed = Some(event);
    Ok(event.map(StopRequest))
}

fn claim() -> Result<Option<Event>> {
    let text = match std::env::var(STOP_EVENT) {
        Ok(text) => text,
        Err(std::env::VarError::NotPresent) => return Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => String::new(),
    };
    let value = parse_value(&text).ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidEnvironment,
            format!(
                "{STOP_EVENT}={text:?} is not a handle value (herd sets it: do not set it \
                 yourself)"
            ),
        )
    })?;
    let owned = handle::claim(value).map_err(|e| {
        Error::io(
            format!("{STOP_EVENT}={value} is not a handle this process inherited"),
            e,
        )
    })?;
    // The worker's own children must not inherit it (and its value means nothing to them).
    let _ = handle::set_inheritable(std::os::windows::io::AsHandle::as_handle(&owned), false);
    std::env::remove_var(STOP_EVENT);
    Ok(Some(Event::from_handle(owned)))
}

impl StopRequest {
    /// Whether herd has asked this worker to stop.
    pub fn is_requested(&self) -> bool {
        self.wait_timeout(Duration::ZERO)
    }

    /// Waits until herd asks this worker to stop. (A wait that fails, which a wait on the
    /// handle this library owns cannot, counts as a request.)
    pub fn wait(&self) {
        let _ = self.0.wait(None);
    }

    /// Waits up to `timeout` for herd to ask this worker to stop; whether it has.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.0.wait(Some(timeout)).unwrap_or(true)
    }
}

impl StopRequest {
    /// Accepts the next connection on `listener`, or returns `Ok(None)` once herd has asked
    /// this worker to stop: a worker that loops on it finishes the request in hand and never
    /// takes a connection from the shared queue after the request. The stream is blocking.
    ///
    /// Windows cannot interrupt a blocking `accept` with an event: the listener is made
    /// non-blocking, and between two tries this waits on the stop event for up to 5 ms.
    pub fn accept(&self, listener: &TcpListener) -> std::io::Result<Option<TcpStream>> {
        listener.set_nonblocking(true)?;
        loop {
            if self.is_requested() {
                return Ok(None);
            }
            match listener.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(false)?;
                    return Ok(Some(stream));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if self.wait_timeout(Duration::from_millis(5)) {
                        return Ok(None);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
}
