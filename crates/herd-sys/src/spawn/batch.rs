//! Starting several children at once: each runs its steps and `execve` while the parent
//! prepares and starts the next, so that the parent waits once for all of them instead of
//! once for each (a `clone(CLONE_VM | CLONE_VFORK)` suspends the parent until its child has
//! exec'd: about half of a worker's start on a busy machine, where the child waits for a
//! CPU meanwhile).
//!
//! On Linux each child is a `clone(CLONE_VM)` without `CLONE_VFORK`, on a stack of its own;
//! elsewhere, or where the kernel refuses that clone, a `fork`. What [`super::vfork`] says
//! of a child that shares herd's memory holds, with the parent running beside it:
//!
//! - **Its buffers** (and the [`Child`] pointing into them, and its stack) are its alone:
//!   [`spawn_all`] prepares every child's before starting the first, touches none of them
//!   while the children run, and drops them only once each child's status pipe has reached
//!   EOF, which happens when its last write end closes: at `execve`, after the child has
//!   left herd's memory for its new one, or at exit, after it has released it.
//! - **errno**: the child's failed calls set the errno of the thread that started it (it
//!   runs with that thread's thread pointer), which no longer sleeps meanwhile. On the usual
//!   path no call of the child fails (it skips `SIGKILL` and `SIGSTOP`, whose dispositions
//!   cannot change; `close_range` works from Linux 5.11 on); and from the first clone to the
//!   last EOF that thread reads errno only right after a failure of its own (a stack
//!   mapping, a clone, a read), with every signal blocked (no `EINTR`, no handler), and
//!   takes each such failure as that one start's error: a concurrent write could change the
//!   errno reported, never what is done.
//! - **Signals** stay blocked in the parent thread from the first clone to the last EOF, so
//!   every child starts with all of them blocked, as a single spawn's does.

use std::os::unix::io::{AsRawFd, BorrowedFd, OwnedFd};

use super::child::Child;
use super::direct;
use super::prepare::Buffers;
use super::report::{read_report, ChildStep};
use super::start::{start_beside, Stack};
use super::{status_pipe, ExecPlan, SpawnError, Stage, Stdio};
use crate::process::wait_for;

/// One start of a batch: the plan, its fds (3, 4, ...) and standard streams.
#[derive(Clone, Copy, Debug)]
pub struct Job<'a> {
    /// What to run.
    pub plan: &'a ExecPlan,
    /// The fds that become 3, 4, ... in the child.
    pub fds: &'a [BorrowedFd<'a>],
    /// The standard streams it gets in place of the parent's.
    pub stdio: Stdio<'a>,
}

/// A child prepared: its steps, its status pipe's ends (the write end until it starts), and
/// once started, its pid and what it runs on.
struct Prepared<'a> {
    child: Child<'a>,
    read: OwnedFd,
    write: Option<OwnedFd>,
    started: Option<(u32, Stack)>,
}

/// Starts every job, each as [`ExecPlan::spawn_with`] would, the children running their
/// steps and `execve` side by side; returns once all have exec'd or failed: each job's pid,
/// or what failed, in the order given.
pub fn spawn_all(jobs: &[Job<'_>]) -> Vec<Result<u32, SpawnError>> {
    // Everything the children touch is allocated here, before the first starts.
    let mut buffers: Vec<Buffers> = jobs
        .iter()
        .map(|job| Buffers::new(job.plan, job.fds, &job.stdio))
        .collect();
    let mut failed: Vec<Option<SpawnError>> = Vec::with_capacity(jobs.len());
    let mut prepared: Vec<Option<Prepared<'_>>> = Vec::with_capacity(jobs.len());
    for (buffers, job) in buffers.iter_mut().zip(jobs) {
        match status_pipe() {
            Ok((read, write)) => {
                let child = buffers.child(job.plan, write.as_raw_fd(), false);
                prepared.push(Some(Prepared {
                    child,
                    read,
                    write: Some(write),
                    started: None,
                }));
                failed.push(None);
            }
            Err(e) => {
                prepared.push(None);
                failed.push(Some(e));
            }
        }
    }
    let fork_err = |error| SpawnError {
        stage: Stage::Fork,
        error,
        limit: None,
    };
    let previous_mask = match direct::block_all() {
        Ok(mask) => mask,
        Err(e) => {
            let each = |f: Option<SpawnError>| Err(f.unwrap_or_else(|| fork_err(copy(&e))));
            return failed.into_iter().map(each).collect();
        }
    };
    // No element of `prepared` moves from here on: each child reads its `Child` where it is.
    let each = prepared.iter_mut().zip(jobs).zip(&mut failed);
    for ((prepared, job), failed) in each.filter_map(|((p, j), f)| Some(((p.as_mut()?, j), f))) {
        match start_beside(&prepared.child, job.plan.how) {
            Ok((pid, stack)) => prepared.started = Some((pid as u32, stack)),
            Err(e) => *failed = Some(fork_err(e)),
        }
        // The child holds its own copy of the write end: EOF comes when it closes that.
        prepared.write = None;
    }
    let results = prepared
        .iter_mut()
        .zip(failed)
        .map(|(prepared, failed)| {
            if let Some(e) = failed {
                return Err(e);
            }
            let started = prepared.as_mut().and_then(|p| {
                let read = &p.read;
                p.started.take().map(|(pid, stack)| (pid, stack, read))
            });
            let (pid, stack, read) = match started {
                Some(started) => started,
                None => return Err(fork_err(not_started())),
            };
            let result = finish(pid, read_report(read, pid));
            // The child has exec'd or exited (EOF), or has been reaped: off its stack.
            // No stack off Linux (the lint has its name since Rust 1.71).
            #[allow(unknown_lints, dropping_copy_types)]
            drop(stack);
            result
        })
        .collect();
    direct::restore_mask(&previous_mask);
    results
}

/// The result of child `pid` from its report: its pid once exec'd, or what failed (then
/// reaped, so that no zombie is left).
fn finish(
    pid: u32,
    report: Result<Option<super::report::Report>, SpawnError>,
) -> Result<u32, SpawnError> {
    match report {
        Ok(None) => Ok(pid),
        Ok(Some(report)) => {
            let _ = wait_for(pid);
            Err(SpawnError {
                stage: report.step.stage(),
                error: std::io::Error::from_raw_os_error(report.errno),
                limit: (report.step == ChildStep::Limits).then_some(report.limit as usize),
            })
        }
        Err(error) => {
            let _ = wait_for(pid);
            Err(error)
        }
    }
}

fn not_started() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::Other, "the child was never started")
}

/// An `io::Error` again: the OS error of the same number, or one of the same kind.
fn copy(error: &std::io::Error) -> std::io::Error {
    match error.raw_os_error() {
        Some(code) => std::io::Error::from_raw_os_error(code),
        None => std::io::Error::new(error.kind(), error.to_string()),
    }
}

#[cfg(test)]
mod tests;
