//! The fields of an `sd_notify(3)` message that the pool acts on.

/// The fields of an `sd_notify` message that herd acts on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NotifyMessage {
    /// `READY=1`.
    pub ready: bool,
    /// `STOPPING=1`.
    pub stopping: bool,
    /// `WATCHDOG=1`.
    pub watchdog: bool,
    /// `HERD_RECYCLE=1`: the worker asks to be replaced (a successor first, then its graceful
    /// stop), as `--max-lifetime` would: after so many requests, say.
    pub recycle: bool,
    /// `STATUS=...`.
    pub status: Option<String>,
    /// `BARRIER=1` (`sd_notify_barrier(3)`; `systemd-notify` sends one after its message and
    /// waits): its sender waits until the fd it attached is closed, which herd does on Unix as
    /// it reads the message, after every message before it. Nothing else is asked; other
    /// assignments beside it are taken as usual (systemd ignores them).
    pub barrier: bool,
}

impl NotifyMessage {
    /// Parses newline-separated `KEY=VALUE` assignments; unknown keys are ignored, as systemd
    /// does. Returns `None` for a message that is not UTF-8 or has a line without `=`.
    pub fn parse(bytes: &[u8]) -> Option<NotifyMessage> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut message = NotifyMessage::default();
        for line in text.split('\n').filter(|l| !l.is_empty()) {
            let (key, value) = line.split_once('=')?;
            match (key, value) {
                ("READY", "1") => message.ready = true,
                ("STOPPING", "1") => message.stopping = true,
                ("WATCHDOG", "1") => message.watchdog = true,
                ("HERD_RECYCLE", "1") => message.recycle = true,
                ("BARRIER", "1") => message.barrier = true,
                ("STATUS", text) => {
                    message.status = Some(text.chars().take(200).collect());
                }
                _ => {}
            }
        }
        Some(message)
    }

    /// Whether the message is a barrier and nothing else: answered once it was read, whoever
    /// sent it (`systemd-notify` may have exited since: the fd's close let it go).
    pub fn only_barrier(&self) -> bool {
        *self
            == NotifyMessage {
                barrier: true,
                ..NotifyMessage::default()
            }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_messages_parse_like_systemd() {
        let m = NotifyMessage::parse(b"READY=1\nSTATUS=serving 3 clients\nX_CUSTOM=1\n").unwrap();
        assert!(m.ready && !m.watchdog && !m.stopping);
        assert_eq!(m.status.as_deref(), Some("serving 3 clients"));
        assert!(NotifyMessage::parse(b"READY").is_none());
        assert!(NotifyMessage::parse(&[0xff, 0xfe]).is_none());
        assert_eq!(
            NotifyMessage::parse(b"READY=0").unwrap(),
            NotifyMessage::default()
        );
        let m = NotifyMessage::parse(b"HERD_RECYCLE=1").unwrap();
        assert!(m.recycle && !m.ready);
        assert!(!NotifyMessage::parse(b"HERD_RECYCLE=0").unwrap().recycle);
        assert!(NotifyMessage::parse(b"BARRIER=1").unwrap().only_barrier());
        assert!(!NotifyMessage::parse(b"BARRIER=1\nREADY=1")
            .unwrap()
            .only_barrier());
        assert!(!NotifyMessage::parse(b"BARRIER=1\nSTATUS=x")
            .unwrap()
            .only_barrier());
        assert!(!NotifyMessage::parse(b"READY=0").unwrap().only_barrier());
    }
}
