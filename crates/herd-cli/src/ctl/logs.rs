//! `herd logs`: the workers' recent lines, and with `--follow` the new ones as they come.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::anyhow;

use super::{call, failure, Connect, QUICK};
use crate::cli::LogsArgs;
use crate::control::client::{Client, ClientError};
use crate::control::protocol::{Command, ErrorCode};
use crate::control::results::{LogFrame, LogLine, LogsResult, Status};
use crate::exit::Failure;
use crate::output::{prefixed, Writer};
use cursor::{gone, Cursor};

mod cursor;

/// How often a follower that waits for lines looks whether stdout's reader is gone.
const READER_CHECK: Duration = Duration::from_millis(500);

/// Asks for the lines, prints them, and with `--follow` keeps printing until herd stops. A
/// follower whose herd re-executes itself (which closes every control connection) follows
/// the new image on from the last line it printed: none twice, none missed. One whose herd
/// vanished without stopping (killed) says so, and fails.
pub(super) fn show(args: &LogsArgs, connect: Connect<'_>) -> Result<(), Failure> {
    // A follower with no stdout would wait, maybe for hours, for a line it cannot write.
    if args.follow {
        super::stdout_open()
            .map_err(|e| Failure::Runtime(anyhow!("cannot write the lines out: {e}")))?;
    }
    let mut missed = Missed::default();
    let result = show_counting(args, connect, &mut missed);
    Missed::say(missed.rest());
    result
}

/// How many connections in a row herd may close without answering before a follower gives
/// up: each is one herd accepted and then closed, as an image about to re-execute does.
const MOST_UNANSWERED: u32 = 10;

/// [`show`], counting the lines missed in `missed`.
fn show_counting(
    args: &LogsArgs,
    connect: Connect<'_>,
    missed: &mut Missed,
) -> Result<(), Failure> {
    let mut cursor = Cursor::default();
    let mut client = connect().map_err(failure)?;
    // Once herd has answered the first request: a follower of a slot not in the pool is told,
    // unless stdout's reader is gone already (`herd logs -f --worker 3 | head -0`): the
    // follower ends without a line, and herd is not asked for its status for nothing.
    let mut unseen_slot = args.worker.filter(|_| args.follow);
    // Said once a follower that herd closed is answered again.
    let closed = std::cell::Cell::new(false);
    let mut unanswered = 0;
    let mut answered = || {
        if closed.take() {
            // Not eprintln!, which panics when stderr cannot be written (a full disk).
            crate::logging::line(
                "herd logs: herd closed the connection (a re-exec or a takeover?); following on",
            );
        }
        if let Some(slot) = unseen_slot.take().filter(|_| !super::stdout_gone()) {
            if let Some(why) = not_in_pool(slot, connect) {
                crate::logging::line(&format!(
                    "herd logs: slot {slot} is not in the pool ({why}): following it in case \
                     it starts"
                ));
            }
        }
    };
    loop {
        match follow_once(args, &mut client, &mut cursor, missed, &mut answered)? {
            // Nothing from a slot that is not in the pool: a typo, most likely. Not when no
            // line was asked for (`-n 0`): nothing is all there was to print, and herd is not
            // asked for its status for nothing.
            Ended::Done if !cursor.printed() && !args.follow && args.lines != Some(0) => {
                return match args
                    .worker
                    .and_then(|slot| Some((slot, not_in_pool(slot, connect)?)))
                {
                    Some((slot, why)) => Err(Failure::Runtime(anyhow!(
                        "no lines from slot {slot}, which is not in the pool ({why})"
                    ))),
                    None => Ok(()),
                };
            }
            Ended::Done => return Ok(()),
            Ended::Closed => unanswered = 0,
            Ended::Unanswered(e) => {
                unanswered += 1;
                if unanswered >= MOST_UNANSWERED {
                    return Err(failure(e));
                }
            }
        }
        // herd closed the connection without saying it stops: it re-executed itself and
        // comes back at the same address at once (the listening socket is the same), or it
        // vanished.
        closed.set(true);
        client = match connect() {
            Ok(client) => client,
            Err(e) => return gone(e).map_err(failure),
        };
    }
}

/// Which slots herd runs, if `slot` is not one of them (not below the pool's size, and no
/// worker, a stopping one included, is in it). `None` when it is one, or when herd's status
/// cannot be had (a hint only: it never fails the command).
fn not_in_pool(slot: usize, connect: Connect<'_>) -> Option<String> {
    let status: Status = call(connect, Command::Status, Some(QUICK)).ok()?;
    if slot < status.desired || status.workers.iter().any(|w| w.slot == slot) {
        return None;
    }
    Some(match status.desired {
        0 => "herd runs no worker now".to_string(),
        1 => "herd runs slot 0 only".to_string(),
        n => format!("herd runs slots 0 to {}", n - 1),
    })
}

/// How one connection's lines ended.
enum Ended {
    /// All asked for was printed, herd said it stops, or the reader of the output is gone.
    Done,
    /// herd closed the connection while following, without saying it stops.
    Closed,
    /// herd closed the connection (or reset it) before it answered a follower that connected
    /// again.
    Unanswered(ClientError),
}

