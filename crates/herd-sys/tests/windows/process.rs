use std::time::{Duration, Instant, SystemTime};

use std::os::windows::io::AsHandle;

use herd_sys::windows::job::Job;
use herd_sys::windows::process::{self, Process};

use crate::roles::{child, live_for_ever, under_wine, Lines, PATIENCE};

const SPIN: Duration = Duration::from_millis(300);
const RESIDENT: usize = 32 << 20;

/// Uses SPIN of CPU and keeps RESIDENT bytes touched, then waits.
pub fn spinner() {
    let memory = vec![1u8; RESIDENT];
    let deadline = Instant::now() + PATIENCE;
    let mut pages = 0usize;
    while process::cpu_time(&process::current()).unwrap() < SPIN && Instant::now() < deadline {
        pages += memory
            .iter()
            .step_by(4096)
            .map(|&b| usize::from(b))
            .sum::<usize>();
    }
    let used = process::cpu_time(&process::current()).unwrap();
    println!("spun {}ms ({pages} pages)", used.as_millis());
    live_for_ever();
}

#[test]
fn a_child_is_measured_terminated_and_its_exit_code_read() {
    let mut spinner = child("spinner", "").spawn().unwrap();
    let job = Job::kill_on_close().unwrap(); // ends it if the test fails
    job.assign(spinner.as_handle()).unwrap();
    let mut lines = Lines::new(spinner.stdout.take().unwrap());
    let spun = lines.after("spun ");
    let p = Process::open(spinner.id()).unwrap();
    assert_eq!(p.pid(), spinner.id());

    let used = process::cpu_time(&p).unwrap();
    // Wine counts a part of another process's threads only (here 60 of 300 ms).
    let whole = if under_wine() {
        Duration::from_millis(1)
    } else {
        SPIN
    };
    assert!(used >= whole, "cpu time {used:?}, by its own count {spun}");
    let resident = process::working_set(&p).unwrap();
    assert!(resident >= RESIDENT as u64, "working set {resident}");
    let committed = process::commit_charge(&p).unwrap();
    assert!(committed >= RESIDENT as u64, "commit charge {committed}");
    assert_eq!(process::exit_code(&p).unwrap(), None);

    process::terminate(&p, 7).unwrap();
    assert!(process::wait(&p, Some(PATIENCE)).unwrap());
    assert_eq!(process::exit_code(&p).unwrap(), Some(7));
    assert_eq!(spinner.wait().unwrap().code(), Some(7));
}

#[test]
fn an_exit_code_of_259_is_not_mistaken_for_still_running() {
    let mut exits = child("exit", "259").spawn().unwrap();
    exits.wait().unwrap();
    assert_eq!(process::exit_code(&exits).unwrap(), Some(259));
}

#[test]
fn no_process_has_pid_0() {
    assert!(Process::open(0).is_err());
}

#[test]
fn this_processs_start_time_and_handles_are_read() {
    let me = process::current();
    let started = process::start_time(&me).unwrap();
    let age = SystemTime::now().duration_since(started).unwrap();
    assert!(age < Duration::from_secs(3600), "started {age:?} ago");
    let before = process::handle_count(&me).unwrap();
    if under_wine() {
        // Wine 8 does not count handles: GetProcessHandleCount succeeds with 0.
        assert_eq!(before, 0);
        return;
    }
    let opened = Process::open(std::process::id()).unwrap();
    assert_eq!(process::handle_count(&me).unwrap(), before + 1);
    drop(opened);
    assert_eq!(process::handle_count(&me).unwrap(), before);
    assert!(before < process::MAX_HANDLES as u32);
}

#[test]
fn a_processs_threads_are_counted_while_it_lives() {
    let mut spinner = child("spinner", "").spawn().unwrap();
    let job = Job::kill_on_close().unwrap(); // ends it if the test fails
    job.assign(spinner.as_handle()).unwrap();
    let mut lines = Lines::new(spinner.stdout.take().unwrap());
    lines.after("spun ");
    // Another process: this one's own count moves with the tests running beside this one.
    let threads = process::thread_count(spinner.id()).unwrap();
    assert!(threads >= 1, "{threads} threads");
    spinner.kill().unwrap();
    spinner.wait().unwrap();
    assert_eq!(
        process::thread_count(spinner.id()).unwrap(),
        0,
        "it has exited"
    );
    assert_eq!(
        process::thread_count(u32::MAX - 3).unwrap(),
        0,
        "no such process"
    );
}

#[test]
fn a_process_created_suspended_runs_once_resumed() {
    use std::os::windows::process::CommandExt;
    let mut spinner = child("spinner", "")
        .creation_flags(process::CREATE_SUSPENDED)
        .spawn()
        .unwrap();
    let job = Job::kill_on_close().unwrap(); // ends it if the test fails
    job.assign(spinner.as_handle()).unwrap();
    // Suspended, it would never say it spun.
    process::resume(&spinner).unwrap();
    let mut lines = Lines::new(spinner.stdout.take().unwrap());
    assert!(lines.after("spun ").ends_with("pages)"));
    process::terminate(&spinner, 0).unwrap();
}
