use std::collections::BTreeSet;

use super::LogEvent;

/// The log events table of `docs/logging.md`.
const DOCS: &str = include_str!("../../../../../docs/logging.md");

/// The names in the first column of the table under the docs' `## Events` heading: rows that
/// start with a backquoted name.
fn documented() -> Vec<&'static str> {
    DOCS.lines()
        .skip_while(|line| *line != "## Events")
        .skip(1)
        .take_while(|line| !line.starts_with("## "))
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once('`'))
        .map(|(name, _)| name)
        .collect()
}

#[test]
fn the_docs_table_lists_exactly_the_events_in_order() {
    let names: Vec<&str> = LogEvent::ALL.iter().map(|e| e.as_str()).collect();
    assert_eq!(documented(), names);
}

#[test]
fn event_names_are_unique_and_snake_case() {
    let names: BTreeSet<&str> = LogEvent::ALL.iter().map(|e| e.as_str()).collect();
    assert_eq!(names.len(), LogEvent::ALL.len(), "a name is used twice");
    for name in names {
        let snake = !name.is_empty()
            && !name.starts_with('_')
            && !name.ends_with('_')
            && !name.contains("__")
            && name.chars().all(|c| c.is_ascii_lowercase() || c == '_');
        assert!(snake, "{name:?} is not snake_case");
    }
}
