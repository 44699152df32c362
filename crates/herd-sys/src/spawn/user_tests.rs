//! A child that switches to another user: what it keeps of herd's (its threads' ids, the
//! parent-death signal), and what that user's processes can do to it before its `execve`.

use std::sync::atomic::Ordering;

use super::tests::shell;
use super::*;

/// The ids of every thread of this process, from `/proc/self/task/*/status`.
#[cfg(target_os = "linux")]
fn thread_ids() -> Vec<String> {
    let mut ids = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let status = std::fs::read_to_string(task.unwrap().path().join("status"));
        // A thread that exited meanwhile has no status left.
        for line in status.unwrap_or_default().lines() {
            if line.starts_with("Uid:") || line.starts_with("Gid:") || line.starts_with("Groups:") {
                ids.push(line.to_string());
            }
        }
    }
    ids.sort();
    ids.dedup();
    ids
}

/// A worker started as another user (as root) gets that user, and herd keeps its own in
/// every thread. The child changes ids with the system calls themselves: the C library's
/// `setuid` broadcasts to the threads it knows, which in a child sharing herd's memory are
/// herd's (musl signals them by thread id, and they would change their own ids; glibc 2.25
/// and later happen to miss them, naming the child's pid in `tgkill`).
#[test]
#[cfg(target_os = "linux")]
fn a_worker_with_credentials_leaves_herds_threads_alone() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root");
        return;
    }
    let before = thread_ids();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let other = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::yield_now();
            }
        })
    };
    for how in [How::CloneOrFork, How::Fork] {
        let mut plan = shell(
            "grep -q '^Uid:.65534.65534' /proc/$$/status && \
             grep -q '^Gid:.65533.65533' /proc/$$/status && \
             grep -q '^Groups:.65532 *$' /proc/$$/status",
        );
        plan.how = how;
        plan.credentials(65534, 65533, vec![65532]);
        let pid = plan.spawn(&[], None).unwrap();
        assert!(wait_for(pid).unwrap().success(), "{how:?}");
    }
    assert_eq!(thread_ids(), before);
    stop.store(true, Ordering::Relaxed);
    other.join().unwrap();
}

/// A worker that runs as another user still dies with its parent: a change of user clears
/// the parent-death signal (prctl(2)), so the child sets it again after `setuid`. Its parent
/// here is a thread that exits as soon as it has spawned it (the signal follows the thread).
#[test]
#[cfg(target_os = "linux")]
fn a_worker_with_credentials_still_dies_with_its_parent() {
    use std::os::unix::process::ExitStatusExt;

    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root");
        return;
    }
    for how in [How::CloneOrFork, How::Fork] {
        let pid = std::thread::spawn(move || {
            let mut plan = shell("sleep 10");
            plan.how = how;
            plan.credentials(65534, 65534, vec![65534]);
            plan.parent_death_signal(Some(Signal::KILL));
            plan.spawn(&[], None).unwrap()
        })
        .join()
        .unwrap();
        let status = wait_for(pid).unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{how:?}: {status:?}");
    }
}

/// A child stopped before its `execve` (SIGSTOP, which another process of a `--user`
/// worker's user may send it once it has switched to that user) does not keep the spawning
/// thread, herd's supervisor, waiting for ever: it is killed, and the spawn fails saying so.
/// Before, a worker stopping its siblings' successors froze herd (no restarts, no `herd
/// status`, SIGTERM unheard) until someone sent the child SIGCONT.
#[test]
fn a_child_stopped_before_its_exec_is_killed_instead_of_waited_for() {
    fn spawned(start: impl FnOnce() -> Result<u32, SpawnError> + Send + 'static) -> SpawnError {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(start()).unwrap());
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .expect("the spawn still waits for a child stopped before its exec")
            .unwrap_err()
    }
    fn stopped(how: How) -> ExecPlan {
        let mut plan = shell("exit 0");
        plan.raise_first = Some(libc::SIGSTOP);
        plan.how = how;
        plan
    }
    // Started side by side: every platform, any user.
    let err = spawned(|| {
        let plan = stopped(How::CloneOrFork);
        let job = Job {
            plan: &plan,
            fds: &[],
            stdio: Stdio::default(),
        };
        spawn_all(&[job]).pop().unwrap()
    });
    assert_eq!(err.stage(), Stage::Stopped, "{err}");
    assert!(err.to_string().contains("stopped by a signal"), "{err}");

    // One start as another user, where the stop can come from that user's processes.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped the start as another user: needs root");
        return;
    }
    for how in [How::CloneOrFork, How::Fork] {
        let err = spawned(move || {
            let mut plan = stopped(how);
            plan.credentials(65534, 65534, vec![65534]);
            plan.spawn(&[], None)
        });
        assert_eq!(err.stage(), Stage::Stopped, "{how:?}: {err}");
    }
}
