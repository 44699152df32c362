//! Spawning real children: what they see, and what the parent gets back.

use std::mem;
use std::os::unix::io::AsFd;
use std::sync::atomic::Ordering;

use crate::process::max_signal;

use super::*;

#[test]
fn exec_failure_is_reported() {
    let mut plan = ExecPlan::new(OsStr::new("/nonexistent/herd-test")).unwrap();
    plan.arg(OsStr::new("x")).unwrap();
    let err = plan.spawn(&[], None).unwrap_err();
    assert_eq!(err.stage(), Stage::Exec);
    assert_eq!(err.io_error().raw_os_error(), Some(libc::ENOENT));
}

#[test]
fn probe_reports_the_step_that_fails() {
    let mut plan = ExecPlan::new(OsStr::new("/bin/sh")).unwrap();
    plan.arg(OsStr::new("sh")).unwrap();
    plan.probe().unwrap();
    plan.chdir(OsStr::new("/nonexistent/herd-test")).unwrap();
    assert_eq!(plan.probe().unwrap_err().stage(), Stage::Chdir);

    let mut plan = ExecPlan::new(OsStr::new("/nonexistent/herd-test")).unwrap();
    plan.arg(OsStr::new("x")).unwrap();
    assert_eq!(plan.probe().unwrap_err().stage(), Stage::Exec);

    // A hard limit above the system's ceiling fails for root and others alike.
    let mut plan = ExecPlan::new(OsStr::new("/bin/sh")).unwrap();
    plan.limit(libc::RLIMIT_CORE as libc::c_int, 0, 0);
    plan.limit(
        libc::RLIMIT_NOFILE as libc::c_int,
        u64::MAX - 1,
        u64::MAX - 1,
    );
    let err = plan.probe().unwrap_err();
    assert_eq!(err.stage(), Stage::Limits);
    assert_eq!(err.limit_index(), Some(1));
}

#[test]
fn child_sees_its_own_listen_pid() {
    let mut plan = ExecPlan::new(OsStr::new("/bin/sh")).unwrap();
    for a in ["sh", "-c", "test \"$LISTEN_PID\" = \"$$\""] {
        plan.arg(OsStr::new(a)).unwrap();
    }
    plan.listen_pid();
    let pid = plan.spawn(&[], None).unwrap();
    assert!(wait_for(pid).unwrap().success());
}

/// One fd given both as an inherited fd and as stdin (`--bind ...,stdin`) is the same open
/// socket at 3 and at 0 in the child, both inheritable.
#[test]
#[cfg(target_os = "linux")]
fn an_inherited_fd_can_also_be_stdin() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let inode = |fd| format!("$(readlink /proc/$$/fd/{fd})");
    let script = format!("test \"{}\" = \"{}\"", inode(0), inode(3));
    let mut plan = ExecPlan::new(OsStr::new("/bin/sh")).unwrap();
    for a in ["sh", "-c", &script] {
        plan.arg(OsStr::new(a)).unwrap();
    }
    let fd = listener.as_fd();
    let pid = plan.spawn(&[fd], Some(fd)).unwrap();
    assert!(wait_for(pid).unwrap().success());
}

/// The write end of the pipe [`mark`] writes to.
static MARKER: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

extern "C" fn mark(_: libc::c_int) {
    let fd = MARKER.load(Ordering::Relaxed);
    // SAFETY: write is async-signal-safe; the byte lives in static memory.
    unsafe { libc::write(fd, b"!".as_ptr().cast(), 1) };
}

/// Whether `fd` (non-blocking) has a byte to read; consumes it.
fn marked(fd: &OwnedFd) -> bool {
    let mut byte = 0u8;
    // SAFETY: reads at most one byte into a byte we own.
    unsafe { libc::read(fd.as_raw_fd(), (&mut byte as *mut u8).cast(), 1) == 1 }
}

