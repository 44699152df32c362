//! The `logs` command, answered by the control server itself rather than the supervisor: the
//! workers' recent lines from [`crate::output`], then with `follow` every new line, until the
//! client closes the connection or herd ends: then every line its readers read is sent, and
//! a last frame that says herd stopped, or (taken over) the connection closes without one, and
//! the client follows on with the new herd ([`end_following`]).
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
use tokio::sync::{mpsc, Notify, Semaphore};

use super::lines::IDLE_TIMEOUT;
use super::protocol::{Command, ErrorCode, Response, VERSION};
use super::results::{LogFrame, LogsResult};
use crate::output::{self, Ending, Output, Record, Wanted};

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

/// The followers' connections still being served ([`Following`]).
static FOLLOWING: AtomicUsize = AtomicUsize::new(0);

/// Told when the last of [`FOLLOWING`] is done.
static NONE_FOLLOWING: Notify = Notify::const_new();

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
        after,
        of,
    } = command
    else {
        return None;
    };
    // Numbered by another herd (this one took over from it): none of its numbers are ours.
    let after = after.filter(|_| of.is_none_or(|pid| pid == std::process::id()));
    let wanted = Wanted { lines, slot, after };
    answer(read, write, wanted, follow, hung_up).await;
    Some(!follow)
}

/// Tells every follower how herd ends (`ending`), once herd's readers have read what the
/// workers wrote (up to `timeout`: [`Output::end`]), and waits up to `timeout` more for each
/// to have been sent its last lines (and, stopped, the frame that says so). Before herd closes
/// the connections, as it ends.
pub async fn end_following(timeout: Duration, ending: Ending) {
    let Some(output) = output::current() else {
        return;
    };
    // With no follower, nothing waits for the readers (a process a worker left may hold a
    // pipe): a stop is not held up for nobody.
    let timeout = match FOLLOWING.load(Ordering::SeqCst) {
        0 => Duration::ZERO,
        _ => timeout,
    };
    output.end(timeout, ending).await;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let gone = NONE_FOLLOWING.notified();
        tokio::pin!(gone);
        gone.as_mut().enable();
        if FOLLOWING.load(Ordering::SeqCst) == 0 {
            return;
        }
        if tokio::time::timeout_at(deadline, gone).await.is_err() {
            return;
        }
    }
}

/// A follower's connection being served, counted in [`FOLLOWING`] until dropped.
struct Following;

impl Following {
    fn start() -> Following {
        FOLLOWING.fetch_add(1, Ordering::SeqCst);
        Following
    }
}

impl Drop for Following {
    fn drop(&mut self) {
        if FOLLOWING.fetch_sub(1, Ordering::SeqCst) == 1 {
            NONE_FOLLOWING.notify_waiters();
        }
    }
}

/// Answers `logs` on a connection read by `read` and written by `write`: the answer
/// (`{"lines": N}`), then N [`LogFrame`]s, then with `follow` a frame per new line. Returns
/// when all is written (without `follow`), when the client is gone, or when herd stops.
async fn answer<W: AsyncWrite + Unpin>(
    read: &mut (impl AsyncRead + Unpin),
    write: &mut W,
    wanted: Wanted,
    follow: bool,
    hung_up: impl Fn(&W) -> bool,
) {
    let _following = follow.then(Following::start);
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
            produce(&output, wanted, follow, &chunks_tx)
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
/// new line, in chunks of about [`CHUNK`] bytes sent to `chunks`, until its receiver is gone
/// or, herd stopping, every line is sent and the frame that says so.
fn produce(output: &Output, wanted: Wanted, follow: bool, chunks: &mpsc::Sender<Vec<u8>>) {
    let (found, follower) = match follow {
        true => {
            let (found, follower) = output.recent_and_follow(wanted);
            (found, Some(follower))
        }
        false => (output.recent(wanted), None),
    };
    let mut chunk = Response::ok(LogsResult {
        lines: found.records.len(),
        last: Some(found.last),
        pid: Some(std::process::id()),
    })
    .to_line();
    if found.missed > 0 {
        chunk.extend(frame(Frame::Missed(found.missed)));
    }
    for record in &found.records {
        chunk.extend(frame(Frame::Line(record)));
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
    let wanted = |record: &Record| wanted.slot.is_none_or(|s| record.writer.slot == s);
    let mut chunk = Vec::new();
    // How herd ended ([`Output::ending`]), seen before a look for lines: when that look finds
    // none, every line is sent.
    let mut ended = None;
    loop {
        match follower.try_recv() {
            Ok(record) if wanted(&record) => chunk.extend(frame(Frame::Line(&record))),
            Ok(_) => {}
            Err(TryRecvError::Lagged(n)) => chunk.extend(frame(Frame::Missed(n))),
            Err(TryRecvError::Closed) => return,
            Err(TryRecvError::Empty) if ended.is_some() => {
                if ended == Some(Ending::Stopped) {
                    chunk.extend(frame(Frame::Stopped));
                }
                let _ = chunks.blocking_send(chunk);
                return;
            }
            Err(TryRecvError::Empty) => {
                if let Some(ending) = output.ending() {
                    ended = Some(ending);
                    continue;
                }
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

/// What a [`LogFrame`] carries.
enum Frame<'a> {
    /// A line.
    Line(&'a Record),
    /// How many lines the client missed.
    Missed(u64),
    /// herd stops: the last frame.
    Stopped,
}

/// One [`LogFrame`] line.
fn frame(frame: Frame<'_>) -> Vec<u8> {
    let mut sent = LogFrame {
        version: VERSION,
        seq: None,
        line: None,
        missed: None,
        stopped: false,
    };
    match frame {
        Frame::Line(record) => {
            sent.seq = Some(record.seq);
            sent.line = Some(record.to_log_line());
        }
        Frame::Missed(n) => sent.missed = Some(n),
        Frame::Stopped => sent.stopped = true,
    }
    let mut line = serde_json::to_vec(&sent).unwrap_or_default();
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
