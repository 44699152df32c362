//! Signals by name, signalling workers and their process groups, and reaping children.
//!
//! The platform part is `mod imp`, one per platform, each with `MAX_SIGNAL`, `peek_exit` and
//! `process_groups`: Linux and Android use `waitid(WNOWAIT)` and `/proc`; elsewhere
//! `peek_exit` reaps and `process_groups` is empty.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

/// A signal number, with the conventional names (`TERM`, `SIGTERM` and `15` all parse).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Signal(libc::c_int);

/// Every standard signal by its short name, in number order (1 to 31 on Linux). The first
/// name of a number is the one shown; later ones (`IOT`, `POLL`, `CLD`) are accepted aliases.
const NAMES: &[(&str, libc::c_int)] = &[
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("ABRT", libc::SIGABRT),
    #[cfg(any(target_os = "linux", target_os = "android"))]
    ("IOT", libc::SIGIOT),
    ("BUS", libc::SIGBUS),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    #[cfg(any(target_os = "linux", target_os = "android"))]
    ("STKFLT", libc::SIGSTKFLT),
    ("CHLD", libc::SIGCHLD),
    ("CLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("WINCH", libc::SIGWINCH),
    ("IO", libc::SIGIO),
    #[cfg(any(target_os = "linux", target_os = "android"))]
    ("POLL", libc::SIGPOLL),
    #[cfg(any(target_os = "linux", target_os = "android"))]
    ("PWR", libc::SIGPWR),
    ("SYS", libc::SIGSYS),
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    ("EMT", libc::SIGEMT),
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    ("INFO", libc::SIGINFO),
];

impl Signal {
    /// `SIGTERM`.
    pub const TERM: Signal = Signal(libc::SIGTERM);
    /// `SIGKILL`.
    pub const KILL: Signal = Signal(libc::SIGKILL);
    /// `SIGINT`.
    pub const INT: Signal = Signal(libc::SIGINT);
    /// `SIGQUIT`.
    pub const QUIT: Signal = Signal(libc::SIGQUIT);
    /// `SIGHUP`.
    pub const HUP: Signal = Signal(libc::SIGHUP);
    /// `SIGCHLD`.
    pub const CHLD: Signal = Signal(libc::SIGCHLD);
    /// `SIGTTIN`.
    pub const TTIN: Signal = Signal(libc::SIGTTIN);
    /// `SIGTTOU`.
    pub const TTOU: Signal = Signal(libc::SIGTTOU);
    /// `SIGCONT`.
    pub const CONT: Signal = Signal(libc::SIGCONT);
    /// `SIGUSR2`.
    pub const USR2: Signal = Signal(libc::SIGUSR2);
    /// `SIGURG` (ignored by default, so a stray one is harmless).
    pub const URG: Signal = Signal(libc::SIGURG);

    /// Parses `TERM`, `SIGTERM`, `sigterm` or `15`, and real-time signals by number or as
    /// `RTMIN`, `RTMIN+N`, `RTMAX-N` (`SIG` prefix optional). The numbers the C library keeps
    /// for its own threads ([`Signal::is_reserved`]) are refused.
    pub fn from_name(text: &str) -> Option<Signal> {
        if let Ok(n) = text.parse::<libc::c_int>() {
            return Self::from_number(n);
        }
        let upper = text.to_ascii_uppercase();
        let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
        if let Some(n) = real_time(bare) {
            return Self::from_number(n);
        }
        NAMES
            .iter()
            .find(|(name, _)| *name == bare)
            .map(|&(_, n)| Signal(n))
    }

    /// The signal with this number, if it is a valid signal (1 to 64 on Linux) that the C
    /// library does not keep for itself.
    pub fn from_number(n: libc::c_int) -> Option<Signal> {
        if (1..=max_signal()).contains(&n) && !Self::is_reserved(n) {
            Some(Signal(n))
        } else {
            None
        }
    }

    /// Whether `n` is one of the real-time signals the C library keeps for its own threads
    /// (glibc's 32 and 33, musl's 32 to 34: those below `SIGRTMIN()`). Sent to a process, they
    /// kill it or confuse its threading: no worker can use them.
    pub fn is_reserved(n: libc::c_int) -> bool {
        n > imp::LAST_STANDARD && n < imp::rt_min()
    }

    /// The first real-time signal a program may use (`SIGRTMIN()`), if the system has any.
    pub fn rt_min() -> Option<libc::c_int> {
        Some(imp::rt_min()).filter(|n| *n <= max_signal())
    }

    /// The signal's number.
    pub fn number(self) -> libc::c_int {
        self.0
    }

    /// The short name (`TERM`), or `None` for signals without one (real-time signals).
    pub fn name(self) -> Option<&'static str> {
        NAMES
            .iter()
            .find(|(_, n)| *n == self.0)
            .map(|(name, _)| *name)
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "SIG{name}"),
            None => write!(f, "signal {}", self.0),
        }
    }
}

