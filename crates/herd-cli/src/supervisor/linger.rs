//! Watches the shared TCP sockets for `SO_LINGER`.
//!
//! A socket option set on a listening socket is inherited by every connection accepted from
//! it, whichever worker accepts it. herd never sets `SO_LINGER` on a listener; a worker that
//! does (often `SO_LINGER` with a timeout of 0, for a "fast" close) makes every worker's
//! connections end with a reset (RST) instead of an orderly close, and a client that has not
//! read the whole answer by then loses the rest of it. herd says so, once per socket, until it
//! is off again; it does not change it back (the worker asked for it).

use std::time::Duration;

use socket2::SockRef;

use crate::logging::LogEvent;
use crate::spec::{Listener, SocketKind};
use crate::supervisor::said_once::SaidOnce;

/// The sockets whose `SO_LINGER` was said.
#[derive(Debug, Default)]
pub struct Watch {
    said: SaidOnce<String>,
}

impl Watch {
    /// Looks at each of `listeners`' shared TCP sockets; says, once, which have `SO_LINGER`
    /// on. A `--balance reuseport` socket is one slot's: what its worker sets is its own.
    pub fn check(&mut self, listeners: &[Listener]) {
        let shared = |l: &&Listener| l.kind == SocketKind::Tcp && l.group().is_none();
        for listener in listeners.iter().filter(shared) {
            let Some(fd) = listener.fd_for_slot(0) else {
                continue;
            };
            let Ok(linger) = SockRef::from(&fd).linger() else {
                continue;
            };
            if self.said.newly(listener.name.as_str(), linger.is_some()) {
                report(&listener.name, linger.unwrap_or_default());
            }
        }
    }
}

/// The one log line of a socket whose `SO_LINGER` a worker turned on, with `timeout`.
fn report(name: &str, timeout: Duration) {
    let what = match timeout.is_zero() {
        true => {
            "every connection a worker closes is reset (RST), and a client that has not read \
                 the whole answer yet loses the rest"
        }
        false => "a worker's close of any connection waits for unsent data, up to the timeout",
    };
    tracing::warn!(
        event = LogEvent::SharedLingerSet.as_str(),
        socket = %name,
        timeout_ms = timeout.as_millis() as u64,
        "socket {name} has SO_LINGER on ({}s), set by a worker or a process it started; every \
         connection accepted from it, by any worker, inherits it: {what}. Set it on the \
         accepted connections that need it, not on the shared socket",
        timeout.as_secs()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linger_is_said_once_until_it_is_off() {
        let mut watch = Watch::default();
        assert!(!watch.said.newly("http", false));
        assert!(watch.said.newly("http", true));
        assert!(!watch.said.newly("http", true));
        assert!(!watch.said.newly("http", false));
        assert!(watch.said.newly("http", true));
    }
}