/// One request and its lines, from where `cursor` stands; `answered` is called once herd
/// has answered.
fn follow_once(
    args: &LogsArgs,
    client: &mut Client,
    cursor: &mut Cursor,
    missed: &mut Missed,
    answered: &mut dyn FnMut(),
) -> Result<Ended, Failure> {
    let result: LogsResult = loop {
        match client.call(cursor.request(args), Some(QUICK)) {
            Ok(result) => break result,
            // Accepted by an image that then re-executed itself, or by one that vanished.
            Err(e @ (ClientError::Closed { .. } | ClientError::Io { .. })) if cursor.answered() => {
                return Ok(Ended::Unanswered(e))
            }
            // An older herd (a re-exec onto an older binary) takes no `after`: it is asked
            // again without, and lines older than the last printed are not printed again.
            Err(ClientError::Refused { error, .. })
                if error.code == ErrorCode::InvalidArgument && cursor.forget_number() => {}
            Err(e) => return Err(failure(e)),
        }
    };
    cursor.answer(result.last, result.pid);
    answered();
    let mut recent = result.lines;
    loop {
        if recent == 0 {
            cursor.caught_up();
            if !args.follow {
                return Ok(Ended::Done);
            }
        }
        // Following, herd may send nothing for hours: stdout's reader is looked at meanwhile,
        // so that `herd logs -f | head -1` ends when `head` does, not at the next line.
        let waiting = recent == 0 && args.follow;
        let timeout = Some(if waiting { READER_CHECK } else { QUICK });
        let line = match client.next_line(timeout) {
            Err(ClientError::Timeout { .. }) if waiting => match super::stdout_gone() {
                true => return Ok(Ended::Done),
                false => continue,
            },
            // Reset rather than closed: herd vanished, or re-executed itself (also amid the
            // lines it had to send: the cursor asks again from the last one printed).
            Err(ClientError::Io { .. }) if args.follow => return Ok(Ended::Closed),
            line => line.map_err(failure)?,
        };
        let Some(line) = line else {
            return match args.follow {
                true => Ok(Ended::Closed),
                false => Err(Failure::Runtime(anyhow!(
                    "herd closed the connection with {recent} lines still to send"
                ))),
            };
        };
        let frame: LogFrame = crate::control::objects::from_slice(&line).map_err(|e| {
            Failure::Runtime(anyhow!("herd sent a line that is not a log line: {e}"))
        })?;
        if let Some(count) = frame.missed {
            Missed::say(missed.add(count, Instant::now()));
        }
        if frame.stopped {
            return Ok(Ended::Done);
        }
        let Some(line) = frame.line else { continue };
        recent = recent.saturating_sub(1);
        if !cursor.line(frame.seq, &line.time) {
            continue;
        }
        if !print(&line, args.json)? {
            return Ok(Ended::Done);
        }
    }
}

/// The lines a follower missed, said at most once per [`Missed::EVERY`]: herd tells each
/// gap, and a flood makes one every few lines.
#[derive(Debug, Default)]
struct Missed {
    /// Missed and not said yet.
    count: u64,
    /// When they were last said.
    said: Option<Instant>,
}

impl Missed {
    /// The shortest time between two lines that say how many were missed.
    const EVERY: Duration = Duration::from_secs(1);

    /// Counts `count` more lines missed at `now`: how many to say now, if it is time.
    fn add(&mut self, count: u64, now: Instant) -> Option<u64> {
        self.count = self.count.saturating_add(count);
        if self
            .said
            .is_some_and(|said| now.duration_since(said) < Self::EVERY)
        {
            return None;
        }
        self.said = Some(now);
        self.rest()
    }

    /// The lines missed and not said yet, if any.
    fn rest(&mut self) -> Option<u64> {
        Some(std::mem::take(&mut self.count)).filter(|&n| n > 0)
    }

    /// Says that `count` lines were missed, if any.
    fn say(count: Option<u64>) {
        if let Some(count) = count {
            let lines = match count {
                1 => "1 line was".to_string(),
                n => format!("{n} lines were"),
            };
            crate::logging::line(&format!(
                "herd logs: {lines} missed: herd no longer kept them when herd logs asked \
                 (they came faster than it read them, or while it connected again)"
            ));
        }
    }
}

/// Prints one line where the worker wrote it (stdout or stderr), or as JSON on stdout;
/// `false` once the reader is gone (`herd logs | head`).
fn print(line: &LogLine, json: bool) -> Result<bool, Failure> {
    let text = match json {
        true => format!("{}\n", serde_json::to_string(line).unwrap_or_default()),
        false => {
            let writer = Writer {
                slot: line.worker,
                pid: line.pid,
                generation: line.generation,
            };
            prefixed(&writer, line.split, &line.line)
        }
    };
    let written = match (json, line.stream.as_str()) {
        (false, "stderr") => std::io::stderr().lock().write_all(text.as_bytes()),
        _ => {
            let mut out = std::io::stdout().lock();
            super::stdout_open()
                .and_then(|()| out.write_all(text.as_bytes()))
                .and_then(|()| out.flush())
        }
    };
    match written {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(Failure::Runtime(anyhow!("cannot write the lines out: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missed_lines_are_said_at_most_once_a_second() {
        // A flood made herd send a gap every few lines, and each was a line on stderr: 5000
        // of them in three seconds.
        let start = Instant::now();
        let mut missed = Missed::default();
        assert_eq!(missed.add(3, start), Some(3));
        for i in 1..1000 {
            let now = start + Duration::from_millis(i);
            assert_eq!(missed.add(2, now), None, "{i}");
        }
        assert_eq!(missed.add(1, start + Missed::EVERY), Some(2 * 999 + 1));
        assert_eq!(missed.add(5, start + Missed::EVERY * 3 / 2), None);
        // What is left is said as the follower ends.
        assert_eq!(missed.rest(), Some(5));
        assert_eq!(missed.rest(), None);
    }
}