/// `RTMIN`, `RTMIN+N`, `RTMAX` or `RTMAX-N` (upper case, no `SIG`) as a number, if it is one
/// and within `SIGRTMIN()..=SIGRTMAX()`.
fn real_time(name: &str) -> Option<libc::c_int> {
    let (min, max) = (imp::rt_min(), max_signal());
    if min > max {
        return None;
    }
    let offset = |rest: &str, sign: char| -> Option<libc::c_int> {
        match rest {
            "" => Some(0),
            rest => rest
                .strip_prefix(sign)
                .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))?
                .parse()
                .ok()
                .filter(|n: &libc::c_int| *n <= max - min),
        }
    };
    if let Some(rest) = name.strip_prefix("RTMIN") {
        offset(rest, '+').map(|n| min + n)
    } else if let Some(rest) = name.strip_prefix("RTMAX") {
        offset(rest, '-').map(|n| max - n)
    } else {
        None
    }
}

/// The highest signal number this system knows.
pub(crate) fn max_signal() -> libc::c_int {
    imp::MAX_SIGNAL
}

/// Sends `signal` to the process `pid` (`kill(2)`).
pub fn signal_process(pid: u32, signal: Signal) -> io::Result<()> {
    // SAFETY: kill takes plain integers; a positive pid names one process.
    if unsafe { libc::kill(to_pid(pid)?, signal.0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sends `signal` to the process group led by `pid` (`kill(-pid)`), which reaches a worker and
/// any children it forked; falls back to the process alone when it left that group.
pub fn signal_group(pid: u32, signal: Signal) -> io::Result<()> {
    // SAFETY: kill takes plain integers; a negative pid names a process group.
    if unsafe { libc::kill(-to_pid(pid)?, signal.0) } == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::ESRCH) {
        return signal_process(pid, signal);
    }
    Err(err)
}

/// Sends `signal` to the process group `pgid` and nothing else (`kill(-pgid)`): no fallback to
/// a process of that pid, for groups whose leader herd does not hold (its pid may name a
/// stranger by now). `ESRCH` when the group is empty.
pub fn signal_group_only(pgid: u32, signal: Signal) -> io::Result<()> {
    // SAFETY: kill takes plain integers; a negative pid names a process group.
    if unsafe { libc::kill(-to_pid(pgid)?, signal.0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reaps one exited child without blocking (`waitpid(-1, WNOHANG)`): `Ok(None)` when no child
/// has exited (or there are none).
pub fn reap_any() -> io::Result<Option<(u32, ExitStatus)>> {
    let mut status: libc::c_int = 0;
    // SAFETY: waitpid writes the status into a c_int we own.
    let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
    match pid {
        0 => Ok(None),
        p if p > 0 => Ok(Some((p as u32, ExitStatus::from_raw(status)))),
        _ => {
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::ECHILD) => Ok(None),
                Some(libc::EINTR) => reap_any(),
                _ => Err(err),
            }
        }
    }
}

/// How the child `pid` exited, if it has, *without reaping it*
/// (`waitid(P_PID, pid, WEXITED | WNOHANG | WNOWAIT)`): it stays a zombie, so its pid, and the
/// id of the process group it leads, cannot be reused until [`reap`] collects it. **Off Linux
/// and Android this reaps at once** (no pinning).
pub fn peek_exit(pid: u32) -> io::Result<Option<ExitStatus>> {
    imp::peek_exit(pid)
}

/// Reaps the child `pid` if it has exited (`waitpid(pid, WNOHANG)`); `Ok(None)` if it runs.
pub fn reap(pid: u32) -> io::Result<Option<ExitStatus>> {
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: waitpid writes the status into a c_int we own.
        let rc = unsafe { libc::waitpid(to_pid(pid)?, &mut status, libc::WNOHANG) };
        match rc {
            0 => return Ok(None),
            p if p > 0 => return Ok(Some(ExitStatus::from_raw(status))),
            _ => {
                let err = io::Error::last_os_error();
                if err.raw_os_error() != Some(libc::EINTR) {
                    return Err(err);
                }
            }
        }
    }
}

/// Reaps one exited child of this process's own process group (`waitpid(0, WNOHANG)`):
/// children that are not workers (workers lead groups of their own). `Ok(None)` when none has
/// exited.
pub fn reap_own_group() -> io::Result<Option<(u32, ExitStatus)>> {
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: waitpid writes the status into a c_int we own.
        let pid = unsafe { libc::waitpid(0, &mut status, libc::WNOHANG) };
        match pid {
            0 => return Ok(None),
            p if p > 0 => return Ok(Some((p as u32, ExitStatus::from_raw(status)))),
            _ => {
                let err = io::Error::last_os_error();
                match err.raw_os_error() {
                    Some(libc::ECHILD) => return Ok(None),
                    Some(libc::EINTR) => continue,
                    _ => return Err(err),
                }
            }
        }
    }
}

/// **Linux and Android only; empty elsewhere.** The live (not zombie) processes of process
/// group `pgid`, other than `pgid` itself (`/proc/*/stat`). Exact only while the group's id cannot be reused:
/// while its leader is alive or an unreaped zombie.
pub fn group_members(pgid: u32) -> Vec<u32> {
    let mut groups = process_groups();
    let mut members = groups.remove(&pgid).unwrap_or_default();
    members.retain(|&pid| pid != pgid);
    members
}

/// **Linux and Android only; empty elsewhere.** Every live (not zombie) process, by process
/// group: one pass over `/proc/*/stat`, for looking at many groups at once.
pub fn process_groups() -> HashMap<u32, Vec<u32>> {
    imp::process_groups()
}

/// Waits for the child `pid` to exit (`waitpid(pid, 0)`), retrying on `EINTR`.
pub fn wait_for(pid: u32) -> io::Result<ExitStatus> {
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: waitpid writes the status into a c_int we own.
        let rc = unsafe { libc::waitpid(to_pid(pid)?, &mut status, 0) };
        if rc >= 0 {
            return Ok(ExitStatus::from_raw(status));
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    }
}

/// This process's pid.
pub fn current_pid() -> u32 {
    std::process::id()
}

fn to_pid(pid: u32) -> io::Result<libc::pid_t> {
    match libc::pid_t::try_from(pid) {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(io::Error::from_raw_os_error(libc::ESRCH)),
    }
}

/// This process's effective user id.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The parent pid of `pid`, read from `/proc/PID/stat` (Linux); `None` if it is gone.
pub fn parent_of(pid: u32) -> Option<u32> {
    stat_field(pid, 4)?.parse().ok()
}

/// The process group of `pid`, read from `/proc/PID/stat` (Linux); `None` if it is gone or
/// the system does not say.
pub fn group_of(pid: u32) -> Option<u32> {
    stat_field(pid, 5)?.parse().ok()
}

/// Makes this process the leader of a new process group whose id is its pid
/// (`setpgid(0, 0)`), unless it already leads one. Fails with `EPERM` for a session leader
/// (which leads its group already, so that is not reached).
pub fn lead_own_group() -> io::Result<()> {
    // SAFETY: getpgrp has no preconditions and cannot fail.
    let group = unsafe { libc::getpgrp() };
    if u32::try_from(group).ok() == Some(current_pid()) {
        return Ok(());
    }
    // SAFETY: setpgid takes plain integers; 0, 0 names this process and a group of its pid.
    if unsafe { libc::setpgid(0, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether `pid` is stopped (`T`, by SIGSTOP or Ctrl-Z, or `t`, by a debugger), from
/// `/proc/PID/stat` (Linux); `false` if it is not, is gone, or the system does not say.
pub fn is_stopped(pid: u32) -> bool {
    matches!(stat_field(pid, 3).as_deref(), Some("T") | Some("t"))
}

/// When `pid` started, in clock ticks since boot (`/proc/PID/stat` field 22, Linux): with the
/// pid, it names one process even after the pid is reused. `None` if it is gone or a zombie.
pub fn start_time(pid: u32) -> Option<u64> {
    // One read, so that the state and the start time are of the same process.
    let fields = stat_fields(pid, &[3, 22])?;
    if fields[0] == "Z" {
        return None;
    }
    fields[1].parse().ok()
}

/// CPU time `pid` has used, user and system, in clock ticks (`/proc/PID/stat` fields 14 and
/// 15, Linux); `None` if it is gone.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let fields = stat_fields(pid, &[14, 15])?;
    let user: u64 = fields[0].parse().ok()?;
    let system: u64 = fields[1].parse().ok()?;
    Some(user.saturating_add(system))
}

/// CPU time the calling thread has used (`CLOCK_THREAD_CPUTIME_ID`), to burn an exact amount
/// of CPU in benchmark workers.
pub fn thread_cpu_time() -> std::time::Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own; this clock exists on every Unix
    // herd supports, and on failure `ts` stays zero.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`), the unit of [`cpu_ticks`].
pub fn ticks_per_second() -> u64 {
    // SAFETY: sysconf takes an integer and returns one.
    let n = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if n > 0 {
        n as u64
    } else {
        100
    }
}

/// Fields `ns` (numbered from 1 as in proc(5), each at least 3) of a `/proc/PID/stat` line,
/// in the order asked; `None` if one is missing. The command name (field 2) may contain
/// spaces and parentheses: the fields after it start after the last `)`.
pub fn parse_stat_fields<'a>(stat: &'a str, ns: &[usize]) -> Option<Vec<&'a str>> {
    let rest: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    ns.iter()
        .map(|&n| rest.get(n.checked_sub(3)?).copied())
        .collect()
}

/// Fields `ns` of `/proc/PID/stat` (see [`parse_stat_fields`]), read at once.
fn stat_fields(pid: u32, ns: &[usize]) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields = parse_stat_fields(&stat, ns)?;
    Some(fields.into_iter().map(str::to_string).collect())
}

