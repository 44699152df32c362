//! The lines kept for `herd logs`, as a re-exec hands them to the next image: that image keeps
//! them and numbers its own lines on from them, so a follower that reconnects asks for what
//! came after the last line it saw, including what this image read as it stopped.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::record::{Record, Stream, Writer};
use super::{lock, Output};

/// The kept lines across the exec.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct SavedLines {
    /// The number the next line gets.
    pub next: u64,
    /// The lines, oldest first.
    pub lines: Vec<SavedLine>,
}

/// One kept line across the exec.
#[derive(Debug, Serialize, Deserialize)]
pub struct SavedLine {
    /// Its number.
    pub seq: u64,
    /// The writer's slot.
    pub worker: usize,
    /// The writer's pid.
    pub pid: u32,
    /// The writer's generation.
    pub generation: u64,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// When herd read it, in milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// The text.
    pub line: String,
    /// The line goes on in the next one of its stream.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub split: bool,
}

impl SavedLine {
    fn of(record: &Record) -> SavedLine {
        let since = record.time.duration_since(SystemTime::UNIX_EPOCH);
        SavedLine {
            seq: record.seq,
            worker: record.writer.slot,
            pid: record.writer.pid,
            generation: record.writer.generation,
            stream: record.stream.name().to_string(),
            time_ms: since.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            line: record.text.clone(),
            split: record.split,
        }
    }

    /// The record again; `None` for a stream this herd does not know.
    fn record(self) -> Option<Record> {
        let stream = match self.stream.as_str() {
            "stdout" => Stream::Stdout,
            "stderr" => Stream::Stderr,
            _ => return None,
        };
        let time = SystemTime::UNIX_EPOCH.checked_add(Duration::from_millis(self.time_ms));
        Some(Record {
            writer: Writer {
                slot: self.worker,
                pid: self.pid,
                generation: self.generation,
            },
            stream,
            text: self.line,
            split: self.split,
            time: time.unwrap_or(SystemTime::UNIX_EPOCH),
            seq: self.seq,
        })
    }
}

impl Output {
    /// The lines kept, to hand to the next image.
    pub fn save_lines(&self) -> SavedLines {
        let recent = lock(&self.recent);
        SavedLines {
            next: recent.next(),
            lines: recent.all().map(|r| SavedLine::of(r)).collect(),
        }
    }

    /// Keeps the lines a previous image kept, numbering new ones on from them.
    pub fn restore_lines(&self, saved: SavedLines) {
        let mut recent = lock(&self.recent);
        for record in saved.lines.into_iter().filter_map(SavedLine::record) {
            recent.keep(Arc::new(record));
        }
        recent.skip_to(saved.next);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Format, Wanted};
    use super::*;

    #[test]
    fn kept_lines_pass_to_the_next_image_with_their_numbers() {
        let before = Output::start_to(Format::Prefix, std::io::sink(), std::io::sink()).unwrap();
        for (stream, text) in [(Stream::Stdout, "a"), (Stream::Stderr, "b")] {
            before.take(Record {
                writer: Writer {
                    slot: 1,
                    pid: 42,
                    generation: 3,
                },
                stream,
                text: text.to_string(),
                split: stream == Stream::Stderr,
                time: SystemTime::UNIX_EPOCH + Duration::from_millis(1234),
                seq: 0,
            });
        }
        let text = serde_json::to_string(&before.save_lines()).unwrap();
        let after = Output::start_to(Format::Prefix, std::io::sink(), std::io::sink()).unwrap();
        after.restore_lines(serde_json::from_str(&text).unwrap());
        let was = before.recent(Wanted::default()).records;
        let is = after.recent(Wanted::default()).records;
        assert_eq!(was, is);
        assert_eq!(lock(&after.recent).next(), 3);
    }

    #[test]
    fn a_line_of_an_unknown_stream_or_time_is_no_panic() {
        let saved = r#"{"next":9,"lines":[
            {"seq":7,"worker":0,"pid":1,"generation":1,"stream":"stdin","time_ms":0,"line":"x"},
            {"seq":8,"worker":0,"pid":1,"generation":1,"stream":"stdout",
             "time_ms":18446744073709551615,"line":"y"}]}"#;
        let output = Output::start_to(Format::Prefix, std::io::sink(), std::io::sink()).unwrap();
        output.restore_lines(serde_json::from_str(saved).unwrap());
        let kept = output.recent(Wanted::default()).records;
        assert_eq!(kept.len(), 1);
        assert_eq!((kept[0].seq, kept[0].text.as_str()), (8, "y"));
        assert_eq!(lock(&output.recent).next(), 9);
    }
}
