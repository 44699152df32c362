//! CPU priority (nice values): a process's own, a process group's, and whether this process
//! may raise a worker's priority back after lowering it.
//!
//! Lowering a priority (a higher nice value) is always allowed for one's own processes;
//! raising it (a lower nice value) needs `CAP_SYS_NICE` or an `RLIMIT_NICE` that allows the
//! value (`setpriority(2)`, `getrlimit(2)`).

use std::io;

use super::to_pid;

/// The nice value of process `pid`, or of this process for 0 (`getpriority(PRIO_PROCESS)`).
pub fn nice_of(pid: u32) -> io::Result<i32> {
    let who = if pid == 0 { 0 } else { to_pid(pid)? };
    // getpriority may return -1 legitimately: errno, cleared first, tells.
    // SAFETY: errno is this thread's; getpriority takes plain integers.
    let nice = unsafe {
        *errno_location() = 0;
        // `who`'s type is id_t on Linux, int on the BSDs.
        libc::getpriority(libc::PRIO_PROCESS, who as _)
    };
    // SAFETY: errno is this thread's.
    if nice == -1 && unsafe { *errno_location() } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(nice)
}

/// Sets the nice value of every thread of every process in process group `pgid`
/// (`setpriority(PRIO_PGRP)`); when no such group is left (the process `pgid` moved itself
/// into another), of that process alone (`PRIO_PROCESS`: on Linux its main thread), as
/// [`signal_group`](super::signal_group) does. `ESRCH` when neither is there.
pub fn set_group_nice(pgid: u32, nice: i32) -> io::Result<()> {
    let who = to_pid(pgid)?;
    // SAFETY: setpriority takes plain integers.
    if unsafe { libc::setpriority(libc::PRIO_PGRP, who as _, nice) } == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::ESRCH) {
        return Err(err);
    }
    // SAFETY: as above.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, who as _, nice) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether this process may set a worker back to nice value `nice` once it runs at a higher
/// one (or in `SCHED_IDLE`, which counts as nice 20): it has `CAP_SYS_NICE` (read from
/// `/proc/self/status` on Linux; elsewhere, it is root), or the worker is of its own user
/// (not `other_user`) and its `RLIMIT_NICE` allows `nice` (Linux: `20 - nice` at most the
/// limit), which the worker inherits. Changing another user's processes needs the capability
/// (`setpriority(2)`, `sched_setscheduler(2)`).
pub fn may_raise_priority_to(nice: i32, other_user: bool) -> bool {
    raise_allowed(has_cap_sys_nice(), nice_limit_allows(nice), other_user)
}

/// Whether a worker may be raised back, given whether this process has `CAP_SYS_NICE`,
/// whether its `RLIMIT_NICE` allows the value, and whether the worker is of another user.
pub fn raise_allowed(cap_sys_nice: bool, limit_allows: bool, other_user: bool) -> bool {
    cap_sys_nice || (limit_allows && !other_user)
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn has_cap_sys_nice() -> bool {
    std::fs::read_to_string("/proc/self/status").map_or(false, |s| cap_sys_nice_in(&s))
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn has_cap_sys_nice() -> bool {
    super::effective_uid() == 0
}

/// Whether the `CapEff` line of a `/proc/PID/status` text has `CAP_SYS_NICE` (bit 23).
pub fn cap_sys_nice_in(status: &str) -> bool {
    const CAP_SYS_NICE: u32 = 23;
    cap_in(status, CAP_SYS_NICE)
}

/// Whether the `CapEff` line of a `/proc/PID/status` text has capability number `bit`.
pub fn cap_in(status: &str, bit: u32) -> bool {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .map_or(false, |caps| bit < 64 && caps & (1 << bit) != 0)
}

/// Whether this process may raise a hard resource limit (`CAP_SYS_RESOURCE`, bit 24, read
/// from `/proc/self/status` on Linux; elsewhere, it is root). Root in a container often
/// lacks it.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn has_cap_sys_resource() -> bool {
    const CAP_SYS_RESOURCE: u32 = 24;
    std::fs::read_to_string("/proc/self/status").map_or(false, |s| cap_in(&s, CAP_SYS_RESOURCE))
}

/// Whether this process may raise a hard resource limit: it is root.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub fn has_cap_sys_resource() -> bool {
    super::effective_uid() == 0
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn nice_limit_allows(nice: i32) -> bool {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NICE, &mut limit) } < 0 {
        return false;
    }
    // Linux reads RLIMIT_NICE as 20 - nice: 0 allows no raise, 40 allows -20.
    let wanted = (20 - nice).max(0) as libc::rlim_t;
    limit.rlim_cur == libc::RLIM_INFINITY || limit.rlim_cur >= wanted
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn nice_limit_allows(_nice: i32) -> bool {
    false
}

#[cfg(any(target_os = "linux", target_os = "android"))]
unsafe fn errno_location() -> *mut libc::c_int {
    libc::__errno_location()
}

#[cfg(any(target_os = "macos", target_os = "ios", target_os = "freebsd"))]
unsafe fn errno_location() -> *mut libc::c_int {
    libc::__error()
}

#[cfg(any(target_os = "netbsd", target_os = "openbsd"))]
unsafe fn errno_location() -> *mut libc::c_int {
    libc::__errno()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_sys_nice_is_bit_23_of_cap_eff() {
        assert!(cap_sys_nice_in("Name:\tx\nCapEff:\t0000000000800000\n"));
        assert!(cap_sys_nice_in("CapEff:\t000001fffeffffff\n"));
        assert!(!cap_sys_nice_in(
            "CapEff:\t00000000a80425fb\nCapBnd:\t000001ffffffffff\n"
        ));
        assert!(!cap_sys_nice_in("CapEff:\tzz\n"));
        assert!(!cap_sys_nice_in(""));
        // This machine's root: CAP_SYS_NICE (23) but not CAP_SYS_RESOURCE (24).
        assert!(!cap_in("CapEff:\t000001fffeffffff\n", 24));
        assert!(cap_in("CapEff:\t0000000001000000\n", 24));
        assert!(!cap_in("CapEff:\tffffffffffffffff\n", 64));
    }

    #[test]
    fn another_user_s_workers_need_the_capability_whatever_the_limit() {
        assert!(raise_allowed(true, false, true));
        assert!(raise_allowed(false, true, false));
        assert!(!raise_allowed(false, true, true));
        assert!(!raise_allowed(false, false, false));
    }

    #[test]
    fn own_nice_is_readable() {
        let nice = nice_of(0).unwrap();
        assert!((-20..=19).contains(&nice));
    }
}
