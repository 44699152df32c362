//! `herd logs -f` against a worker that writes about a thousand numbered lines a second: the
//! follower prints every line herd writes out, none twice and none missed, across re-execs
//! (a line the exec cut included) and up to the last one before a stop (an unfinished one
//! included); it ends with 0 when herd stops, and fails in one line when herd vanishes.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use crate::util::*;

/// Numbered lines, 20 at a time every 20 ms; on USR1 half a line, `half-read` on stderr once
/// herd has read it out of the pipe, and its end on USR2; on TERM an unfinished last line,
/// and the end.
const SEQ_WORKER: &str = r#"
import fcntl, os, signal, struct, sys, termios, time
def in_pipe():
    return struct.unpack("i", fcntl.ioctl(1, termios.FIONREAD, b"\0\0\0\0"))[0]
state = ["run"]
def term(*_):
    sys.stdout.write("last-partial-0"); sys.stdout.flush(); os._exit(0)
signal.signal(signal.SIGTERM, term)
signal.signal(signal.SIGUSR1, lambda *_: state.__setitem__(0, "half"))
signal.signal(signal.SIGUSR2, lambda *_: state.__setitem__(0, "rest"))
n = 0
while True:
    if state[0] == "half":
        sys.stdout.write("first-half-"); sys.stdout.flush()
        while in_pipe() > 0:
            time.sleep(0.005)
        sys.stderr.write("half-read\n"); sys.stderr.flush()
        while state[0] == "half":
            time.sleep(0.01)
        sys.stdout.write("second-half\n"); sys.stdout.flush()
    sys.stdout.write("seq %d xxxxxxxxxx\n" % n); sys.stdout.flush(); n += 1
    if n % 20 == 0:
        time.sleep(0.02)
"#;

/// herd running [`SEQ_WORKER`] with `--worker-output prefix`, its stdout in the file `out`.
fn seq_herd(out: &std::path::Path) -> Herd {
    let stdout = std::fs::File::create(out).unwrap();
    let herd = Herd::start_with_stdout(&prefixed(SEQ_WORKER), Stdio::from(stdout));
    herd.started(1);
    herd
}

/// `herd run` of one Python worker running `script`, its output prefixed (`herd logs` keeps it).
fn prefixed(script: &str) -> Vec<&str> {
    let run = [
        "run",
        "-w",
        "1",
        "-b",
        "127.0.0.1:0",
        "--worker-output",
        "prefix",
    ];
    [&run[..], &["--", "python3", "-c", script]].concat()
}

/// Stops `herd` and waits for `follower` to end with it, successfully: the lines it printed.
fn stop_followed(herd: &mut Herd, follower: Follower) -> Vec<String> {
    let (code, _, stderr) = herd.ctl(&["stop"]);
    assert_eq!(code, 0, "{stderr}");
    let (status, followed, stderr) = follower.finish();
    assert!(status.success(), "{status}: {stderr}");
    herd.wait_exit();
    followed
}

/// What a `herd logs -f` wrote so far, and whether it is done.
#[derive(Default)]
struct Printed {
    stdout: Vec<String>,
    stderr: String,
    /// Its stdout ended.
    closed: bool,
    /// Its stderr ended.
    stderr_closed: bool,
}

/// A `herd logs -f` whose stdout is read line by line as it comes.
struct Follower {
    child: Child,
    printed: Arc<(Mutex<Printed>, Condvar)>,
}

impl Follower {
    fn start(herd: &Herd) -> Follower {
        let mut child = Command::new(HERD)
            .env("HERD_CONTROL", herd.control())
            .args(["logs", "-f"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let printed = Arc::new((Mutex::new(Printed::default()), Condvar::new()));
        let (out, err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
        let sink = Arc::clone(&printed);
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                sink.0.lock().unwrap().stdout.push(line);
                sink.1.notify_all();
            }
            sink.0.lock().unwrap().closed = true;
            sink.1.notify_all();
        });
        let sink = Arc::clone(&printed);
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = BufReader::new(err).read_to_string(&mut text);
            let mut printed = sink.0.lock().unwrap();
            (printed.stderr, printed.stderr_closed) = (text, true);
            sink.1.notify_all();
        });
        Follower { child, printed }
    }

    /// Waits until a line printed so far satisfies `wanted`.
    fn wait_line(&self, what: &str, wanted: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + TIMEOUT;
        let (lock, grew) = &*self.printed;
        let mut printed = lock.lock().unwrap();
        while !printed.stdout.iter().any(|l| wanted(l)) {
            let now = Instant::now();
            assert!(
                now < deadline && !printed.closed,
                "herd logs -f printed no line with {what}; its last lines: {:#?}, stderr: {}",
                last(&printed.stdout),
                printed.stderr
            );
            printed = grew.wait_timeout(printed, deadline - now).unwrap().0;
        }
    }

    /// Waits for it to exit: its status, its lines, its stderr.
    fn finish(mut self) -> (ExitStatus, Vec<String>, String) {
        let status = wait_child(&mut self.child, TIMEOUT, libc::SIGKILL);
        let status = status.expect("herd logs -f did not exit");
        let (lock, grew) = &*self.printed;
        let deadline = Instant::now() + TIMEOUT;
        let mut printed = lock.lock().unwrap();
        // The process is gone: its stdout and stderr end as soon as they are read out.
        while !(printed.closed && printed.stderr_closed) {
            let now = Instant::now();
            assert!(
                now < deadline,
                "herd logs -f exited, but its output goes on"
            );
            printed = grew.wait_timeout(printed, deadline - now).unwrap().0;
        }
        let stdout = std::mem::take(&mut printed.stdout);
        (status, stdout, printed.stderr.clone())
    }
}

