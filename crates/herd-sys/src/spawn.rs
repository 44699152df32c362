//! Fork and exec one worker with an *fd plan*.
//!
//! [`ExecPlan`] collects the program, arguments, environment and options in the parent. Its
//! [`spawn`](ExecPlan::spawn) prepares every buffer and pointer array, the highest fd number
//! the child may have to mark close-on-exec, and a full signal set, all before `fork`. Around
//! `fork` the parent blocks every signal in the forking thread (`pthread_sigmask`), as
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
//! 6. the status pipe, the inherited fds and stdin duplicated above the target range
//!    (`F_DUPFD_CLOEXEC`), so that no source is overwritten, then the fds moved to 3, 4, ...
//!    and stdin onto fd 0 (`dup2`, which leaves them inheritable), and `FD_CLOEXEC` cleared on
//!    0, 1 and 2 \[[`Stage::Fds`]\];
//! 7. every fd above them marked close-on-exec: `close_range(CLOSE_RANGE_CLOEXEC)` on Linux
//!    5.11 and later; where it fails (older kernels: `ENOSYS`, `EINVAL`) and on other systems,
//!    `fcntl(F_SETFD)` on each number up to the limit computed before `fork`
//!    \[[`Stage::Fds`]\];
//! 8. the resource limits, in the order they were added (`setrlimit`) \[[`Stage::Limits`]\];
//! 9. the umask;
//! 10. `setgroups`, `setgid`, `setuid` \[[`Stage::Credentials`]\];
//! 11. `chdir` \[[`Stage::Chdir`]\];
//! 12. `execve` \[[`Stage::Exec`]\] (for [`probe`](ExecPlan::probe): `access(X_OK)`, then
//!     `_exit(0)`).
//!
//! A failure is written to a close-on-exec pipe as one fixed-size report (a magic number, the
//! failed step as a typed value with explicit discriminants, the limit's index and errno), and
//! the child exits with 127. The parent reads the pipe: EOF means the exec succeeded; a report
//! it cannot validate (wrong size, magic or step) is [`Stage::Report`], never a guess.

use std::ffi::{CString, OsStr};
use std::fmt;
use std::io;
use std::mem;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::process::{max_signal, wait_for, Signal};

/// The step of [`ExecPlan::spawn`] that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Stage {
    /// Forking, in the parent.
    Fork,
    /// Creating or reading the pipe on which the child reports how far it got, in the
    /// parent (`EMFILE` there means the parent is out of fds, not that it cannot fork).
    Pipe,
    /// `setpgid` in the child.
    ProcessGroup,
    /// Resetting the signal mask in the child.
    Signals,
    /// Placing the inherited fds in the child.
    Fds,
    /// `execve` itself: the program could not be executed.
    Exec,
    /// Switching to the worker's user and groups.
    Credentials,
    /// Changing to the worker's directory.
    Chdir,
    /// Setting the worker's resource limits.
    Limits,
    /// Understanding the child's report, in the parent: it was not one the child writes (a
    /// short read, a wrong magic number or an unknown step), so what failed is unknown.
    Report,
}

/// A step of the child that can fail, as written in its report: explicit discriminants, which
/// the parent checks when it reads them back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
enum ChildStep {
    ProcessGroup = 1,
    Signals = 2,
    Fds = 3,
    Exec = 4,
    Credentials = 5,
    Chdir = 6,
    Limits = 7,
}

impl ChildStep {
    const ALL: [ChildStep; 7] = [
        ChildStep::ProcessGroup,
        ChildStep::Signals,
        ChildStep::Fds,
        ChildStep::Exec,
        ChildStep::Credentials,
        ChildStep::Chdir,
        ChildStep::Limits,
    ];

    fn from_wire(code: u32) -> Option<ChildStep> {
        ChildStep::ALL.iter().copied().find(|s| *s as u32 == code)
    }

    fn stage(self) -> Stage {
        match self {
            ChildStep::ProcessGroup => Stage::ProcessGroup,
            ChildStep::Signals => Stage::Signals,
            ChildStep::Fds => Stage::Fds,
            ChildStep::Exec => Stage::Exec,
            ChildStep::Credentials => Stage::Credentials,
            ChildStep::Chdir => Stage::Chdir,
            ChildStep::Limits => Stage::Limits,
        }
    }
}

