//! `--worker-output prefix|json` and `herd logs`: every line says which worker wrote it, lines
//! never interleave, long ones are cut and marked, a flood loses lines instead of slowing the
//! worker or herd, the last words of an exiting worker are kept, and `herd logs` shows and
//! follows the recent lines.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::util::*;

/// herd with `workers` workers running `script` (sh), its output captured as `mode`.
pub(crate) fn herd_running(mode: &str, workers: &str, script: &str) -> Herd {
    let herd = Herd::start(&[
        "run",
        "-w",
        workers,
        "-b",
        "127.0.0.1:0",
        "--worker-output",
        mode,
        "--",
        "sh",
        "-c",
        script,
    ]);
    herd.started(workers.parse().unwrap());
    herd
}

/// `herd logs ARGS --json` at `herd`, one JSON object per line.
fn logs_json(herd: &Herd, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["logs", "--json"];
    all.extend_from_slice(args);
    let (code, stdout, stderr) = herd.ctl(&all);
    assert_eq!(code, 0, "herd logs failed: {stderr}");
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn prefix_says_which_worker_wrote_each_line() {
    let herd = herd_running(
        "prefix",
        "2",
        r#"echo "err $HERD_WORKER" >&2; exec sleep 1000"#,
    );
    for (slot, pid) in herd.started(2) {
        herd.wait_text(&format!("[worker {slot} pid {pid} gen 1] err {slot}"));
    }
}

#[test]
fn json_writes_one_object_per_line_with_every_field() {
    let herd = herd_running("json", "1", r#"echo "say \"hi\"" >&2; exec sleep 1000"#);
    let pid = herd.started(1)[0].1;
    let line = herd.wait_event("the worker's line as JSON", |e| e["line"] == "say \"hi\"");
    assert_eq!(line["worker"], 0);
    assert_eq!(line["pid"], pid);
    assert_eq!(line["generation"], 1);
    assert_eq!(line["stream"], "stderr");
    assert!(line["time"].as_str().unwrap().ends_with('Z'), "{line}");
}

#[test]
fn what_a_worker_writes_just_before_it_exits_is_kept() {
    // The last line has no newline, and the worker exits right after writing it.
    let herd = herd_running("prefix", "1", r#"printf 'last words' >&2; exit 3"#);
    herd.wait_text("] last words");
}

/// A worker that exits while a process it started in a session of its own (out of reach of
/// herd's clean-up of the worker's group) still holds its stderr:
/// its unfinished last line is passed on when herd reaps it, not held until that process
/// writes a newline (then glued to its words) or ends.
#[test]
fn a_last_line_is_passed_on_alone_while_a_process_left_behind_holds_the_pipe() {
    let herd = Herd::start_with(|dir| {
        let (once, away) = (dir.join("once"), dir.join("away"));
        // The worker exits once the process it leaves behind is in a session of its own:
        // before that, herd's clean-up of the worker's group would stop it.
        let script = format!(
            "if [ -e '{0}' ]; then exec sleep 1000; fi; touch '{0}'; \
             setsid sh -c \"touch '{1}'; sleep 1; echo 'left behind' >&2\" & \
             for i in $(seq 1000); do [ -e '{1}' ] && break; sleep 0.01; done; \
             printf 'last words' >&2; exit 3",
            once.display(),
            away.display()
        );
        let mut cmd = herd_json();
        cmd.args([
            "run",
            "-w",
            "1",
            "-b",
            "127.0.0.1:0",
            "--worker-output",
            "prefix",
        ])
        .args(["--", "sh", "-c", &script]);
        cmd
    });
    let last = herd.wait_text("last words");
    assert!(last.ends_with("] last words"), "{last:?}");
    let behind = herd.wait_text("left behind");
    assert!(behind.ends_with("] left behind"), "{behind:?}");
}

#[test]
fn lines_of_two_workers_never_interleave_and_long_ones_are_cut_and_marked() {
    // Each worker writes 30 lines of its own digit, 40 000 bytes each (over the 16 KiB
    // limit): any interleaving would mix digits in one line.
    let herd = herd_running(
        "prefix",
        "2",
        r#"python3 -c 'import os, sys
d = os.environ["HERD_WORKER"]
for _ in range(30):
    sys.stderr.write(d * 40000 + "\n")
sys.stderr.write("done " + d + "\n")
sys.stderr.flush()
import time; time.sleep(1000)'"#,
    );
    herd.wait_text("] done 0");
    herd.wait_text("] done 1");
    let mut whole = [0usize; 2];
    let mut parts = 0;
    for line in herd.lines() {
        let Line::Text(text) = line else { continue };
        let Some((tag, body)) = text.split_once("] ") else {
            continue;
        };
        if body.starts_with("done") {
            continue;
        }
        let slot: usize = tag["[worker ".len()..]
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let digit = char::from(b'0' + slot as u8);
        assert!(
            body.chars().all(|c| c == digit),
            "worker {slot}'s line holds another's text: {}",
            &body[..body.len().min(80)]
        );
        assert!(body.len() <= 16 * 1024, "a line of {} bytes", body.len());
        match tag.ends_with(" split") {
            true => parts += 1,
            false => whole[slot] += 1,
        }
    }
    assert_eq!(whole, [30, 30], "every line's last part, per worker");
    assert_eq!(
        parts,
        2 * 30 * 2,
        "40 000 bytes are 3 parts: 2 marked split"
    );
}

#[test]
fn a_worker_flooding_its_output_is_not_slowed_and_the_losses_are_counted() {
    // herd's stdout is a pipe nobody reads: once it is full, herd must drop lines rather than
    // stop reading the worker (which would block it) or stall its loop.
    let (_unread, stdout) = std::io::pipe().unwrap();
    let herd = Herd::start_with_stdout(
        &[
            "run",
            "-w",
            "1",
            "-b",
            "127.0.0.1:0",
            "--worker-output",
            "prefix",
            "--",
            "python3",
            "-c",
            r#"import sys
line = "x" * 100 + "\n"
for _ in range(200000):
    sys.stdout.write(line)
sys.stdout.flush()
sys.stderr.write("flood done\n")
sys.stderr.flush()
import time; time.sleep(1000)"#,
        ],
        Stdio::from(stdout),
    );
    herd.wait_text("] flood done");
    herd.wait_for_event("worker_output_dropped", &[]);
    // Ready, so that `herd status` (the table) does not exit 3 for a degraded pool.
    herd.wait_for_event("worker_ready", &[]);
    let status = herd.status();
    let lost = status["worker_output_lines_dropped"].as_u64().unwrap();
    assert!(lost > 0 && lost < 200_000, "{lost} lines lost");
    let (code, table, _) = herd.ctl(&["status"]);
    assert_eq!(code, 0);
    assert!(table.contains("workers' output:"), "{table}");
}

#[test]
fn logs_shows_the_last_lines_of_one_worker_or_all() {
    let herd = herd_running(
        "prefix",
        "2",
        r#"for i in 1 2 3; do echo "line $i of $HERD_WORKER"; done; exec sleep 1000"#,
    );
    wait_until("3 lines of each worker kept", || {
        let kept = logs_json(&herd, &[]);
        let texts: Vec<_> = kept
            .iter()
            .map(|l| format!("{} {} {}", l["worker"], l["pid"], l["line"]))
            .collect();
        (kept.len() == 6).then_some(()).ok_or(texts)
    });
    let last = logs_json(&herd, &["-n", "2", "--worker", "1"]);
    let texts: Vec<&str> = last.iter().map(|l| l["line"].as_str().unwrap()).collect();
    assert_eq!(texts, ["line 2 of 1", "line 3 of 1"]);
    assert!(last.iter().all(|l| l["stream"] == "stdout"));
    let (code, stdout, _) = herd.ctl(&["logs", "-n", "1", "--worker", "0"]);
    assert_eq!(code, 0);
    let pid = herd.started(2).iter().find(|(s, _)| *s == 0).unwrap().1;
    assert_eq!(stdout, format!("[worker 0 pid {pid} gen 1] line 3 of 0\n"));
}

#[test]
fn logs_of_a_slot_not_in_the_pool_is_an_error_that_says_which_are() {
    let herd = herd_running("prefix", "2", r#"echo "up"; exec sleep 1000"#);
    herd.started(2);
    // Was: nothing and exit 0, as for a worker that has written nothing yet.
    let (code, stdout, stderr) = herd.ctl(&["logs", "--worker", "2"]);
    assert_eq!((code, stdout.as_str()), (1, ""), "{stderr}");
    assert_eq!(
        stderr,
        "herd: error: no lines from slot 2, which is not in the pool (herd runs slots 0 to 1)\n"
    );
    // A slot in the pool whose worker wrote nothing (yet) is no error.
    let (code, stdout, stderr) = herd.ctl(&["logs", "--worker", "1", "-n", "0"]);
    assert_eq!((code, stdout.as_str(), stderr.as_str()), (0, "", ""));
    // Followed, it is said once, and followed in case a scale-up starts it.
    let mut follow = Command::new(HERD)
        .env("HERD_CONTROL", herd.control())
        .args(["logs", "-f", "--worker", "5"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut said = BufReader::new(follow.stderr.take().unwrap()).lines();
    let line = said.next().unwrap().unwrap();
    assert_eq!(
        line,
        "herd logs: slot 5 is not in the pool (herd runs slots 0 to 1): following it in case \
         it starts"
    );
    assert!(follow.try_wait().unwrap().is_none(), "it follows on");
    follow.kill().unwrap();
    follow.wait().unwrap();
}

#[test]
fn logs_follow_prints_new_lines_until_herd_stops() {
    let herd = herd_running("prefix", "1", r#"echo "start $$"; exec sleep 1000"#);
    let first = herd.started(1)[0].1;
    wait_until("the first line kept", || {
        (logs_json(&herd, &[]).len() == 1).then_some(())
    });
    let mut follow = Command::new(HERD)
        .env("HERD_CONTROL", herd.control())
        .args(["logs", "-f", "-n", "1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(follow.stdout.take().unwrap()).lines();
    let line = out.next().unwrap().unwrap();
    assert!(line.ends_with(&format!("] start {first}")), "{line}");
    // SAFETY: kill with a worker's pid.
    unsafe { libc::kill(first as i32, libc::SIGKILL) };
    let second = herd.started(2)[1].1;
    let line = out.next().unwrap().unwrap();
    assert_eq!(
        line,
        format!("[worker 0 pid {second} gen 1] start {second}")
    );
    let (code, _, _) = herd.ctl(&["stop"]);
    assert_eq!(code, 0);
    let status = wait_child(&mut follow, TIMEOUT, libc::SIGKILL).unwrap();
    assert!(
        status.success(),
        "herd logs -f ends when herd stops: {status}"
    );
}

#[test]
fn logs_without_captured_output_says_how_to_get_it() {
    let herd = sleeper_on_http();
    let (code, _, stderr) = herd.ctl(&["logs"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("--worker-output prefix"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn logs_follow_goes_on_across_a_reexec_without_repeating_a_line() {
    let herd = herd_running(
        "prefix",
        "1",
        r#"trap 'echo "after $n"; n=$((n+1))' USR1
n=0; echo before; while :; do sleep 0.05; done"#,
    );
    wait_until("the first line kept", || {
        (logs_json(&herd, &[]).len() == 1).then_some(())
    });
    // Its note of the re-exec meets a full stderr (a full disk): it panicked there.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let mut follow = Command::new(HERD)
        .env("HERD_CONTROL", herd.control())
        .args(["logs", "-f"])
        .stdout(Stdio::piped())
        .stderr(full)
        .spawn()
        .unwrap();
    let mut out = BufReader::new(follow.stdout.take().unwrap()).lines();
    assert!(out.next().unwrap().unwrap().ends_with("] before"));
    let (code, _, stderr) = herd.ctl(&["reexec"]);
    assert_eq!(code, 0, "{stderr}");
    let (code, _, _) = herd.ctl(&["signal", "USR1"]);
    assert_eq!(code, 0);
    assert!(out.next().unwrap().unwrap().ends_with("] after 0"));
    let (code, _, _) = herd.ctl(&["signal", "USR1"]);
    assert_eq!(code, 0);
    assert!(out.next().unwrap().unwrap().ends_with("] after 1"));
    let (code, _, _) = herd.ctl(&["stop"]);
    assert_eq!(code, 0);
    assert!(out.next().is_none(), "nothing more, nothing twice");
    let status = wait_child(&mut follow, TIMEOUT, libc::SIGKILL).unwrap();
    assert!(status.success(), "{status}");
}

#[test]
fn followers_beyond_the_limit_are_refused_in_one_line() {
    let herd = herd_running("prefix", "1", r#"echo up; exec sleep 1000"#);
    let mut followers: Vec<_> = (0..8)
        .map(|_| {
            let mut child = Command::new(HERD)
                .env("HERD_CONTROL", herd.control())
                .args(["logs", "-f"])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
            assert!(out.next().unwrap().unwrap().ends_with("] up"));
            (child, out)
        })
        .collect();
    let (code, _, stderr) = herd.ctl(&["logs", "-f"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("already follow"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    // One gone, a seat is free again.
    let (mut first, _) = followers.remove(0);
    first.kill().unwrap();
    first.wait().unwrap();
    wait_until("a follower's seat freed", || {
        let mut child = Command::new(HERD)
            .env("HERD_CONTROL", herd.control())
            .args(["logs", "-f"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        let got = out.next().and_then(Result::ok);
        let _ = child.kill();
        let _ = child.wait();
        got.filter(|l| l.ends_with("] up"))
    });
    for (mut child, _) in followers {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A follower that shuts down its writing side after asking (`nc -N` does) still reads: it
/// gets the answer and the lines, as any other request's answer, not an end at once.
#[test]
fn a_follower_that_shut_down_its_writing_side_gets_the_lines() {
    use std::io::Write;
    use std::os::unix::net::UnixStream;
    let herd = herd_running("prefix", "1", r#"echo up; exec sleep 1000"#);
    let mut follower = UnixStream::connect(herd.control()).unwrap();
    follower
        .write_all(b"{\"version\":1,\"command\":\"logs\",\"lines\":5,\"follow\":true}\n")
        .unwrap();
    follower.shutdown(std::net::Shutdown::Write).unwrap();
    follower.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut lines = BufReader::new(follower).lines();
    let answer = lines.next().expect("an answer").unwrap();
    assert!(answer.contains("\"ok\":true"), "{answer}");
    let frame = lines.next().expect("the recent line").unwrap();
    assert!(frame.contains("\"line\":\"up\""), "{frame}");
}

/// `herd logs -f | head -1` with workers that say nothing more: the follower waited for the
/// next line to find out that `head` had gone, for hours if none came. It ends once its
/// reader is gone, with status 0, as when the reader goes while lines come.
#[test]
fn a_follower_whose_reader_is_gone_ends_without_waiting_for_a_line() {
    let herd = herd_running("prefix", "1", r#"echo "start $$"; exec sleep 1000"#);
    let first = herd.started(1)[0].1;
    wait_until("the first line kept", || {
        (logs_json(&herd, &[]).len() == 1).then_some(())
    });
    let mut follow = Command::new(HERD)
        .env("HERD_CONTROL", herd.control())
        .args(["logs", "-f"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(follow.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(line.ends_with(&format!("] start {first}\n")), "{line}");
    // `head -1` exits: the pipe's reader is gone, and no line comes.
    drop(out);
    let status = wait_child(&mut follow, TIMEOUT, libc::SIGKILL).unwrap();
    assert!(
        status.success(),
        "herd logs -f ends with its reader: {status}"
    );
    assert_eq!(herd.status()["workers"].as_array().unwrap().len(), 1);
}
