//! The child's side of a spawn: the steps it takes between `fork` and `execve`, on what the
//! parent prepared (see the list in [`super`]), and the bound of the fds it marks
//! close-on-exec, computed before `fork`.

use std::io;
use std::mem;
use std::os::unix::io::RawFd;
use std::ptr;
use std::sync::atomic::{AtomicU8, Ordering};

use super::direct;
use super::report::{ChildStep, Report};

/// What the child needs, as raw pointers into buffers the parent prepared.
pub(super) struct Child<'a> {
    pub(super) program: *const libc::c_char,
    pub(super) argv: *const *const libc::c_char,
    pub(super) envp: *const *const libc::c_char,
    pub(super) pid_slot: *mut u8,
    pub(super) sources: &'a [RawFd],
    pub(super) moved: *mut RawFd,
    /// What becomes fds 0, 1 and 2 (-1: left as they are).
    pub(super) stdio: [RawFd; 3],
    pub(super) status: RawFd,
    pub(super) new_process_group: bool,
    pub(super) death_signal: Option<libc::c_int>,
    pub(super) parent: libc::pid_t,
    pub(super) empty_mask: libc::sigset_t,
    pub(super) default_action: libc::sigaction,
    pub(super) max_signal: libc::c_int,
    pub(super) credentials: Option<(libc::uid_t, libc::gid_t, &'a [libc::gid_t])>,
    pub(super) chdir: *const libc::c_char,
    pub(super) umask: Option<libc::mode_t>,
    pub(super) limits: &'a [(libc::c_int, libc::rlim_t, libc::rlim_t)],
    pub(super) nice: Option<libc::c_int>,
    /// Every fd the child may hold is below this: the end of the `fcntl` loop that marks fds
    /// close-on-exec where `close_range` fails.
    pub(super) cloexec_limit: libc::c_int,
    /// Whether to try `close_range` first (tests turn it off to exercise the loop).
    pub(super) close_range: bool,
    /// A signal the child raises on itself as its very first step (tests).
    pub(super) raise_first: Option<libc::c_int>,
    /// Check instead of executing: see [`ExecPlan::probe`](super::ExecPlan::probe).
    pub(super) probe: bool,
}

