//! The closing threads' pool, with jobs that wait as long as a test says.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{
    retry, run_later, wait_idle, Busy, Job, GIVE_UP, MAX_DETACHED, MAX_QUEUED, MAX_TAKERS,
};

thread_local! {
    /// Set by a test: no closing thread starts from this thread, as where the process may
    /// create no more.
    static NO_THREADS: Cell<bool> = const { Cell::new(false) };
}

/// Whether a test refuses closing threads started from this thread.
pub(super) fn no_threads_here() -> bool {
    NO_THREADS.with(Cell::get)
}

/// Whether this runs alone in a process of its own, with a pool of its own: if not, the test
/// binary runs again for test `name` alone, which must pass (and run).
fn alone(name: &str) -> bool {
    const ALONE: &str = "HERD_CLOSER_TEST_ALONE";
    if std::env::var_os(ALONE).is_some() {
        return true;
    }
    let path = module_path!().split_once("::").map_or("", |(_, path)| path);
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", &format!("{path}::{name}"), "--test-threads=1"])
        .env(ALONE, "1")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success() && stdout.contains(" 1 passed"),
        "{name}, alone in its process: {}\n{stdout}\n{stderr}",
        out.status
    );
    false
}

/// What keeps the pool busy now.
fn busy() -> Busy {
    wait_idle(Duration::ZERO).err().unwrap_or_default()
}

/// One of these tests at a time: each keeps closing threads busy, which another would see.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static ONE: Mutex<()> = Mutex::new(());
    ONE.lock().unwrap_or_else(|p| p.into_inner())
}

/// A job that waits (on a channel: no signal ends that wait, as no signal ends a hung
/// filesystem's) until its sender is dropped or `most` has passed.
fn waiting(most: Duration) -> (Job, mpsc::Sender<()>) {
    let (tx, rx) = mpsc::channel::<()>();
    (Job::new(move || rx.recv_timeout(most).unwrap_or(())), tx)
}

/// A job given up on while [`wait_idle`] waits is seen: a re-exec checked the threads left
/// waiting first, then waited up to a second for notify datagrams to settle, during which the
/// watcher gave up on a job (the count of datagrams to settle then fell to 0), and the exec
/// went on to wait for good with that thread.
#[test]
fn a_job_given_up_on_while_waiting_for_idle_is_seen() {
    let _one = one_at_a_time();
    let (job, release) = waiting(Duration::from_secs(20));
    run_later(job);
    let busy = wait_idle(GIVE_UP + Duration::from_millis(300));
    drop(release);
    let busy = busy.expect_err("the pool was idle with a job under way");
    assert!(
        busy.left_waiting >= 1,
        "the job given up on is not seen: {busy:?}"
    );
}

/// A plain close under way, or queued, keeps the pool from being idle: it was invisible to the
/// re-exec's checks, which looked only at threads left waiting and notify datagrams.
#[test]
fn a_job_under_way_keeps_the_pool_from_idle() {
    let _one = one_at_a_time();
    let (job, release) = waiting(Duration::from_secs(20));
    run_later(job);
    let busy = wait_idle(Duration::from_millis(50));
    drop(release);
    let busy = busy.expect_err("the pool was idle with a job under way");
    assert!(
        busy.under_way + busy.queued + busy.left_waiting + busy.detached >= 1,
        "{busy:?}"
    );
}

/// Jobs that each wait a while are taken by several threads at once: one at a time, a notify
/// socket's queue (10 datagrams) filled behind takings of lingering sockets (100 ms each), and
/// its senders waited.
#[test]
fn jobs_that_wait_are_taken_by_several_threads_at_once() {
    let _one = one_at_a_time();
    let together = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel();
    for _ in 0..4 {
        let (together, tx) = (Arc::clone(&together), tx.clone());
        run_later(Job::new(move || {
            together.fetch_add(1, Ordering::SeqCst);
            let until = Instant::now() + Duration::from_millis(800);
            while together.load(Ordering::SeqCst) < 4 && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = tx.send(together.load(Ordering::SeqCst));
        }));
    }
    let seen: Vec<usize> = (0..4)
        .map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap())
        .collect();
    assert_eq!(seen, [4, 4, 4, 4], "the jobs were not under way together");
}

