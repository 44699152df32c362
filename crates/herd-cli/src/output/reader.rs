//! The thread that reads one of a worker's outputs.

use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::lines::{Line, Lines};
use super::pipe::Pipe;
use super::record::{Record, Stream, Writer};
use super::{Output, MAX_LINE};

/// The reader thread's stack: it holds one read buffer (on the heap) and little else.
const STACK: usize = 128 * 1024;

/// How much is read at once.
const CHUNK: usize = 64 * 1024;

/// How soon a reader holding an unfinished line first looks whether its worker has exited;
/// each look that finds nothing doubles the wait, up to [`EXIT_LOOK_MOST`]: a worker whose
/// buffered output ends mid-line can stay so for hours, and thousands of them must not keep
/// herd busy.
const EXIT_LOOK: Duration = Duration::from_millis(100);

/// The longest wait between two looks whether a worker holding an unfinished line exited.
const EXIT_LOOK_MOST: Duration = Duration::from_secs(5);

/// The most reads that finish a line of a worker that exited, before the rest is taken for
/// another writer's: a process it left behind can keep writing for ever.
const LAST_READS: usize = 16;

/// A stream being read: whose, which, and the pipe.
pub struct Source {
    /// Who writes to it.
    pub writer: Writer,
    /// Which of the writer's outputs it is.
    pub stream: Stream,
    /// Its read end.
    pub pipe: Pipe,
    /// Set when herd has reaped the writer: the pipe stays open while a process it started
    /// holds its end, and that process's output is no part of the writer's last line.
    pub exited: Arc<AtomicBool>,
    /// The start of a character that the reader before (herd's previous image) cut a line
    /// before, read first; what this reader holds back when it parks the pipe.
    pub held: Vec<u8>,
}

/// Starts a thread that reads `source` to its end, handing each line to `output`. When
/// `output` hands its pipes over (a re-exec), the thread stops before reading more, passes on
/// the line it holds the start of, and parks the pipe in `output`.
pub fn start(output: Arc<Output>, source: Source) -> io::Result<()> {
    let name = format!("herd-out-{}", source.writer.slot);
    std::thread::Builder::new()
        .name(name)
        .stack_size(STACK)
        .spawn(move || read(&output, source))
        .map(drop)
}

fn read(output: &Output, mut source: Source) {
    let (writer, stream) = (source.writer, source.stream);
    let mut lines = Lines::new(MAX_LINE);
    let held = std::mem::take(&mut source.held);
    let mut emit = |line: Line| {
        output.take(Record {
            writer,
            stream,
            text: String::from_utf8_lossy(&line.text).into_owned(),
            split: line.split,
            time: SystemTime::now(),
            seq: 0,
        })
    };
    lines.push(&held, &mut emit);
    let mut buffer = vec![0; CHUNK];
    let mut last_line_out = false;
    let mut look = EXIT_LOOK;
    loop {
        // An unfinished line of a worker that exited is its last: passed on once what it
        // wrote is read, rather than glued to what a process it left behind writes next.
        let holding = !last_line_out && lines.holding();
        if holding && source.exited.load(Ordering::Acquire) {
            last_line_out = true;
            for _ in 0..LAST_READS {
                if !source.pipe.ready_now() {
                    break;
                }
                match source.pipe.read(&mut buffer) {
                    Ok(n) if n > 0 => lines.push(&buffer[..n], &mut emit),
                    _ => break,
                }
            }
            lines.finish(&mut emit);
        }
        // Looked at after the wait, before the read: what is still in the pipe stays there
        // for the next image.
        let holding = !last_line_out && lines.holding();
        let ready = source.pipe.wait(output.wake(), holding.then_some(look));
        if output.handing_over() {
            source.held = lines.cut(&mut emit);
            return output.park(source);
        }
        match ready {
            Ok(false) => {
                look = (look * 2).min(EXIT_LOOK_MOST);
                continue;
            }
            Ok(true) => {}
            Err(_) => break,
        }
        match source.pipe.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                lines.push(&buffer[..n], &mut emit);
                look = EXIT_LOOK;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    lines.finish(&mut emit);
    output.forget_exit(source.writer.pid, &source.exited);
    output.reader_done();
}