/// A signal handler of the parent (here, one that writes to a pipe, as tokio's do) never
/// runs in the child, even for a signal that arrives before the child resets the
/// dispositions: every signal is blocked across fork, and the handler is gone by the time
/// the child unblocks them.
#[test]
fn a_handler_of_the_parent_never_runs_in_the_child() {
    let (read, write) = cloexec_pipe().unwrap();
    crate::fd::set_nonblocking(std::os::unix::io::AsFd::as_fd(&read)).unwrap();
    MARKER.store(write.as_raw_fd(), Ordering::Relaxed);
    // SIGWINCH: ignored by default, so the child survives it once the handler is reset.
    // SAFETY: a zeroed sigaction is valid; the handler is async-signal-safe.
    unsafe {
        let mut action: libc::sigaction = mem::zeroed();
        action.sa_sigaction = mark as extern "C" fn(libc::c_int) as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        assert_eq!(libc::sigaction(libc::SIGWINCH, &action, ptr::null_mut()), 0);
        libc::raise(libc::SIGWINCH);
    }
    assert!(marked(&read), "the handler runs in the parent");

    let mut plan = ExecPlan::new(OsStr::new("/bin/sh")).unwrap();
    for a in ["sh", "-c", "exit 0"] {
        plan.arg(OsStr::new(a)).unwrap();
    }
    plan.raise_first = Some(libc::SIGWINCH);
    let pid = plan.spawn(&[], None).unwrap();
    assert!(wait_for(pid).unwrap().success());
    assert!(!marked(&read), "the parent's handler ran in the child");
    // SAFETY: a zeroed sigaction with SIG_DFL restores the default; then the handler, which
    // no longer runs, forgets the pipe that is about to close.
    unsafe {
        let mut action: libc::sigaction = mem::zeroed();
        action.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(libc::SIGWINCH, &action, ptr::null_mut());
    }
    MARKER.store(-1, Ordering::Relaxed);
}

/// The thread that spawns gets its own signal mask back.
#[test]
fn the_parents_signal_mask_is_restored() {
    let mask = || {
        // SAFETY: a zeroed sigset_t is valid output space; SIG_BLOCK with no new set
        // only reads the mask.
        unsafe {
            let mut set: libc::sigset_t = mem::zeroed();
            libc::pthread_sigmask(libc::SIG_BLOCK, ptr::null(), &mut set);
            (1..=max_signal())
                .filter(|&sig| libc::sigismember(&set, sig) == 1)
                .collect::<Vec<_>>()
        }
    };
    let before = mask();
    let mut plan = ExecPlan::new(OsStr::new("/bin/sh")).unwrap();
    for a in ["sh", "-c", "exit 0"] {
        plan.arg(OsStr::new(a)).unwrap();
    }
    let pid = plan.spawn(&[], None).unwrap();
    assert_eq!(mask(), before);
    assert!(wait_for(pid).unwrap().success());
    let failing = ExecPlan::new(OsStr::new("/nonexistent/herd-test")).unwrap();
    failing.spawn(&[], None).unwrap_err();
    assert_eq!(mask(), before);
}

/// Where `close_range` is not used (kernels before 5.11), the fds above the sockets are
/// still marked close-on-exec, one by one: one the parent left inheritable does not reach
/// the worker.
#[test]
fn without_close_range_no_stray_fd_reaches_the_child() {
    let null = crate::fd::open_dev_null().unwrap();
    // SAFETY: F_DUPFD makes a fresh fd, without FD_CLOEXEC, that we own at once.
    let stray = unsafe {
        let raw = libc::fcntl(null.as_raw_fd(), libc::F_DUPFD, 300);
        assert!(raw >= 300);
        OwnedFd::from_raw_fd(raw)
    };
    let mut plan = ExecPlan::new(OsStr::new("/bin/sh")).unwrap();
    let script = format!("test ! -e /dev/fd/{}", stray.as_raw_fd());
    for a in ["sh", "-c", &script] {
        plan.arg(OsStr::new(a)).unwrap();
    }
    plan.no_close_range = true;
    let pid = plan.spawn(&[], None).unwrap();
    assert!(
        wait_for(pid).unwrap().success(),
        "fd {} leaked",
        stray.as_raw_fd()
    );
}

