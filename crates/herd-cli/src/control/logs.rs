//! The `logs` command, answered by the control server itself rather than the supervisor: the
//! workers' recent lines from [`crate::output`], then with `follow` every new line, until the
//! client closes the connection.
//!
//! The control server runs on the supervisor's thread, so the lines are turned into JSON on a
//! thread of their own ([`produce`]) and only written out here: a client asking for 10 000
//! lines, or following a flood, costs the supervisor a write per 64 KiB. At most
//! [`MAX_FOLLOWERS`] clients follow at once, and [`MAX_READERS`] others are read at once. Where
//! no thread can start (a process limit), the client is told so in one line.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::broadcast::error::TryRecvError;
use tokio::sync::{mpsc, Semaphore};

use super::lines::IDLE_TIMEOUT;
use super::protocol::{Command, ErrorCode, Response, VERSION};
use super::results::{LogFrame, LogsResult};
use crate::output::{self, Output, Record};

/// How many clients may follow the lines at once: each holds a thread while it follows.
pub const MAX_FOLLOWERS: usize = 8;

/// How many bytes of lines go to the client in one write.
const CHUNK: usize = 64 * 1024;

/// How often a follower's thread looks for new lines, and whether its client is gone, when
/// none came.
const FOLLOW_EVERY: Duration = Duration::from_millis(50);

/// The clients following now.
static FOLLOWERS: AtomicUsize = AtomicUsize::new(0);

/// How many clients that do not follow have their lines read at once, each on a thread of its
/// own; more wait their turn.
const MAX_READERS: usize = 32;

/// The turns of the clients that do not follow.
static READERS: Semaphore = Semaphore::const_new(MAX_READERS);

/// Answers `command` if it is `logs` (the control servers' hook, before a request goes to
/// the supervisor): `None` if it is not, else whether the connection takes more requests
/// (not after `follow`, which ends with it). `hung_up` tells, asked of `write`, whether a
/// follower whose connection reads as ended has gone, or only shut down its writing side and
/// still reads.
pub async fn serve<W: AsyncWrite + Unpin>(
    command: &Command,
    read: &mut (impl AsyncRead + Unpin),
    write: &mut W,
    hung_up: impl Fn(&W) -> bool,
) -> Option<bool> {
    let &Command::Logs {
        slot,
        lines,
        follow,
    } = command
    else {
        return None;
    };
    answer(read, write, slot, lines, follow, hung_up).await;
    Some(!follow)
}

/// Answers `logs` on a connection read by `read` and written by `write`: the answer
/// (`{"lines": N}`), then N [`LogFrame`]s, then with `follow` a frame per new line. Returns
/// when all is written (without `follow`) or when the client is gone.
async fn answer<W: AsyncWrite + Unpin>(
    read: &mut (impl AsyncRead + Unpin),
    write: &mut W,
    slot: Option<usize>,
    lines: Option<usize>,
    follow: bool,
    hung_up: impl Fn(&W) -> bool,
) {
    let Some(output) = output::current() else {
        let refusal: Response = Response::error(
            ErrorCode::Unavailable,
            "herd does not keep its workers' output: start it with --worker-output prefix \
             (or json) to use herd logs",
        );
        let _ = send(write, &refusal.to_line()).await;
        return;
    };
    let seat = match follow {
        true => {
            match Seat::take() {
                Some(seat) => Some(seat),
                None => {
                    let busy: Response = Response::error(
                    ErrorCode::Busy,
                    format!("{MAX_FOLLOWERS} clients already follow the lines (herd logs -f): stop one"),
                );
                    let _ = send(write, &busy.to_line()).await;
                    return;
                }
            }
        }
        false => None,
    };
    // A follower holds its seat; any other client waits for a reader's turn.
    let turn = match seat {
        Some(_) => None,
        None => READERS.acquire().await.ok(),
    };
    let (chunks_tx, mut chunks) = mpsc::channel(4);
    let output = Arc::clone(output);
    let reader = std::thread::Builder::new()
        .name("herd-logs".to_string())
        .spawn(move || {
            let _held = (seat, turn);
            produce(&output, slot, lines, follow, &chunks_tx)
        });
    if let Err(e) = reader {
        let refusal: Response = Response::error(
            ErrorCode::Unavailable,
            format!(
                "herd cannot start a thread to read the lines: {e}; try again once it runs \
                 fewer (a process limit is reached: ulimit -u, or a pids cgroup's pids.max)"
            ),
        );
        let _ = send(write, &refusal.to_line()).await;
        return;
    }
    let mut probe = [0u8; 64];
    // Whether the follower's connection may still be read: a follower sends nothing more, so
    // anything means it is gone, and so does the end unless it only shut down its writing
    // side (`shutdown(SHUT_WR)`, as `nc -N` does): it is then looked at every FOLLOW_EVERY.
    let mut reading = follow;
    loop {
        let chunk = tokio::select! {
            chunk = chunks.recv() => chunk,
            read = read.read(&mut probe), if reading => match read {
                Ok(0) if !hung_up(write) => {
                    reading = false;
                    continue;
                }
                _ => None,
            },
            () = tokio::time::sleep(FOLLOW_EVERY), if follow && !reading => match hung_up(write) {
                true => None,
                false => continue,
            },
        };
        match chunk {
            Some(chunk) if send(write, &chunk).await => {}
            _ => return,
        }
    }
}

