//! A bounded, lossy queue in front of a blocking writer (herd's stderr), drained by a thread of
//! its own, in the manner of `tracing-appender`'s non-blocking writer.
//!
//! [`Sink::push`] never blocks and never fails: when the queue is full (nobody reads the
//! pipe) the line is dropped and counted; when a write fails (the pipe is closed, the disk is
//! full) the line is counted as lost. Either way herd goes on. The first line that gets
//! through again is followed by a report of how many were lost, and [`Sink::lost`] is the
//! running total, for the metrics and `herd status`.
//!
//! Why not `tracing-appender` itself: it counts only the lines a full queue drops, not those a
//! write loses (a closed pipe), and it can flush only by shutting its writer down for good,
//! while herd flushes before a re-exec that may fail and leave it running.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Called by the writer thread, with nothing locked, when `n` lost lines are to be reported.
pub type Report = Box<dyn Fn(u64) + Send + Sync>;

/// The queue and its writer thread.
pub struct Sink {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when a line is queued.
    queued: Condvar,
    /// Signalled when the writer has written (or given up on) everything queued.
    drained: Condvar,
    /// Lines lost since the start: dropped on a full queue or failed to write.
    lost: AtomicU64,
    /// The most bytes the queue holds.
    capacity: usize,
    /// How many times a line woke the writer.
    #[cfg(test)]
    wakes: AtomicU64,
}

#[derive(Default)]
struct State {
    entries: VecDeque<Entry>,
    bytes: usize,
    /// Lines dropped since the last queued one, to report in their place.
    gap: u64,
    /// Whether the writer holds a line it has not finished writing.
    writing: bool,
    /// Whether the writer sleeps on `queued` and no line has woken it since: only then does
    /// a new line wake it (a wake-up is a system call, and on another CPU an interrupt).
    asleep: bool,
    /// How many [`Sink::flush`] calls wait on `drained`: the writer signals it only for them.
    flushing: usize,
}

enum Entry {
    Line(Vec<u8>),
    /// `n` lines were dropped here because the queue was full.
    Gap(u64),
}

/// The most bytes the writer passes to one `write`: lines that follow each other in the queue
/// go out together up to this size (a pipe's atomic write, `PIPE_BUF` on Linux, so that
/// another writer of the same pipe never cuts into them); a longer line goes alone.
const BATCH_BYTES: usize = 4096;

/// The longest line queued: a longer one (a huge command line or value in an error) is cut
/// to this size in its middle, where [`cut_mark`] stands for what was left out, rather than
/// dropped whole. Its start and its end are kept: an error says what is wrong after the value
/// it quotes.
pub const MAX_LINE: usize = 128 * 1024;

/// What stands in a line cut to [`MAX_LINE`] for the `left_out` bytes left out of its middle.
fn cut_mark(left_out: usize) -> String {
    format!(" [herd: {left_out} bytes cut] ")
}

/// `line` itself, or its start and its end with [`cut_mark`] between them, [`MAX_LINE`] bytes
/// at most. Each cut falls between UTF-8 characters and outside JSON's escapes (`\n`,
/// `\u001b`), so that a JSON line whose two cuts fall inside strings (those of a huge value)
/// stays valid JSON.
fn at_most_max(line: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if line.len() <= MAX_LINE {
        return std::borrow::Cow::Borrowed(line);
    }
    // The mark's length with the most digits a left-out count can have here.
    let room = MAX_LINE - cut_mark(line.len()).len();
    let splits = |i: usize| line.get(i).is_some_and(|b| b & 0xC0 == 0x80) || splits_escape(line, i);
    // Both cuts move outwards (the kept parts shrink) until they split nothing, by at most
    // MAX_SHIFT bytes: a character or an escape is shorter, and a line that splits everywhere
    // (a worker's `\u\u...` in text) is cut there anyway rather than emptied.
    const MAX_SHIFT: usize = 8;
    let mut head = room / 2;
    let lowest = head.saturating_sub(MAX_SHIFT);
    while head > lowest && splits(head) {
        head -= 1;
    }
    // The last byte (the newline) is kept whatever comes before it.
    let mut tail = line.len() - (room - room / 2);
    let highest = (tail + MAX_SHIFT).min(line.len() - 1);
    while tail < highest && splits(tail) {
        tail += 1;
    }
    let mut cut = line[..head].to_vec();
    cut.extend_from_slice(cut_mark(tail - head).as_bytes());
    cut.extend_from_slice(&line[tail..]);
    std::borrow::Cow::Owned(cut)
}

/// Whether a cut before `line[at]` would split a JSON escape (`\n`, `\"`, `\u001b`): a
/// backslash that starts one (not the second of `\\`) stands less than the escape's length
/// before `at`.
fn splits_escape(line: &[u8], at: usize) -> bool {
    (1..=5).filter_map(|back| at.checked_sub(back)).any(|i| {
        let backslashes = line[..=i].iter().rev().take_while(|&&b| b == b'\\').count();
        let len = match line.get(i + 1) {
            Some(b'u') => 6,
            _ => 2,
        };
        backslashes % 2 == 1 && i + len > at
    })
}

/// What the writer takes from the queue at once.
enum Batch {
    /// Whole lines, one after the other, and how many.
    Lines(Vec<u8>, u64),
    /// `n` lines were dropped here.
    Gap(u64),
}

impl Batch {
    /// `first` and the lines queued right after it, up to [`BATCH_BYTES`].
    fn take(state: &mut State, first: Vec<u8>) -> Batch {
        state.bytes -= first.len();
        let mut batch = first;
        let mut lines = 1;
        while let Some(Entry::Line(next)) = state.entries.front() {
            if batch.len() + next.len() > BATCH_BYTES {
                break;
            }
            batch.extend_from_slice(next);
            state.bytes -= next.len();
            lines += 1;
            state.entries.pop_front();
        }
        Batch::Lines(batch, lines)
    }
}