/// The child's failure report: `REPORT_MAGIC`, the [`ChildStep`], the limit's index (for
/// [`ChildStep::Limits`], else 0) and errno, each 4 bytes in native byte order. One `write` of
/// 16 bytes to a pipe is atomic (below `PIPE_BUF`).
const REPORT_LEN: usize = 16;
/// "herd" in ASCII: the first word of every report.
const REPORT_MAGIC: u32 = u32::from_be_bytes(*b"herd");

/// What the child reported: the failed step, the limit's index (for [`ChildStep::Limits`])
/// and errno.
#[derive(Debug, PartialEq, Eq)]
struct Report {
    step: ChildStep,
    limit: u32,
    errno: i32,
}

impl Report {
    /// The report's bytes. Async-signal-safe: no allocation.
    fn encode(&self) -> [u8; REPORT_LEN] {
        let mut buf = [0u8; REPORT_LEN];
        buf[0..4].copy_from_slice(&REPORT_MAGIC.to_ne_bytes());
        buf[4..8].copy_from_slice(&(self.step as u32).to_ne_bytes());
        buf[8..12].copy_from_slice(&self.limit.to_ne_bytes());
        buf[12..16].copy_from_slice(&self.errno.to_ne_bytes());
        buf
    }

    /// Validates what the parent read from the pipe: `None` for anything the child would not
    /// have written.
    fn decode(bytes: &[u8]) -> Option<Report> {
        if bytes.len() != REPORT_LEN {
            return None;
        }
        let word = |i: usize| [bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]];
        if u32::from_ne_bytes(word(0)) != REPORT_MAGIC {
            return None;
        }
        let step = ChildStep::from_wire(u32::from_ne_bytes(word(4)))?;
        let limit = u32::from_ne_bytes(word(8));
        if step != ChildStep::Limits && limit != 0 {
            return None;
        }
        Some(Report {
            step,
            limit,
            errno: i32::from_ne_bytes(word(12)),
        })
    }
}

/// Why a worker could not be started.
#[derive(Debug)]
pub struct SpawnError {
    stage: Stage,
    error: io::Error,
    /// For [`Stage::Limits`]: which limit, in the order they were added.
    limit: Option<usize>,
}

impl SpawnError {
    /// The step that failed.
    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// The operating system's error.
    pub fn io_error(&self) -> &io::Error {
        &self.error
    }

    /// For [`Stage::Limits`]: the index of the limit that could not be set, in the order
    /// [`ExecPlan::limit`] added them.
    pub fn limit_index(&self) -> Option<usize> {
        self.limit
    }
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.stage {
            Stage::Fork => "cannot fork",
            Stage::Pipe => match self.error.raw_os_error() {
                // Formatted by the parent, which made the pipe: its pid is herd's.
                Some(libc::EMFILE) | Some(libc::ENFILE) => {
                    return write!(
                        f,
                        "herd is out of file descriptors: cannot create a pipe to start the \
                         worker (look for what holds herd's fds: ls -l /proc/{}/fd): {}",
                        std::process::id(),
                        self.error
                    );
                }
                _ => "cannot create the pipe to start the worker",
            },
            Stage::ProcessGroup => "cannot create a process group",
            Stage::Signals => "cannot reset the signal mask",
            Stage::Fds => "cannot place the inherited sockets",
            Stage::Exec => "cannot execute",
            Stage::Credentials => "cannot switch to the worker's user",
            Stage::Chdir => "cannot change to the worker's directory",
            Stage::Limits => "cannot set the worker's resource limits",
            Stage::Report => "cannot tell how starting the worker failed",
        };
        write!(f, "{what}: {}", self.error)
    }
}

