//! A manual-reset event: herd's stop request to a Windows worker, which has no SIGTERM.
//!
//! herd creates one [`Event`] per worker, lets that worker alone inherit it (made inheritable
//! only around its spawn, [`handle::set_inheritable`](super::handle::set_inheritable)) and
//! [`set`](Event::set)s it to ask the worker to stop. The worker takes the inherited handle
//! ([`handle::claim`](super::handle::claim), [`Event::from_handle`]) and waits on it. Once set,
//! it stays set.

use std::ffi::c_void;
use std::io;
use std::os::windows::io::{
    AsHandle, AsRawHandle, BorrowedHandle, FromRawHandle, IntoRawHandle, OwnedHandle,
};
use std::ptr;
use std::time::Duration;

use windows_sys::Win32::Foundation::{BOOLEAN, HANDLE};
use windows_sys::Win32::System::Threading::{
    CreateEventW, RegisterWaitForSingleObject, SetEvent, INFINITE, WT_EXECUTEONLYONCE,
};

use super::{check, wait_for};

/// An unnamed manual-reset event, closed on drop.
#[derive(Debug)]
pub struct Event(OwnedHandle);

impl Event {
    /// A new event, not set and not inheritable (`CreateEventW`, manual reset, no name).
    pub fn new() -> io::Result<Event> {
        // SAFETY: no security attributes (not inheritable), manual reset, initially not set,
        // no name; the result is a fresh handle or null.
        let raw = unsafe { CreateEventW(ptr::null(), 1, 0, ptr::null()) };
        if raw.is_null() {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh handle that nothing else owns.
        Ok(Event(unsafe { OwnedHandle::from_raw_handle(raw) }))
    }

    /// The event behind `handle`, one another process handed over. A handle that is not an
    /// event makes [`set`](Event::set) fail and [`wait`](Event::wait) answer whatever the
    /// object's own signalled state is.
    pub fn from_handle(handle: OwnedHandle) -> Event {
        Event(handle)
    }

    /// Sets it (`SetEvent`): every wait on it returns, now and later.
    pub fn set(&self) -> io::Result<()> {
        // SAFETY: the handle is live for the call.
        check(unsafe { SetEvent(self.0.as_raw_handle()) })
    }

    /// Whether it is set (a wait of no time).
    pub fn is_set(&self) -> io::Result<bool> {
        self.wait(Some(Duration::ZERO))
    }

    /// Waits up to `timeout` (`None`: for ever) for it to be set (`WaitForSingleObject`);
    /// whether it is.
    pub fn wait(&self, timeout: Option<Duration>) -> io::Result<bool> {
        wait_for(self.0.as_handle(), timeout)
    }
}

/// Sets `to` once `from` is set, however late: a wait in the system's thread pool
/// (`RegisterWaitForSingleObject`, once), no thread of its own. The wait holds `from` for the
/// life of the process; `to` lives as long.
pub fn relay(from: Event, to: &'static Event) -> io::Result<()> {
    let from = from.0.into_raw_handle();
    let mut wait: HANDLE = ptr::null_mut();
    // SAFETY: `wait` is ours to fill; `from` is an open handle that stays open (it is never
    // closed once the wait is registered); the context is `to`'s handle, which lives as long
    // as the process, and `set_context` only sets it.
    let registered = check(unsafe {
        RegisterWaitForSingleObject(
            &mut wait,
            from,
            Some(set_context),
            to.0.as_raw_handle() as *const c_void,
            INFINITE,
            WT_EXECUTEONLYONCE,
        )
    });
    if registered.is_err() {
        // SAFETY: `from` came from an OwnedHandle above and no wait holds it.
        drop(unsafe { OwnedHandle::from_raw_handle(from) });
    }
    registered
}

/// The thread pool's callback for [`relay`]: sets the event whose handle is `context`.
unsafe extern "system" fn set_context(context: *mut c_void, _timed_out: BOOLEAN) {
    // SAFETY: `relay` registers it with the handle of an event that is never closed.
    unsafe { SetEvent(context as HANDLE) };
}

impl AsHandle for Event {
    fn as_handle(&self) -> BorrowedHandle<'_> {
        self.0.as_handle()
    }
}

impl From<Event> for OwnedHandle {
    fn from(event: Event) -> OwnedHandle {
        event.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_event_stays_set_and_wakes_every_wait() {
        let event = Event::new().unwrap();
        assert!(!event.is_set().unwrap());
        assert!(!event.wait(Some(Duration::from_millis(10))).unwrap());
        event.set().unwrap();
        assert!(event.is_set().unwrap());
        assert!(event.wait(None).unwrap());
        assert!(event.wait(Some(Duration::ZERO)).unwrap(), "manual reset");
    }

    #[test]
    fn a_relayed_event_sets_the_other_once_set_itself() {
        let to: &'static Event = Box::leak(Box::new(Event::new().unwrap()));
        let from = Event::new().unwrap();
        let setter = Event::from_handle(from.as_handle().try_clone_to_owned().unwrap());
        relay(from, to).unwrap();
        assert!(!to.wait(Some(Duration::from_millis(50))).unwrap());
        setter.set().unwrap();
        assert!(to.wait(Some(Duration::from_secs(60))).unwrap(), "relayed");
    }

    #[test]
    fn a_wait_on_another_thread_returns_when_the_event_is_set() {
        let event = std::sync::Arc::new(Event::new().unwrap());
        let waiter = {
            let event = std::sync::Arc::clone(&event);
            std::thread::spawn(move || event.wait(Some(Duration::from_secs(60))).unwrap())
        };
        event.set().unwrap();
        assert!(waiter.join().unwrap());
    }
}
