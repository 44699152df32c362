//! One line a worker wrote, who wrote it, and how herd writes it out.

use std::time::SystemTime;

use crate::control::results::LogLine;
use crate::text::escape;

/// Which of its outputs a worker wrote a line to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// Its standard output.
    Stdout,
    /// Its standard error.
    Stderr,
}

impl Stream {
    /// `stdout` or `stderr`.
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// The worker a stream belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Writer {
    /// Its slot in the pool.
    pub slot: usize,
    /// Its process id.
    pub pid: u32,
    /// Its generation.
    pub generation: u64,
}

/// One line of a worker's output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Who wrote it.
    pub writer: Writer,
    /// Where it was written.
    pub stream: Stream,
    /// The text (invalid UTF-8 replaced), without its line ending.
    pub text: String,
    /// The line was cut: the next record of this stream goes on with it.
    pub split: bool,
    /// When herd read it.
    pub time: SystemTime,
    /// Its number among the lines herd kept, from 1, in the order they were kept (0 until
    /// kept): a follower that reconnects asks for the lines after the last one it saw.
    pub seq: u64,
}

impl Record {
    /// `[worker 2 pid 4242 gen 1] text`, with `split` before `]` on a cut line.
    pub fn prefixed(&self) -> String {
        prefixed(&self.writer, self.split, &self.text)
    }

    /// One JSON object and a newline.
    pub fn json(&self) -> String {
        let mut line = serde_json::to_string(&self.to_log_line()).unwrap_or_default();
        line.push('\n');
        line
    }

    /// The record as the control protocol sends it.
    pub fn to_log_line(&self) -> LogLine {
        let w = &self.writer;
        LogLine {
            time: humantime::format_rfc3339_millis(self.time).to_string(),
            worker: w.slot,
            pid: w.pid,
            generation: w.generation,
            stream: self.stream.name().to_string(),
            line: self.text.clone(),
            split: self.split,
        }
    }

    /// The record's size in memory, roughly: what the ring buffer counts.
    pub fn size(&self) -> usize {
        std::mem::size_of::<Record>() + self.text.len()
    }
}

/// `[worker 2 pid 4242 gen 1] text` and a newline, with `split` before `]` on a cut line.
/// Control characters in the text are escaped (`\r`, `\x1b`...), so that no worker can move
/// the cursor over its tag, or fake another's, on a terminal; JSON escapes them its own way.
pub fn prefixed(writer: &Writer, split: bool, text: &str) -> String {
    let split = if split { " split" } else { "" };
    format!(
        "[worker {} pid {} gen {}{split}] {}\n",
        writer.slot,
        writer.pid,
        writer.generation,
        escape(text)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(text: &str, split: bool) -> Record {
        Record {
            writer: Writer {
                slot: 2,
                pid: 4242,
                generation: 1,
            },
            stream: Stream::Stderr,
            text: text.to_string(),
            split,
            time: SystemTime::UNIX_EPOCH,
            seq: 0,
        }
    }

    #[test]
    fn prefixed_says_who_wrote_the_line() {
        assert_eq!(
            record("hello", false).prefixed(),
            "[worker 2 pid 4242 gen 1] hello\n"
        );
        assert_eq!(
            record("part", true).prefixed(),
            "[worker 2 pid 4242 gen 1 split] part\n"
        );
    }

    #[test]
    fn prefixed_escapes_what_could_overwrite_the_tag() {
        let line = record("\r[worker 9 pid 1 gen 1] fake \u{1b}[2J", false).prefixed();
        assert_eq!(
            line,
            "[worker 2 pid 4242 gen 1] \\r[worker 9 pid 1 gen 1] fake \\x1b[2J\n"
        );
    }

    #[test]
    fn json_is_one_object_with_every_field() {
        let line = record("say \"hi\"", true).json();
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["worker"], 2);
        assert_eq!(value["pid"], 4242);
        assert_eq!(value["generation"], 1);
        assert_eq!(value["stream"], "stderr");
        assert_eq!(value["line"], "say \"hi\"");
        assert_eq!(value["split"], true);
        assert_eq!(value["time"], "1970-01-01T00:00:00.000Z");
    }
}
