//! The last lines the workers wrote, in a ring buffer of bounded size, for `herd logs`. Each
//! line is numbered as it is kept: a client that saw up to a number asks for what follows it.

use std::collections::VecDeque;
use std::sync::Arc;

use super::record::Record;

/// The most recent records, at most `max_lines` of them and about `max_bytes` in all.
#[derive(Debug)]
pub struct Recent {
    records: VecDeque<Arc<Record>>,
    bytes: usize,
    /// The number the next record gets: one more than the last one's.
    next: u64,
    max_lines: usize,
    max_bytes: usize,
}

/// Which kept lines a client asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Wanted {
    /// At most this many, the last ones (all with `None`).
    pub lines: Option<usize>,
    /// Those of the workers in this slot alone.
    pub slot: Option<usize>,
    /// Those numbered above this one: the last line the client saw.
    pub after: Option<u64>,
}

/// The kept lines a client asked for, oldest first, and how many lines that came after its
/// `after` are no longer kept (of every worker).
#[derive(Debug, Default)]
pub struct Found {
    /// The lines.
    pub records: Vec<Arc<Record>>,
    /// Lines after `after` that were let go before the client asked (of every worker: not
    /// counted when it asks for one slot's, whose lines among them are not known).
    pub missed: u64,
    /// The number of the last line kept as the client asked (0: none yet): where a follower
    /// stands once it has these.
    pub last: u64,
}

impl Recent {
    /// An empty buffer of these bounds, numbering lines from 1.
    pub fn new(max_lines: usize, max_bytes: usize) -> Recent {
        Recent {
            records: VecDeque::new(),
            bytes: 0,
            next: 1,
            max_lines,
            max_bytes,
        }
    }

    /// Numbers `record` and keeps it, forgetting the oldest ones beyond the bounds.
    pub fn push(&mut self, mut record: Record) -> Arc<Record> {
        record.seq = self.next;
        let record = Arc::new(record);
        self.keep(Arc::clone(&record));
        record
    }

