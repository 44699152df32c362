//! Handing the workers' output pipes to herd's next image (a re-exec), and reading them again
//! if the exec fails. Nothing is lost on the way: each reader stops before it reads more, so
//! what the workers wrote meanwhile waits in the pipes for the next image; what the readers
//! took is written out first; a line cut by the hand-over is passed on marked `split`.

use std::fs::File;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::pipe::Wake;
use super::reader::Source;
use super::{lock, Output, Pipe, Stream, Writer};
use crate::logging::LogEvent;

/// A worker's output pipe, handed over.
#[derive(Debug)]
pub struct Parked {
    /// Who writes to it.
    pub writer: Writer,
    /// Which of its outputs it is.
    pub stream: Stream,
    /// Its read end.
    pub file: File,
    /// The start of a character its reader cut a line before, for the next to read first.
    pub held: Vec<u8>,
}

impl Output {
    /// Whether the readers are to park their pipes.
    pub(super) fn handing_over(&self) -> bool {
        self.handing_over.load(Ordering::SeqCst)
    }

    /// What ends the readers' waits when they are to park their pipes.
    pub(super) fn wake(&self) -> &Wake {
        &self.wake
    }

    /// Keeps a reader's pipe for [`hand_over`](Self::hand_over); the reader is done.
    pub(super) fn park(&self, source: Source) {
        lock(&self.parked).push(source);
        self.reader_done();
    }

    /// Stops every reader before it reads more, waits up to `timeout` for them, and gives
    /// what they passed on the rest of `timeout` to be written out; the pipes, to hand over.
    pub fn hand_over(&self, timeout: Duration) -> Vec<Parked> {
        let deadline = Instant::now() + timeout;
        self.handing_over.store(true, Ordering::SeqCst);
        self.wake.set();
        let left = self.wait_readers(deadline);
        if left > 0 {
            tracing::warn!(
                event = LogEvent::WorkerOutputDropped.as_str(),
                readers = left,
                "{left} readers of worker output did not stop in time: what they hold is lost"
            );
        }
        let rest = deadline.saturating_duration_since(Instant::now());
        self.stdout.flush(rest);
        self.stderr.flush(rest);
        let parked = std::mem::take(&mut *lock(&self.parked));
        parked
            .into_iter()
            .map(|s| Parked {
                writer: s.writer,
                stream: s.stream,
                file: s.pipe.into_file(),
                held: s.held,
            })
            .collect()
    }

    /// Reads `parked` pipes again: the exec failed, or this is the next image.
    pub fn resume(self: &Arc<Self>, parked: Vec<Parked>) {
        self.handing_over.store(false, Ordering::SeqCst);
        self.wake.reset();
        for p in parked {
            self.capture_or_say(p.writer, p.stream, Pipe::from(p.file), p.held);
        }
    }
}
