//! Taking the workers' `sd_notify` messages into the pool: datagrams on the Unix notify
//! socket, one message per connection on the Windows notify pipe. Messages that are too long,
//! malformed or from no worker are dropped, and said so at a bounded rate.
#[cfg(unix)]
use std::os::unix::io::AsFd;
use std::time::Instant;

#[cfg(unix)]
use tokio::io::Interest;
#[cfg(unix)]
use tokio::net::UnixDatagram;

#[cfg(unix)]
use super::notify;
use super::pool::NotifyMessage;
use super::Supervisor;
use crate::logging::LogEvent;

/// The longest message taken; longer ones are dropped (systemd uses the same limit).
const MAX_MESSAGE: usize = 4096;

/// Why a message from a process that is no worker is dropped. On Unix a worker's descendant
/// may speak for it (`systemd-notify` run by a script: its parent chain is walked).
#[cfg(unix)]
const NOT_A_WORKER: &str = "is not a worker nor a descendant of one";
/// Why a message from a process that is no worker is dropped. Windows keeps no parent chain
/// herd can trust (a parent's pid may be reused), so only a worker's own process is heard.
#[cfg(windows)]
const NOT_A_WORKER: &str =
    "is not a worker (on Windows only a worker's own process is heard, not what it starts)";

impl Supervisor {
    /// Reads the datagrams waiting on the notify socket.
    #[cfg(unix)]
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
            let is_worker = |p| self.pool.worker(p).is_some();
            // The sender may be a descendant of a worker (`systemd-notify` run by a script).
            let sender = datagram
                .sender_pid
                .map(|sender| (sender, notify::attribute(sender, is_worker)));
            self.notified(sender, &buf[..datagram.len], datagram.truncated);
        }
    }

    /// Takes a message that came on the notify pipe from `pid` (the pipe says who).
    #[cfg(windows)]
    pub(super) fn notified_by_pipe(&mut self, pid: u32, message: &[u8]) {
        let worker = self.pool.worker(pid).is_some().then_some(pid);
        let cut = super::platform::NotifyPipe::is_cut(message);
        self.notified(Some((pid, worker)), message, cut);
    }

    /// Takes `message` from `sender` (its pid, and the worker it speaks for, if any); `cut`
    /// when it was longer than it could be read.
    fn notified(&mut self, sender: Option<(u32, Option<u32>)>, message: &[u8], cut: bool) {
        let now = Instant::now();
        let why = match sender {
            _ if cut => format!("longer than {MAX_MESSAGE} bytes"),
            None => "the sender's pid is unknown".to_string(),
            Some((sender, None)) => format!("pid {sender} {NOT_A_WORKER}"),
            Some((sender, Some(pid))) => match NotifyMessage::parse(message) {
                Some(message) => {
                    if message.stopping {
                        tracing::debug!(pid, "worker says it is stopping");
                    }
                    self.pool.notified(pid, &message, now);
                    return;
                }
                None => format!("malformed message from pid {sender}"),
            },
        };
        let (log, suppressed) = self.notify_log.allow(now);
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
    }
}

#[cfg(test)]
mod tests {
    use super::NOT_A_WORKER;

    #[test]
    fn a_dropped_senders_reason_is_true_on_this_platform() {
        // Windows cannot tell a worker's descendants: it must not claim to have looked.
        assert_eq!(
            NOT_A_WORKER.contains("descendant"),
            cfg!(unix),
            "{NOT_A_WORKER}"
        );
    }
}
