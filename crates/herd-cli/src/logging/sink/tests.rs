use super::*;

/// A pipe whose reader can go away (`closed`) or stop reading (`stuck`).
#[derive(Clone, Default)]
struct Pipe(Arc<(Mutex<PipeState>, Condvar)>);

#[derive(Default)]
struct PipeState {
    written: Vec<u8>,
    closed: bool,
    stuck: bool,
    /// Bytes it takes before it fails as a full disk does.
    room: Option<usize>,
}

impl Pipe {
    fn set(&self, change: impl FnOnce(&mut PipeState)) {
        change(&mut self.0 .0.lock().unwrap());
        self.0 .1.notify_all();
    }

    fn text(&self) -> String {
        String::from_utf8(self.0 .0.lock().unwrap().written.clone()).unwrap()
    }
}

impl Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut state = self.0 .0.lock().unwrap();
        while state.stuck {
            state = self.0 .1.wait(state).unwrap();
        }
        if state.closed {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        if state.room == Some(0) {
            return Err(io::Error::other("no space left on device"));
        }
        // A short write, to exercise the rest of the line being written after it.
        let n = buf.len().min(3).min(state.room.unwrap_or(usize::MAX));
        if let Some(room) = &mut state.room {
            *room -= n;
        }
        state.written.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Each report: how many lines were lost, and what had been written when it came.
type Reports = Arc<Mutex<Vec<(u64, String)>>>;

/// A sink on `pipe` whose reports are recorded.
fn sink(pipe: &Pipe, capacity: usize) -> (Sink, Reports) {
    let reports = Arc::new(Mutex::new(Vec::new()));
    let (seen, out) = (Arc::clone(&reports), pipe.clone());
    let sink = Sink::start(
        pipe.clone(),
        capacity,
        Box::new(move |n| seen.lock().unwrap().push((n, out.text()))),
    )
    .unwrap();
    (sink, reports)
}

const LONG: Duration = Duration::from_secs(20);

#[test]
fn lines_are_written_in_order() {
    let pipe = Pipe::default();
    let (sink, reports) = sink(&pipe, 1 << 20);
    for i in 0..100 {
        sink.push(format!("line {i}\n").as_bytes());
    }
    assert!(sink.flush(LONG));
    let expected: String = (0..100).map(|i| format!("line {i}\n")).collect();
    assert_eq!(pipe.text(), expected);
    assert_eq!(sink.lost(), 0);
    assert!(reports.lock().unwrap().is_empty());
}

#[test]
fn lines_queued_while_the_writer_writes_wake_it_no_more() {
    let pipe = Pipe::default();
    let (sink, _) = sink(&pipe, 1 << 20);
    let wait_for = |what: &str, done: &dyn Fn(&State) -> bool| {
        let deadline = Instant::now() + LONG;
        while !done(&sink.shared.lock()) {
            assert!(Instant::now() < deadline, "the writer never {what}");
            std::thread::yield_now();
        }
    };
    wait_for("slept", &|s| s.asleep);
    pipe.set(|p| p.stuck = true);
    sink.push(b"first\n");
    // The first line woke the writer, which is now stuck writing it.
    wait_for("took the first line", &|s| s.writing);
    for i in 0..100 {
        sink.push(format!("line {i}\n").as_bytes());
    }
    assert_eq!(sink.shared.wakes.load(Ordering::Relaxed), 1);
    pipe.set(|p| p.stuck = false);
    assert!(sink.flush(LONG));
    let expected: String = (0..100).map(|i| format!("line {i}\n")).collect();
    assert_eq!(pipe.text(), format!("first\n{expected}"));
    // Asleep again, it is woken by the next line.
    wait_for("slept again", &|s| s.asleep);
    sink.push(b"last\n");
    assert!(sink.flush(LONG));
    assert!(pipe.text().ends_with("line 99\nlast\n"));
    assert_eq!(sink.shared.wakes.load(Ordering::Relaxed), 2);
}

#[test]
fn lines_from_many_threads_are_all_written() {
    let pipe = Pipe::default();
    let (sink, _) = sink(&pipe, 1 << 24);
    let sink = Arc::new(sink);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let sink = Arc::clone(&sink);
            std::thread::spawn(move || {
                for i in 0..500 {
                    sink.push(format!("{t}:{i}\n").as_bytes());
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert!(sink.flush(LONG));
    assert_eq!(pipe.text().lines().count(), 2000);
    assert_eq!(sink.lost(), 0);
}

#[test]
fn a_line_cut_off_by_a_full_disk_is_ended_before_the_next_one() {
    let pipe = Pipe::default();
    let (sink, reports) = sink(&pipe, 1 << 20);
    pipe.set(|p| p.room = Some(4));
    sink.push(b"{\"cut\": 1}\n");
    assert!(sink.flush(LONG));
    assert_eq!(sink.lost(), 1);
    pipe.set(|p| p.room = None);
    sink.push(b"{\"whole\": 2}\n");
    assert!(sink.flush(LONG));
    assert_eq!(pipe.text(), "{\"cu\n{\"whole\": 2}\n");
    assert_eq!(reports.lock().unwrap().len(), 1);
}

#[test]
fn a_cut_line_is_ended_even_when_the_disk_stays_full_for_a_while() {
    let pipe = Pipe::default();
    let (sink, _) = sink(&pipe, 1 << 20);
    pipe.set(|p| p.room = Some(4));
    sink.push(b"{\"cut\": 1}\n");
    sink.push(b"{\"lost\": 2}\n");
    assert!(sink.flush(LONG));
    assert_eq!(sink.lost(), 2);
    pipe.set(|p| p.room = None);
    sink.push(b"{\"whole\": 3}\n");
    assert!(sink.flush(LONG));
    assert_eq!(pipe.text(), "{\"cu\n{\"whole\": 3}\n");
}

#[test]
fn a_closed_reader_loses_lines_that_are_counted_and_reported_when_writing_works_again() {
    let pipe = Pipe::default();
    let (sink, reports) = sink(&pipe, 1 << 20);
    sink.push(b"before\n");
    assert!(sink.flush(LONG));
    pipe.set(|p| p.closed = true);
    for _ in 0..5 {
        sink.push(b"lost\n");
    }
    assert!(sink.flush(LONG), "a failing write must not stall the queue");
    assert_eq!(sink.lost(), 5);
    assert!(reports.lock().unwrap().is_empty(), "nothing works yet");
    pipe.set(|p| p.closed = false);
    sink.push(b"after\n");
    assert!(sink.flush(LONG));
    assert_eq!(pipe.text(), "before\nafter\n");
    assert_eq!(
        *reports.lock().unwrap(),
        [(5, "before\nafter\n".to_string())]
    );
}

#[test]
fn herds_last_words_are_queued_even_when_the_queue_is_full() {
    let pipe = Pipe::default();
    let (sink, reports) = sink(&pipe, 20);
    pipe.set(|p| p.stuck = true);
    for i in 0..100 {
        sink.push(format!("{i:04}\n").as_bytes());
    }
    assert!(sink.lost() > 0);
    sink.push_always(b"herd: error: the last words\n");
    pipe.set(|p| p.stuck = false);
    assert!(sink.flush(LONG));
    let written = pipe.text();
    assert!(
        written.ends_with("\nherd: error: the last words\n"),
        "{written}"
    );
    // The loss before them is reported before them.
    let reports = reports.lock().unwrap();
    assert_eq!(reports.iter().map(|r| r.0).sum::<u64>(), sink.lost());
    assert!(reports
        .iter()
        .all(|(_, before)| !before.contains("last words")));
}

#[test]
fn a_stuck_reader_never_blocks_push_and_the_overflow_is_counted_in_place() {
    let pipe = Pipe::default();
    let (sink, reports) = sink(&pipe, 20);
    pipe.set(|p| p.stuck = true);
    let sink = Arc::new(sink);
    let (done, finished) = std::sync::mpsc::channel();
    let pusher = Arc::clone(&sink);
    std::thread::spawn(move || {
        for i in 0..1000 {
            pusher.push(format!("{i:04}\n").as_bytes());
        }
        let _ = done.send(());
    });
    finished
        .recv_timeout(LONG)
        .expect("push blocked on a stuck reader");
    assert!(
        !sink.flush(Duration::from_millis(50)),
        "nothing can be written"
    );
    // 20 bytes hold 4 lines, and the writer holds one batch more at most (the lines that
    // were queued when it took them: 4 at most here).
    let lost = sink.lost();
    assert!((991..=996).contains(&lost), "lost {lost}");
    pipe.set(|p| p.stuck = false);
    assert!(sink.flush(LONG));
    sink.push(b"next\n");
    assert!(sink.flush(LONG));
    let written = pipe.text();
    assert!(written.starts_with("0000\n0001\n0002\n0003\n"), "{written}");
    assert!(written.ends_with("\nnext\n"), "{written}");
    // One report per run of lost lines (two if the writer freed room in the middle of them),
    // each made before the line that follows the loss.
    let reports = reports.lock().unwrap();
    assert!((1..=2).contains(&reports.len()), "{reports:?}");
    assert_eq!(reports.iter().map(|r| r.0).sum::<u64>(), lost);
    assert!(reports.iter().all(|(_, before)| !before.contains("next")));
    assert_eq!(written.lines().count() as u64 + lost, 1001);
}

#[test]
fn a_stuck_reader_bounds_flush() {
    let pipe = Pipe::default();
    let (sink, _) = sink(&pipe, 1 << 20);
    pipe.set(|p| p.stuck = true);
    sink.push(b"waiting\n");
    let start = Instant::now();
    assert!(!sink.flush(Duration::from_millis(100)));
    assert!(start.elapsed() < LONG);
    pipe.set(|p| p.stuck = false);
    assert!(sink.flush(LONG));
    assert_eq!(pipe.text(), "waiting\n");
}

#[test]
fn a_line_longer_than_the_queue_is_cut_not_lost() {
    let pipe = Pipe::default();
    let (sink, reports) = sink(&pipe, 1 << 20);
    let huge = format!("start{}end\n", "x".repeat(2 << 20));
    sink.push(huge.as_bytes());
    sink.push(b"next\n");
    assert!(sink.flush(LONG));
    assert_eq!(sink.lost(), 0);
    assert!(reports.lock().unwrap().is_empty());
    let text = pipe.text();
    let (cut, next) = text.split_once('\n').unwrap();
    assert_eq!(next, "next\n");
    assert_eq!(cut.len() + 1, MAX_LINE);
    // Its start and its end are kept, the mark between them.
    let (head, rest) = cut.split_at(cut.find(" [herd: ").unwrap());
    let (mark, tail) = rest.split_at(rest.find("] ").unwrap() + 2);
    assert!(head.starts_with("startxxx") && tail.ends_with("xxxend"));
    let left_out = huge.len() - 1 - head.len() - tail.len();
    assert_eq!(mark, format!(" [herd: {left_out} bytes cut] "));
}

#[test]
fn a_line_is_cut_between_characters() {
    let pipe = Pipe::default();
    let (sink, _) = sink(&pipe, 1 << 20);
    // Three-byte characters: each cut falls inside one for some offsets; try three of them.
    for skew in 0..3 {
        let line = format!("{}{}\n", "a".repeat(skew), "€".repeat(MAX_LINE));
        sink.push(line.as_bytes());
    }
    assert!(sink.flush(LONG));
    // The pipe's text is checked as UTF-8 (`String::from_utf8`) as it is read.
    let text = pipe.text();
    assert_eq!(text.lines().count(), 3);
    for line in text.lines() {
        assert!(
            line.len() < MAX_LINE && line.len() > MAX_LINE - 40,
            "{}",
            line.len()
        );
        assert!(line.contains("€ [herd: ") && line.contains(" bytes cut] €"));
        assert!(line.ends_with('€'));
    }
}

#[test]
fn a_json_line_cut_inside_a_huge_value_stays_json() {
    let pipe = Pipe::default();
    let (sink, _) = sink(&pipe, 1 << 24);
    // A value full of JSON's escapes and multi-byte characters: for some offsets each cut
    // falls inside `\n`, `\"`, `\\`, `\u001b` or `é`.
    let value = "a\n\"\\é\u{1b}".repeat(40_000);
    for skew in 0..12 {
        let line =
            serde_json::json!({ "message": format!("{}{value}", "b".repeat(skew)), "event": "x" });
        sink.push(format!("{line}\n").as_bytes());
    }
    assert!(sink.flush(LONG));
    let text = pipe.text();
    assert_eq!(text.lines().count(), 12);
    for line in text.lines() {
        assert!(line.len() < MAX_LINE);
        let parsed: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| {
            panic!(
                "{e}: {}",
                &line[line.find(" [herd: ").unwrap() - 20..][..60]
            )
        });
        assert_eq!(parsed["event"], "x");
        assert!(parsed["message"].as_str().unwrap().contains(" bytes cut] "));
    }
}

#[test]
fn a_line_that_splits_everywhere_is_cut_not_emptied() {
    let pipe = Pipe::default();
    let (sink, _) = sink(&pipe, 1 << 20);
    // In text, a worker's `\u` over and over: every place is inside an "escape".
    let mut line = "\\u".repeat(MAX_LINE);
    line.push('\n');
    sink.push(line.as_bytes());
    assert!(sink.flush(LONG));
    let written = pipe.text();
    assert!(
        written.len() > MAX_LINE - 64 && written.len() <= MAX_LINE,
        "{}",
        written.len()
    );
    assert!(written.contains(" bytes cut] ") && written.ends_with('\n'));
}