/// Past [`MAX_QUEUED`] jobs queued behind busy threads, a job runs on a thread of its
/// own at once: the queue grew without bound (each close job holds an fd) while every thread
/// waited.
#[test]
fn a_job_past_a_full_queue_runs_at_once() {
    let _one = one_at_a_time();
    let (started, takers) = mpsc::channel();
    let releases: Vec<_> = (0..MAX_TAKERS)
        .map(|_| {
            let (release, held) = mpsc::channel::<()>();
            let started = started.clone();
            run_later(Job::new(move || {
                let _ = started.send(());
                held.recv_timeout(Duration::from_millis(700)).unwrap_or(());
            }));
            release
        })
        .collect();
    // Every taker runs one of them before the queue is filled: on a loaded machine, takers
    // that started late took queued jobs after the check below, and ours queued behind them.
    for _ in 0..MAX_TAKERS {
        if takers.recv_timeout(Duration::from_secs(5)).is_err() {
            break;
        }
    }
    for _ in 0..MAX_QUEUED {
        run_later(Job::new(|| {}));
    }
    // Other tests' jobs share the pool: a thread of theirs that came free took ours.
    let full = super::lock().as_ref().map_or(0, |p| p.queue.len()) >= MAX_QUEUED;
    let (tx, rx) = mpsc::channel();
    let queued = Instant::now();
    run_later(Job::new(move || tx.send(Instant::now()).unwrap_or(())));
    let ran = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    drop(releases);
    // The next test's jobs would find the queue still full.
    let _ = wait_idle(Duration::from_secs(5));
    let waited = ran.saturating_duration_since(queued);
    if !full {
        eprintln!("skipped: another test's closing thread drained the queue");
        return;
    }
    assert!(
        waited < Duration::from_millis(300),
        "the job past a full queue waited {waited:?}"
    );
}

/// Past a full queue, at most [`MAX_DETACHED`] jobs run on threads of their own at once; the
/// rest wait in the queue: each job that came while so many waited started one more thread,
/// without bound, until the process could start no more (and no worker either).
#[test]
fn jobs_on_threads_of_their_own_are_bounded() {
    if !alone("jobs_on_threads_of_their_own_are_bounded") {
        return;
    }
    let began = Instant::now();
    let mut releases = Vec::new();
    for _ in 0..MAX_TAKERS {
        let (job, release) = waiting(Duration::from_secs(20));
        run_later(job);
        releases.push(release);
    }
    while busy().under_way < MAX_TAKERS {
        assert!(
            began.elapsed() < GIVE_UP,
            "4 jobs not under way: {:?}",
            busy()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    for _ in 0..MAX_QUEUED {
        run_later(Job::new(|| {}));
    }
    for _ in 0..MAX_DETACHED + 3 {
        let (job, release) = waiting(Duration::from_secs(20));
        run_later(job);
        releases.push(release);
    }
    let seen = busy();
    // Before the watcher gives up on the first jobs (GIVE_UP after they began), after which
    // new threads drain the queue.
    let in_time = began.elapsed() < GIVE_UP;
    drop(releases);
    let idle = wait_idle(Duration::from_secs(10));
    assert!(seen.detached <= MAX_DETACHED, "{seen:?}");
    if in_time {
        assert_eq!(
            (seen.detached, seen.queued),
            (MAX_DETACHED, MAX_QUEUED + 3),
            "{seen:?}"
        );
    }
    assert_eq!(idle, Ok(()));
}

/// Where neither a closing thread nor the watcher can start, a job waits: it ran on the
/// thread that queued it (herd's event loop), which a close that a hung filesystem keeps
/// waiting, or a lingering socket's, then held. A retry from elsewhere (herd's loop, now and
/// then) starts them once threads can start: their own retries wait for a next job, which a
/// full notify queue never brings, and its datagrams stayed on it for good.
#[test]
fn a_job_no_thread_could_take_waits_for_a_retry_not_the_caller() {
    if !alone("a_job_no_thread_could_take_waits_for_a_retry_not_the_caller") {
        return;
    }
    NO_THREADS.with(|no| no.set(true));
    let (tx, rx) = mpsc::channel();
    run_later(Job::new(move || {
        let name = std::thread::current().name().map(str::to_string);
        tx.send(name).unwrap_or(());
    }));
    // Longer than the watcher's retries take, had it started.
    let before = rx.recv_timeout(Duration::from_millis(500));
    std::thread::spawn(retry).join().unwrap();
    let after = rx.recv_timeout(Duration::from_secs(10));
    assert!(
        before.is_err(),
        "the job ran with no thread to run it: {before:?}"
    );
    assert_eq!(after, Ok(Some("herd-closer".to_string())));
}
