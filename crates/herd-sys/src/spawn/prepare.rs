//! What a child reads and writes, prepared in the parent before it starts: the environment
//! with its `LISTEN_PID=` slot, the pointer arrays for `execve`, the fds to place, and the
//! [`Child`] that points into them all.

use std::os::unix::io::{AsRawFd, BorrowedFd, RawFd};
use std::ptr;

use super::child::{self, Child};
use super::{env_pointers, ExecPlan, Stdio, LISTEN_PID_PREFIX};
use crate::process::{max_signal, Signal};

/// The buffers one child uses, owned by the parent until the child has exec'd or exited.
/// Moving a `Buffers` moves no buffer: the pointers stay valid.
pub(super) struct Buffers {
    /// The environment, the `LISTEN_PID=` entry last when asked for: only held, for `envp`
    /// and `pid_slot` point into it.
    #[allow(dead_code)]
    env: Vec<Vec<u8>>,
    /// Where the child writes its pid: after `LISTEN_PID=` in `env`, or null.
    pid_slot: *mut u8,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    /// The fds that become 3, 4, ...
    sources: Vec<RawFd>,
    /// The child's scratch space: where it duplicated each source.
    moved: Vec<RawFd>,
    /// What becomes fds 0, 1 and 2 (-1: left as they are).
    stdio: [RawFd; 3],
}

impl Buffers {
    /// Everything `plan` needs to start a child with `fds` at 3, 4, ... and `stdio`.
    pub(super) fn new(plan: &ExecPlan, fds: &[BorrowedFd<'_>], stdio: &Stdio<'_>) -> Buffers {
        let (mut env, listen_pid_at) = plan.environment();
        let pid_slot = match listen_pid_at.and_then(|i| env.get_mut(i)) {
            // SAFETY: the offset is inside the entry, sized for the prefix and the digits.
            Some(entry) => unsafe { entry.as_mut_ptr().add(LISTEN_PID_PREFIX.len()) },
            None => ptr::null_mut(),
        };
        let envp = env_pointers(&env);
        let sources: Vec<RawFd> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
        Buffers {
            pid_slot,
            argv: plan.argv_pointers(),
            envp,
            moved: vec![-1; sources.len()],
            sources,
            env,
            stdio: [stdio.stdin, stdio.stdout, stdio.stderr]
                .map(|fd| fd.map_or(-1, |fd| fd.as_raw_fd())),
        }
    }

    /// The child's steps for `plan`, reporting on `status` (`probe`: checking instead of
    /// executing), pointing into these buffers, which it borrows.
    pub(super) fn child<'a>(
        &'a mut self,
        plan: &'a ExecPlan,
        status: RawFd,
        probe: bool,
    ) -> Child<'a> {
        let (empty_mask, default_action) = child::default_signal_state();
        let n = self.sources.len();
        Child {
            program: plan.program.as_ptr(),
            argv: self.argv.as_ptr(),
            envp: self.envp.as_ptr(),
            pid_slot: self.pid_slot,
            sources: &self.sources,
            moved: self.moved.as_mut_ptr(),
            stdio: self.stdio,
            status,
            // A probe is no worker: see `ExecPlan::probe`.
            new_process_group: plan.new_process_group && !probe,
            death_signal: plan.death_signal.map(Signal::number),
            // SAFETY: getpid has no preconditions.
            parent: unsafe { libc::getpid() },
            empty_mask,
            default_action,
            max_signal: max_signal(),
            credentials: plan
                .credentials
                .as_ref()
                .map(|(u, g, groups)| (*u, *g, groups.as_slice())),
            chdir: plan.chdir.as_ref().map_or(ptr::null(), |c| c.as_ptr()),
            umask: plan.umask,
            limits: &plan.limits,
            nice: plan.nice,
            cloexec_limit: child::cloexec_limit(3 + n, n + 2),
            close_range: !plan.no_close_range,
            raise_first: plan.raise_first,
            probe,
        }
    }
}
