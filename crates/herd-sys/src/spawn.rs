//! Fork and exec one worker with an *fd plan*.
//!
//! [`ExecPlan`] collects the program, arguments, environment and options in the parent. Its
//! [`spawn`](ExecPlan::spawn) prepares every buffer and pointer array, the highest fd number
//! the child may have to mark close-on-exec, and a full signal set, all before the child
//! starts. On Linux the child is a `clone(CLONE_VM | CLONE_VFORK)` that shares herd's memory
//! until it execs (see `vfork` for what that changes), elsewhere, or where the kernel refuses
//! that clone, a `fork`. Around it the parent blocks every signal in the spawning thread, as
//! `posix_spawn` does, and restores its own mask right after: none of herd's signal handlers
//! (tokio's write to a pipe) can run in the child, which starts with every signal blocked.
//!
//! The child then runs this fixed sequence of async-signal-safe system calls, with no
//! allocation and no locks, each failure reported as the [`Stage`] named in brackets:
//!
//! 1. `setpgid(0, 0)` when asked, so the worker and its own children form one process group
//!    \[[`Stage::ProcessGroup`]\];
//! 2. every signal's disposition back to `SIG_DFL` (handled and ignored ones alike, glibc's
//!    reserved ones through the raw `rt_sigaction`), still with every signal blocked, so a
//!    signal that arrived meanwhile meets the default action, never herd's handler;
//! 3. the worker's signal mask, which is empty (`sigprocmask`) \[[`Stage::Signals`]\];
//! 4. `prctl(PR_SET_PDEATHSIG)` on Linux, then a check that the parent is still alive (if it
//!    is not, `_exit(1)`, reporting nothing);
//! 5. its own pid written, in decimal, into the `LISTEN_PID=` slot reserved in the environment;
//! 6. the status pipe, the inherited fds and the given standard streams duplicated above the
//!    target range (`F_DUPFD_CLOEXEC`), so that no source is overwritten, then the fds moved
//!    to 3, 4, ... and the streams onto fds 0, 1 and 2 (`dup2`, which leaves them
//!    inheritable), and `FD_CLOEXEC` cleared on 0, 1 and 2 \[[`Stage::Fds`]\];
//! 7. every fd above them marked close-on-exec: `close_range(CLOSE_RANGE_CLOEXEC)` on Linux
//!    5.11 and later; where it fails (older kernels: `ENOSYS`, `EINVAL`) and on other systems,
//!    `fcntl(F_SETFD)` on each number up to the limit computed before `fork`
//!    \[[`Stage::Fds`]\];
//! 8. the resource limits, in the order they were added (`setrlimit`) \[[`Stage::Limits`]\];
//! 9. the umask, and the nice value when one was given (`setpriority`: raising one's own nice
//!    value needs no privilege; should it fail, the worker keeps herd's);
//! 10. `setgroups`, `setgid`, `setuid` \[[`Stage::Credentials`]\], then step 4 again: a change
//!     of user clears the parent-death signal;
//! 11. `chdir` \[[`Stage::Chdir`]\];
//! 12. `execve` \[[`Stage::Exec`]\] (for [`probe`](ExecPlan::probe): `access(X_OK)`, on Linux
//!     an `execve` of `/`, which fails, to meet the `RLIMIT_NPROC` refusal (`EAGAIN`) of a
//!     user that runs too many processes, then `_exit(0)`).
//!
//! [`spawn_all`] starts several children at once: each takes the steps above, while the
//! parent prepares and starts the next instead of waiting (see `batch`).
//!
//! A failure is written to a close-on-exec pipe as one fixed-size report (a magic number, the
//! failed step as a typed value with explicit discriminants, the limit's index and errno), and
//! the child exits with 127. The parent reads the pipe: EOF means the exec succeeded; a report
//! it cannot validate (wrong size, magic or step) is [`Stage::Report`], never a guess.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::ptr;

use crate::process::{wait_for, Signal};

mod batch;
mod child;
mod direct;
mod limits;
mod prepare;
mod report;
mod start;
#[cfg(target_os = "linux")]
mod vfork;

pub use batch::{spawn_all, Job};
use child::Child;
pub use limits::{exec_limits, ExecLimits};
use prepare::Buffers;
use report::{read_report, ChildStep};
pub use report::{SpawnError, Stage};
use start::{start, start_beside, How};

/// The standard streams a child gets in place of its parent's: `None` keeps the parent's.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stdio<'a> {
    /// Its fd 0.
    pub stdin: Option<BorrowedFd<'a>>,
    /// Its fd 1.
    pub stdout: Option<BorrowedFd<'a>>,
    /// Its fd 2.
    pub stderr: Option<BorrowedFd<'a>>,
}

const LISTEN_PID_PREFIX: &[u8] = b"LISTEN_PID=";
/// Room for the decimal digits of any pid plus the terminating NUL.
const PID_DIGITS: usize = 21;

