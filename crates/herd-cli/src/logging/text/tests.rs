use std::sync::{Arc, Mutex};

use super::WithoutEvent;
use crate::logging::LogEvent;

/// Collects what a subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The text line of one `worker started` event, logged through `WithoutEvent`.
fn text_line() -> String {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .fmt_fields(WithoutEvent)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        tracing::info!(
            event = LogEvent::WorkerStarted.as_str(),
            slot = 0,
            pid = 42,
            "worker started"
        );
    });
    let bytes = captured.0.lock().unwrap().clone();
    String::from_utf8(bytes).unwrap()
}

#[test]
fn the_text_format_shows_the_message_and_fields_but_not_the_event() {
    assert_eq!(text_line().trim(), "INFO worker started slot=0 pid=42");
}

#[test]
fn control_characters_are_escaped_so_no_line_is_forged() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .fmt_fields(WithoutEvent)
        .finish();
    // A config file's command, as a refused reload names it (was: written as it is, so that
    // it read as a second line).
    let command = "/x\nERROR herd stopped\x1b[2J";
    tracing::subscriber::with_default(subscriber, || {
        tracing::warn!(
            event = LogEvent::UpgradeRefused.as_str(),
            reason = %command,
            "cannot run {command}"
        );
    });
    let bytes = captured.0.lock().unwrap().clone();
    let text = String::from_utf8(bytes).unwrap();
    assert_eq!(
        text.trim(),
        "WARN cannot run /x\\nERROR herd stopped\\x1b[2J reason=/x\\nERROR herd stopped\\x1b[2J"
    );
}
