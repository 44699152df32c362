//! Taking the workers' `sd_notify` messages into the pool, however the platform reads them
//! (datagrams on the Unix notify socket, one message per connection on the Windows notify
//! pipe: the platform's `turns.rs`). Messages that are too long, malformed or from no worker
//! are dropped, and said so at a bounded rate.
use std::time::Instant;

use super::platform::NOT_A_WORKER;
use super::pool::NotifyMessage;
use super::Supervisor;
use crate::logging::LogEvent;

/// The longest message taken; longer ones are dropped (systemd uses the same limit).
const MAX_MESSAGE: usize = 4096;

impl Supervisor {
    /// Takes `message` from `sender` (its pid, and the worker it speaks for, if any); `cut`
    /// when it was longer than it could be read.
    pub(super) fn notified(
        &mut self,
        sender: Option<(u32, Option<u32>)>,
        message: &[u8],
        cut: bool,
    ) {
        let now = Instant::now();
        let why = match sender {
            _ if cut => format!("longer than {MAX_MESSAGE} bytes"),
            // Its fd was closed as it was read: that is the answer, and its sender (most often
            // `systemd-notify`, let go by it) may be gone already, so it is no one's to drop.
            _ if NotifyMessage::parse(message).is_some_and(|m| m.only_barrier()) => return,
            None => "the sender's pid is unknown".to_string(),
            Some((sender, None)) => {
                let ready = NotifyMessage::parse(message).is_some_and(|m| m.ready);
                if ready && self.fork_server_said_ready(sender) {
                    return;
                }
                // `--fork-server`: the worker a fork server forked may speak before herd has
                // read its pid in the fork server's reply; heard again once that is read.
                if self.effects.awaits_fork_replies()
                    && self.starts.may_keep_early()
                    && self.starts.keep_early(self.lineage(sender), message)
                {
                    return;
                }
                format!("pid {sender} {NOT_A_WORKER}")
            }
            Some((sender, Some(pid))) => match NotifyMessage::parse(message) {
                Some(message) => {
                    if message.stopping {
                        tracing::debug!(pid, "worker says it is stopping");
                    }
                    if self.pool.notified(pid, &message, now) && message.recycle {
                        self.recycle_asked(pid, now);
                    }
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
