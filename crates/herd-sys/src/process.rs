//! Processes: signals by name, signalling workers and their process groups, reaping children,
//! what `/proc` says of a process, users and groups, and this process's own settings.
//!
//! One concept per file, all re-exported here: [`Signal`] and its names (`signal.rs`);
//! sending signals (this file); receiving them: masks, waiting, catching (`receive.rs`);
//! a latch that stop signals set, to wait for them with a timeout or beside sockets (`latch.rs`);
//! reaping children (`reap.rs`); finding them, as a subreaper (`children.rs`);
//! `/proc/PID/stat` (`stat.rs`); users and groups (`user.rs`); nice values (`priority.rs`);
//! scheduling classes (`policy.rs`).
//! The platform part is `imp`, one per platform, each with `MAX_SIGNAL`, `LAST_STANDARD`,
//! `rt_min`, `boot_ticks`, `peek_exit` and `process_groups`: Linux and Android
//! (`linux.rs`) use `waitid(WNOWAIT)` and `/proc`; elsewhere (`other.rs`) `peek_exit` reaps
//! and `process_groups` is empty.

use std::io;

mod children;
mod latch;
pub(crate) mod policy;
mod priority;
mod reap;
mod receive;
mod signal;
mod stat;
mod user;

#[cfg(any(target_os = "linux", target_os = "android"))]
mod linux;
#[cfg(any(target_os = "linux", target_os = "android"))]
use linux as imp;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod other;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
use other as imp;

pub use children::{become_subreaper, describe_child, own_children, Child};
pub use latch::{latch, latchable, Latch};
pub use policy::{
    is_idle_policy, lower_to_idle, nice_values_of_tree, raise_idle_tree, raise_nice_tree,
    scheduling_policy, Raised,
};
pub use priority::{
    cap_in, cap_sys_nice_in, has_cap_sys_resource, may_raise_priority_to, nice_of, raise_allowed,
    set_group_nice,
};
pub use reap::{peek_any_exit, peek_exit, reap, reap_any, reap_own_group, wait_for};
pub use receive::{
    block_signals, blocked_signals, catch, caught, default_disposition, signal_thread,
    unblock_signals, wait_for_signal,
};
pub(crate) use signal::max_signal;
pub use signal::Signal;
pub use stat::{
    boot_ticks, cpu_ticks, group_members, group_of, is_stopped, is_stopped_by_signal, page_size,
    parent_of, parse_stat_fields, process_groups, process_groups_except, session_and_start_time,
    session_of, start_time, ticks_per_second, usage, Usage,
};
pub use user::{lookup_group, lookup_user, User};