/// Everything needed to start one worker: program, arguments, environment, options.
#[derive(Debug)]
pub struct ExecPlan {
    program: CString,
    argv: Vec<CString>,
    env: Vec<Vec<u8>>,
    listen_pid: bool,
    new_process_group: bool,
    death_signal: Option<Signal>,
    credentials: Option<(libc::uid_t, libc::gid_t, Vec<libc::gid_t>)>,
    chdir: Option<CString>,
    umask: Option<libc::mode_t>,
    limits: Vec<(libc::c_int, libc::rlim_t, libc::rlim_t)>,
    nice: Option<libc::c_int>,
    /// Tests: skip `close_range`, so that the fallback loop marks the fds close-on-exec.
    no_close_range: bool,
    /// Tests: a signal the child raises on itself right after `fork`.
    raise_first: Option<libc::c_int>,
    /// How to start the child: the clone where it works; tests also ask for `fork` only, or
    /// for a clone the kernel refuses first.
    how: How,
}

/// A resource limit, by its `setrlimit` name.
pub fn resource_by_name(name: &str) -> Option<libc::c_int> {
    Some(match name {
        "nofile" => libc::RLIMIT_NOFILE as libc::c_int,
        "nproc" => libc::RLIMIT_NPROC as libc::c_int,
        "core" => libc::RLIMIT_CORE as libc::c_int,
        "as" => libc::RLIMIT_AS as libc::c_int,
        "data" => libc::RLIMIT_DATA as libc::c_int,
        "fsize" => libc::RLIMIT_FSIZE as libc::c_int,
        "stack" => libc::RLIMIT_STACK as libc::c_int,
        "cpu" => libc::RLIMIT_CPU as libc::c_int,
        "memlock" => libc::RLIMIT_MEMLOCK as libc::c_int,
        _ => return None,
    })
}

impl ExecPlan {
    /// Runs the child as `uid` with primary group `gid` and supplementary `groups`
    /// (`setgroups`, `setgid`, `setuid`, in that order). Needs privilege.
    pub fn credentials(&mut self, uid: u32, gid: u32, groups: Vec<u32>) -> &mut Self {
        self.credentials = Some((
            uid as libc::uid_t,
            gid as libc::gid_t,
            groups.into_iter().map(|g| g as libc::gid_t).collect(),
        ));
        self
    }

    /// Changes the child to `dir` before `execve`.
    pub fn chdir(&mut self, dir: &OsStr) -> io::Result<&mut Self> {
        self.chdir = Some(c_string(dir.as_bytes())?);
        Ok(self)
    }

    /// Sets the child's umask.
    pub fn umask(&mut self, mask: u32) -> &mut Self {
        self.umask = Some(mask as libc::mode_t);
        self
    }

    /// Sets a resource limit for the child (see [`resource_by_name`]).
    pub fn limit(&mut self, resource: libc::c_int, soft: u64, hard: u64) -> &mut Self {
        self.limits
            .push((resource, soft as libc::rlim_t, hard as libc::rlim_t));
        self
    }

    /// Runs the child at nice value `nice` (`setpriority`), `None` keeping herd's: meant to
    /// lower it (a higher value), which needs no privilege.
    pub fn nice(&mut self, nice: Option<i32>) -> &mut Self {
        self.nice = nice;
        self
    }

    /// A plan that executes `program` (a path: no `PATH` search happens here) with an empty
    /// argument list and an empty environment.
    pub fn new(program: &OsStr) -> io::Result<ExecPlan> {
        Ok(ExecPlan {
            program: c_string(program.as_bytes())?,
            argv: Vec::new(),
            env: Vec::new(),
            listen_pid: false,
            new_process_group: false,
            death_signal: None,
            credentials: None,
            chdir: None,
            umask: None,
            limits: Vec::new(),
            nice: None,
            no_close_range: false,
            raise_first: None,
            how: How::CloneOrFork,
        })
    }

    /// Appends one argument; the first is `argv[0]`.
    pub fn arg(&mut self, arg: &OsStr) -> io::Result<&mut Self> {
        self.argv.push(c_string(arg.as_bytes())?);
        Ok(self)
    }