fn last(lines: &[String]) -> &[String] {
    &lines[lines.len().saturating_sub(5)..]
}

/// The number a `seq N` line carries.
fn seq_of(line: &str) -> Option<u64> {
    let (_, rest) = line.split_once("] seq ")?;
    rest.split(' ').next()?.parse().ok()
}

/// Asserts that `followed` is a run of `written` (herd's stdout) without a gap or a repeat,
/// to its end if `to_end`; says where they part.
fn assert_run_of(written: &[String], followed: &[String], to_end: bool) {
    assert!(!followed.is_empty(), "herd logs -f printed nothing");
    let Some(start) = written.iter().position(|l| *l == followed[0]) else {
        panic!("herd never wrote {:?}", followed[0]);
    };
    let expected = &written[start..];
    let parted = expected.iter().zip(followed).position(|(w, f)| w != f);
    if let Some(at) = parted {
        panic!(
            "herd logs -f parts from herd's stdout at its line {at}: herd wrote {:#?}, \
             herd logs -f printed {:#?}",
            &expected[at..expected.len().min(at + 3)],
            &followed[at..followed.len().min(at + 3)]
        );
    }
    assert!(
        followed.len() <= expected.len(),
        "herd logs -f printed more than herd wrote: {:#?}",
        &followed[expected.len()..]
    );
    if to_end {
        assert_eq!(
            followed.len(),
            expected.len(),
            "herd logs -f missed herd's last lines: {:#?}",
            &expected[followed.len()..]
        );
    }
}

/// The lines herd wrote to `out`.
fn written(out: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(out).unwrap();
    text.lines().map(str::to_string).collect()
}

#[test]
fn a_follower_gets_every_line_across_reexecs_the_one_an_exec_cut_too() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut herd = seq_herd(&out);
    let follower = Follower::start(&herd);
    follower.wait_line("a number", |l| seq_of(l).is_some());
    // Half a line, read by herd, then the exec: the exec cuts it.
    assert_eq!(herd.ctl(&["signal", "USR1"]).0, 0);
    herd.wait_text("] half-read");
    let (code, _, stderr) = herd.ctl(&["reexec"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(herd.ctl(&["signal", "USR2"]).0, 0);
    follower.wait_line("the half line's end", |l| l.ends_with("second-half"));
    let (code, _, stderr) = herd.ctl(&["reexec"]);
    assert_eq!(code, 0, "{stderr}");
    // Well past the second exec.
    let now = written(&out)
        .iter()
        .filter_map(|l| seq_of(l))
        .max()
        .unwrap();
    follower.wait_line("a number past the re-exec", |l| {
        seq_of(l).is_some_and(|n| n > now + 100)
    });
    let followed = stop_followed(&mut herd, follower);
    let written = written(&out);
    assert!(
        written.iter().any(|l| l.ends_with(" split] first-half-"))
            && written.iter().any(|l| l.ends_with("] second-half")),
        "the cut line and its end: {written:#?}"
    );
    assert_run_of(&written, &followed, false);
}

#[test]
fn a_follower_gets_every_line_up_to_a_stop_an_unfinished_last_one_too() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut herd = seq_herd(&out);
    let follower = Follower::start(&herd);
    follower.wait_line("a number", |l| seq_of(l).is_some_and(|n| n >= 200));
    let followed = stop_followed(&mut herd, follower);
    let written = written(&out);
    assert!(
        written
            .last()
            .is_some_and(|l| l.ends_with("] last-partial-0")),
        "{:#?}",
        last(&written)
    );
    assert_run_of(&written, &followed, true);
}

#[test]
fn a_follower_of_a_killed_herd_says_so_in_one_line_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let herd = seq_herd(&dir.path().join("out"));
    let follower = Follower::start(&herd);
    follower.wait_line("a number", |l| seq_of(l).is_some());
    herd.signal(libc::SIGKILL);
    let (status, _, stderr) = follower.finish();
    assert_eq!(status.code(), Some(FAILURE), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("herd: error: no herd is running at "),
        "{stderr}"
    );
}

