use super::WithoutEvent;
use crate::logging::captured::logged_with;
use crate::logging::LogEvent;

/// What `log` writes through `WithoutEvent`, in the text format.
fn text_of(log: impl FnOnce()) -> String {
    logged_with(WithoutEvent, log).1
}

/// The text line of one `worker started` event.
fn text_line() -> String {
    text_of(|| {
        tracing::info!(
            event = LogEvent::WorkerStarted.as_str(),
            slot = 0,
            pid = 42,
            "worker started"
        );
    })
}

#[test]
fn the_text_format_shows_the_message_and_fields_but_not_the_event() {
    assert_eq!(text_line().trim(), "INFO worker started slot=0 pid=42");
}

#[test]
fn control_characters_are_escaped_so_no_line_is_forged() {
    // A config file's command, as a refused reload names it (was: written as it is, so that
    // it read as a second line).
    let command = "/x\nERROR herd stopped\x1b[2J";
    let text = text_of(|| {
        tracing::warn!(
            event = LogEvent::UpgradeRefused.as_str(),
            reason = %command,
            "cannot run {command}"
        );
    });
    assert_eq!(
        text.trim(),
        "WARN cannot run /x\\nERROR herd stopped\\x1b[2J reason=/x\\nERROR herd stopped\\x1b[2J"
    );
}

/// A `&str` field is quoted and escaped once, by `{:?}` (was: escaped here too, so that its
/// `\n` read `\\n`).
#[test]
fn a_str_field_is_escaped_once() {
    let text = text_of(|| {
        tracing::warn!(
            event = LogEvent::UpgradeRefused.as_str(),
            reason = "a\nb",
            "refused"
        );
    });
    assert_eq!(text.trim(), "WARN refused reason=\"a\\nb\"");
}
