//! The thread that reads one of a worker's outputs.

use std::io::{self, Read};
use std::time::SystemTime;

use super::lines::{Line, Lines};
use super::record::{Record, Stream, Writer};
use super::MAX_LINE;

/// The reader thread's stack: it holds one read buffer (on the heap) and little else.
const STACK: usize = 128 * 1024;

/// How much is read at once.
const CHUNK: usize = 64 * 1024;

/// Starts a thread that reads `pipe` to its end, handing each line to `take` as a record and
/// `None` once the stream has ended (or failed).
pub fn start(
    writer: Writer,
    stream: Stream,
    pipe: impl Read + Send + 'static,
    take: impl Fn(Option<Record>) + Send + 'static,
) -> io::Result<()> {
    let name = format!("herd-out-{}", writer.slot);
    std::thread::Builder::new()
        .name(name)
        .stack_size(STACK)
        .spawn(move || read(writer, stream, pipe, &take))
        .map(drop)
}

fn read(writer: Writer, stream: Stream, mut pipe: impl Read, take: &dyn Fn(Option<Record>)) {
    let mut lines = Lines::new(MAX_LINE);
    let mut emit = |line: Line| {
        take(Some(Record {
            writer,
            stream,
            text: String::from_utf8_lossy(&line.text).into_owned(),
            split: line.split,
            time: SystemTime::now(),
        }))
    };
    let mut buffer = vec![0; CHUNK];
    loop {
        match pipe.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => lines.push(&buffer[..n], &mut emit),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    lines.finish(&mut emit);
    take(None);
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    #[test]
    fn every_line_then_the_end_is_handed_on() {
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            slot: 3,
            pid: 7,
            generation: 2,
        };
        let input: &'static [u8] = b"one\ntwo\nthree";
        start(writer, Stream::Stderr, input, move |r| {
            let _ = tx.send(r);
        })
        .unwrap();
        let got: Vec<_> = rx.iter().collect();
        let texts: Vec<_> = got.iter().flatten().map(|r| r.text.as_str()).collect();
        assert_eq!(texts, ["one", "two", "three"]);
        assert!(got.last().unwrap().is_none());
        assert!(got
            .iter()
            .flatten()
            .all(|r| r.writer == writer && r.stream == Stream::Stderr));
    }
}