impl Child<'_> {
    /// Runs in the forked child: the steps of the module's list, in order. Async-signal-safe
    /// system calls only; no allocation.
    ///
    /// # Safety
    /// Call only in the child of `fork`, or of `vfork::start` (every call here is safe in a
    /// child that shares the parent's memory while the parent is suspended), with all
    /// pointers valid.
    pub(super) unsafe fn exec(&self) -> ! {
        if let Some(sig) = self.raise_first {
            direct::signal_self(sig);
        }
        if self.new_process_group && libc::setpgid(0, 0) < 0 {
            fail(self.status, ChildStep::ProcessGroup, 0);
        }
        self.reset_signals();
        self.die_with_parent();
        if !self.pid_slot.is_null() {
            write_decimal(self.pid_slot, direct::own_pid() as u64);
        }
        let status = self.place_fds();
        self.limits_and_credentials(status);
        if self.credentials.is_some() {
            // A change of user clears the parent-death signal (prctl(2)): armed again.
            self.die_with_parent();
        }
        if !self.chdir.is_null() && libc::chdir(self.chdir) < 0 {
            fail(status, ChildStep::Chdir, 0);
        }
        if self.probe {
            if libc::access(self.program, libc::X_OK) < 0 {
                fail(status, ChildStep::Exec, 0);
            }
            // Linux refuses the execve of a process whose change of user left that user over
            // its RLIMIT_NPROC (EAGAIN), before it looks at the file: an execve of "/", which
            // no kernel runs (EACCES), meets that refusal and nothing else.
            #[cfg(any(target_os = "linux", target_os = "android"))]
            if libc::execve(b"/\0".as_ptr().cast(), self.argv, self.envp) < 0
                && io::Error::last_os_error().raw_os_error() == Some(libc::EAGAIN)
            {
                fail(status, ChildStep::Exec, 0);
            }
            checked(status);
        }

        libc::execve(self.program, self.argv, self.envp);
        fail(status, ChildStep::Exec, 0)
    }

    /// Every signal's disposition back to `SIG_DFL`, then the empty mask.
    unsafe fn reset_signals(&self) {
        // SIGKILL's and SIGSTOP's cannot change: asking would fail, and a failed call sets
        // errno, which a child started beside its parent shares with it (see `batch`).
        let fixed = |sig| sig == libc::SIGKILL || sig == libc::SIGSTOP;
        for sig in (1..=self.max_signal).filter(|&sig| !fixed(sig)) {
            reset_signal(sig, &self.default_action);
        }
        if !direct::set_child_mask(&self.empty_mask) {
            fail(self.status, ChildStep::Signals, 0);
        }
    }

    /// The parent-death signal (Linux); exits at once if the parent has died already.
    unsafe fn die_with_parent(&self) {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if let Some(sig) = self.death_signal {
            libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong);
            if direct::parent_pid() != self.parent {
                // The supervisor died before the death signal was armed.
                libc::_exit(1);
            }
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        let _ = (self.death_signal, self.parent);
    }

    /// Places the sources at 3, 4, ... and the given standard streams at 0, 1 and 2,
    /// inheritable, and marks every fd above them close-on-exec. Returns the status pipe's new
    /// number.
    unsafe fn place_fds(&self) -> RawFd {
        // Move the status pipe, the streams and every source above the target range 3..3+n first,
        // so that placing fd 3+i can never overwrite a source that is still needed.
        let first_free = 3 + self.sources.len() as libc::c_int;
        let status = libc::fcntl(self.status, libc::F_DUPFD_CLOEXEC, first_free);
        if status < 0 {
            fail(self.status, ChildStep::Fds, 0);
        }
        for (i, &src) in self.sources.iter().enumerate() {
            let fd = libc::fcntl(src, libc::F_DUPFD_CLOEXEC, first_free);
            if fd < 0 {
                fail(status, ChildStep::Fds, 0);
            }
            *self.moved.add(i) = fd;
        }
        let mut stdio = [-1; 3];
        for (moved, &src) in stdio.iter_mut().zip(self.stdio.iter()) {
            if src >= 0 {
                *moved = libc::fcntl(src, libc::F_DUPFD_CLOEXEC, first_free);
                if *moved < 0 {
                    fail(status, ChildStep::Fds, 0);
                }
            }
        }
        for i in 0..self.sources.len() {
            // dup2 leaves FD_CLOEXEC clear on the new fd: these are meant to be inherited.
            if libc::dup2(*self.moved.add(i), 3 + i as libc::c_int) < 0 {
                fail(status, ChildStep::Fds, 0);
            }
        }
        for (target, &fd) in stdio.iter().enumerate() {
            if fd >= 0 && libc::dup2(fd, target as libc::c_int) < 0 {
                fail(status, ChildStep::Fds, 0);
            }
        }
        for fd in 0..3 {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 && flags & libc::FD_CLOEXEC != 0 {
                libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
            }
        }
        self.cloexec_from(first_free, status);
        status
    }

    /// Marks every fd from `first_free` up close-on-exec: `close_range`, or where it fails,
    /// each fd below [`Child::cloexec_limit`].
    unsafe fn cloexec_from(&self, first_free: libc::c_int, status: RawFd) {
        if self.close_range && close_range_cloexec(first_free) {
            return;
        }
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

    /// The resource limits, the umask and the nice value, then the groups,
    /// group and user.
    unsafe fn limits_and_credentials(&self, status: RawFd) {
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
        // A higher nice value for oneself needs no privilege; a failure leaves herd's, which
        // is how the worker would run without the option, so it is not worth failing for.
        if let Some(nice) = self.nice {
            libc::setpriority(libc::PRIO_PROCESS, 0, nice);
        }
        // Groups, then group, then user: once the uid changes, the rest is no longer allowed.
        if let Some((uid, gid, groups)) = self.credentials {
            if !direct::set_ids(uid, gid, groups) {
                fail(status, ChildStep::Credentials, 0);
            }
        }
    }
}

/// The signal state a child resets to, made before `fork`: an empty mask and a `SIG_DFL`
/// action.
pub(super) fn default_signal_state() -> (libc::sigset_t, libc::sigaction) {
    // SAFETY: zeroed sigset_t/sigaction are valid inputs to sigemptyset; SIG_DFL is a valid
    // disposition.
    unsafe {
        let mut mask: libc::sigset_t = mem::zeroed();
        libc::sigemptyset(&mut mask);
        let mut action: libc::sigaction = mem::zeroed();
        action.sa_sigaction = libc::SIG_DFL;
        libc::sigemptyset(&mut action.sa_mask);
        (mask, action)
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

/// Reports that a probe's checks passed ([`ChildStep::Checked`]), and exits: the parent
/// tells a child killed before it finished (EOF with no report) from one that passed, whoever
/// reaps it. Async-signal-safe.
unsafe fn checked(status: RawFd) -> ! {
    let report = Report {
        step: ChildStep::Checked,
        limit: 0,
        errno: 0,
    }
    .encode();
    libc::write(status, report.as_ptr().cast(), report.len());
    libc::_exit(0)
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
pub(super) fn cloexec_limit(first_free: usize, extra: usize) -> libc::c_int {
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

/// Writes `value` in decimal followed by NUL at `dst`, which has room for [`PID_DIGITS`](super::PID_DIGITS) bytes.
/// Async-signal-safe.
pub(super) unsafe fn write_decimal(dst: *mut u8, mut value: u64) {
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
    use crate::spawn::PID_DIGITS;

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
}
