//! The hub with real pipes and reader threads: lines pass whole, a hand-over parks the pipes
//! with nothing lost, reading resumes where it stopped, and the end comes after the last line.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;

/// A writer whose bytes the test reads back.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Shared {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

const WRITER: Writer = Writer {
    slot: 1,
    pid: 42,
    generation: 3,
};

fn output() -> (Arc<Output>, Shared) {
    let out = Shared::default();
    let output = Output::start_to(Format::Prefix, out.clone(), Shared::default()).unwrap();
    (output, out)
}

#[test]
fn lines_pass_whole_and_the_last_one_is_kept_at_the_end() {
    let (output, out) = output();
    let (read, mut write) = io::pipe().unwrap();
    output
        .capture(WRITER, Stream::Stdout, Pipe::from(read))
        .unwrap();
    write.write_all(b"one\ntw").unwrap();
    write.write_all(b"o\nlast").unwrap();
    drop(write);
    output.finish(Duration::from_secs(10));
    assert_eq!(
        out.text(),
        "[worker 1 pid 42 gen 3] one\n[worker 1 pid 42 gen 3] two\n[worker 1 pid 42 gen 3] last\n"
    );
    assert_eq!(
        output
            .recent(Wanted {
                slot: Some(1),
                ..Wanted::default()
            })
            .records
            .len(),
        3
    );
}

// Only Unix hands its pipes over (a re-exec): Windows readers block in `read`.
#[cfg(unix)]
#[test]
fn a_hand_over_parks_the_pipe_and_reading_resumes_with_nothing_lost() {
    let (output, out) = output();
    let (read, mut write) = io::pipe().unwrap();
    output
        .capture(WRITER, Stream::Stdout, Pipe::from(read))
        .unwrap();
    write.write_all(b"before\nhal").unwrap();
    // The reader has taken "before" once it is kept.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while output.recent(Wanted::default()).records.is_empty()
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    let parked = output.hand_over(Duration::from_secs(10));
    assert_eq!(parked.len(), 1);
    assert_eq!(
        (parked[0].writer, parked[0].stream),
        (WRITER, Stream::Stdout)
    );
    // Written while nobody reads: it waits in the pipe.
    write.write_all(b"f\nafter\n").unwrap();
    output.resume(parked);
    drop(write);
    output.finish(Duration::from_secs(10));
    assert_eq!(
        out.text(),
        "[worker 1 pid 42 gen 3] before\n[worker 1 pid 42 gen 3 split] hal\n\
         [worker 1 pid 42 gen 3] f\n[worker 1 pid 42 gen 3] after\n"
    );
}

/// A worker's unfinished last line, its pipe still held by a process it left behind: passed
/// on alone once herd reaps the worker, not glued to what that process writes next.
#[cfg(unix)]
#[test]
fn a_last_line_without_a_newline_is_passed_on_when_its_worker_exits() {
    let (output, out) = output();
    let (read, mut write) = io::pipe().unwrap();
    output
        .capture(WRITER, Stream::Stdout, Pipe::from(read))
        .unwrap();
    write.write_all(b"first\nlast words").unwrap();
    output.exited(WRITER.pid);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while output.recent(Wanted::default()).records.len() < 2 && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    // The process left behind, which holds the pipe, writes on.
    write.write_all(b"left behind\n").unwrap();
    drop(write);
    output.finish(Duration::from_secs(10));
    assert_eq!(
        out.text(),
        "[worker 1 pid 42 gen 3] first\n[worker 1 pid 42 gen 3] last words\n\
         [worker 1 pid 42 gen 3] left behind\n"
    );
}

/// Followers are told that herd ended only once the readers passed on what the workers wrote
/// last, an unfinished line included: a follower that then finds no line has every line.
#[tokio::test]
async fn the_end_comes_after_the_last_line_read() {
    let (output, _) = output();
    let (_, mut follower) = output.recent_and_follow(Wanted::default());
    let (read, mut write) = io::pipe().unwrap();
    output
        .capture(WRITER, Stream::Stdout, Pipe::from(read))
        .unwrap();
    write.write_all(b"one\nlast words").unwrap();
    drop(write);
    output.end(Duration::from_secs(10), Ending::Stopped).await;
    assert_eq!(output.ending(), Some(Ending::Stopped));
    let mut texts = Vec::new();
    while let Ok(record) = follower.try_recv() {
        texts.push((record.seq, record.text.clone()));
    }
    assert_eq!(
        texts,
        [(1, "one".to_string()), (2, "last words".to_string())]
    );
}

/// A reader whose pipe a process left behind holds open does not hold the end back for good.
#[tokio::test]
async fn the_end_waits_for_the_readers_no_longer_than_asked() {
    let (output, _) = output();
    let (read, _write) = io::pipe().unwrap();
    output
        .capture(WRITER, Stream::Stdout, Pipe::from(read))
        .unwrap();
    output
        .end(Duration::from_millis(50), Ending::TakenOver)
        .await;
    assert_eq!(output.ending(), Some(Ending::TakenOver));
}
