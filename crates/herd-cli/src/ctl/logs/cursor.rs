//! Where a `herd logs -f` stands in herd's lines, and what it asks for when it connects again
//! (herd re-executed itself): the lines after the last one it printed, by number, or, from an
//! older herd that numbers none, by time.

use crate::cli::LogsArgs;
use crate::control::client::{ClientError, Vacancy};
use crate::control::protocol::Command;

/// Where a follower stands.
#[derive(Debug, Default)]
pub struct Cursor {
    /// The number of the last line it printed or was told of, from a herd that numbers its
    /// lines: it asks for the lines after it.
    seq: Option<u64>,
    /// The time of the last line it printed: with an older herd, lines older than it are not
    /// printed again.
    time: Option<String>,
    /// The number of the last line herd kept as it answered: where the follower stands once
    /// it has every line of that answer ([`caught_up`](Self::caught_up)), not before (a
    /// connection closed meanwhile asks again from the last line printed).
    pending: Option<u64>,
    /// The pid of the herd that numbered `seq`.
    of: Option<u32>,
    /// Whether herd answered it once: it then asks for no last N lines again.
    answered: bool,
    /// Whether it printed a line.
    printed: bool,
}

impl Cursor {
    /// The request to send from here.
    pub fn request(&self, args: &LogsArgs) -> Command {
        Command::Logs {
            slot: args.worker,
            lines: match self.answered {
                true => None,
                false => args.lines.map(|n| n as usize),
            },
            follow: args.follow,
            after: self.seq.filter(|_| self.answered),
            of: self.of.filter(|_| self.answered && self.seq.is_some()),
        }
    }

    /// Whether herd answered once: a connection closed unanswered after that is one a
    /// re-executing image took, or one that vanished.
    pub fn answered(&self) -> bool {
        self.answered
    }

    /// Whether a line was printed.
    pub fn printed(&self) -> bool {
        self.printed
    }

    /// Herd refused `after` (an older herd, after a re-exec onto an older binary): whether to
    /// ask again without, going by time.
    pub fn forget_number(&mut self) -> bool {
        self.answered && self.seq.take().is_some()
    }

    /// Herd `pid` answered; `last` is the number of the last line it kept then (each `None`
    /// from an older herd). Numbers of another herd (one that took over) are forgotten.
    pub fn answer(&mut self, last: Option<u64>, pid: Option<u32>) {
        if self.of != pid {
            self.seq = None;
        }
        self.answered = true;
        self.of = pid;
        self.pending = last;
    }

    /// Every line of the answer was read: the follower stands at its `last` (lines of other
    /// slots, not sent, are behind it too).
    pub fn caught_up(&mut self) {
        if let Some(last) = self.pending.take() {
            self.seq = Some(self.seq.map_or(last, |s| s.max(last)));
        }
    }

    /// A line herd sent, numbered `seq` (`None` from an older herd) and read at `time`:
    /// whether to print it (not when an older herd sends again what was printed).
    pub fn line(&mut self, seq: Option<u64>, time: &str) -> bool {
        match seq {
            Some(seq) => self.seq = Some(self.seq.map_or(seq, |s| s.max(seq))),
            None if self.time.as_deref().is_some_and(|t| time < t) => return false,
            None => {}
        }
        self.time = Some(time.to_string());
        self.printed = true;
        true
    }
}

/// What a follower whose connection herd closed without saying it stops makes of `error`, met
/// as it connects again: a herd that stopped removed its socket as it did (an older herd
/// closes its followers' connections without a word); one that cannot be reached otherwise
/// vanished (killed: its socket is left, nobody listening), which is an error. On Windows a
/// pipe that is gone is a stopped herd's or a killed one's alike: it is taken for a stop.
pub fn gone(error: ClientError) -> Result<(), ClientError> {
    match error {
        ClientError::NotRunning {
            why: Vacancy::NoSocket | Vacancy::NoPipe,
            ..
        } => Ok(()),
        e => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn args(lines: Option<u32>) -> LogsArgs {
        LogsArgs {
            worker: Some(1),
            lines,
            follow: true,
            json: false,
        }
    }

    fn after(command: Command) -> (Option<usize>, Option<u64>) {
        match command {
            Command::Logs { lines, after, .. } => (lines, after),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn it_asks_for_the_last_lines_once_then_for_those_after_the_last_it_saw() {
        let mut cursor = Cursor::default();
        assert_eq!(after(cursor.request(&args(Some(5)))), (Some(5), None));
        cursor.answer(Some(40), Some(9));
        // Not at 40 before it has the lines up to it: a connection closed amid them asks
        // again from the last one printed.
        assert!(cursor.line(Some(36), "2026-12-01T00:00:00.000Z"));
        assert_eq!(after(cursor.request(&args(Some(5)))), (None, Some(36)));
        cursor.caught_up();
        assert_eq!(after(cursor.request(&args(Some(5)))), (None, Some(40)));
        for seq in [41, 42] {
            assert!(cursor.line(Some(seq), "2026-12-01T00:00:00.000Z"));
        }
        assert_eq!(after(cursor.request(&args(Some(5)))), (None, Some(42)));
        match cursor.request(&args(None)) {
            Command::Logs { of, .. } => assert_eq!(of, Some(9), "the herd that numbered them"),
            other => panic!("{other:?}"),
        }
        // Another herd (one that took over) answered: its numbers start anew.
        cursor.answer(Some(3), Some(10));
        assert_eq!(after(cursor.request(&args(None))), (None, None));
        cursor.caught_up();
        assert_eq!(after(cursor.request(&args(None))), (None, Some(3)));
    }

    /// Lines of the same millisecond as the last printed were printed twice when lines were
    /// told apart by time alone: a number says which were seen.
    #[test]
    fn numbered_lines_of_the_same_time_are_all_printed() {
        let mut cursor = Cursor::default();
        cursor.answer(Some(0), Some(9));
        cursor.caught_up();
        assert!(cursor.line(Some(1), "2026-12-01T00:00:00.005Z"));
        assert!(cursor.line(Some(2), "2026-12-01T00:00:00.001Z"));
    }

    #[test]
    fn an_older_herds_lines_are_told_apart_by_time() {
        let mut cursor = Cursor::default();
        cursor.answer(Some(7), Some(9));
        cursor.caught_up();
        assert!(cursor.forget_number(), "asked again without `after`");
        assert!(!cursor.forget_number());
        cursor.answer(None, None);
        assert!(cursor.line(None, "2026-12-01T00:00:00.005Z"));
        assert!(!cursor.line(None, "2026-12-01T00:00:00.004Z"));
        assert!(cursor.line(None, "2026-12-01T00:00:00.005Z"));
        assert_eq!(after(cursor.request(&args(None))), (None, None));
    }

    #[test]
    fn a_herd_that_removed_its_socket_stopped_one_that_left_it_vanished() {
        let path = PathBuf::from("/run/herd/control.sock");
        let not_running = |why| ClientError::NotRunning {
            path: path.clone(),
            why,
            herd: None,
        };
        assert!(gone(not_running(Vacancy::NoSocket)).is_ok());
        assert!(gone(not_running(Vacancy::NobodyListening)).is_err());
        assert!(gone(ClientError::Closed { path: path.clone() }).is_err());
    }
}