impl std::error::Error for SpawnError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
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
    /// Tests: skip `close_range`, so that the fallback loop marks the fds close-on-exec.
    no_close_range: bool,
    /// Tests: a signal the child raises on itself right after `fork`.
    raise_first: Option<libc::c_int>,
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
            no_close_range: false,
            raise_first: None,
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
        self.fork_exec(fds, stdin, false)
    }

    /// Checks the plan without running it: a child goes through every step a worker would
    /// (limits, umask, user and groups, directory) and then, instead of `execve`, checks that
    /// the program is executable there (`access(X_OK)`, as that user), and exits. The error
    /// is the first step that failed, as [`spawn`](Self::spawn) would report it.
    pub fn probe(&self) -> Result<(), SpawnError> {
        let pid = self.fork_exec(&[], None, true)?;
        // The child exits by itself at once.
        let _ = wait_for(pid);
        Ok(())
    }

    fn fork_exec(
        &self,
        fds: &[BorrowedFd<'_>],
        stdin: Option<BorrowedFd<'_>>,
        probe: bool,
    ) -> Result<u32, SpawnError> {
        let fork_err = |error| SpawnError {
            stage: Stage::Fork,
            error,
            limit: None,
        };
        // Everything the child touches is allocated here, before fork.
        let mut env = self.env.clone();
        let mut pid_slot: *mut u8 = ptr::null_mut();
        if self.listen_pid {
            let mut entry = LISTEN_PID_PREFIX.to_vec();
            entry.resize(LISTEN_PID_PREFIX.len() + PID_DIGITS, 0);
            env.push(entry);
            if let Some(entry) = env.last_mut() {
                // SAFETY: the offset is inside the buffer we just sized.
                pid_slot = unsafe { entry.as_mut_ptr().add(LISTEN_PID_PREFIX.len()) };
            }
        }
        let argv: Vec<*const libc::c_char> = self
            .argv
            .iter()
            .map(|a| a.as_ptr())
            .chain(std::iter::once(ptr::null()))
            .collect();
        let envp: Vec<*const libc::c_char> = env
            .iter()
            .map(|e| e.as_ptr().cast())
            .chain(std::iter::once(ptr::null()))
            .collect();
        let sources: Vec<RawFd> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
        let mut moved: Vec<RawFd> = vec![-1; sources.len()];
        let pipe_err = |error| SpawnError {
            stage: Stage::Pipe,
            error,
            limit: None,
        };
        let (status_read, status_write) = cloexec_pipe().map_err(pipe_err)?;
        let cloexec_limit = cloexec_limit(3 + sources.len(), sources.len() + 2);

        // SAFETY: zeroed sigset_t/sigaction are valid inputs to sigemptyset; SIG_DFL is a valid
        // disposition.
        let (empty_mask, default_action) = unsafe {
            let mut mask: libc::sigset_t = mem::zeroed();
            libc::sigemptyset(&mut mask);
            let mut action: libc::sigaction = mem::zeroed();
            action.sa_sigaction = libc::SIG_DFL;
            libc::sigemptyset(&mut action.sa_mask);
            (mask, action)
        };
        let child = Child {
            program: self.program.as_ptr(),
            argv: argv.as_ptr(),
            envp: envp.as_ptr(),
            pid_slot,
            sources: &sources,
            moved: moved.as_mut_ptr(),
            stdin: stdin.map_or(-1, |fd| fd.as_raw_fd()),
            status: status_write.as_raw_fd(),
            new_process_group: self.new_process_group,
            death_signal: self.death_signal.map(Signal::number),
            // SAFETY: getpid has no preconditions.
            parent: unsafe { libc::getpid() },
            empty_mask,
            default_action,
            max_signal: max_signal(),
            credentials: self
                .credentials
                .as_ref()
                .map(|(u, g, groups)| (*u, *g, groups.as_slice())),
            chdir: self.chdir.as_ref().map_or(ptr::null(), |c| c.as_ptr()),
            umask: self.umask,
            limits: &self.limits,
            cloexec_limit,
            close_range: !self.no_close_range,
            raise_first: self.raise_first,
            probe,
        };

        // Every signal is blocked in this thread across fork, so that the child starts with
        // every signal blocked and no handler of this process can run there before the child
        // has reset them all.
        let blocked = match SignalsBlocked::all() {
            Ok(blocked) => blocked,
            Err(error) => return Err(fork_err(error)),
        };
        // SAFETY: fork has no preconditions; the child branch runs only async-signal-safe code
        // on memory prepared above and never returns.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: we are the child of a fork; `child` points at buffers that are still
            // alive in our copy of the address space. `blocked` is not dropped here: the child
            // sets its own mask.
            unsafe { child.exec() }
        }
        let fork_error = io::Error::last_os_error();
        drop(blocked);
        if pid < 0 {
            return Err(fork_err(fork_error));
        }
        drop(status_write);
        let pid = pid as u32;
        match read_report(&status_read) {
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
        }
    }
}

