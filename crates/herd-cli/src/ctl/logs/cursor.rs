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

    /// Herd answered; `last` is the number of the last line it kept then (`None` from an older
    /// herd).
    pub fn answer(&mut self, last: Option<u64>) {
        self.answered = true;
        self.seq = last;
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
/// vanished (killed: its socket is left, nobody listening), which is an error.
pub fn gone(error: ClientError) -> Result<(), ClientError> {
    match error {
        ClientError::NotRunning {
            why: Vacancy::NoSocket,
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
        cursor.answer(Some(40));
        assert_eq!(after(cursor.request(&args(Some(5)))), (None, Some(40)));
        for seq in [38, 39, 40, 41, 42] {
            assert!(cursor.line(Some(seq), "2026-12-01T00:00:00.000Z"));
        }
        assert_eq!(after(cursor.request(&args(Some(5)))), (None, Some(42)));
    }

    /// Lines of the same millisecond as the last printed were printed twice when lines were
    /// told apart by time alone: a number says which were seen.
    #[test]
    fn numbered_lines_of_the_same_time_are_all_printed() {
        let mut cursor = Cursor::default();
        cursor.answer(Some(0));
        assert!(cursor.line(Some(1), "2026-12-01T00:00:00.005Z"));
        assert!(cursor.line(Some(2), "2026-12-01T00:00:00.001Z"));
    }

    #[test]
    fn an_older_herds_lines_are_told_apart_by_time() {
        let mut cursor = Cursor::default();
        cursor.answer(Some(7));
        assert!(cursor.forget_number(), "asked again without `after`");
        assert!(!cursor.forget_number());
        cursor.answer(None);
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