#[test]
fn child_writes_to_the_streams_it_was_given() {
    let mut plan = ExecPlan::new(OsStr::new("/bin/sh")).unwrap();
    for a in ["sh", "-c", "echo out; echo err >&2"] {
        plan.arg(OsStr::new(a)).unwrap();
    }
    let (out_read, out_write) = cloexec_pipe().unwrap();
    let (err_read, err_write) = cloexec_pipe().unwrap();
    let stdio = Stdio {
        stdin: None,
        stdout: Some(out_write.as_fd()),
        stderr: Some(err_write.as_fd()),
    };
    let pid = plan.spawn_with(&[], &stdio).unwrap();
    drop((out_write, err_write));
    assert!(wait_for(pid).unwrap().success());
    let read = |fd: OwnedFd| {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::fs::File::from(fd), &mut text).unwrap();
        text
    };
    assert_eq!(read(out_read), "out\n");
    assert_eq!(read(err_read), "err\n");
}

/// A plan that runs `sh -c script`.
pub(super) fn shell(script: &str) -> ExecPlan {
    let mut plan = ExecPlan::new(OsStr::new("/bin/sh")).unwrap();
    for a in ["sh", "-c", script] {
        plan.arg(OsStr::new(a)).unwrap();
    }
    plan
}

/// Where the clone path is refused, `fork` does the same: the exec failure with its stage
/// and errno, the worker's own `LISTEN_PID`, a probe's failing step.
#[test]
fn the_fork_path_reports_as_the_clone_path_does() {
    for how in [How::CloneOrFork, How::Fork] {
        let mut plan = ExecPlan::new(OsStr::new("/nonexistent/herd-test")).unwrap();
        plan.how = how;
        let err = plan.spawn(&[], None).unwrap_err();
        assert_eq!(err.stage(), Stage::Exec, "{how:?}");
        assert_eq!(err.io_error().raw_os_error(), Some(libc::ENOENT));

        let mut plan = shell("test \"$LISTEN_PID\" = \"$$\"");
        plan.how = how;
        plan.listen_pid();
        let pid = plan.spawn(&[], None).unwrap();
        assert!(wait_for(pid).unwrap().success(), "{how:?}");

        let mut plan = shell("exit 0");
        plan.how = how;
        plan.chdir(OsStr::new("/nonexistent/herd-test")).unwrap();
        let err = plan.probe().unwrap_err();
        assert_eq!(err.stage(), Stage::Chdir, "{how:?}");
        assert_eq!(err.io_error().raw_os_error(), Some(libc::ENOENT));
    }
}

/// The environment variable that makes [`a_child_that_fails_before_exec_leaves_no_zombie`]
/// do its check, in a copy of this test binary that runs only it.
const NO_ZOMBIE_CHECK: &str = "HERD_SYS_TEST_NO_ZOMBIE_CHECK";

/// A child that fails before `execve` is reaped before the error is returned: this process
/// has no child left. Checked in a copy of the test binary running this test alone, where no
/// other test's children can be.
#[test]
fn a_child_that_fails_before_exec_leaves_no_zombie() {
    if std::env::var_os(NO_ZOMBIE_CHECK).is_some() {
        for how in [How::CloneOrFork, How::Fork] {
            let mut plan = shell("exit 0");
            plan.how = how;
            plan.chdir(OsStr::new("/nonexistent/herd-test")).unwrap();
            let err = plan.spawn(&[], None).unwrap_err();
            assert_eq!(err.stage(), Stage::Chdir);
            // SAFETY: WNOHANG only asks; no status is written through a null pointer.
            let rc = unsafe { libc::waitpid(-1, ptr::null_mut(), libc::WNOHANG) };
            let errno = io::Error::last_os_error().raw_os_error();
            assert_eq!((rc, errno), (-1, Some(libc::ECHILD)), "{how:?}");
        }
        // The same for the starts of a batch that fail, cloned or forked.
        let mut plans = [shell("exit 0"), shell("exit 0")];
        plans[1].how = How::Fork;
        for plan in &mut plans {
            plan.chdir(OsStr::new("/nonexistent/herd-test")).unwrap();
        }
        let jobs: Vec<Job<'_>> = plans
            .iter()
            .map(|plan| Job {
                plan,
                fds: &[],
                stdio: Stdio::default(),
            })
            .collect();
        assert!(spawn_all(&jobs).iter().all(Result::is_err));
        // SAFETY: as above.
        let rc = unsafe { libc::waitpid(-1, ptr::null_mut(), libc::WNOHANG) };
        let errno = io::Error::last_os_error().raw_os_error();
        assert_eq!((rc, errno), (-1, Some(libc::ECHILD)), "a batch");
        return;
    }
    let name = "spawn::tests::a_child_that_fails_before_exec_leaves_no_zombie";
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--test-threads=1", "--nocapture"])
        .env(NO_ZOMBIE_CHECK, "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("1 passed"), "the check did not run: {text}");
}

/// Spawning while other threads allocate and hold locks: every child starts, and every
/// thread keeps running (the child shares the memory they use, but takes no lock).
#[test]
fn spawning_beside_busy_threads() {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let lock = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Vec<u8>>::new()));
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let (stop, lock) = (stop.clone(), lock.clone());
            std::thread::spawn(move || {
                let mut rounds = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let mut held = lock.lock().unwrap();
                    held.push(vec![0u8; 4096]);
                    if held.len() > 64 {
                        held.clear();
                    }
                    rounds += 1;
                }
                rounds
            })
        })
        .collect();
    for _ in 0..200 {
        let pid = shell("exit 0").spawn(&[], None).unwrap();
        assert!(wait_for(pid).unwrap().success());
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        assert!(t.join().unwrap() > 0);
    }
}

