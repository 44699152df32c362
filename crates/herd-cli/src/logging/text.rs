//! The text format's fields: tracing's default, without the `event` field, which repeats the
//! message in a form meant for machines (the JSON format keeps it), and with every control
//! character escaped (`\n`, `\x1b`), so that text from outside (a config file's command, a
//! worker's status) can neither forge a log line nor drive the terminal.

use std::fmt;

use tracing::field::{Field, Visit};
use tracing_subscriber::field::{MakeVisitor, VisitFmt, VisitOutput};
use tracing_subscriber::fmt::format::{DefaultVisitor, Writer};

/// Formats fields as tracing's default text format does, leaving out `event`.
pub struct WithoutEvent;

impl<'a> MakeVisitor<Writer<'a>> for WithoutEvent {
    type Visitor = SkipEvent<DefaultVisitor<'a>>;

    fn make_visitor(&self, target: Writer<'a>) -> Self::Visitor {
        SkipEvent(DefaultVisitor::new(target, true))
    }
}

/// Passes every field but `event` on to the visitor it wraps.
pub struct SkipEvent<V>(V);

impl<V: Visit> Visit for SkipEvent<V> {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "event" => {}
            // The message is written as it is: escaped here.
            "message" => self.0.record_str(field, &crate::text::escape(value)),
            // Other fields are written quoted, escaped by `{:?}` (once is enough).
            _ => self.0.record_str(field, value),
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if field.name() != "event" {
            self.0.record_error(field, value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "event" {
            return;
        }
        // The message, and fields given with `%`, are written as they format.
        let text = format!("{value:?}");
        match crate::text::escape(&text) {
            std::borrow::Cow::Borrowed(_) => self.0.record_debug(field, value),
            std::borrow::Cow::Owned(escaped) => {
                self.0.record_debug(field, &format_args!("{escaped}"))
            }
        }
    }
}

impl<V: VisitOutput<fmt::Result>> VisitOutput<fmt::Result> for SkipEvent<V> {
    fn finish(self) -> fmt::Result {
        self.0.finish()
    }
}

impl<V: VisitFmt> VisitFmt for SkipEvent<V> {
    fn writer(&mut self) -> &mut dyn fmt::Write {
        self.0.writer()
    }
}

#[cfg(test)]
mod tests;
