//! A child spawned in `SCHED_IDLE`, and what it starts, raised back together.

use std::os::unix::io::AsFd;

use super::tests::shell;
use super::*;

/// The scheduling policy of process `pid` (field 41 of `/proc/PID/stat`).
#[cfg(target_os = "linux")]
fn policy_of(pid: u32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    crate::process::parse_stat_fields(&stat, &[41]).unwrap()[0]
        .parse()
        .unwrap()
}

/// A child started in `SCHED_IDLE` and a process it starts are both in it; raising the tree
/// (found from the lists of children, or where the kernel has none from the process group)
/// moves both back to `SCHED_OTHER`, and a second raise finds nothing to do.
#[test]
#[cfg(target_os = "linux")]
fn a_sched_idle_child_and_its_own_child_are_raised_together() {
    for listed in [true, false] {
        idle_child_and_its_child_raised(listed);
    }
}

#[cfg(target_os = "linux")]
fn idle_child_and_its_child_raised(listed: bool) {
    use std::io::BufRead;
    let (out_read, out_write) = cloexec_pipe().unwrap();
    // chrt puts the shell in SCHED_IDLE; the sleep it starts inherits the class.
    let mut plan = shell("exec chrt --idle 0 sh -c 'sleep 30 & echo $!; exec sleep 30'");
    plan.new_process_group(true);
    let stdio = Stdio {
        stdout: Some(out_write.as_fd()),
        ..Stdio::default()
    };
    let pid = plan.spawn_with(&[], &stdio).unwrap();
    drop(out_write);
    let mut line = String::new();
    std::io::BufReader::new(std::fs::File::from(out_read))
        .read_line(&mut line)
        .unwrap();
    let child: u32 = line.trim().parse().unwrap();
    let idle = crate::process::is_idle_policy;
    let before = (policy_of(pid), policy_of(child));
    assert!(idle(before.0) && idle(before.1), "{before:?}");
    let raise = || crate::process::policy::raise_tree(pid, listed).unwrap();
    let raised = raise();
    assert_eq!(
        (raised.threads, raised.processes),
        (2, 2),
        "listed {listed}"
    );
    assert_eq!((policy_of(pid), policy_of(child)), (0, 0));
    assert_eq!(raise().threads, 0);
    for p in [child, pid] {
        crate::process::signal_process(p, crate::process::Signal::KILL).unwrap();
    }
    wait_for(pid).unwrap();
}