/// The child's stack (clone path) has room to spare for every path through its steps:
/// measured on a stack filled with a pattern before each clone.
#[test]
#[cfg(target_os = "linux")]
fn the_child_stack_is_large_enough() {
    use super::vfork::{MAX_STACK_USED, STACK_BYTES};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut plan = shell("exit 0");
    plan.listen_pid();
    plan.new_process_group(true);
    plan.umask(0o022).nice(Some(1));
    plan.limit(libc::RLIMIT_CORE as libc::c_int, 0, 0);
    plan.no_close_range = true;
    let pid = plan
        .spawn(&[listener.as_fd()], Some(listener.as_fd()))
        .unwrap();
    assert!(wait_for(pid).unwrap().success());
    ExecPlan::new(OsStr::new("/nonexistent/herd-test"))
        .unwrap()
        .spawn(&[], None)
        .unwrap_err();
    plan.chdir(OsStr::new("/")).unwrap();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        plan.credentials(65534, 65534, vec![65534]);
    }
    plan.probe().unwrap();
    let used = MAX_STACK_USED.load(Ordering::Relaxed);
    eprintln!("the child used {used} of {STACK_BYTES} bytes of stack");
    assert!(
        used > 0 && used <= STACK_BYTES / 4,
        "{used} of {STACK_BYTES}"
    );
}

/// Where the kernel refuses the clone (`EINVAL` here; `ENOSYS` alike), the worker is forked
/// instead, with everything a worker gets; where it does not, nothing is forked.
#[test]
#[cfg(target_os = "linux")]
fn a_refused_clone_falls_back_to_fork() {
    let forks = || super::start::FORKS.with(|f| f.get());
    let before = forks();
    let mut plan = shell("test \"$LISTEN_PID\" = \"$$\"");
    plan.listen_pid();
    let pid = plan.spawn(&[], None).unwrap();
    assert!(wait_for(pid).unwrap().success());
    assert_eq!(forks(), before, "the clone path forked");
    plan.how = How::RefusedClone;
    let pid = plan.spawn(&[], None).unwrap();
    assert!(wait_for(pid).unwrap().success());
    assert_eq!(forks(), before + 1, "no fork after the refused clone");
}

/// One test at a time whose probe's child waits on a FUSE mount: each finds its child as the
/// one waiting on FUSE.
#[cfg(target_os = "linux")]
fn one_fuse_probe() -> std::sync::MutexGuard<'static, ()> {
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ONE.lock().unwrap_or_else(|p| p.into_inner())
}