/// Field `n` of `/proc/PID/stat` (see [`parse_stat_fields`]).
fn stat_field(pid: u32, n: usize) -> Option<String> {
    stat_fields(pid, &[n])?.pop()
}

/// `CLOCK_MONOTONIC` in microseconds, as systemd's `MONOTONIC_USEC=` wants it.
pub fn monotonic_usec() -> u64 {
    // SAFETY: timespec is plain integers, for which all-zero is a valid value.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: clock_gettime writes one timespec into the value we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

/// **Linux and Android only; `None` elsewhere.** The time since boot in clock ticks
/// (`CLOCK_BOOTTIME`), the clock and unit of a process's start time in `/proc/PID/stat`
/// (unlike `/proc/uptime`, which a container's lxcfs may replace).
pub fn boot_ticks() -> Option<u64> {
    imp::boot_ticks()
}

/// Blocks `signals` for this thread (`pthread_sigmask(SIG_BLOCK)`): they stay pending until
/// unblocked. The mask survives `execve`, which is how herd re-executes itself without losing
/// a signal in between.
pub fn block_signals(signals: &[Signal]) -> io::Result<()> {
    change_mask(libc::SIG_BLOCK, signals)
}

/// Unblocks `signals`; pending ones are delivered now.
pub fn unblock_signals(signals: &[Signal]) -> io::Result<()> {
    change_mask(libc::SIG_UNBLOCK, signals)
}

fn change_mask(how: libc::c_int, signals: &[Signal]) -> io::Result<()> {
    // SAFETY: sigemptyset/sigaddset fill a zeroed sigset_t we own; pthread_sigmask reads it.
    let rc = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in signals {
            libc::sigaddset(&mut set, s.0);
        }
        libc::pthread_sigmask(how, &set, std::ptr::null_mut())
    };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// How many threads this process runs (Linux: `/proc/self/status`); `None` where the system
/// does not say.
pub fn thread_count() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))?
        .trim()
        .parse()
        .ok()
}