/// Sends `signal` to the process `pid` (`kill(2)`).
pub fn signal_process(pid: u32, signal: Signal) -> io::Result<()> {
    // SAFETY: kill takes plain integers; a positive pid names one process.
    if unsafe { libc::kill(to_pid(pid)?, signal.0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether this process may send signals to `pid` (`kill(pid, 0)`, which sends none): false
/// where the system refuses (`EPERM`: another user's process, without `CAP_KILL`); an error
/// when there is no such process.
pub fn may_signal(pid: u32) -> io::Result<bool> {
    // SAFETY: kill takes plain integers; signal 0 only checks the process and the permission.
    if unsafe { libc::kill(to_pid(pid)?, 0) } == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EPERM) => Ok(false),
        _ => Err(err),
    }
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

/// Sends the stop `signal` with `send` (to a process, its group or a pidfd), then `SIGCONT`
/// unless the signal was `SIGKILL` (or `SIGCONT`), as systemd does: a paused (`SIGSTOP`ped)
/// process cannot act on a stop signal, and would otherwise sit out the whole grace period.
/// The error is the stop signal's: once it is on its way, a failed `SIGCONT` is no reason to
/// report it as lost.
pub fn send_stop(signal: Signal, mut send: impl FnMut(Signal) -> io::Result<()>) -> io::Result<()> {
    send(signal)?;
    if signal != Signal::KILL && signal != Signal::CONT {
        let _ = send(Signal::CONT);
    }
    Ok(())
}

/// Whether the process `pid` exists (`kill(pid, 0)`, which sends nothing): another user's
/// counts (`EPERM` says it is there), and so does a zombie not yet reaped. Pid 0, and a pid
/// beyond `pid_t`, name no process: `false`.
pub fn exists(pid: u32) -> bool {
    may_signal(pid).is_ok()
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

/// This process's process group (`getpgrp`).
pub fn own_group() -> u32 {
    // SAFETY: getpgrp has no preconditions and cannot fail.
    unsafe { libc::getpgrp() as u32 }
}

/// Whether this process's group is the foreground one of the terminal at `fd`
/// (`tcgetpgrp`): a background one is stopped (`SIGTTOU`) as it sets the terminal up, as under
/// `timeout` without `--foreground`. `true` when `fd` is no terminal, or the system will not
/// say: nothing to be stopped by.
pub fn in_terminal_foreground(fd: std::os::unix::io::BorrowedFd<'_>) -> bool {
    use std::os::unix::io::AsRawFd;
    // SAFETY: tcgetpgrp only reads the terminal's state; `fd` is open for the call.
    let foreground = unsafe { libc::tcgetpgrp(fd.as_raw_fd()) };
    foreground < 0 || foreground as u32 == own_group()
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

/// `CLOCK_MONOTONIC` in microseconds, as systemd's `MONOTONIC_USEC=` wants it.
pub fn monotonic_usec() -> u64 {
    // SAFETY: timespec is plain integers, for which all-zero is a valid value.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: clock_gettime writes one timespec into the value we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
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
/// stdout's) would stay locked in the child forever. The threads are counted where the system
/// says how many there are (`/proc` on Linux, where a missing `/proc` is refused too); on other
/// Unixes the caller must know it started none (as `herd::prefork` documents).
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
    // SAFETY: the process has a single thread (counted above on Linux, where only this thread
    // could have started another since; elsewhere the caller's promise, see the doc comment), so
    // the child is a consistent copy and may run any code.
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

/// A resource limit's "no limit" (`RLIM_INFINITY`) as a `u64`, the type of herd's limits
/// (`rlim_t` is signed on the BSDs).
#[allow(clippy::unnecessary_cast)] // u64 on Linux already
pub const RLIM_INFINITY: u64 = libc::RLIM_INFINITY as u64;

/// This process's open-file limit, `(soft, hard)` (`getrlimit(RLIMIT_NOFILE)`).
pub fn nofile_limit() -> io::Result<(u64, u64)> {
    limit(libc::RLIMIT_NOFILE as libc::c_int)
}

/// This process's hard limit of `resource` (a [`resource_by_name`](crate::spawn::resource_by_name)
/// value): what it may give a child without `CAP_SYS_RESOURCE`.
pub fn hard_limit(resource: libc::c_int) -> io::Result<u64> {
    limit(resource).map(|(_, hard)| hard)
}

/// This process's limit of `resource`, `(soft, hard)` (`getrlimit(2)`).
fn limit(resource: libc::c_int) -> io::Result<(u64, u64)> {
    // SAFETY: rlimit is plain integers, for which all-zero is a valid value.
    let mut limit: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: getrlimit writes into the rlimit we own; an unknown resource is EINVAL.
    if unsafe { libc::getrlimit(resource as _, &mut limit) } < 0 {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Records what `send_stop` sends; the signals in `failing` fail.
    fn stop_sends(signal: Signal, failing: &[Signal]) -> (Vec<Signal>, io::Result<()>) {
        let mut sent = Vec::new();
        let result = send_stop(signal, |s| {
            sent.push(s);
            match failing.contains(&s) {
                true => Err(io::Error::from_raw_os_error(libc::ESRCH)),
                false => Ok(()),
            }
        });
        (sent, result)
    }

    #[test]
    fn no_terminal_has_no_background_to_be_stopped_in() {
        let file = std::fs::File::open("/dev/null").unwrap();
        assert!(in_terminal_foreground(std::os::unix::io::AsFd::as_fd(
            &file
        )));
    }

    #[test]
    fn a_stop_signal_is_followed_by_sigcont_but_sigkill_is_not() {
        let (sent, result) = stop_sends(Signal::TERM, &[]);
        assert_eq!(sent, [Signal::TERM, Signal::CONT]);
        assert!(result.is_ok());
        assert_eq!(stop_sends(Signal::KILL, &[]).0, [Signal::KILL]);
        assert_eq!(stop_sends(Signal::CONT, &[]).0, [Signal::CONT]);
    }

    #[test]
    fn a_process_exists_until_it_is_reaped() {
        assert!(exists(std::process::id()));
        assert!(exists(1), "init, another user's: EPERM says it is there");
        assert!(!exists(0) && !exists(u32::MAX), "no single process");
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!exists(pid));
    }

    #[test]
    fn a_lost_stop_signal_is_reported_and_a_lost_sigcont_is_not() {
        let (sent, result) = stop_sends(Signal::INT, &[Signal::INT]);
        assert_eq!(sent, [Signal::INT], "nothing to continue");
        assert_eq!(result.unwrap_err().raw_os_error(), Some(libc::ESRCH));
        let (sent, result) = stop_sends(Signal::QUIT, &[Signal::CONT]);
        assert_eq!(sent, [Signal::QUIT, Signal::CONT]);
        assert!(result.is_ok());
    }
}
