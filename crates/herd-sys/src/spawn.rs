//! Fork and exec one worker with an *fd plan*.
//!
//! [`ExecPlan`] collects the program, arguments, environment and options in the parent. Its
//! [`spawn`](ExecPlan::spawn) prepares every buffer and pointer array, then forks; the child runs
//! a fixed sequence of async-signal-safe system calls with no allocation and no locks:
//!
//! 1. `setpgid(0, 0)` when asked, so the worker and its own children form one process group;
//! 2. every signal's disposition back to `SIG_DFL` and an empty signal mask;
//! 3. `prctl(PR_SET_PDEATHSIG)` on Linux, then a check that the parent is still alive;
//! 4. its own pid written, in decimal, into the `LISTEN_PID=` slot reserved in the environment;
//! 5. the inherited fds moved to 3, 4, ... (first duplicated above the target range, so that no
//!    source is overwritten) and `/dev/null` onto fd 0; only those and 1, 2 lose `FD_CLOEXEC`,
//!    and `close_range(CLOSE_RANGE_CLOEXEC)` marks everything above them close-on-exec;
//! 6. `execve`. A failure at any step is written as `(step, errno)` to a close-on-exec pipe,
//!    which the parent reads: EOF means the exec succeeded.

use std::ffi::{CString, OsStr};
use std::fmt;
use std::io;
use std::mem;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;

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
            probe,
        };

        // SAFETY: fork has no preconditions; the child branch runs only async-signal-safe code
        // on memory prepared above and never returns.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(fork_err(io::Error::last_os_error()));
        }
        if pid == 0 {
            // SAFETY: we are the child of a fork; `child` points at buffers that are still
            // alive in our copy of the address space.
            unsafe { child.exec() }
        }
        drop(status_write);
        let pid = pid as u32;
        match read_status(&status_read) {
            Ok(None) => Ok(pid),
            Ok(Some((stage, limit, errno))) => {
                // The child has exited or is about to: reap it so no zombie is left.
                let _ = wait_for(pid);
                Err(SpawnError {
                    stage,
                    error: io::Error::from_raw_os_error(errno),
                    limit,
                })
            }
            Err(error) => {
                let _ = wait_for(pid);
                Err(pipe_err(error))
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

/// Reads the child's report: `None` on EOF (exec succeeded), else the failed stage, the index
/// of the limit (for [`Stage::Limits`]) and errno.
fn read_status(pipe: &OwnedFd) -> io::Result<Option<(Stage, Option<usize>, i32)>> {
    let mut buf = [0u8; 8];
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
            return Err(err);
        }
        got += n as usize;
    }
    match got {
        0 => Ok(None),
        8 => {
            // The low byte is the stage; the limit's index is above it.
            let code = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]);
            let limit = (code & 0xff == 7).then_some((code >> 8) as usize);
            let stage = match code & 0xff {
                1 => Stage::ProcessGroup,
                2 => Stage::Signals,
                3 => Stage::Fds,
                5 => Stage::Credentials,
                6 => Stage::Chdir,
                7 => Stage::Limits,
                _ => Stage::Exec,
            };
            Ok(Some((
                stage,
                limit,
                i32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]]),
            )))
        }
        _ => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "short status report from the child",
        )),
    }
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
        if self.new_process_group && libc::setpgid(0, 0) < 0 {
            fail(status, 1);
        }
        for sig in 1..=self.max_signal {
            reset_signal(sig, &self.default_action);
        }
        if libc::sigprocmask(libc::SIG_SETMASK, &self.empty_mask, ptr::null_mut()) < 0 {
            fail(status, 2);
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
            fail(status, 3);
        }
        status = moved_status;
        for (i, &src) in self.sources.iter().enumerate() {
            let fd = libc::fcntl(src, libc::F_DUPFD_CLOEXEC, first_free);
            if fd < 0 {
                fail(status, 3);
            }
            *self.moved.add(i) = fd;
        }
        let stdin = if self.stdin >= 0 {
            libc::fcntl(self.stdin, libc::F_DUPFD_CLOEXEC, first_free)
        } else {
            -1
        };
        if self.stdin >= 0 && stdin < 0 {
            fail(status, 3);
        }
        for i in 0..self.sources.len() {
            // dup2 leaves FD_CLOEXEC clear on the new fd: these are meant to be inherited.
            if libc::dup2(*self.moved.add(i), 3 + i as libc::c_int) < 0 {
                fail(status, 3);
            }
        }
        if stdin >= 0 && libc::dup2(stdin, 0) < 0 {
            fail(status, 3);
        }
        for fd in 0..3 {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 && flags & libc::FD_CLOEXEC != 0 {
                libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
            }
        }
        #[cfg(target_os = "linux")]
        libc::syscall(
            libc::SYS_close_range,
            first_free as libc::c_uint,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC as libc::c_uint,
        );

        for (i, &(resource, soft, hard)) in self.limits.iter().enumerate() {
            let limit = libc::rlimit {
                rlim_cur: soft,
                rlim_max: hard,
            };
            if libc::setrlimit(resource as _, &limit) < 0 {
                fail(status, 7 | ((i as u32) << 8));
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
                fail(status, 5);
            }
        }
        if !self.chdir.is_null() && libc::chdir(self.chdir) < 0 {
            fail(status, 6);
        }
        if self.probe {
            if libc::access(self.program, libc::X_OK) < 0 {
                fail(status, 4);
            }
            libc::_exit(0);
        }

        libc::execve(self.program, self.argv, self.envp);
        fail(status, 4)
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

/// Reports `(stage, errno)` on the status pipe and exits. Async-signal-safe.
unsafe fn fail(status: RawFd, stage: u32) -> ! {
    let errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
    let mut buf = [0u8; 8];
    buf[..4].copy_from_slice(&stage.to_ne_bytes());
    buf[4..].copy_from_slice(&errno.to_ne_bytes());
    libc::write(status, buf.as_ptr().cast(), buf.len());
    libc::_exit(127)
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
}
