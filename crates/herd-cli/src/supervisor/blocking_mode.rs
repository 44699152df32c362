//! Watches the sockets' blocking mode.
//!
//! `O_NONBLOCK` belongs to the open file description, which herd and every worker share: a
//! worker that sets or clears it on the socket it inherited (tokio, asyncio, libuv and Go set
//! it) changes it for all of them. Its blocking siblings' `accept()` then fails with `EAGAIN`
//! (Python's raises `BlockingIOError`), or its non-blocking siblings' event loops stall in
//! `accept()`. Changing it back would do the same to the worker that wanted it, so herd only
//! says so: once per socket, until the mode is herd's again.

use crate::logging::LogEvent;
use crate::spec::Listener;
use crate::supervisor::said_once::SaidOnce;

/// The sockets whose changed mode was said.
#[derive(Debug, Default)]
pub struct Watch {
    changed: SaidOnce<String>,
}

impl Watch {
    /// Looks at each of `listeners`' mode; says, once, which were changed since.
    pub fn check(&mut self, listeners: &[Listener]) {
        // A `--balance reuseport` socket is one slot's: what its worker sets is its own.
        for listener in listeners.iter().filter(|l| l.group().is_none()) {
            let (Some(set), Some(now)) = (listener.nonblocking_set, listener.nonblocking_now())
            else {
                continue;
            };
            if self.changed.newly(listener.name.as_str(), set != now) {
                report(&listener.name, now, listener.passed_by_systemd());
            }
        }
    }
}

/// The one log line of a socket whose mode a worker changed to `nonblocking`; one systemd
/// passed (`by_systemd`) has its mode from its `.socket` unit, not from herd's `--bind`.
fn report(name: &str, nonblocking: bool, by_systemd: bool) {
    let (now, mut was, what, mut bind) = match nonblocking {
        true => (
            "non-blocking",
            "without 'nonblocking'",
            "harmless if every worker waits in an event loop (Node, Go, tokio and asyncio set it \
             themselves), but a worker that blocks in accept() now fails with EAGAIN",
            "bind it with ',nonblocking'",
        ),
        false => (
            "blocking",
            "with 'nonblocking'",
            "a worker that waits in an event loop now stalls in accept()",
            "bind it without ',nonblocking'",
        ),
    };
    if by_systemd {
        was = "as systemd passed it";
        bind = match nonblocking {
            true => "set NonBlocking=yes in its .socket unit",
            false => "set NonBlocking=no in its .socket unit",
        };
    }
    tracing::warn!(
        event = LogEvent::BlockingModeChanged.as_str(),
        socket = %name,
        nonblocking,
        "socket {name} (bound {was}) was made {now} by a worker or a process it started; the \
         mode is shared by every worker: {what}. If the workers need it so, {bind}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_mode_is_said_once_until_it_is_back() {
        let mut watch = Watch::default();
        assert!(!watch.changed.newly("http", false));
        assert!(watch.changed.newly("http", true));
        assert!(!watch.changed.newly("http", true));
        assert!(watch.changed.newly("other", true));
        assert!(!watch.changed.newly("http", false));
        assert!(watch.changed.newly("http", true));
    }
}