/// This process's child waiting for a FUSE daemon (a probe's, in its chdir), once one does
/// (within 10 s).
#[cfg(target_os = "linux")]
fn child_waiting_on_fuse() -> Option<i32> {
    (0..200).find_map(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        let tasks = std::fs::read_dir("/proc/self/task").ok()?;
        let children =
            tasks.filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("children")).ok());
        let pids: Vec<i32> = children
            .flat_map(|c| {
                c.split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect::<Vec<_>>()
            })
            .collect();
        pids.into_iter().find(|pid| {
            let wchan = std::fs::read_to_string(format!("/proc/{}/wchan", pid));
            wchan.map(|w| w.contains("fuse")).unwrap_or(false)
        })
    })
}

/// A probe whose child is killed before it reports fails: its status pipe closed as at an
/// exec, so the probe passed with nothing checked (here its `--chdir` waited on a FUSE mount
/// whose daemon never answers, and an operator killed it), also when another reaper (herd's
/// loop, here this thread) took the child's status first.
#[cfg(target_os = "linux")]
#[test]
fn a_probe_whose_child_is_killed_fails() {
    let _one = one_fuse_probe();
    let mount = match crate::hung_fuse::Mount::new("probe-killed") {
        Some(mount) => mount,
        None => return,
    };
    let dir = mount.dir.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let hung = dir.clone();
    std::thread::spawn(move || {
        let mut plan = ExecPlan::new(OsStr::new("/bin/sh")).unwrap();
        plan.arg(OsStr::new("sh")).unwrap();
        plan.chdir(hung.as_os_str()).unwrap();
        tx.send(plan.probe().map_err(|e| e.stage())).unwrap();
    });
    let waiting = child_waiting_on_fuse();
    if let Some(pid) = waiting {
        // SAFETY: kill with the pid of our own child, not reaped yet; then reap it, as herd's
        // loop may (the probe's own wait may come first).
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
    }
    let probed = rx.recv_timeout(std::time::Duration::from_secs(10));
    // Whatever still waits on the filesystem ends here.
    crate::hung_fuse::abort(&dir);
    mount.end();
    assert!(waiting.is_some(), "no probe child waiting in its chdir");
    assert_eq!(probed, Ok(Err(Stage::Killed)));
}

/// A probe's child stays in its parent's process group, even for a plan whose workers lead
/// their own: herd adopts the children that lead groups of their own as orphans, so it held
/// every adoption while a probe ran, and a probe that waits for ever (its `--chdir` on a hung
/// filesystem, here a FUSE mount whose daemon never answers) held them for good: the orphans
/// workers left meanwhile (a daemon's double fork) were not adopted, not stopped with herd,
/// and outlived it.
#[cfg(target_os = "linux")]
#[test]
fn a_probe_stays_in_its_parents_group() {
    // No `let ... else`: herd-sys builds with Rust 1.63.
    let _one = one_fuse_probe();
    let mount = match crate::hung_fuse::Mount::new("probe-hung") {
        Some(mount) => mount,
        None => return,
    };
    let dir = mount.dir.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let hung = dir.clone();
    std::thread::spawn(move || {
        let mut plan = ExecPlan::new(OsStr::new("/bin/sh")).unwrap();
        plan.arg(OsStr::new("sh")).unwrap();
        plan.new_process_group(true);
        plan.chdir(hung.as_os_str()).unwrap();
        tx.send(plan.probe().map_err(|e| e.stage())).unwrap();
    });
    let waiting = child_waiting_on_fuse();
    // SAFETY: getpgid reads a process's group, ours (0) or a child's.
    let groups = waiting.map(|pid| unsafe { (libc::getpgid(pid), libc::getpgid(0)) });
    // The connection is aborted, whether the child was found or not: its wait ends (the
    // child holds a copy of the daemon's fd, which would keep it waiting past the test).
    crate::hung_fuse::abort(&dir);
    if let Some(pid) = waiting {
        // SAFETY: kill with the pid of our own child, not reaped yet.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    mount.end();
    let probed = rx.recv_timeout(std::time::Duration::from_secs(10));
    let (child, ours) = groups.expect("no probe child waiting in its chdir");
    assert_eq!(
        child, ours,
        "the probe's child leads a process group of its own"
    );
    // Its answer does not matter: the child was killed.
    let _ = probed.expect("the probe still waits once its child is gone");
}