    /// Adds `key=value` to the environment.
    pub fn env(&mut self, key: &OsStr, value: &OsStr) -> io::Result<&mut Self> {
        let (key, value) = (key.as_bytes(), value.as_bytes());
        if key.is_empty() || key.contains(&b'=') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "environment variable names must be non-empty and contain no '='",
            ));
        }
        let mut entry = Vec::with_capacity(key.len() + value.len() + 2);
        entry.extend_from_slice(key);
        entry.push(b'=');
        entry.extend_from_slice(value);
        self.env.push(c_string(&entry)?.into_bytes_with_nul());
        Ok(self)
    }

    /// The arguments, `argv[0]` first, without their terminating NULs.
    pub fn args(&self) -> impl ExactSizeIterator<Item = &[u8]> {
        self.argv.iter().map(|arg| arg.as_bytes())
    }

    /// The environment's `KEY=VALUE` entries, without their terminating NULs (`LISTEN_PID`
    /// is not among them: the child writes it).
    pub fn env_entries(&self) -> impl Iterator<Item = &[u8]> {
        self.env.iter().map(|entry| &entry[..entry.len() - 1])
    }

    /// Adds `LISTEN_PID` set to the child's own pid, written by the child after `fork`.
    pub fn listen_pid(&mut self) -> &mut Self {
        self.listen_pid = true;
        self
    }

    /// Puts the child in a new process group of its own (`setpgid(0, 0)`).
    pub fn new_process_group(&mut self, yes: bool) -> &mut Self {
        self.new_process_group = yes;
        self
    }

    /// On Linux, the signal the child receives when the thread that forked it exits
    /// (`PR_SET_PDEATHSIG`); ignored elsewhere. Spawn from a thread that lives as long as the
    /// supervisor (its main thread).
    pub fn parent_death_signal(&mut self, signal: Option<Signal>) -> &mut Self {
        self.death_signal = signal;
        self
    }

    /// Forks and executes the plan. `fds[i]` becomes fd `3 + i` in the child; `stdin`, if
    /// given, becomes fd 0. Returns the child's pid once `execve` has succeeded.
    pub fn spawn(
        &self,
        fds: &[BorrowedFd<'_>],
        stdin: Option<BorrowedFd<'_>>,
    ) -> Result<u32, SpawnError> {
        let stdio = Stdio {
            stdin,
            ..Stdio::default()
        };
        self.fork_exec(fds, &stdio, false)
    }

    /// [`spawn`](Self::spawn) with each standard stream given in `stdio` in its place (the
    /// others are herd's own).
    pub fn spawn_with(&self, fds: &[BorrowedFd<'_>], stdio: &Stdio<'_>) -> Result<u32, SpawnError> {
        self.fork_exec(fds, stdio, false)
    }

    /// Checks the plan without running it: a child goes through every step a worker would
    /// (limits, umask, user and groups, directory) and then, instead of `execve`, checks that
    /// the program is executable there (`access(X_OK)`, as that user), and exits. The error
    /// is the first step that failed, as [`spawn`](Self::spawn) would report it. The child
    /// stays in this process's group whatever [`new_process_group`](Self::new_process_group)
    /// says: a supervisor that adopts the children leading groups of their own as orphans
    /// must not take it for one, and it may wait in a step for ever (a directory on a hung
    /// filesystem), the probing thread with it. A reaper of this process's own group (herd's
    /// loop) may reap it first: the wait here then finds no child, and its pid could name
    /// another only if the kernel gave it out again at once (the whole pid space wrapped).
    /// Its child reports that its checks passed: one that ended before it reported (killed)
    /// is [`Stage::Killed`], where its closed pipe once read as an exec.
    pub fn probe(&self) -> Result<(), SpawnError> {
        let pid = self.fork_exec(&[], &Stdio::default(), true)?;
        // It said its checks passed, and exits at once (or was reaped already: ECHILD).
        let _ = wait_for(pid);
        Ok(())
    }

    fn fork_exec(
        &self,
        fds: &[BorrowedFd<'_>],
        stdio: &Stdio<'_>,
        probe: bool,
    ) -> Result<u32, SpawnError> {
        // Everything the child touches is allocated here, before fork.
        let mut buffers = Buffers::new(self, fds, stdio);
        let (status_read, status_write) = status_pipe()?;
        let child = buffers.child(self, status_write.as_raw_fd(), probe);
        // A child that switches to another user can be stopped by that user's processes
        // before its execve: started beside this thread, which can then see that and kill it
        // (see `read_report`), not with CLONE_VFORK, which would keep it asleep meanwhile.
        let beside = self.credentials.is_some();
        start_and_wait(&child, status_read, status_write, self.how, beside)
    }

    /// The environment the child gets, and where in it the `LISTEN_PID=` entry is, if asked
    /// for: the prefix followed by room for [`PID_DIGITS`] bytes, which the child fills.
    fn environment(&self) -> (Vec<Vec<u8>>, Option<usize>) {
        let mut env = self.env.clone();
        if !self.listen_pid {
            return (env, None);
        }
        let mut entry = LISTEN_PID_PREFIX.to_vec();
        entry.resize(LISTEN_PID_PREFIX.len() + PID_DIGITS, 0);
        env.push(entry);
        let at = env.len() - 1;
        (env, Some(at))
    }

    /// `argv` for `execve`: the arguments' pointers, then NULL. Valid while `self` lives.
    fn argv_pointers(&self) -> Vec<*const libc::c_char> {
        null_terminated(self.argv.iter().map(|a| a.as_ptr()))
    }
}

/// `envp` for `execve`: the entries' pointers (each NUL-terminated), then NULL. Valid while
/// `env` lives.
fn env_pointers(env: &[Vec<u8>]) -> Vec<*const libc::c_char> {
    null_terminated(env.iter().map(|e| e.as_ptr().cast()))
}

fn null_terminated(
    pointers: impl Iterator<Item = *const libc::c_char>,
) -> Vec<*const libc::c_char> {
    pointers.chain(std::iter::once(ptr::null())).collect()
}

/// Starts `child` with every signal blocked in this thread, and waits for its report on the
/// status pipe: its pid once `execve` has succeeded (EOF), or what failed (the child is then
/// reaped). `beside`: started as [`batch`] starts children, this thread running on (and its
/// signals blocked) until the report, instead of asleep until the child has exec'd.
fn start_and_wait(
    child: &Child<'_>,
    status_read: OwnedFd,
    status_write: OwnedFd,
    how: How,
    beside: bool,
) -> Result<u32, SpawnError> {
    let fork_err = |error| SpawnError {
        stage: Stage::Fork,
        error,
        limit: None,
    };
    // Every signal is blocked in this thread while the child starts, so that the child
    // starts with every signal blocked and no handler of this process can run there before
    // the child has reset them all.
    let previous_mask = direct::block_all().map_err(fork_err)?;
    let (started, stack) = match beside {
        true => match start_beside(child, how) {
            Ok((pid, stack)) => (Ok(pid), Some(stack)),
            Err(e) => (Err(e), None),
        },
        false => (start(child, how), None),
    };
    if stack.is_none() {
        direct::restore_mask(&previous_mask);
    }
    let pid = started.map_err(fork_err)?;
    drop(status_write);
    let pid = pid as u32;
    let result = match read_report(&status_read, pid) {
        Ok(None) if child.probe => {
            // A probe's child reports: it ended before it could.
            let signal = wait_for(pid).ok().and_then(|status| status.signal());
            Err(SpawnError::killed(signal))
        }
        Ok(Some(report)) if child.probe && report.step == ChildStep::Checked => Ok(pid),
        Ok(None) => Ok(pid),
        Ok(Some(report)) => {
            // The child has exited or is about to: reap it so no zombie is left.
            let _ = wait_for(pid);
            Err(SpawnError {
                stage: report.step.stage(),
                error: io::Error::from_raw_os_error(report.errno),
                limit: (report.step == ChildStep::Limits).then_some(report.limit as usize),
            })
        }
        Err(error) => {
            let _ = wait_for(pid);
            Err(error)
        }
    };
    if stack.is_some() {
        // The child has exec'd (EOF) or has been reaped: off its stack, and none of this
        // thread's signal handlers can run on what it shares any more.
        // No stack off Linux (the lint has its name since Rust 1.71).
        #[allow(unknown_lints, dropping_copy_types)]
        drop(stack);
        direct::restore_mask(&previous_mask);
    }
    result
}

impl ExecPlan {
    /// Replaces this process's program with the plan, keeping every fd that is not
    /// close-on-exec where it is, and keeping the signal mask (std's `exec` resets it). No
    /// fork: same pid, same children. Returns only on failure.
    pub fn exec_in_place(&self) -> io::Error {
        let argv = self.argv_pointers();
        let envp = env_pointers(&self.env);
        // SAFETY: program, argv and envp are NUL-terminated strings in NULL-terminated arrays
        // that live across the call; execve returns only on failure.
        unsafe { libc::execve(self.program.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        io::Error::last_os_error()
    }
}

fn c_string(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "arguments and environment cannot contain NUL bytes",
        )
    })
}

/// The pipe on which a child reports how far it got: (read end, write end).
fn status_pipe() -> Result<(OwnedFd, OwnedFd), SpawnError> {
    cloexec_pipe().map_err(|error| SpawnError {
        stage: Stage::Pipe,
        error,
        limit: None,
    })
}

fn cloexec_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1 as RawFd; 2];
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    {
        // SAFETY: pipe2 writes two fds into the array we pass.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    {
        // SAFETY: pipe writes two fds into the array we pass; the supervisor forks from one
        // thread, so no other fork can observe them before FD_CLOEXEC is set.
        if unsafe { libc::pipe(fds.as_mut_ptr()) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    // SAFETY: both fds are fresh and owned by nobody else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    crate::fd::set_cloexec(std::os::unix::io::AsFd::as_fd(&read), true)?;
    crate::fd::set_cloexec(std::os::unix::io::AsFd::as_fd(&write), true)?;
    Ok((read, write))
}

#[cfg(all(test, target_os = "linux"))]
mod priority_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod user_tests;