impl ExecPlan {
    /// Replaces this process's program with the plan, keeping every fd that is not
    /// close-on-exec where it is, and keeping the signal mask (std's `exec` resets it). No
    /// fork: same pid, same children. Returns only on failure.
    pub fn exec_in_place(&self) -> io::Error {
        let argv: Vec<*const libc::c_char> = self
            .argv
            .iter()
            .map(|a| a.as_ptr())
            .chain(std::iter::once(ptr::null()))
            .collect();
        let envp: Vec<*const libc::c_char> = self
            .env
            .iter()
            .map(|e| e.as_ptr().cast())
            .chain(std::iter::once(ptr::null()))
            .collect();
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

/// Reads the child's report: `None` on EOF (exec succeeded), else the validated [`Report`].
/// Anything else on the pipe is a [`Stage::Report`] error.
fn read_report(pipe: &OwnedFd) -> Result<Option<Report>, SpawnError> {
    // One byte more than a report, to notice a longer write.
    let mut buf = [0u8; REPORT_LEN + 1];
    let mut got = 0;
    while got < buf.len() {
        // SAFETY: reading into the unfilled tail of a buffer we own.
        let n = unsafe {
            libc::read(
                pipe.as_raw_fd(),
                buf[got..].as_mut_ptr().cast(),
                buf.len() - got,
            )
        };
        if n == 0 {
            break;
        }
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(SpawnError {
                stage: Stage::Pipe,
                error: err,
                limit: None,
            });
        }
        got += n as usize;
    }
    if got == 0 {
        return Ok(None);
    }
    Report::decode(&buf[..got])
        .map(Some)
        .ok_or_else(|| SpawnError {
            stage: Stage::Report,
            error: io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the child wrote {}{got} bytes that are not a failure report",
                    if got > REPORT_LEN { "at least " } else { "" }
                ),
            ),
            limit: None,
        })
}

/// What the child needs, as raw pointers into buffers the parent prepared.
struct Child<'a> {
    program: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    pid_slot: *mut u8,
    sources: &'a [RawFd],
    moved: *mut RawFd,
    stdin: RawFd,
    status: RawFd,
    new_process_group: bool,
    death_signal: Option<libc::c_int>,
    parent: libc::pid_t,
    empty_mask: libc::sigset_t,
    default_action: libc::sigaction,
    max_signal: libc::c_int,
    credentials: Option<(libc::uid_t, libc::gid_t, &'a [libc::gid_t])>,
    chdir: *const libc::c_char,
    umask: Option<libc::mode_t>,
    limits: &'a [(libc::c_int, libc::rlim_t, libc::rlim_t)],
    /// Every fd the child may hold is below this: the end of the `fcntl` loop that marks fds
    /// close-on-exec where `close_range` fails.
    cloexec_limit: libc::c_int,
    /// Whether to try `close_range` first (tests turn it off to exercise the loop).
    close_range: bool,
    /// A signal the child raises on itself as its very first step (tests).
    raise_first: Option<libc::c_int>,
    /// Check instead of executing: see [`ExecPlan::probe`].
    probe: bool,
}

