//! Worker output (`--worker-output prefix|json`): herd reads each worker's stdout and stderr
//! through pipes and writes whole lines to its own, each saying which worker wrote it.
//!
//! Reading happens on a thread per stream, never on the supervisor's loop, and never waits
//! for anyone: each line goes to a bounded, lossy queue in front of herd's stdout or stderr
//! ([`crate::logging::Sink`], one writer per stream, so lines never interleave mid-line) and
//! to a ring buffer of recent lines for `herd logs`. A worker that writes faster than herd's
//! own output is read loses lines (counted, reported, in the metrics) instead of blocking;
//! a line longer than [`MAX_LINE`] is cut into parts marked `split`; what a worker wrote just
//! before it exited is read to the end. Each line kept is numbered: a follower asks for the
//! lines after the last one it saw, and a re-exec hands the kept lines to the next image.

mod handover;
mod kept;
mod lines;
mod pipe;
mod reader;
mod recent;
mod record;

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, Notify};

use crate::cli::WorkerOutput;
use crate::exit::Failure;
use crate::logging::{LogEvent, Sink};
pub use handover::Parked;
pub use kept::{SavedLine, SavedLines};
pub use pipe::Pipe;
use pipe::Wake;
use reader::Source;
use recent::Recent;
pub use recent::{Found, Wanted};
pub use record::{prefixed, Record, Stream, Writer};

/// The longest line passed on whole, in bytes; longer ones are cut into parts.
pub const MAX_LINE: usize = 16 * 1024;

/// The most bytes of lines waiting for each of herd's outputs; more are dropped and counted.
const QUEUE_BYTES: usize = 4 << 20;

/// What `herd logs` can show: the last lines, up to this many...
const RECENT_LINES: usize = 10_000;
/// ...and about this many bytes.
const RECENT_BYTES: usize = 8 << 20;

/// How many lines a `herd logs -f` client may fall behind before it misses some.
const FOLLOW_BACKLOG: usize = 1024;

/// How long herd waits, when it exits, for its workers' last lines.
const FINISH_TIMEOUT: Duration = Duration::from_secs(1);

/// How often lost lines are reported, at most.
const REPORT_EVERY: Duration = Duration::from_secs(10);

/// The losses [`Output::report_losses`] has reported: how many, and when last.
#[derive(Default)]
struct Reported {
    lost: u64,
    at: Option<Instant>,
}

/// How each line is written out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `[worker 2 pid 4242 gen 1] text`.
    Prefix,
    /// One JSON object per line.
    Json,
}

/// The worker output of one herd: where lines go and what is kept of them.
pub struct Output {
    format: Format,
    stdout: Sink,
    stderr: Sink,
    recent: Mutex<Recent>,
    followers: broadcast::Sender<Arc<Record>>,
    /// The losses reported so far.
    reported: Mutex<Reported>,
    /// Streams still being read.
    readers: Mutex<usize>,
    /// Signalled when a stream has been read to its end, or its reader parked.
    read_out: Condvar,
    /// The same, for [`Output::end`].
    read_out_async: Notify,
    /// Set while the pipes are handed to a new image: readers park them.
    handing_over: AtomicBool,
    /// The pipes the readers parked.
    parked: Mutex<Vec<Source>>,
    /// Ends the readers' waits for a hand-over.
    wake: Wake,
    /// By writer's pid, what its readers look at to learn it has exited.
    exits: Mutex<HashMap<u32, Arc<AtomicBool>>>,
    /// How herd ended, once it has and its readers are done: followers get no line after
    /// those sent.
    ending: OnceLock<Ending>,
}

/// How herd ends, as its followers are told ([`Output::end`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// It stops: a follower is told so, and ends.
    Stopped,
    /// Another herd took over: a follower's connection closes without a word, and it follows
    /// on with the new herd.
    TakenOver,
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Output")
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

impl Output {
    /// Starts the writers of herd's stdout and stderr.
    pub fn start(format: Format) -> io::Result<Arc<Output>> {
        Output::start_to(format, io::stdout(), io::stderr())
    }

    /// Starts the writers of `stdout` and `stderr`.
    fn start_to(
        format: Format,
        stdout: impl io::Write + Send + 'static,
        stderr: impl io::Write + Send + 'static,
    ) -> io::Result<Arc<Output>> {
        // Losses are reported by [`Output::take`], once per interval, even while the
        // writer is stuck.
        let report = || -> crate::logging::Report { Box::new(|_| {}) };
        Ok(Arc::new(Output {
            format,
            stdout: Sink::start(stdout, QUEUE_BYTES, report())?,
            stderr: Sink::start(stderr, QUEUE_BYTES, report())?,
            reported: Mutex::new(Reported::default()),
            recent: Mutex::new(Recent::new(RECENT_LINES, RECENT_BYTES)),
            followers: broadcast::channel(FOLLOW_BACKLOG).0,
            readers: Mutex::new(0),
            read_out: Condvar::new(),
            read_out_async: Notify::new(),
            handing_over: AtomicBool::new(false),
            parked: Mutex::new(Vec::new()),
            wake: Wake::new()?,
            exits: Mutex::new(HashMap::new()),
            ending: OnceLock::new(),
        }))
    }

