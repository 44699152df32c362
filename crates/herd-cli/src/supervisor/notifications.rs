//! Reading the workers' `sd_notify` datagrams into the pool.
use std::os::unix::io::AsFd;
use std::time::Instant;

use tokio::io::Interest;
use tokio::net::UnixDatagram;

use super::notify::{self, RateLimit};
use super::pool::NotifyMessage;
use super::Supervisor;
use crate::logging::LogEvent;

impl Supervisor {
    pub(super) fn read_notifications(&mut self, socket: &UnixDatagram) {
        let mut buf = [0u8; notify::MAX_DATAGRAM];
        // Bounded per wake-up, so a flood cannot starve the rest of the loop.
        for _ in 0..256 {
            let received = socket.try_io(Interest::READABLE, || {
                notify::recv(socket.as_fd(), &mut buf)
            });
            let datagram = match received {
                Ok(d) => d,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::warn!(event = LogEvent::SystemError.as_str(), "notify socket: {e}");
                    return;
                }
            };
            let now = Instant::now();
            let dropped = |why: String, limit: &mut RateLimit| {
                let (log, suppressed) = limit.allow(now);
                if suppressed > 0 {
                    tracing::warn!(
                        event = LogEvent::NotifyDroppedUnlogged.as_str(),
                        "notify socket: {suppressed} more messages were dropped"
                    );
                }
                if log {
                    tracing::warn!(
                        event = LogEvent::NotifyDropped.as_str(),
                        "notify socket: dropped a message: {why}"
                    );
                }
            };
            if datagram.truncated {
                dropped(
                    format!("longer than {} bytes", notify::MAX_DATAGRAM),
                    &mut self.notify_log,
                );
                continue;
            }
            let Some(sender) = datagram.sender_pid else {
                dropped(
                    "the sender's pid is unknown".to_string(),
                    &mut self.notify_log,
                );
                continue;
            };
            let Some(pid) = notify::attribute(sender, |p| self.pool.worker(p).is_some()) else {
                dropped(
                    format!("pid {sender} is not a worker nor a descendant of one"),
                    &mut self.notify_log,
                );
                continue;
            };
            let Some(message) = NotifyMessage::parse(&buf[..datagram.len]) else {
                dropped(
                    format!("malformed message from pid {sender}"),
                    &mut self.notify_log,
                );
                continue;
            };
            if message.stopping {
                tracing::debug!(pid, "worker says it is stopping");
            }
            self.pool.notified(pid, &message, now);
        }
    }
}