/// Which side of a fork this is.
#[derive(Debug, PartialEq, Eq)]
pub enum Forked {
    /// The parent, with the child's pid.
    Parent(u32),
    /// The child.
    Child,
}

/// `fork()` for a single-threaded process: refuses when other threads exist, because the child
/// would hold only the calling thread, and any lock another thread held (the allocator's,
/// stdout's) would stay locked in the child forever.
pub fn fork_single_threaded() -> io::Result<Forked> {
    match thread_count() {
        Some(1) => {}
        Some(n) => {
            return Err(io::Error::new(
                io::ErrorKind::Other,
                format!(
                    "{n} threads are running; fork() is only safe in a single-threaded process"
                ),
            ))
        }
        None if cfg!(any(target_os = "linux", target_os = "android")) => {
            return Err(io::Error::new(
                io::ErrorKind::Other,
                "cannot tell how many threads run (/proc is not mounted)",
            ))
        }
        None => {}
    }
    // SAFETY: the process has a single thread (checked above; only this thread could have
    // started another since), so the child is a consistent copy and may run any code.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid as u32)),
    }
}

/// On Linux, asks for `signal` when the parent dies (`PR_SET_PDEATHSIG`) and exits at once if
/// it already has (the parent is no longer `parent`). A no-op elsewhere.
pub fn die_with_parent(signal: Signal, parent: u32) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    // SAFETY: prctl and getppid take and return plain integers.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, signal.0 as libc::c_ulong);
        if libc::getppid() as u32 != parent {
            libc::_exit(1);
        }
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = (signal, parent);
}