impl Child<'_> {
    /// Runs in the forked child. Async-signal-safe system calls only; no allocation.
    ///
    /// # Safety
    /// Call only in the child of `fork`, with all pointers valid.
    unsafe fn exec(&self) -> ! {
        let mut status = self.status;
        if let Some(sig) = self.raise_first {
            libc::raise(sig);
        }
        if self.new_process_group && libc::setpgid(0, 0) < 0 {
            fail(status, ChildStep::ProcessGroup, 0);
        }
        for sig in 1..=self.max_signal {
            reset_signal(sig, &self.default_action);
        }
        if libc::sigprocmask(libc::SIG_SETMASK, &self.empty_mask, ptr::null_mut()) < 0 {
            fail(status, ChildStep::Signals, 0);
        }
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if let Some(sig) = self.death_signal {
            libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong);
            if libc::getppid() != self.parent {
                // The supervisor died before the death signal was armed.
                libc::_exit(1);
            }
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        let _ = (self.death_signal, self.parent);
        if !self.pid_slot.is_null() {
            write_decimal(self.pid_slot, libc::getpid() as u64);
        }

        // Move the status pipe, stdin and every source above the target range 3..3+n first,
        // so that placing fd 3+i can never overwrite a source that is still needed.
        let first_free = 3 + self.sources.len() as libc::c_int;
        let moved_status = libc::fcntl(status, libc::F_DUPFD_CLOEXEC, first_free);
        if moved_status < 0 {
            fail(status, ChildStep::Fds, 0);
        }
        status = moved_status;
        for (i, &src) in self.sources.iter().enumerate() {
            let fd = libc::fcntl(src, libc::F_DUPFD_CLOEXEC, first_free);
            if fd < 0 {
                fail(status, ChildStep::Fds, 0);
            }
            *self.moved.add(i) = fd;
        }
        let stdin = if self.stdin >= 0 {
            libc::fcntl(self.stdin, libc::F_DUPFD_CLOEXEC, first_free)
        } else {
            -1
        };
        if self.stdin >= 0 && stdin < 0 {
            fail(status, ChildStep::Fds, 0);
        }
        for i in 0..self.sources.len() {
            // dup2 leaves FD_CLOEXEC clear on the new fd: these are meant to be inherited.
            if libc::dup2(*self.moved.add(i), 3 + i as libc::c_int) < 0 {
                fail(status, ChildStep::Fds, 0);
            }
        }
        if stdin >= 0 && libc::dup2(stdin, 0) < 0 {
            fail(status, ChildStep::Fds, 0);
        }
        for fd in 0..3 {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 && flags & libc::FD_CLOEXEC != 0 {
                libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
            }
        }
        if !(self.close_range && close_range_cloexec(first_free)) {
            for fd in first_free..self.cloexec_limit {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                // EBADF: nothing open there.
                if flags >= 0
                    && flags & libc::FD_CLOEXEC == 0
                    && libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) < 0
                {
                    fail(status, ChildStep::Fds, 0);
                }
            }
        }

        for (i, &(resource, soft, hard)) in self.limits.iter().enumerate() {
            let limit = libc::rlimit {
                rlim_cur: soft,
                rlim_max: hard,
            };
            if libc::setrlimit(resource as _, &limit) < 0 {
                fail(status, ChildStep::Limits, i as u32);
            }
        }
        if let Some(mask) = self.umask {
            libc::umask(mask);
        }
        // Groups, then group, then user: once the uid changes, the rest is no longer allowed.
        if let Some((uid, gid, groups)) = self.credentials {
            if libc::setgroups(groups.len() as _, groups.as_ptr()) < 0
                || libc::setgid(gid) < 0
                || libc::setuid(uid) < 0
            {
                fail(status, ChildStep::Credentials, 0);
            }
        }
        if !self.chdir.is_null() && libc::chdir(self.chdir) < 0 {
            fail(status, ChildStep::Chdir, 0);
        }
        if self.probe {
            if libc::access(self.program, libc::X_OK) < 0 {
                fail(status, ChildStep::Exec, 0);
            }
            libc::_exit(0);
        }

        libc::execve(self.program, self.argv, self.envp);
        fail(status, ChildStep::Exec, 0)
    }
}

