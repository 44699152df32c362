use std::os::windows::io::AsHandle;

use herd_sys::windows::job::Job;
use herd_sys::windows::process::{self, Process};

use crate::roles::{child, live_for_ever, Lines, PATIENCE};

/// Holds a kill-on-close job it is in, and starts a worker (whose stdout is its own).
pub fn holder() {
    let job = Job::kill_on_close().expect("a job");
    job.assign_current_process().expect("in the job");
    let worker = child("job_worker", "")
        .stdout(std::process::Stdio::inherit())
        .spawn();
    println!("worker={}", worker.expect("a worker").id());
    let _job = job;
    live_for_ever();
}

/// Starts a child of its own.
pub fn worker() {
    let grandchild = child("sleeper", "")
        .stdout(std::process::Stdio::null())
        .spawn();
    println!("grandchild={}", grandchild.expect("a grandchild").id());
    live_for_ever();
}

/// Ends what a test left running, if it failed half-way.
struct Reap(Vec<Process>);

impl Drop for Reap {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = process::terminate(p, 1);
        }
    }
}

#[test]
fn a_worker_started_after_the_job_and_its_child_die_with_the_jobs_holder() {
    let mut holder = child("job_holder", "").spawn().unwrap();
    let mut lines = Lines::new(holder.stdout.take().unwrap());
    let worker: u32 = lines.after("worker=").parse().unwrap();
    let grandchild: u32 = lines.after("grandchild=").parse().unwrap();
    let both = Reap(vec![
        Process::open(worker).unwrap(),
        Process::open(grandchild).unwrap(),
    ]);
    assert!(!process::wait(&both.0[0], Some(std::time::Duration::ZERO)).unwrap());

    process::terminate(&holder, 9).unwrap();
    holder.wait().unwrap();
    for p in &both.0 {
        assert!(
            process::wait(p, Some(PATIENCE)).unwrap(),
            "process {} outlived the job's holder",
            p.pid()
        );
    }
}

#[test]
fn a_job_takes_a_child_by_its_handle() {
    let job = Job::kill_on_close().unwrap();
    let mut sleeper = child("sleeper", "").spawn().unwrap();
    job.assign(sleeper.as_handle()).unwrap();
    drop(job);
    assert!(process::wait(&sleeper, Some(PATIENCE)).unwrap());
    sleeper.wait().unwrap();
}