/// Waits until one of `signals` (which the caller has blocked) is pending, or `timeout`
/// passes: `Ok(None)` then. The signal is consumed (`sigtimedwait`).
pub fn wait_for_signal(
    signals: &[Signal],
    timeout: Option<std::time::Duration>,
) -> io::Result<Option<Signal>> {
    // SAFETY: sigemptyset/sigaddset fill a zeroed sigset_t we own.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in signals {
            libc::sigaddset(&mut set, s.0);
        }
        set
    };
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    {
        let ts = timeout.map(|t| libc::timespec {
            tv_sec: t.as_secs() as libc::time_t,
            tv_nsec: t.subsec_nanos() as _,
        });
        let ts_ptr = ts
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: sigtimedwait reads the set and timeout we own; info may be null.
        let rc = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), ts_ptr) };
        if rc > 0 {
            return Ok(Some(Signal(rc)));
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(None),
            _ => Err(err),
        }
    }
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    {
        // No sigtimedwait: poll the pending set.
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        loop {
            // SAFETY: sigpending writes into a zeroed set we own; sigwait consumes a signal
            // that is known to be pending, so it does not block.
            unsafe {
                let mut pending: libc::sigset_t = std::mem::zeroed();
                libc::sigpending(&mut pending);
                for s in signals {
                    if libc::sigismember(&pending, s.0) == 1 {
                        let mut got = 0;
                        let mut one: libc::sigset_t = std::mem::zeroed();
                        libc::sigemptyset(&mut one);
                        libc::sigaddset(&mut one, s.0);
                        libc::sigwait(&one, &mut got);
                        return Ok(Some(*s));
                    }
                }
            }
            if deadline.map_or(false, |d| std::time::Instant::now() >= d) {
                return Ok(None);
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}

/// Flags set by [`catch`]'s handler, one per signal number.
static CAUGHT: [std::sync::atomic::AtomicBool; 65] = {
    #[allow(clippy::declare_interior_mutable_const)]
    const CLEAR: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    [CLEAR; 65]
};

extern "C" fn set_caught(signal: libc::c_int) {
    if let Some(flag) = CAUGHT.get(signal as usize) {
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Catches `signal` with a handler that only sets a flag ([`caught`] reads it), without
/// `SA_RESTART`: a blocking call such as `accept()` returns `EINTR`, so the program can look
/// at the flag, finish what it was doing, and exit.
pub fn catch(signal: Signal) -> io::Result<()> {
    // SAFETY: the handler is async-signal-safe (one atomic store); sigaction reads a
    // zeroed-then-filled struct we own.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = set_caught as extern "C" fn(libc::c_int) as libc::sighandler_t;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(signal.0, &action, std::ptr::null_mut()) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Restores `signal`'s default disposition (`SIG_DFL`). An ignored signal stays ignored across
/// `execve`: Rust ignores SIGPIPE, so a program exec'd in place would inherit that.
pub fn default_disposition(signal: Signal) -> io::Result<()> {
    // SAFETY: signal() takes a signal number and SIG_DFL, a valid disposition.
    if unsafe { libc::signal(signal.0, libc::SIG_DFL) } == libc::SIG_ERR {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether `signal` arrived since [`catch`] was called for it.
pub fn caught(signal: Signal) -> bool {
    CAUGHT
        .get(signal.0 as usize)
        .map_or(false, |f| f.load(std::sync::atomic::Ordering::SeqCst))
}

/// Sends `signal` to one thread of this process (`pthread_kill`), e.g. to interrupt its
/// blocking `accept()` after [`catch`] installed a handler without `SA_RESTART`.
pub fn signal_thread<T>(thread: &std::thread::JoinHandle<T>, signal: Signal) -> io::Result<()> {
    use std::os::unix::thread::JoinHandleExt;
    // SAFETY: the JoinHandle is borrowed, so the thread has not been joined and its pthread_t
    // is still valid (a finished but unjoined thread is a valid, if ignored, target).
    let rc = unsafe { libc::pthread_kill(thread.as_pthread_t(), signal.0) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// A user's ids: uid, primary gid, and all the groups it belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// The uid.
    pub uid: u32,
    /// The primary gid.
    pub gid: u32,
    /// Every group the user is in, primary included (`getgrouplist`).
    pub groups: Vec<u32>,
}

/// The largest buffer [`lookup_user`] and [`lookup_group`] give `getpw*_r` and `getgrnam_r`
/// (they start at 16 KiB and double on `ERANGE`): a group with tens of thousands of members
/// still fits.
const MAX_ENTRY_BUFFER: usize = 64 << 20;

/// The most groups [`lookup_user`] asks `getgrouplist` for: Linux's `NGROUPS_MAX`, beyond
/// which `setgroups` fails anyway.
const MAX_GROUPS: usize = 65536;

/// Calls `call` with a buffer that starts at 16 KiB and doubles while `call` returns
/// `ERANGE` (the `*_r` lookups' "buffer too small"), up to [`MAX_ENTRY_BUFFER`]. Returns the
/// buffer (the entry's strings live in it) once `call` returns anything else.
fn with_growing_buffer(
    what: &str,
    mut call: impl FnMut(&mut [libc::c_char]) -> libc::c_int,
) -> io::Result<Vec<libc::c_char>> {
    let mut buf = vec![0 as libc::c_char; 16384];
    loop {
        match call(&mut buf) {
            0 => return Ok(buf),
            libc::ERANGE if buf.len() < MAX_ENTRY_BUFFER => {
                let len = buf.len() * 2;
                buf.resize(len, 0);
            }
            libc::ERANGE => {
                return Err(io::Error::new(
                    io::ErrorKind::Other,
                    format!("the {what} entry is larger than {MAX_ENTRY_BUFFER} bytes"),
                ))
            }
            rc => return Err(io::Error::from_raw_os_error(rc)),
        }
    }
}

/// Calls `call(groups, &mut count)`, a `getgrouplist`, with room for 256 groups and more
/// while it returns -1 ("too many for the buffer"; glibc sets `count` to the number needed,
/// other systems leave it, so the room at least doubles), up to [`MAX_GROUPS`]. A user in
/// more groups is an error: silently dropping groups would start workers with fewer rights
/// than the user has.
fn group_list(
    mut call: impl FnMut(&mut [libc::gid_t], &mut libc::c_int) -> libc::c_int,
) -> io::Result<Vec<libc::gid_t>> {
    let mut groups = vec![0 as libc::gid_t; 256];
    loop {
        let mut count = groups.len() as libc::c_int;
        if call(&mut groups, &mut count) >= 0 {
            let count = (count.max(0) as usize).min(groups.len());
            groups.truncate(count);
            return Ok(groups);
        }
        if groups.len() >= MAX_GROUPS {
            return Err(io::Error::new(
                io::ErrorKind::Other,
                format!("the user is in more than {MAX_GROUPS} groups"),
            ));
        }
        let wanted = (count.max(0) as usize).max(groups.len() * 2);
        groups.resize(wanted.min(MAX_GROUPS), 0);
    }
}

/// Looks up a user by name or number (`getpwnam_r`, `getgrouplist`), with buffers as large
/// as the entry and the user's group list need.
pub fn lookup_user(name: &str) -> io::Result<Option<User>> {
    let cname = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a user name"))?;
    // SAFETY: an all-zero passwd is a valid value (null pointers, zero ids).
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    let by_uid = name.parse::<libc::uid_t>().ok();
    let buf = with_growing_buffer("user", |buf| match by_uid {
        // SAFETY: getpwuid_r/getpwnam_r fill the passwd we own, with strings in `buf`, which
        // is `buf.len()` bytes long; `cname` is NUL-terminated.
        Some(uid) => unsafe {
            libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result)
        },
        // SAFETY: as above; `cname` is NUL-terminated and outlives the call.
        None => unsafe {
            libc::getpwnam_r(
                cname.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            )
        },
    })?;
    if result.is_null() {
        return Ok(None);
    }
    let (uid, gid) = (pwd.pw_uid, pwd.pw_gid);
    let groups = group_list(|groups, count| {
        // SAFETY: getgrouplist writes at most `*count` gids into `groups` (which holds that
        // many); pw_name points into `buf`, still alive.
        unsafe { libc::getgrouplist(pwd.pw_name, gid as _, groups.as_mut_ptr() as *mut _, count) }
    })?;
    drop(buf);
    Ok(Some(User { uid, gid, groups }))
}

/// Looks up a group by name or number (`getgrnam_r`, with a buffer as large as the group's
/// entry needs: its member list can be long).
pub fn lookup_group(name: &str) -> io::Result<Option<u32>> {
    if let Ok(gid) = name.parse::<u32>() {
        return Ok(Some(gid));
    }
    let cname = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a group name"))?;
    // SAFETY: an all-zero group is a valid value (null pointers, zero id).
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::group = std::ptr::null_mut();
    with_growing_buffer("group", |buf| {
        // SAFETY: getgrnam_r fills the group we own, with strings in `buf`, which is
        // `buf.len()` bytes long; `cname` is NUL-terminated.
        unsafe {
            libc::getgrnam_r(
                cname.as_ptr(),
                &mut grp,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            )
        }
    })?;
    Ok((!result.is_null()).then_some(grp.gr_gid))
}

/// This process's open-file limit, `(soft, hard)` (`getrlimit(RLIMIT_NOFILE)`).
pub fn nofile_limit() -> io::Result<(u64, u64)> {
    // SAFETY: rlimit is plain integers, for which all-zero is a valid value.
    let mut limit: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: getrlimit writes into the rlimit we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((limit.rlim_cur as u64, limit.rlim_max as u64))
}

/// Sets this process's open-file limit (`setrlimit(RLIMIT_NOFILE)`).
pub fn set_nofile_limit(soft: u64, hard: u64) -> io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: soft as libc::rlim_t,
        rlim_max: hard as libc::rlim_t,
    };
    // SAFETY: setrlimit reads the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// What differs by platform: `waitid(WNOWAIT)` and `/proc` on Linux and Android.
#[cfg(any(target_os = "linux", target_os = "android"))]
mod imp {
    use std::collections::HashMap;
    use std::io;
    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;

    use super::{stat_fields, to_pid};

    pub const MAX_SIGNAL: libc::c_int = 64;
    pub const LAST_STANDARD: libc::c_int = 31;

    pub fn boot_ticks() -> Option<u64> {
        // SAFETY: timespec is plain integers, for which all-zero is a valid value.
        let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
        // SAFETY: clock_gettime writes one timespec into the value we own.
        if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) } < 0 {
            return None;
        }
        let (secs, nanos) = (
            u64::try_from(ts.tv_sec).ok()?,
            u64::try_from(ts.tv_nsec).ok()?,
        );
        let hz = super::ticks_per_second();
        Some(secs.checked_mul(hz)? + nanos * hz / 1_000_000_000)
    }

    /// `SIGRTMIN()`: the kernel's 32 plus what the C library keeps for itself.
    pub fn rt_min() -> libc::c_int {
        libc::SIGRTMIN()
    }

    pub fn peek_exit(pid: u32) -> io::Result<Option<ExitStatus>> {
        let id = to_pid(pid)? as libc::id_t;
        loop {
            // SAFETY: an all-zero siginfo_t is a valid value; waitid writes into the one we own.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: waitid takes plain integers and the siginfo_t above.
            let rc = unsafe {
                libc::waitid(
                    libc::P_PID,
                    id,
                    &mut info,
                    libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
                )
            };
            if rc < 0 {
                let err = io::Error::last_os_error();
                if err.raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return Err(err);
            }
            // SAFETY: waitid filled a SIGCHLD siginfo (or left it zeroed: no child changed).
            let (from, status) = unsafe { (info.si_pid(), info.si_status()) };
            if from == 0 {
                return Ok(None);
            }
            let raw = match info.si_code {
                libc::CLD_EXITED => (status & 0xff) << 8,
                libc::CLD_DUMPED => (status & 0x7f) | 0x80,
                _ => status & 0x7f,
            };
            return Ok(Some(ExitStatus::from_raw(raw)));
        }
    }

    pub fn process_groups() -> HashMap<u32, Vec<u32>> {
        let mut groups: HashMap<u32, Vec<u32>> = HashMap::new();
        let entries = match std::fs::read_dir("/proc") {
            Ok(entries) => entries,
            Err(_) => return groups,
        };
        for pid in entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        {
            let fields = match stat_fields(pid, &[3, 5]) {
                Some(fields) => fields,
                None => continue,
            };
            if let (false, Ok(pgid)) = (fields[0] == "Z", fields[1].parse::<u32>()) {
                groups.entry(pgid).or_default().push(pid);
            }
        }
        groups
    }
}

/// Elsewhere: no `WNOWAIT` pinning and no `/proc`.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod imp {
    use std::collections::HashMap;
    use std::io;
    use std::process::ExitStatus;

    pub const MAX_SIGNAL: libc::c_int = 31;
    pub const LAST_STANDARD: libc::c_int = 31;

    pub fn boot_ticks() -> Option<u64> {
        None
    }

    /// No real-time signals: one past the last signal.
    pub fn rt_min() -> libc::c_int {
        MAX_SIGNAL + 1
    }

    pub fn peek_exit(pid: u32) -> io::Result<Option<ExitStatus>> {
        super::reap(pid)
    }

    pub fn process_groups() -> HashMap<u32, Vec<u32>> {
        HashMap::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn boot_ticks_is_the_clock_of_start_times() {
        let before = boot_ticks().unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let started = start_time(child.id());
        let after = boot_ticks().unwrap();
        let _ = child.kill();
        let _ = child.wait();
        let started = started.unwrap();
        assert!(
            before <= started + 1 && started <= after + 1,
            "{before} <= {started} <= {after}"
        );
    }

    #[test]
    fn parses_signal_names() {
        assert_eq!(Signal::from_name("TERM"), Some(Signal::TERM));
        assert_eq!(Signal::from_name("sigterm"), Some(Signal::TERM));
        assert_eq!(Signal::from_name("SIGKILL"), Some(Signal::KILL));
        assert_eq!(Signal::from_name("15"), Some(Signal::TERM));
        assert_eq!(Signal::from_name("0"), None);
        assert_eq!(Signal::from_name("BOGUS"), None);
        assert_eq!(Signal::TERM.to_string(), "SIGTERM");
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn the_c_librarys_signals_are_refused_and_real_time_ones_parse() {
        let min = libc::SIGRTMIN();
        assert!(min > 32, "SIGRTMIN() is {min}");
        for n in 32..min {
            assert!(Signal::is_reserved(n), "{n}");
            assert_eq!(Signal::from_number(n), None, "{n}");
            assert_eq!(Signal::from_name(&n.to_string()), None, "{n}");
        }
        assert!(!Signal::is_reserved(15) && !Signal::is_reserved(min));
        assert_eq!(Signal::rt_min(), Some(min));
        assert_eq!(Signal::from_name(&min.to_string()), Some(Signal(min)));
        assert_eq!(Signal::from_name("RTMIN"), Some(Signal(min)));
        assert_eq!(Signal::from_name("sigrtmin+2"), Some(Signal(min + 2)));
        assert_eq!(Signal::from_name("RTMAX"), Some(Signal(64)));
        assert_eq!(Signal::from_name("SIGRTMAX-1"), Some(Signal(63)));
        assert_eq!(
            Signal::from_name(&format!("RTMIN+{}", 64 - min)),
            Some(Signal(64))
        );
        assert_eq!(Signal::from_name(&format!("RTMIN+{}", 65 - min)), None);
        assert_eq!(Signal::from_name(&format!("RTMAX-{}", 65 - min)), None);
        for bad in [
            "RTMIN-1", "RTMAX+1", "RTMIN+", "RTMIN+-1", "RTMIN+ 1", "RTMINX", "65",
        ] {
            assert_eq!(Signal::from_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_standard_signal_has_a_name() {
        for n in 1..=31 {
            let signal = Signal::from_number(n).unwrap();
            let name = signal
                .name()
                .unwrap_or_else(|| panic!("signal {n} has no name"));
            assert_eq!(Signal::from_name(name), Some(signal), "{name}");
            assert_eq!(Signal::from_name(&format!("SIG{name}")), Some(signal));
            assert_eq!(signal.to_string(), format!("SIG{name}"));
        }
        for (name, n) in [
            ("SEGV", libc::SIGSEGV),
            ("BUS", libc::SIGBUS),
            ("FPE", libc::SIGFPE),
            ("ILL", libc::SIGILL),
            ("SYS", libc::SIGSYS),
            ("XCPU", libc::SIGXCPU),
            ("XFSZ", libc::SIGXFSZ),
            ("URG", libc::SIGURG),
            ("TRAP", libc::SIGTRAP),
            ("VTALRM", libc::SIGVTALRM),
            ("PROF", libc::SIGPROF),
            ("IO", libc::SIGIO),
        ] {
            assert_eq!(Signal::from_name(name).map(Signal::number), Some(n));
        }
        assert_eq!(
            Signal::from_number(libc::SIGSEGV).unwrap().to_string(),
            "SIGSEGV"
        );
        assert_eq!(
            Signal::from_number(libc::SIGABRT).unwrap().name(),
            Some("ABRT")
        );
        // Real-time signals have numbers, not names.
        if cfg!(target_os = "linux") {
            assert_eq!(Signal::from_name("40").unwrap().to_string(), "signal 40");
        }
    }

    #[test]
    fn lookup_buffers_grow_until_the_entry_fits() {
        let mut sizes = Vec::new();
        let buf = with_growing_buffer("user", |buf| {
            sizes.push(buf.len());
            if buf.len() < 100_000 {
                libc::ERANGE
            } else {
                0
            }
        })
        .unwrap();
        assert_eq!(buf.len(), 131072);
        assert_eq!(sizes, [16384, 32768, 65536, 131072]);
        let err = with_growing_buffer("group", |_| libc::ERANGE).unwrap_err();
        assert!(err.to_string().contains("group entry is larger"), "{err}");
        let err = with_growing_buffer("user", |_| libc::EIO).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EIO));
    }

    #[test]
    fn group_lists_grow_until_every_group_fits() {
        // 300 groups; `needed` says whether the call reports the size needed (glibc) or not.
        for needed in [true, false] {
            let mut calls = 0;
            let groups = group_list(|groups, count| {
                calls += 1;
                if groups.len() < 300 {
                    if needed {
                        *count = 300;
                    }
                    return -1;
                }
                for (i, g) in groups.iter_mut().take(300).enumerate() {
                    *g = i as libc::gid_t;
                }
                *count = 300;
                300
            })
            .unwrap();
            assert_eq!(groups, (0..300).collect::<Vec<libc::gid_t>>());
            assert_eq!(calls, 2);
        }
        let err = group_list(|_, _| -1).unwrap_err();
        assert!(err.to_string().contains("more than 65536 groups"), "{err}");
    }

    #[test]
    #[allow(clippy::zombie_processes)] // reaped by `reap`, the function under test
    fn an_exited_leader_is_held_while_its_group_has_members() {
        use std::os::unix::process::CommandExt;
        // A group leader that leaves a child behind and exits 3.
        let mut command = std::process::Command::new("sh");
        command
            .args(["-c", "sleep 30 >/dev/null & echo $! ; exit 3"])
            .stdout(std::process::Stdio::piped());
        // SAFETY: setpgid is async-signal-safe and touches no memory.
        unsafe {
            command.pre_exec(|| match libc::setpgid(0, 0) {
                0 => Ok(()),
                _ => Err(io::Error::last_os_error()),
            })
        };
        let child = command.spawn().unwrap();
        let pid = child.id();
        /// Kills the group and reaps the leader if an assertion fails on the way.
        struct Group(u32);
        impl Drop for Group {
            fn drop(&mut self) {
                let _ = signal_group(self.0, Signal::KILL);
                let _ = reap(self.0);
            }
        }
        let group = Group(pid);
        /// Polls `done` every 5 ms for at most 10 s (waitid and /proc have nothing to block on).
        fn within<T>(what: &str, mut done: impl FnMut() -> Option<T>) -> T {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            loop {
                if let Some(value) = done() {
                    return value;
                }
                assert!(std::time::Instant::now() < deadline, "{what}");
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
        let mut out = String::new();
        std::io::Read::read_to_string(&mut child.stdout.unwrap(), &mut out).unwrap();
        let sleeper: u32 = out.trim().parse().unwrap();
        let status = within("the leader did not exit", || peek_exit(pid).unwrap());
        assert_eq!(status.code(), Some(3));
        assert_eq!(
            peek_exit(pid).unwrap().unwrap().code(),
            Some(3),
            "not reaped"
        );
        assert_eq!(stat_field(pid, 3).as_deref(), Some("Z"));
        assert_eq!(group_members(pid), [sleeper]);
        signal_group(pid, Signal::KILL).unwrap();
        within("the sleeper survived", || {
            group_members(pid).is_empty().then_some(())
        });
        std::mem::forget(group); // reaped below, by the function under test
        assert_eq!(reap(pid).unwrap().unwrap().code(), Some(3));
        assert!(reap(pid).is_err(), "reaped once");
    }

    #[test]
    fn looks_up_root() {
        let root = lookup_user("root").unwrap().unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        assert!(root.groups.contains(&0));
        assert_eq!(lookup_user("0").unwrap(), Some(root));
        assert_eq!(lookup_user("no-such-user-herd").unwrap(), None);
    }
}
