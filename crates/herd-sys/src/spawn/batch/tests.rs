//! Batches of real children: each gets what a single spawn gives, and fails on its own.

use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsFd;

use super::super::start::How;
use super::*;

/// A plan that runs `sh -c script`.
fn shell(script: &str) -> ExecPlan {
    let mut plan = ExecPlan::new(OsStr::new("/bin/sh")).unwrap();
    for a in ["sh", "-c", script] {
        plan.arg(OsStr::new(a)).unwrap();
    }
    plan
}

/// The inode of the socket behind `fd`, as `readlink /proc/PID/fd/N` names it.
fn socket_name(fd: BorrowedFd<'_>) -> String {
    let file = std::fs::File::from(fd.try_clone_to_owned().unwrap());
    format!("socket:[{}]", file.metadata().unwrap().ino())
}

/// Children started together each see their own pid in `LISTEN_PID`, their own sockets at
/// 3 (and as stdin when asked), in the order given, whether cloned or forked.
#[test]
fn each_child_of_a_batch_gets_its_own_pid_and_sockets() {
    let listeners: Vec<_> = (0..4)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let plans: Vec<ExecPlan> = (0..12)
        .map(|i| {
            let expected = socket_name(listeners[i % 4].as_fd());
            let script = format!(
                "test \"$LISTEN_PID\" = \"$$\" && test \"$(readlink /proc/$$/fd/3)\" = \
                 '{expected}' && test \"$(readlink /proc/$$/fd/0)\" = '{expected}'"
            );
            let mut plan = shell(&script);
            plan.listen_pid().new_process_group(true);
            plan.how = match i % 5 {
                1 => How::Fork,
                2 => How::RefusedClone,
                _ => How::CloneOrFork,
            };
            plan
        })
        .collect();
    let fds: Vec<[BorrowedFd<'_>; 1]> = (0..12).map(|i| [listeners[i % 4].as_fd()]).collect();
    let jobs: Vec<Job<'_>> = plans
        .iter()
        .zip(&fds)
        .map(|(plan, fds)| Job {
            plan,
            fds,
            stdio: Stdio {
                stdin: Some(fds[0]),
                ..Stdio::default()
            },
        })
        .collect();
    let pids: Vec<u32> = spawn_all(&jobs).into_iter().map(Result::unwrap).collect();
    for (i, pid) in pids.into_iter().enumerate() {
        assert!(wait_for(pid).unwrap().success(), "child {i}");
    }
}

/// A start that fails (at `execve`, at `chdir`, at a limit) is that start's error, with its
/// stage and errno; the others of the batch start all the same.
#[test]
fn each_start_of_a_batch_fails_on_its_own() {
    let ok = || shell("exit 0");
    let missing = ExecPlan::new(OsStr::new("/nonexistent/herd-test")).unwrap();
    let mut no_dir = ok();
    no_dir.chdir(OsStr::new("/nonexistent/herd-test")).unwrap();
    let mut no_limit = ok();
    no_limit.limit(libc::RLIMIT_CORE as libc::c_int, 0, 0);
    no_limit.limit(
        libc::RLIMIT_NOFILE as libc::c_int,
        u64::MAX - 1,
        u64::MAX - 1,
    );
    let mut forked_missing = ExecPlan::new(OsStr::new("/nonexistent/herd-test")).unwrap();
    forked_missing.how = How::Fork;
    let plans = [ok(), missing, ok(), no_dir, no_limit, forked_missing, ok()];
    let jobs: Vec<Job<'_>> = plans
        .iter()
        .map(|plan| Job {
            plan,
            fds: &[],
            stdio: Stdio::default(),
        })
        .collect();
    let results = spawn_all(&jobs);
    let stage = |i: usize| results[i].as_ref().map_err(|e| e.stage()).err();
    let errno = |i: usize| match &results[i] {
        Err(e) => e.io_error().raw_os_error(),
        Ok(_) => None,
    };
    assert_eq!(stage(1), Some(Stage::Exec));
    assert_eq!(errno(1), Some(libc::ENOENT));
    assert_eq!(stage(3), Some(Stage::Chdir));
    assert_eq!(errno(3), Some(libc::ENOENT));
    assert_eq!(stage(4), Some(Stage::Limits));
    assert_eq!(
        results[4].as_ref().err().and_then(|e| e.limit_index()),
        Some(1)
    );
    assert_eq!(stage(5), Some(Stage::Exec));
    for i in [0, 2, 6] {
        let pid = *results[i].as_ref().unwrap();
        assert!(wait_for(pid).unwrap().success(), "child {i}");
    }
}

/// An empty batch starts nothing.
#[test]
fn an_empty_batch_starts_nothing() {
    assert!(spawn_all(&[]).is_empty());
}