    /// Keeps `record` as it is numbered (one a previous image kept).
    pub fn keep(&mut self, record: Arc<Record>) {
        self.next = self.next.max(record.seq.saturating_add(1));
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

    /// Numbers the next line `next` at least: a previous image numbered up to it.
    pub fn skip_to(&mut self, next: u64) {
        self.next = self.next.max(next);
    }

    /// The number the next line gets.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// The records kept, oldest first.
    pub fn all(&self) -> impl Iterator<Item = &Arc<Record>> {
        self.records.iter()
    }

    /// What `wanted` asks for. An `after` this buffer never numbered is another herd's (one
    /// started anew at the same socket): it is not looked at.
    pub fn find(&self, wanted: Wanted) -> Found {
        let after = wanted.after.filter(|&a| a < self.next);
        let mut records: Vec<_> = self
            .records
            .iter()
            .rev()
            .take_while(|r| after.is_none_or(|a| r.seq > a))
            .filter(|r| wanted.slot.is_none_or(|s| r.writer.slot == s))
            .take(wanted.lines.unwrap_or(usize::MAX))
            .cloned()
            .collect();
        records.reverse();
        let oldest = self.records.front().map_or(self.next, |r| r.seq);
        let missed = match wanted.slot {
            Some(_) => 0,
            None => after.map_or(0, |a| oldest.saturating_sub(a.saturating_add(1))),
        };
        Found {
            records,
            missed,
            last: self.next - 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::super::record::{Stream, Writer};
    use super::*;

    fn record(slot: usize, text: &str) -> Record {
        Record {
            writer: Writer {
                slot,
                pid: 100 + slot as u32,
                generation: 1,
            },
            stream: Stream::Stdout,
            text: text.to_string(),
            split: false,
            time: SystemTime::UNIX_EPOCH,
            seq: 0,
        }
    }

    fn texts(records: &[Arc<Record>]) -> Vec<&str> {
        records.iter().map(|r| r.text.as_str()).collect()
    }

    /// The last `n` records (all with `None`), of `slot` alone if given.
    fn last(recent: &Recent, n: Option<usize>, slot: Option<usize>) -> Vec<Arc<Record>> {
        let wanted = Wanted {
            lines: n,
            slot,
            after: None,
        };
        recent.find(wanted).records
    }

    fn after(after: u64) -> Wanted {
        Wanted {
            after: Some(after),
            ..Wanted::default()
        }
    }

    #[test]
    fn the_oldest_lines_go_first() {
        let mut recent = Recent::new(2, usize::MAX);
        for text in ["a", "b", "c"] {
            recent.push(record(0, text));
        }
        assert_eq!(texts(&last(&recent, None, None)), ["b", "c"]);
    }

    #[test]
    fn the_byte_bound_holds_but_keeps_the_newest_line() {
        let size = Arc::new(record(0, "")).size();
        let mut recent = Recent::new(100, 2 * size + 2);
        for text in ["a", "b", "c", &"x".repeat(1000)] {
            recent.push(record(0, text));
        }
        assert_eq!(last(&recent, None, None).len(), 1);
        assert_eq!(recent.bytes, size + 1000);
    }

    #[test]
    fn last_filters_by_worker_and_counts_from_the_end() {
        let mut recent = Recent::new(100, usize::MAX);
        for (slot, text) in [(0, "a"), (1, "b"), (0, "c"), (1, "d"), (0, "e")] {
            recent.push(record(slot, text));
        }
        assert_eq!(texts(&last(&recent, Some(2), Some(0))), ["c", "e"]);
        assert_eq!(texts(&last(&recent, Some(2), None)), ["d", "e"]);
        assert!(last(&recent, Some(0), None).is_empty());
        assert!(last(&recent, None, Some(7)).is_empty());
    }

    #[test]
    fn lines_are_numbered_from_one_in_the_order_they_are_kept() {
        let mut recent = Recent::new(100, usize::MAX);
        let seqs: Vec<u64> = ["a", "b", "c"]
            .into_iter()
            .map(|t| recent.push(record(0, t)).seq)
            .collect();
        assert_eq!(seqs, [1, 2, 3]);
        assert_eq!(recent.next(), 4);
    }

    #[test]
    fn after_gives_what_follows_the_last_line_seen_none_twice() {
        let mut recent = Recent::new(100, usize::MAX);
        for (slot, text) in [(0, "a"), (1, "b"), (0, "c"), (1, "d")] {
            recent.push(record(slot, text));
        }
        let found = recent.find(after(2));
        assert_eq!((texts(&found.records), found.missed), (vec!["c", "d"], 0));
        let one = Wanted {
            slot: Some(1),
            ..after(1)
        };
        assert_eq!(texts(&recent.find(one).records), ["b", "d"]);
        assert!(recent.find(after(4)).records.is_empty());
    }

    #[test]
    fn after_counts_the_lines_let_go_since() {
        let mut recent = Recent::new(2, usize::MAX);
        for text in ["a", "b", "c", "d", "e"] {
            recent.push(record(0, text));
        }
        // Seen up to 1; 2 and 3 are gone, 4 and 5 kept.
        let found = recent.find(after(1));
        assert_eq!((texts(&found.records), found.missed), (vec!["d", "e"], 2));
        assert_eq!(recent.find(after(3)).missed, 0);
        // Whose lines were let go is not known: one slot's follower is not told of others'.
        let one = Wanted {
            slot: Some(0),
            ..after(1)
        };
        assert_eq!(recent.find(one).missed, 0);
        assert_eq!(found.last, 5);
    }

    /// A follower of a herd that was killed and started anew at the same socket holds a
    /// number of the old one: the new one's lines are not held back until they pass it.
    #[test]
    fn an_after_beyond_the_last_number_is_another_herds() {
        let mut recent = Recent::new(100, usize::MAX);
        recent.push(record(0, "a"));
        let found = recent.find(after(5000));
        assert_eq!((texts(&found.records), found.missed), (vec!["a"], 0));
    }

    #[test]
    fn lines_kept_as_numbered_go_on_from_their_numbers() {
        let mut recent = Recent::new(100, usize::MAX);
        let mut kept = record(0, "old");
        kept.seq = 41;
        recent.keep(Arc::new(kept));
        assert_eq!(recent.push(record(0, "new")).seq, 42);
        assert_eq!(texts(&recent.find(after(41)).records), ["new"]);
    }
}
