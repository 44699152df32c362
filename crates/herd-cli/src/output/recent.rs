//! The last lines the workers wrote, in a ring buffer of bounded size, for `herd logs`.

use std::collections::VecDeque;
use std::sync::Arc;

use super::record::Record;

/// The most recent records, at most `max_lines` of them and about `max_bytes` in all.
#[derive(Debug)]
pub struct Recent {
    records: VecDeque<Arc<Record>>,
    bytes: usize,
    max_lines: usize,
    max_bytes: usize,
}

impl Recent {
    /// An empty buffer of these bounds.
    pub fn new(max_lines: usize, max_bytes: usize) -> Recent {
        Recent {
            records: VecDeque::new(),
            bytes: 0,
            max_lines,
            max_bytes,
        }
    }

    /// Keeps `record`, forgetting the oldest ones beyond the bounds.
    pub fn push(&mut self, record: Arc<Record>) {
        self.bytes += record.size();
        self.records.push_back(record);
        while self.records.len() > self.max_lines
            || (self.bytes > self.max_bytes && self.records.len() > 1)
        {
            if let Some(old) = self.records.pop_front() {
                self.bytes -= old.size();
            }
        }
    }

    /// The last `n` records (all of them with `None`), of the worker in `slot` alone if given,
    /// oldest first.
    pub fn last(&self, n: Option<usize>, slot: Option<usize>) -> Vec<Arc<Record>> {
        let mut last: Vec<_> = self
            .records
            .iter()
            .rev()
            .filter(|r| slot.is_none_or(|s| r.writer.slot == s))
            .take(n.unwrap_or(usize::MAX))
            .cloned()
            .collect();
        last.reverse();
        last
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::super::record::{Stream, Writer};
    use super::*;

    fn record(slot: usize, text: &str) -> Arc<Record> {
        Arc::new(Record {
            writer: Writer {
                slot,
                pid: 100 + slot as u32,
                generation: 1,
            },
            stream: Stream::Stdout,
            text: text.to_string(),
            split: false,
            time: SystemTime::UNIX_EPOCH,
        })
    }

    fn texts(records: &[Arc<Record>]) -> Vec<&str> {
        records.iter().map(|r| r.text.as_str()).collect()
    }

    #[test]
    fn the_oldest_lines_go_first() {
        let mut recent = Recent::new(2, usize::MAX);
        for text in ["a", "b", "c"] {
            recent.push(record(0, text));
        }
        assert_eq!(texts(&recent.last(None, None)), ["b", "c"]);
    }

    #[test]
    fn the_byte_bound_holds_but_keeps_the_newest_line() {
        let size = record(0, "").size();
        let mut recent = Recent::new(100, 2 * size + 2);
        for text in ["a", "b", "c", &"x".repeat(1000)] {
            recent.push(record(0, text));
        }
        assert_eq!(recent.last(None, None).len(), 1);
        assert_eq!(recent.bytes, size + 1000);
    }

    #[test]
    fn last_filters_by_worker_and_counts_from_the_end() {
        let mut recent = Recent::new(100, usize::MAX);
        for (slot, text) in [(0, "a"), (1, "b"), (0, "c"), (1, "d"), (0, "e")] {
            recent.push(record(slot, text));
        }
        assert_eq!(texts(&recent.last(Some(2), Some(0))), ["c", "e"]);
        assert_eq!(texts(&recent.last(Some(2), None)), ["d", "e"]);
        assert!(recent.last(Some(0), None).is_empty());
        assert!(recent.last(None, Some(7)).is_empty());
    }
}