/// A place among the [`MAX_FOLLOWERS`], given back when dropped.
struct Seat;

impl Seat {
    fn take() -> Option<Seat> {
        let taken = FOLLOWERS.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
            (n < MAX_FOLLOWERS).then_some(n + 1)
        });
        taken.ok().map(|_| Seat)
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        FOLLOWERS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// On a thread of its own: the answer and the recent lines as frames, then with `follow` every
/// new line, in chunks of about [`CHUNK`] bytes sent to `chunks`, until its receiver is gone.
fn produce(
    output: &Output,
    slot: Option<usize>,
    lines: Option<usize>,
    follow: bool,
    chunks: &mpsc::Sender<Vec<u8>>,
) {
    let (recent, follower) = match follow {
        true => {
            let (recent, follower) = output.recent_and_follow(lines, slot);
            (recent, Some(follower))
        }
        false => (output.recent(lines, slot), None),
    };
    let mut chunk = Response::ok(LogsResult {
        lines: recent.len(),
    })
    .to_line();
    for record in &recent {
        chunk.extend(frame(Some(record), None));
        if chunk.len() >= CHUNK && chunks.blocking_send(std::mem::take(&mut chunk)).is_err() {
            return;
        }
    }
    if chunks.blocking_send(chunk).is_err() {
        return;
    }
    let Some(mut follower) = follower else {
        return;
    };
    let wanted = |record: &Record| slot.is_none_or(|s| record.writer.slot == s);
    let mut chunk = Vec::new();
    loop {
        match follower.try_recv() {
            Ok(record) if wanted(&record) => chunk.extend(frame(Some(&record), None)),
            Ok(_) => {}
            Err(TryRecvError::Lagged(n)) => chunk.extend(frame(None, Some(n))),
            Err(TryRecvError::Closed) => return,
            Err(TryRecvError::Empty) => {
                if chunks.is_closed() {
                    return;
                }
                if chunk.is_empty() {
                    std::thread::sleep(FOLLOW_EVERY);
                    continue;
                }
            }
        }
        let full = chunk.len() >= CHUNK;
        let idle = follower.is_empty();
        if (full || idle)
            && !chunk.is_empty()
            && chunks.blocking_send(std::mem::take(&mut chunk)).is_err()
        {
            return;
        }
    }
}

/// One [`LogFrame`] line.
fn frame(record: Option<&Arc<Record>>, missed: Option<u64>) -> Vec<u8> {
    let frame = LogFrame {
        version: VERSION,
        line: record.map(|r| r.to_log_line()),
        missed,
    };
    let mut line = serde_json::to_vec(&frame).unwrap_or_default();
    line.push(b'\n');
    line
}

/// Writes `line`; whether the client took it in time.
async fn send(write: &mut (impl AsyncWrite + Unpin), line: &[u8]) -> bool {
    matches!(
        tokio::time::timeout(IDLE_TIMEOUT, write.write_all(line)).await,
        Ok(Ok(()))
    )
}