/// Sets `sig`'s disposition to `SIG_DFL`. Async-signal-safe.
///
/// On Linux the raw `rt_sigaction` system call is used first, because glibc's `sigaction`
/// refuses its reserved real-time signals (32 and 33), and an "ignored" state inherited for
/// those would otherwise survive `execve`. An all-zero kernel `sigaction` means `SIG_DFL`, no
/// flags and an empty mask, whatever the architecture's field order. Fails harmlessly for
/// `SIGKILL` and `SIGSTOP`.
unsafe fn reset_signal(sig: libc::c_int, default_action: &libc::sigaction) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let zeroed = [0u64; 8];
        let kernel_sigset_size: libc::size_t = 8;
        let rc = libc::syscall(
            libc::SYS_rt_sigaction,
            sig,
            zeroed.as_ptr(),
            ptr::null_mut::<u64>(),
            kernel_sigset_size,
        );
        if rc == 0 {
            return;
        }
    }
    libc::sigaction(sig, default_action, ptr::null_mut());
}

/// Reports `step` (with `limit`, the limit's index for [`ChildStep::Limits`]) and errno on
/// the status pipe, and exits. Async-signal-safe.
unsafe fn fail(status: RawFd, step: ChildStep, limit: u32) -> ! {
    let errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
    let report = Report { step, limit, errno }.encode();
    libc::write(status, report.as_ptr().cast(), report.len());
    libc::_exit(127)
}

/// Marks every fd from `first` up close-on-exec with `close_range(CLOSE_RANGE_CLOEXEC)`:
/// whether it worked (Linux 5.11 and later). Async-signal-safe.
#[cfg(target_os = "linux")]
unsafe fn close_range_cloexec(first: libc::c_int) -> bool {
    libc::syscall(
        libc::SYS_close_range,
        first as libc::c_uint,
        u32::MAX,
        libc::CLOSE_RANGE_CLOEXEC as libc::c_uint,
    ) == 0
}

/// There is no `close_range` here: the caller walks the fds.
#[cfg(not(target_os = "linux"))]
unsafe fn close_range_cloexec(_first: libc::c_int) -> bool {
    false
}

/// Whether `close_range(CLOSE_RANGE_CLOEXEC)` works here, asked once (0: not yet, 1: yes,
/// 2: no) with an empty range, which changes nothing.
static CLOSE_RANGE_WORKS: AtomicU8 = AtomicU8::new(0);

fn close_range_works() -> bool {
    match CLOSE_RANGE_WORKS.load(Ordering::Relaxed) {
        0 => {
            // SAFETY: no fd is open at the top of the number space: this only asks the kernel
            // whether it knows the call and the flag.
            let works = unsafe { close_range_cloexec(libc::c_int::MAX) };
            CLOSE_RANGE_WORKS.store(if works { 1 } else { 2 }, Ordering::Relaxed);
            works
        }
        state => state == 1,
    }
}

/// An exclusive upper bound for the fds the child will hold, computed before `fork` for its
/// fallback loop (see [`Child::cloexec_limit`]): every fd open now, or the soft `RLIMIT_NOFILE`
/// if they cannot be listed, and room for the `extra` fds the child duplicates, all above
/// `first_free`. Where `close_range` works, the loop is not expected to run and the bound is
/// the cheap `RLIMIT_NOFILE` alone.
fn cloexec_limit(first_free: usize, extra: usize) -> libc::c_int {
    let rlimit = || {
        // SAFETY: rlimit is plain integers; getrlimit writes into the one we own.
        let mut limit: libc::rlimit = unsafe { mem::zeroed() };
        // SAFETY: as above.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } < 0 {
            return libc::c_int::MAX as usize;
        }
        usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX)
    };
    let open_end = if close_range_works() {
        rlimit()
    } else {
        match std::fs::read_dir("/dev/fd") {
            Ok(dir) => dir
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<usize>().ok())
                .max()
                .map_or(0, |fd| fd + 1),
            Err(_) => rlimit(),
        }
    };
    let end = open_end
        .max(first_free)
        .saturating_add(extra)
        .min(libc::c_int::MAX as usize);
    end as libc::c_int
}

/// Every signal blocked in the calling thread (`pthread_sigmask`) until dropped, when the
/// previous mask is restored.
struct SignalsBlocked {
    previous: libc::sigset_t,
}

