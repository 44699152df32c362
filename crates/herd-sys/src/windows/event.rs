//! A manual-reset event: herd's stop request to a Windows worker, which has no SIGTERM.
//!
//! herd creates one [`Event`] per worker, lets that worker alone inherit it (made inheritable
//! only around its spawn, [`handle::set_inheritable`](super::handle::set_inheritable)) and
//! [`set`](Event::set)s it to ask the worker to stop. The worker takes the inherited handle
//! ([`handle::claim`](super::handle::claim), [`Event::from_handle`]) and waits on it. Once set,
//! it stays set.

use std::io;
use std::os::windows::io::{AsHandle, AsRawHandle, BorrowedHandle, FromRawHandle, OwnedHandle};
use std::ptr;
use std::time::Duration;

use windows_sys::Win32::System::Threading::{CreateEventW, SetEvent};

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
