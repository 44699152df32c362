//! `herd run --takeover NAME` on Windows, under Wine: the new herd takes the old one's socket
//! over its control pipe, starts its workers, and once they are ready stops the old herd and
//! takes its pipe's name, with no connection refused meanwhile; a takeover that cannot
//! complete leaves the old herd serving.
#![cfg(windows)]

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

mod windows_support;

use windows_support::{assert_fails, Herd, SpawnUnderWine, HERD, TIMEOUT};

/// With `HERD_TEST_WORKER` set, this test binary is the worker herd runs: it takes the socket
/// `http` and answers each connection with `worker pid N`; it says `READY=1` with
/// `HERD_TEST_NOTIFY` set, and exits when herd asks it to stop.
#[test]
fn worker() {
    let Some(listener) = windows_support::worker_listener() else {
        return;
    };
    let stop = herd::stop_requested().expect("the stop event");
    if std::env::var_os("HERD_TEST_NOTIFY").is_some() {
        herd::notify::ready().expect("READY=1");
    }
    windows_support::serve_until_stopped(listener, stop, |mut stream| {
        let _ = writeln!(stream, "worker pid {}", std::process::id());
    });
}

/// A client connecting again and again, counting the connections that were not answered.
struct Load {
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicUsize>,
    thread: JoinHandle<Vec<String>>,
}

impl Load {
    fn start(addr: &str) -> Load {
        let (stop, answered) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicUsize::new(0)),
        );
        let (until, count, addr) = (Arc::clone(&stop), Arc::clone(&answered), addr.to_string());
        let thread = std::thread::spawn(move || {
            let mut failures = Vec::new();
            while !until.load(Ordering::Relaxed) {
                match one_answer(&addr) {
                    Ok(answer) if answer.starts_with("worker pid ") => {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(answer) => failures.push(format!("answer {answer:?}")),
                    Err(e) => failures.push(e.to_string()),
                }
            }
            failures
        });
        Load {
            stop,
            answered,
            thread,
        }
    }

    /// Stops the load, which must have been answered at least `at_least` times, always.
    fn finish_without_failures(self, at_least: usize) {
        self.stop.store(true, Ordering::Relaxed);
        let failures = self.thread.join().unwrap();
        let answered = self.answered.load(Ordering::Relaxed);
        assert!(
            failures.is_empty(),
            "{} failed: {failures:?}",
            failures.len()
        );
        assert!(answered >= at_least, "only {answered} answered");
    }
}

fn one_answer(addr: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}

