//! herd's recent events, for `herd status` and `herd top`: the last [`KEEP`] log lines at
//! `info` and above (those with an `event` field), kept in a bounded ring whatever stderr does.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tracing::field::{Field, Visit};
use tracing::{Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// How many events are kept.
pub const KEEP: usize = 32;

/// One recent event, as `herd status` reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentEvent {
    /// How long ago it was logged, in milliseconds.
    pub ago_ms: u64,
    /// `error`, `warn` or `info`.
    pub level: String,
    /// Its stable name (docs/logging.md).
    pub event: String,
    /// The log line's message, then its other fields as `name=value`.
    pub message: String,
}

/// The last events, oldest first, at most `capacity`.
#[derive(Debug)]
pub struct Ring {
    events: VecDeque<(Instant, RecentEvent)>,
    capacity: usize,
}

impl Ring {
    /// An empty ring that keeps `capacity` events.
    pub const fn new(capacity: usize) -> Ring {
        Ring {
            events: VecDeque::new(),
            capacity,
        }
    }

    /// Adds `event`, logged `at`, dropping the oldest when full.
    pub fn push(&mut self, at: Instant, event: RecentEvent) {
        if self.capacity == 0 {
            return;
        }
        while self.events.len() >= self.capacity {
            self.events.pop_front();
        }
        self.events.push_back((at, event));
    }

    /// The events, oldest first, with their age as of `now`.
    pub fn snapshot(&self, now: Instant) -> Vec<RecentEvent> {
        let age = |at: Instant| now.saturating_duration_since(at).as_millis() as u64;
        self.events
            .iter()
            .map(|(at, e)| RecentEvent {
                ago_ms: age(*at),
                ..e.clone()
            })
            .collect()
    }
}

static RECENT: Mutex<Ring> = Mutex::new(Ring::new(KEEP));

/// The recent events, oldest first.
pub fn events() -> Vec<RecentEvent> {
    let now = Instant::now();
    RECENT.lock().map(|r| r.snapshot(now)).unwrap_or_default()
}

/// The tracing layer that keeps every event's line in the ring.
pub struct Recorder;

impl<S: Subscriber> Layer<S> for Recorder {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let level = *event.metadata().level();
        if level > Level::INFO {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let Some(name) = fields.event else {
            return;
        };
        let mut message = fields.message;
        for field in &fields.others {
            message.push(' ');
            message.push_str(field);
        }
        let recent = RecentEvent {
            ago_ms: 0,
            level: level.as_str().to_ascii_lowercase(),
            event: name,
            message,
        };
        if let Ok(mut ring) = RECENT.lock() {
            ring.push(Instant::now(), recent);
        }
    }
}

/// An event's name and message, and its other fields as `name=value`.
#[derive(Default)]
struct Fields {
    event: Option<String>,
    message: String,
    others: Vec<String>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "event" => self.event = Some(value.to_string()),
            "message" => self.message = value.to_string(),
            name => self.others.push(format!("{name}={value}")),
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            "event" => self.event = Some(format!("{value:?}")),
            "message" => self.message = format!("{value:?}"),
            name => self.others.push(format!("{name}={value:?}")),
        }
    }
}

#[cfg(test)]
mod tests;