thread_local! {
    /// Set on a sink's writer thread: lines it logs itself (its reports) go first in line.
    static WRITER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl Sink {
    /// Starts a writer thread that writes each queued line to `out`, holding at most
    /// `capacity` bytes; `report` is called there with the number of lines just lost.
    pub fn start(
        out: impl Write + Send + 'static,
        capacity: usize,
        report: Report,
    ) -> io::Result<Sink> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            queued: Condvar::new(),
            drained: Condvar::new(),
            lost: AtomicU64::new(0),
            capacity,
            #[cfg(test)]
            wakes: AtomicU64::new(0),
        });
        let writer = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("herd-log".into())
            .spawn(move || writer.run(out, &report))?;
        Ok(Sink { shared })
    }

    /// Queues one line, cut to [`MAX_LINE`] (or drops and counts it if the queue is full).
    /// Never blocks on the writer.
    pub fn push(&self, line: &[u8]) {
        self.push_with(line, false);
    }

    /// Queues one line, cut to [`MAX_LINE`], even when the queue is full: herd's last words
    /// (its final error), which must not be the line dropped because the log before them
    /// filled the queue. Never blocks on the writer.
    pub fn push_always(&self, line: &[u8]) {
        self.push_with(line, true);
    }

    fn push_with(&self, line: &[u8], always: bool) {
        let line = at_most_max(line);
        let mut state = self.shared.lock();
        let front = WRITER.with(std::cell::Cell::get);
        if !front && !always && state.bytes + line.len() > self.shared.capacity {
            state.gap += 1;
            self.shared.lost.fetch_add(1, Ordering::Relaxed);
            return;
        }
        state.bytes += line.len();
        if front {
            state.entries.push_front(Entry::Line(line.to_vec()));
        } else {
            let gap = std::mem::take(&mut state.gap);
            if gap > 0 {
                state.entries.push_back(Entry::Gap(gap));
            }
            state.entries.push_back(Entry::Line(line.to_vec()));
        }
        let wake = std::mem::take(&mut state.asleep);
        drop(state);
        if wake {
            #[cfg(test)]
            self.shared.wakes.fetch_add(1, Ordering::Relaxed);
            self.shared.queued.notify_one();
        }
    }

    /// Waits until every queued line is written, or until `timeout` has passed (the reader
    /// is stuck); whether everything was written.
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        loop {
            if state.entries.is_empty() && !state.writing {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state.flushing += 1;
            state = match self.shared.drained.wait_timeout(state, deadline - now) {
                Ok((state, _)) => state,
                Err(poisoned) => poisoned.into_inner().0,
            };
            state.flushing -= 1;
        }
    }

    /// Lines lost since the start.
    pub fn lost(&self) -> u64 {
        self.shared.lost.load(Ordering::Relaxed)
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; if something did, the queue is still sound.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The writer thread: one line at a time, nothing locked while writing.
    fn run(&self, mut out: impl Write, report: &Report) {
        WRITER.with(|w| w.set(true));
        // Lines that failed to write since the last one that got through.
        let mut failed = 0u64;
        // Whether a failed write cut a line off mid-way: it is ended before the next line, so
        // that only the cut line is lost, not the one glued to it.
        let mut cut = false;
        loop {
            let entry = {
                let mut state = self.lock();
                state.writing = false;
                while state.entries.is_empty() {
                    if state.flushing > 0 {
                        self.drained.notify_all();
                    }
                    state.asleep = true;
                    state = match self.queued.wait(state) {
                        Ok(state) => state,
                        Err(poisoned) => poisoned.into_inner(),
                    };
                }
                state.asleep = false;
                state.writing = true;
                let entry = state.entries.pop_front();
                match entry {
                    Some(Entry::Line(line)) => Some(Batch::take(&mut state, line)),
                    Some(Entry::Gap(n)) => Some(Batch::Gap(n)),
                    None => None,
                }
            };
            match entry {
                Some(Batch::Gap(n)) => report(n),
                Some(Batch::Lines(line, lines)) => {
                    if cut && write_line(&mut out, b"\n").is_ok() {
                        cut = false;
                    }
                    // While the cut line cannot be ended, each line is lost whole.
                    let written = match cut {
                        true => Err(false),
                        false => write_line(&mut out, &line),
                    };
                    cut |= written == Err(true);
                    if written.is_ok() {
                        if failed > 0 {
                            report(std::mem::take(&mut failed));
                        }
                    } else {
                        failed += lines;
                        self.lost.fetch_add(lines, Ordering::Relaxed);
                    }
                }
                None => {}
            }
        }
    }
}

/// Writes all of `line`, waiting out `EINTR` and `EAGAIN` (a non-blocking stderr shared with
/// another process) as a blocking write would; any other error loses the line, and says
/// whether part of it was written (`Err(true)`: the output holds a line cut off).
fn write_line(out: &mut impl Write, line: &[u8]) -> Result<(), bool> {
    let mut rest = line;
    let cut = |rest: &[u8]| rest.len() < line.len();
    let mut pause = Duration::from_millis(1);
    while !rest.is_empty() {
        match out.write(rest) {
            Ok(0) => return Err(cut(rest)),
            Ok(n) => {
                rest = &rest[n..];
                pause = Duration::from_millis(1);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            Err(_) => return Err(cut(rest)),
        }
    }
    out.flush().map_err(|_| false)
}

#[cfg(test)]
mod tests;
