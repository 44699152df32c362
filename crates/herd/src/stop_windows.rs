//! Windows: the stop event herd named in `HERD_STOP_EVENT`, claimed once per process, and the
//! stop events of the herds this process attached itself to, relayed into it.

use std::net::{TcpListener, TcpStream};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use herd_sys::windows::event::{self, Event};
use herd_sys::windows::handle;

use crate::error::{Error, ErrorKind, Result};
use crate::handle_env::{parse_value, STOP_EVENT};

/// The process's stop request once looked for (`Some(None)` when there is none yet): the event
/// herd named in `HERD_STOP_EVENT`, else one made when this process first attached itself to a
/// herd. Held while it is claimed, so that two threads do not both claim it. (A `Mutex`, not a
/// `OnceLock`: the crate builds with Rust 1.63.) The event lives as long as the process.
static REQUEST: Mutex<Option<Option<&'static Event>>> = Mutex::new(None);

fn request() -> MutexGuard<'static, Option<Option<&'static Event>>> {
    REQUEST.lock().unwrap_or_else(|p| p.into_inner())
}

/// herd's stop request for this worker: an event herd sets when this worker should stop.
/// Cheap to copy; every copy sees the same request.
#[derive(Clone, Copy, Debug)]
pub struct StopRequest(&'static Event);

/// herd's stop request for this worker, from `HERD_STOP_EVENT`, or from the herd this process
/// attached itself to ([`fetch`](crate::fetch::fetch) with `attach`); `None` when there is
/// neither (not started by herd, or by a herd that asks in another way, and not attached).
/// The first call takes the event and removes the variable, so the worker's own children do
/// not take a value that is not theirs; later calls return the same request, which a herd
/// this process attaches itself to later sets too.
///
/// Fails when `HERD_STOP_EVENT` is not a handle this process inherited.
pub fn stop_requested() -> Result<Option<StopRequest>> {
    Ok(claimed(&mut request())?.map(StopRequest))
}

/// The request, claimed from `HERD_STOP_EVENT` the first time it is looked for.
fn claimed(request: &mut Option<Option<&'static Event>>) -> Result<Option<&'static Event>> {
    if let Some(event) = *request {
        return Ok(event);
    }
    let event: Option<&'static Event> = claim()?.map(|e| &*Box::leak(Box::new(e)));
    *request = Some(event);
    Ok(event)
}

/// This process attached itself to a herd that sets `stop` (its copy of the event herd made
/// for it) to ask it to stop: from now on that sets this process's request too, which is made
/// now if there was none. Like a stop signal caught on Unix, an earlier herd's event still
/// sets it as well.
pub(crate) fn attached(stop: Event) -> Result<()> {
    let mut request = request();
    let cannot = |e| Error::io("cannot watch the attached herd's stop event", e);
    let ours = match claimed(&mut request)? {
        Some(ours) => ours,
        None => {
            let made: &'static Event = Box::leak(Box::new(Event::new().map_err(cannot)?));
            *request = Some(Some(made));
            made
        }
    };
    event::relay(stop, ours).map_err(cannot)
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

#[cfg(test)]
mod tests {
    use std::os::windows::io::AsHandle;

    use super::*;

    /// This process's copy of `event`, as herd copies it into an attaching process.
    fn copy(event: &Event) -> Event {
        Event::from_handle(event.as_handle().try_clone_to_owned().unwrap())
    }

    /// One test for the process-wide request: a process herd did not start has none until it
    /// attaches itself to a herd; then each herd it attached to sets it.
    #[test]
    fn the_events_of_the_herds_attached_to_set_the_request() {
        assert!(
            std::env::var_os(STOP_EVENT).is_none(),
            "not started by herd"
        );
        assert!(stop_requested().unwrap().is_none());
        let (first, second) = (Event::new().unwrap(), Event::new().unwrap());
        attached(copy(&first)).unwrap();
        let stop = stop_requested().unwrap().expect("a request once attached");
        attached(copy(&second)).unwrap();
        assert!(!stop.wait_timeout(Duration::from_millis(50)));
        first.set().unwrap();
        assert!(
            stop.wait_timeout(Duration::from_secs(60)),
            "the first herd's"
        );
        assert!(stop_requested().unwrap().unwrap().is_requested());
    }
}