/// Each of several followers follows on across a re-exec and ends with 0 once herd stops,
/// whichever reconnects first.
#[test]
fn followers_follow_on_across_a_reexec_and_end_with_the_stop() {
    let dir = tempfile::tempdir().unwrap();
    let mut herd = seq_herd(&dir.path().join("out"));
    let followers: Vec<Follower> = (0..4).map(|_| Follower::start(&herd)).collect();
    for f in &followers {
        f.wait_line("a number", |l| seq_of(l).is_some());
    }
    let (code, _, stderr) = herd.ctl(&["reexec"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(herd.ctl(&["signal", "USR1"]).0, 0);
    herd.wait_text("] half-read");
    assert_eq!(herd.ctl(&["signal", "USR2"]).0, 0);
    for f in &followers {
        f.wait_line("the line written after the re-exec", |l| {
            l.ends_with("second-half")
        });
    }
    let (code, _, stderr) = herd.ctl(&["stop"]);
    assert_eq!(code, 0, "{stderr}");
    for f in followers {
        let (status, followed, stderr) = f.finish();
        assert!(status.success(), "{status}: {stderr}");
        assert!(!stderr.contains("error"), "{stderr}");
        assert!(
            followed
                .last()
                .is_some_and(|l| l.ends_with("] last-partial-0")),
            "{:#?}",
            last(&followed)
        );
    }
    herd.wait_exit();
}

/// Across a takeover, a follower follows on with the new herd's lines: the old herd told it
/// herd stopped (it ended, 0), and a number of the old herd's, sent again, hid the new herd's
/// first lines, which it numbers from 1. It gets every line of the old workers first, their
/// last words included (the old herd closed its followers without them).
#[test]
fn a_follower_follows_on_across_a_takeover() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut old = seq_herd(&out);
    let follower = Follower::start(&old);
    follower.wait_line("a number past the new herd's", |l| {
        seq_of(l).is_some_and(|n| n >= 100)
    });
    let worker = "import time\nfor i in range(5): print('new-herd-%d' % i, flush=True)\n\
                  time.sleep(1000)";
    let mut new = crate::takeover::takeover(
        &old.control(),
        &[
            "-w",
            "1",
            "--worker-output",
            "prefix",
            "--",
            "python3",
            "-c",
            worker,
        ],
    );
    new.wait_for_event("takeover_complete", &[]);
    old.wait_exit();
    follower.wait_line("the new herd's first line", |l| l.ends_with("] new-herd-0"));
    let (code, _, stderr) = ctl_at(&old.control(), &["stop"]);
    assert_eq!(code, 0, "{stderr}");
    let (status, followed, stderr) = follower.finish();
    assert!(status.success(), "{status}: {stderr}");
    new.wait_exit();
    let old_lines: Vec<String> = followed
        .into_iter()
        .filter(|l| !l.contains("] new-herd-"))
        .collect();
    assert_run_of(&written(&out), &old_lines, true);
    assert!(stderr.contains("(a re-exec or a takeover?)"), "{stderr}");
}

/// A follower whose stdout was closed when it started (`1>&-`) fails at once, saying so: it
/// waited for the first line, maybe for hours, to find it could not write it.
#[test]
fn a_follower_with_no_stdout_fails_at_once() {
    let mut herd = sleepers(&["-w", "1", "--worker-output", "prefix"]);
    herd.started(1);
    let mut follower = Command::new("sh")
        .args([
            "-c",
            "exec \"$0\" \"$@\" 1>&-",
            HERD,
            "logs",
            "-f",
            "-n",
            "0",
        ])
        .env("HERD_CONTROL", herd.control())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_child(&mut follower, TIMEOUT, libc::SIGKILL).expect("it failed at once");
    let mut stderr = String::new();
    follower
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr,
        "herd: error: cannot write the lines out: it was closed when herd started (1>&-)\n"
    );
    herd.signal(libc::SIGTERM);
    herd.wait_exit();
}

/// A follower that reads nothing (stopped, or on a slow link) keeps herd waiting, up to a
/// second, to send it its last lines as herd stops: the stop is answered all the same (at
/// once: it no longer waits with the followers, a second late, which no test times), and the
/// follower, continued, gets its end and exits 0.
#[test]
fn a_follower_that_reads_nothing_does_not_hold_up_a_stop() {
    // Lines of 1,000 bytes as fast as they go: the follower's socket fills at once.
    let worker = "import sys\nwhile True:\n    sys.stdout.write('x' * 1000 + '\\n')\n";
    let mut herd = Herd::start(&prefixed(worker));
    herd.started(1);
    let follower = Follower::start(&herd);
    follower.wait_line("a worker's line", |l| l.ends_with("xxxx"));
    let pid = follower.child.id().to_string();
    let signal = |name: &str| {
        let status = Command::new("kill").args([name, &pid]).status().unwrap();
        assert!(status.success(), "kill {name} {pid}");
    };
    signal("-STOP");
    let (code, _, stderr) = herd.ctl(&["stop"]);
    signal("-CONT");
    assert_eq!(code, 0, "{stderr}");
    let (status, _, follower_stderr) = follower.finish();
    assert!(status.success(), "{status}: {follower_stderr}");
    herd.wait_exit();
}