impl SignalsBlocked {
    fn all() -> io::Result<SignalsBlocked> {
        // SAFETY: zeroed sigset_t values are valid inputs to sigfillset and pthread_sigmask,
        // which write into them.
        unsafe {
            let mut all: libc::sigset_t = mem::zeroed();
            libc::sigfillset(&mut all);
            let mut previous: libc::sigset_t = mem::zeroed();
            let rc = libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut previous);
            if rc != 0 {
                return Err(io::Error::from_raw_os_error(rc));
            }
            Ok(SignalsBlocked { previous })
        }
    }
}

impl Drop for SignalsBlocked {
    fn drop(&mut self) {
        // SAFETY: restores the mask pthread_sigmask returned for this thread.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.previous, ptr::null_mut()) };
    }
}

/// Writes `value` in decimal followed by NUL at `dst`, which has room for [`PID_DIGITS`] bytes.
/// Async-signal-safe.
unsafe fn write_decimal(dst: *mut u8, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut n = 0;
    loop {
        digits[n] = b'0' + (value % 10) as u8;
        n += 1;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    for i in 0..n {
        *dst.add(i) = digits[n - 1 - i];
    }
    *dst.add(n) = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_fds_names_herds_own_fd_directory() {
        let err = SpawnError {
            stage: Stage::Pipe,
            error: io::Error::from_raw_os_error(libc::EMFILE),
            limit: None,
        };
        let text = err.to_string();
        let dir = format!("ls -l /proc/{}/fd)", std::process::id());
        assert!(text.contains(&dir), "{text}");
    }

    #[test]
    fn decimal_fills_the_slot() {
        let mut buf = [0xffu8; PID_DIGITS];
        // SAFETY: the buffer has PID_DIGITS bytes.
        unsafe { write_decimal(buf.as_mut_ptr(), 40213) };
        assert_eq!(&buf[..6], b"40213\0");
        // SAFETY: as above; u64::MAX needs 21 bytes with its NUL, within PID_DIGITS.
        unsafe { write_decimal(buf.as_mut_ptr(), u64::MAX) };
        assert_eq!(&buf[..21], b"18446744073709551615\0");
    }

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

    /// A report is read back as written; anything else on the pipe is refused.
    #[test]
    fn a_corrupted_report_is_refused() {
        let report = Report {
            step: ChildStep::Limits,
            limit: 3,
            errno: libc::EPERM,
        };
        let bytes = report.encode();
        assert_eq!(Report::decode(&bytes), Some(report));
        for step in ChildStep::ALL {
            let report = Report {
                step,
                limit: 0,
                errno: 0,
            };
            assert_eq!(Report::decode(&report.encode()).map(|r| r.step), Some(step));
        }
        let mut wrong_magic = bytes;
        wrong_magic[0] ^= 1;
        assert_eq!(Report::decode(&wrong_magic), None);
        let mut unknown_step = bytes;
        unknown_step[4..8].copy_from_slice(&8u32.to_ne_bytes());
        assert_eq!(Report::decode(&unknown_step), None);
        let mut limit_elsewhere = Report {
            step: ChildStep::Exec,
            limit: 0,
            errno: libc::ENOENT,
        }
        .encode();
        limit_elsewhere[8] = 1;
        assert_eq!(Report::decode(&limit_elsewhere), None);
        assert_eq!(Report::decode(&bytes[..REPORT_LEN - 1]), None);
        assert_eq!(Report::decode(&[bytes.as_slice(), &[0]].concat()), None);

        // Through a pipe, as the parent reads it.
        let through_pipe = |bytes: &[u8]| {
            let (read, write) = cloexec_pipe().unwrap();
            // SAFETY: writes a few bytes we own to a pipe we own.
            let n = unsafe { libc::write(write.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) };
            assert_eq!(n, bytes.len() as isize);
            drop(write);
            read_report(&read)
        };
        assert!(through_pipe(&[]).unwrap().is_none());
        assert_eq!(through_pipe(&bytes).unwrap(), Report::decode(&bytes));
        for garbage in [
            &b"\x01\0\0\0\x02\0\0\0"[..],
            &wrong_magic,
            &[bytes.as_slice(), b"x"].concat(),
        ] {
            let err = through_pipe(garbage).unwrap_err();
            assert_eq!(err.stage(), Stage::Report, "{err}");
            assert!(err.to_string().contains("not a failure report"), "{err}");
        }
    }
}