/// `herd --name NAME status --json`.
fn status(name: &str) -> serde_json::Value {
    let out = Command::new(HERD)
        .args(["--name", name, "status", "--json"])
        .output_under_wine()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_takeover_under_load_refuses_no_connection_and_ends_at_the_old_name() {
    let mut old = Herd::start(&["-w", "2"]);
    let old_pids = old.answers(2, 2);
    let load = Load::start(&old.addr);
    let new = Herd::take_over(&old, &["-w", "2"]);
    assert_eq!(new.addr, old.addr, "the same socket");
    new.wait_for("takeover_complete");
    old.wait_for("taken_over");
    assert!(old.child.wait().unwrap().success(), "the old herd exits 0");
    new.wait_for_each(&["old_herd_stopped", "control_moved"]);
    assert_eq!(status(&new.name)["pid"], new.child.id());
    let new_pids: BTreeSet<u32> = new.answers(2, 4);
    assert!(new_pids.is_disjoint(&old_pids), "{new_pids:?} {old_pids:?}");
    load.finish_without_failures(10);
    new.stop();
}

#[test]
fn a_takeover_of_no_herd_is_one_line_and_starts_nothing() {
    assert_fails(
        &["run", "--takeover", "no-such-herd", "--", "worker"],
        1,
        "cannot take over from",
    );
}

#[test]
fn new_workers_that_never_get_ready_leave_the_old_herd_serving() {
    let old = Herd::start(&["-w", "1"]);
    let before = old.answers(1, 1);
    let mut never = Herd::take_over(
        &old,
        &["-w", "1", "--ready", "notify", "--ready-timeout", "500ms"],
    );
    let aborted = never.wait_for("takeover_aborted");
    assert!(
        aborted.to_string().contains("the old herd keeps serving"),
        "{aborted}"
    );
    assert_eq!(never.child.wait().unwrap().code(), Some(1));
    assert_eq!(old.answers(1, 3), before, "the old workers serve on");
    assert_eq!(status(&old.name)["pid"], old.child.id());
    old.stop();
}

/// The old herd stops on its own while the new one is taking over (its workers started, not
/// yet available): the new herd serves on with the sockets it took and takes the old name;
/// never does neither serve.
#[test]
fn an_old_herd_stopped_during_the_takeover_leaves_the_new_one_serving() {
    let mut old = Herd::start(&["-w", "1"]);
    let old_pids = old.answers(1, 1);
    let new = Herd::take_over(&old, &["-w", "1", "--min-ready", "3s"]);
    new.wait_for("worker_started");
    old.ask_to_stop();
    old.wait_for("stopped");
    assert!(old.child.wait().unwrap().success(), "the old herd exits 0");
    new.wait_for_each(&["old_herd_gone", "control_moved"]);
    let new_pids = new.answers(1, 3);
    assert!(new_pids.is_disjoint(&old_pids), "{new_pids:?} {old_pids:?}");
    assert_eq!(status(&new.name)["pid"], new.child.id());
    new.stop();
}

/// The old herd stops on its own and the new herd's workers never get ready: aborting would
/// leave nothing serving, so the new herd serves on with the sockets it took (its workers
/// restarted as any herd's) and takes the old name.
#[test]
fn a_failed_takeover_of_a_herd_gone_meanwhile_serves_on_rather_than_nothing() {
    let mut old = Herd::start(&["-w", "1"]);
    old.answers(1, 1);
    let mut new = Herd::take_over(
        &old,
        &["-w", "1", "--ready", "notify", "--ready-timeout", "2s"],
    );
    new.wait_for("worker_started");
    old.ask_to_stop();
    old.wait_for("stopped");
    assert!(old.child.wait().unwrap().success(), "the old herd exits 0");
    new.wait_for_each(&["old_herd_gone", "control_moved"]);
    // Its workers, though never ready, take connections on the socket it took.
    assert!(new.answers(1, 2).len() == 1);
    assert_eq!(status(&new.name)["pid"], new.child.id());
    assert_eq!(
        new.child.try_wait().unwrap(),
        None,
        "the new herd serves on"
    );
    new.stop();
}

#[test]
fn of_two_takeovers_at_once_one_serves_and_the_other_gives_up() {
    let mut old = Herd::start(&["-w", "1"]);
    old.answers(1, 1);
    let load = Load::start(&old.addr);
    // Both take the socket and start their workers; the first to stop the old herd serves,
    // and the other gives up rather than serve beside it: the old herd refuses its stop
    // (`taken_over`), or the winner holds the control pipe's name by then.
    let mut takers = [
        Herd::take_over(&old, &["-w", "1"]),
        Herd::take_over(&old, &["-w", "1"]),
    ];
    old.wait_for("taken_over");
    assert!(old.child.wait().unwrap().success(), "the old herd exits 0");
    let deadline = std::time::Instant::now() + TIMEOUT;
    let (lost, exit) = 'gave_up: loop {
        assert!(std::time::Instant::now() < deadline, "neither gave up");
        for (i, taker) in takers.iter_mut().enumerate() {
            if let Some(exit) = taker.child.try_wait().unwrap() {
                break 'gave_up (i, exit);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let [first, second] = takers;
    let (winner, loser) = if lost == 0 {
        (second, first)
    } else {
        (first, second)
    };
    assert_eq!(exit.code(), Some(1), "the loser exits 1");
    let aborted = loser.wait_for("takeover_aborted");
    let won = winner.child.id().to_string();
    assert!(aborted.to_string().contains(&won), "{aborted}");
    winner.wait_for("takeover_complete");
    assert_eq!(status(&winner.name)["pid"], winner.child.id());
    winner.answers(1, 2);
    load.finish_without_failures(10);
    winner.stop();
}
