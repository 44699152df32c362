use std::os::windows::io::AsHandle;
use std::os::windows::process::CommandExt;
use std::process::Child;

use herd_sys::windows::job::Job;
use herd_sys::windows::priority::{self, BELOW_NORMAL, IDLE, NORMAL};
use herd_sys::windows::process;

use crate::roles::{child, under_wine, Lines};

/// A child playing `role`, created suspended, placed in a kill-on-close job (which ends it
/// and what it starts if the test fails), given to `before_run`, then resumed.
fn in_job(role: &str, before_run: impl FnOnce(&Child)) -> (Child, Job) {
    let mut command = child(role, "");
    command.creation_flags(process::CREATE_SUSPENDED);
    // Wine's CreateProcess fails now and then with ERROR_INTERNAL_ERROR (1359): once more.
    let child = match command.spawn() {
        Err(e) if e.raw_os_error() == Some(1359) => command.spawn(),
        spawned => spawned,
    }
    .unwrap();
    let job = Job::kill_on_close().unwrap();
    job.assign(child.as_handle()).unwrap();
    before_run(&child);
    process::resume(&child).unwrap();
    (child, job)
}

#[test]
fn a_child_put_idle_while_suspended_runs_idle_and_so_does_its_child_until_raised() {
    let (mut worker, _job) = in_job("job_worker", |worker| {
        priority::set_class(worker, IDLE).unwrap();
    });
    let mut lines = Lines::new(worker.stdout.take().unwrap());
    let grandchild: u32 = lines.after("grandchild=").parse().unwrap();
    assert_eq!(priority::class_of(&worker).unwrap(), IDLE);
    let tree = priority::tree(worker.id(), priority::started_before).unwrap();
    assert_eq!(tree, [worker.id(), grandchild]);
    let grandchild = priority::open_to_set(grandchild).unwrap();
    // Windows starts a child of an IDLE process IDLE; Wine 8 starts it NORMAL.
    let inherited = if under_wine() { NORMAL } else { IDLE };
    assert_eq!(priority::class_of(&grandchild).unwrap(), inherited);
    priority::set_class(&grandchild, IDLE).unwrap();

    assert_eq!(priority::raise_tree(worker.id(), IDLE, NORMAL).unwrap(), 2);
    assert_eq!(priority::class_of(&worker).unwrap(), NORMAL);
    assert_eq!(priority::class_of(&grandchild).unwrap(), NORMAL);
    assert_eq!(priority::raise_tree(worker.id(), IDLE, NORMAL).unwrap(), 0);

    // One that chose another class keeps it.
    priority::set_class(&worker, IDLE).unwrap();
    priority::set_class(&grandchild, BELOW_NORMAL).unwrap();
    assert_eq!(priority::raise_tree(worker.id(), IDLE, NORMAL).unwrap(), 1);
    assert_eq!(priority::class_of(&worker).unwrap(), NORMAL);
    assert_eq!(priority::class_of(&grandchild).unwrap(), BELOW_NORMAL);
    worker.kill().unwrap();
    worker.wait().unwrap();
}

#[test]
fn a_process_that_started_nothing_is_its_own_tree_and_a_gone_one_has_none() {
    let (mut sleeper, _job) = in_job("sleeper", |_| ());
    // A process another test left behind may name a reused pid as its parent: the rule of
    // `raise_tree` leaves it out.
    let rule = priority::started_before;
    assert_eq!(priority::tree(sleeper.id(), rule).unwrap(), [sleeper.id()]);
    // A NORMAL process's child starts NORMAL.
    assert_eq!(priority::class_of(&sleeper).unwrap(), NORMAL);
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    assert_eq!(
        priority::tree(sleeper.id(), rule).unwrap(),
        Vec::<u32>::new()
    );
    assert_eq!(priority::raise_tree(sleeper.id(), IDLE, NORMAL).unwrap(), 0);
}

#[test]
fn a_child_listed_under_a_reused_pid_is_not_in_the_tree() {
    let (mut worker, _job) = in_job("job_worker", |_| ());
    let mut lines = Lines::new(worker.stdout.take().unwrap());
    lines.after("grandchild=");
    let before_its_parent = |_, _| true;
    let tree = priority::tree(worker.id(), before_its_parent).unwrap();
    assert_eq!(tree, [worker.id()]);
    worker.kill().unwrap();
    worker.wait().unwrap();
}