    /// Reads `pipe` (a worker's `stream`) on a thread of its own until its end.
    pub fn capture(self: &Arc<Self>, writer: Writer, stream: Stream, pipe: Pipe) -> io::Result<()> {
        self.capture_held(writer, stream, pipe, Vec::new())
    }

    /// [`capture`](Self::capture), reading `held` first: the start of a character herd's
    /// previous image cut a line before.
    fn capture_held(
        self: &Arc<Self>,
        writer: Writer,
        stream: Stream,
        pipe: Pipe,
        held: Vec<u8>,
    ) -> io::Result<()> {
        *self.lock_readers() += 1;
        let exited = Arc::clone(lock(&self.exits).entry(writer.pid).or_default());
        let source = Source {
            writer,
            stream,
            pipe,
            exited,
            held,
        };
        let started = reader::start(Arc::clone(self), source);
        if started.is_err() {
            self.reader_done();
        }
        started
    }

    /// Tells the readers of `pid` that herd has reaped it: an unfinished line it left is
    /// passed on as its last, once what is in the pipe is read.
    pub fn exited(&self, pid: u32) {
        if let Some(exited) = lock(&self.exits).remove(&pid) {
            exited.store(true, Ordering::Release);
        }
    }

    /// A reader of `pid` ended: the last one forgets its exit flag (`exited`).
    fn forget_exit(&self, pid: u32, exited: &Arc<AtomicBool>) {
        let mut exits = lock(&self.exits);
        // Held by the map, this reader and no other reader.
        let last = Arc::strong_count(exited) <= 2;
        if last && exits.get(&pid).is_some_and(|e| Arc::ptr_eq(e, exited)) {
            exits.remove(&pid);
        }
    }

    /// Reads a worker's `stdout` and `stderr` pipes. A stream no thread can read is closed
    /// (the worker's writes to it fail) and said so in the log.
    pub fn capture_both(self: &Arc<Self>, writer: Writer, stdout: Pipe, stderr: Pipe) {
        self.capture_or_say(writer, Stream::Stdout, stdout, Vec::new());
        self.capture_or_say(writer, Stream::Stderr, stderr, Vec::new());
    }

    /// [`capture`](Self::capture), or a line in the log that says the stream is lost.
    fn capture_or_say(self: &Arc<Self>, writer: Writer, stream: Stream, pipe: Pipe, held: Vec<u8>) {
        if let Err(e) = self.capture_held(writer, stream, pipe, held) {
            tracing::error!(
                event = LogEvent::WorkerOutputDropped.as_str(),
                worker = writer.slot,
                pid = writer.pid,
                "cannot read the {} of worker {} (pid {}): {e}; what it writes there is lost",
                stream.name(),
                writer.slot,
                writer.pid
            );
        }
    }

    /// Passes one line on, keeps it for `herd logs` and sends it to the followers.
    fn take(&self, record: Record) {
        let line = match self.format {
            Format::Prefix => record.prefixed(),
            Format::Json => record.json(),
        };
        match record.stream {
            Stream::Stdout => self.stdout.push(line.as_bytes()),
            Stream::Stderr => self.stderr.push(line.as_bytes()),
        }
        self.report_losses();
        let mut recent = lock(&self.recent);
        let record = recent.push(record);
        // Sent with the lock held, so that a new follower sees each line once
        // ([`Output::recent_and_follow`]). No follower is no error.
        let _ = self.followers.send(record);
    }

    /// Says in the log how many lines were lost since the last report, at most once per
    /// [`REPORT_EVERY`].
    fn report_losses(&self) {
        let lost = self.lost();
        let mut reported = lock(&self.reported);
        let now = Instant::now();
        if lost == reported.lost || reported.at.is_some_and(|at| now < at + REPORT_EVERY) {
            return;
        }
        let n = lost - reported.lost;
        *reported = Reported {
            lost,
            at: Some(now),
        };
        drop(reported);
        tracing::warn!(
            event = LogEvent::WorkerOutputDropped.as_str(),
            lost = n,
            total = lost,
            "{} of worker output {} lost ({lost} in all): herd's stdout or stderr is not \
             written as fast as the workers write (its reader is slow or gone, or its disk is \
             full); the workers are not slowed down",
            match n {
                1 => "1 line".to_string(),
                n => format!("{n} lines"),
            },
            if n == 1 { "was" } else { "were" }
        );
    }

