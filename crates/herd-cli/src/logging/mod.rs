//! herd's own log: one line per event on stderr, as text or JSON.
//!
//! Nothing herd does waits for stderr: every line goes through a bounded queue ([`sink`]) that
//! a thread of its own writes out. When nobody reads stderr (a stuck log shipper) or nobody
//! can (the reader exited: `herd run ... | head`), lines are dropped and counted, never
//! blocking the supervisor and never stopping it; the first line that gets through again is
//! followed by a warning that says how many were lost, and the total is in `herd status` and
//! the metrics (`herd_log_lines_dropped_total`). [`flush`] gives what is queued a bounded time
//! to be written, before herd exits or re-executes itself.
//!
//! Every line at `info` and above carries a stable `event` field ([`LogEvent`]); the text
//! format leaves it out, since the message says the same to a reader.

#[cfg(test)]
pub(crate) mod captured;
mod event;
mod recent;
mod sink;
mod text;

use std::io::IsTerminal;
use std::sync::OnceLock;
use std::time::Duration;

use tracing::level_filters::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::cli::{LogFormat, LogLevel};

pub use event::LogEvent;
pub use recent::{events as recent_events, RecentEvent};
pub use sink::{Report, Sink};

/// The most bytes of log lines waiting for stderr; more are dropped and counted.
pub const QUEUE_BYTES: usize = 1 << 20;

/// How long herd waits for its queued lines to be written when it exits or re-executes.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

static SINK: OnceLock<Option<Sink>> = OnceLock::new();

/// The queue in front of stderr, started on first use; `None` if its thread cannot start,
/// and then lines are written directly, errors ignored.
fn sink() -> Option<&'static Sink> {
    SINK.get_or_init(|| {
        let report = Box::new(|n: u64| {
            tracing::warn!(
                event = LogEvent::LogLinesDropped.as_str(),
                lost = n,
                "{n} log lines were lost: herd's stderr was not writable (its reader is gone or \
                 not reading, or its disk is full)"
            );
        });
        Sink::start(std::io::stderr(), QUEUE_BYTES, report).ok()
    })
    .as_ref()
}

/// Writes one line (a newline is added) to stderr through the queue, even a full one: for
/// the lines herd writes outside the log, such as its final error.
pub fn line(text: &str) {
    let line = format!("{text}\n");
    match sink() {
        Some(sink) => sink.push_always(line.as_bytes()),
        None => {
            let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
        }
    }
}

/// Waits up to [`FLUSH_TIMEOUT`] for the queued lines to reach stderr.
pub fn flush() {
    if let Some(sink) = SINK.get().and_then(Option::as_ref) {
        sink.flush(FLUSH_TIMEOUT);
    }
}

/// Log lines lost so far (stderr closed, full or not read).
pub fn lines_dropped() -> u64 {
    SINK.get().and_then(Option::as_ref).map_or(0, Sink::lost)
}

/// One event's line, handed to the queue as a whole when the formatter writes it.
pub struct QueuedWriter;

impl std::io::Write for QueuedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match sink() {
            Some(sink) => sink.push(buf),
            None => {
                let _ = std::io::stderr().write_all(buf);
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the global subscriber.
pub fn init(level: LogLevel, format: LogFormat) {
    let level = match level {
        LogLevel::Error => LevelFilter::ERROR,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Trace => LevelFilter::TRACE,
    };
    let builder = tracing_subscriber::fmt()
        .with_writer(|| QueuedWriter)
        .with_max_level(level)
        .with_target(false)
        // A failed write is counted by the queue; the formatter must not print to stderr
        // about it (which panics when stderr is gone).
        .log_internal_errors(false);
    // Every event is also kept for `herd status` ([`recent`]).
    match format {
        LogFormat::Text => builder
            .fmt_fields(text::WithoutEvent)
            .with_ansi(std::io::stderr().is_terminal())
            .finish()
            .with(recent::Recorder)
            .init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .finish()
            .with(recent::Recorder)
            .init(),
    }
}