    /// The kept lines `wanted` asks for.
    pub fn recent(&self, wanted: Wanted) -> Found {
        lock(&self.recent).find(wanted)
    }

    /// [`recent`](Self::recent), and every line after those (of every worker: filter them),
    /// none twice and none missed; a receiver that falls [`FOLLOW_BACKLOG`] lines behind
    /// learns how many it missed.
    pub fn recent_and_follow(&self, wanted: Wanted) -> (Found, broadcast::Receiver<Arc<Record>>) {
        let recent = lock(&self.recent);
        (recent.find(wanted), self.followers.subscribe())
    }

    /// Waits up to `timeout` for the streams to be read to their ends, then tells the
    /// followers that no line comes after those sent ([`ending`](Self::ending)), and how herd
    /// ends: its workers are gone. Async: the loop that waits writes to the followers meanwhile.
    pub async fn end(&self, timeout: Duration, ending: Ending) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let read_out = self.read_out_async.notified();
            tokio::pin!(read_out);
            read_out.as_mut().enable();
            if *self.lock_readers() == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, read_out).await.is_err() {
                break;
            }
        }
        let _ = self.ending.set(ending);
    }

    /// How herd ended, once it has ([`end`](Self::end)): a follower that finds no line once
    /// this is known has every line.
    pub fn ending(&self) -> Option<Ending> {
        self.ending.get().copied()
    }

    /// Lines lost so far: dropped in front of herd's stdout or stderr, or failed to write.
    pub fn lost(&self) -> u64 {
        self.stdout.lost() + self.stderr.lost()
    }

    /// Waits up to `timeout` for the streams to be read to their ends (the workers are gone)
    /// and for their lines to be written: before herd exits.
    pub fn finish(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        self.wait_readers(deadline);
        let left = deadline.saturating_duration_since(Instant::now());
        self.stdout.flush(left);
        self.stderr.flush(left);
    }

    /// Waits until no reader is left, or `deadline`; how many are left.
    fn wait_readers(&self, deadline: Instant) -> usize {
        let mut readers = self.lock_readers();
        while *readers > 0 {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break;
            };
            readers = match self.read_out.wait_timeout(readers, left) {
                Ok((readers, _)) => readers,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        *readers
    }

    fn reader_done(&self) {
        let mut readers = self.lock_readers();
        *readers = readers.saturating_sub(1);
        self.read_out.notify_all();
        self.read_out_async.notify_waiters();
    }

    fn lock_readers(&self) -> MutexGuard<'_, usize> {
        lock(&self.readers)
    }
}

static CURRENT: OnceLock<Arc<Output>> = OnceLock::new();

/// Starts herd's worker output in `format` (once: later calls get the first one).
pub fn install(format: Format) -> io::Result<Arc<Output>> {
    if let Some(output) = CURRENT.get() {
        return Ok(Arc::clone(output));
    }
    let output = Output::start(format)?;
    Ok(Arc::clone(CURRENT.get_or_init(|| output)))
}

/// Starts capturing the workers' output as `mode` asks (nothing for `inherit`).
pub fn start_for(mode: WorkerOutput) -> Result<Option<Arc<Output>>, Failure> {
    let format = match mode {
        WorkerOutput::Inherit => return Ok(None),
        WorkerOutput::Prefix => Format::Prefix,
        WorkerOutput::Json => Format::Json,
    };
    install(format).map(Some).map_err(|e| {
        Failure::Runtime(anyhow::anyhow!(
            "cannot start reading the workers' output: {e}"
        ))
    })
}

/// Gives the workers' last lines a bounded time to be read and written out: before herd
/// exits.
pub fn finish() {
    if let Some(output) = current() {
        output.finish(FINISH_TIMEOUT);
    }
}

/// Tells the output that herd reaped worker `pid` ([`Output::exited`]).
pub fn worker_exited(pid: u32) {
    if let Some(output) = current() {
        output.exited(pid);
    }
}

/// Lines of worker output lost so far (0 when herd does not capture it).
pub fn lines_dropped() -> u64 {
    current().map_or(0, |output| output.lost())
}

/// The worker output, if herd captures it (`--worker-output prefix|json`).
pub fn current() -> Option<&'static Arc<Output>> {
    CURRENT.get()
}

/// Nothing panics while these locks are held; if something did, what they guard is sound.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests;
