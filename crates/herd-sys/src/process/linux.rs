//! What differs on Linux and Android: `waitid(WNOWAIT)` and `/proc`.

use std::collections::{HashMap, HashSet};
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use super::stat::{stat_fields, ticks_per_second};
use super::to_pid;

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
    let hz = ticks_per_second();
    Some(secs.checked_mul(hz)? + nanos * hz / 1_000_000_000)
}

/// `SIGRTMIN()`: the kernel's 32 plus what the C library keeps for itself.
pub fn rt_min() -> libc::c_int {
    libc::SIGRTMIN()
}

pub fn peek_exit(pid: u32) -> io::Result<Option<ExitStatus>> {
    let id = to_pid(pid)? as libc::id_t;
    Ok(peek(libc::P_PID, id)?.map(|(_, status)| status))
}

pub fn peek_any_exit() -> io::Result<Option<(u32, ExitStatus)>> {
    match peek(libc::P_ALL, 0) {
        Err(e) if e.raw_os_error() == Some(libc::ECHILD) => Ok(None),
        other => other,
    }
}

/// `waitid(idtype, id, WEXITED | WNOHANG | WNOWAIT)`: the pid and status of an exited child,
/// left unreaped.
fn peek(idtype: libc::idtype_t, id: libc::id_t) -> io::Result<Option<(u32, ExitStatus)>> {
    loop {
        // SAFETY: an all-zero siginfo_t is a valid value; waitid writes into the one we own.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid takes plain integers and the siginfo_t above.
        let rc = unsafe {
            libc::waitid(
                idtype,
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
        let from = match u32::try_from(from) {
            Ok(pid) if pid > 0 => pid,
            _ => return Ok(None),
        };
        let raw = match info.si_code {
            libc::CLD_EXITED => (status & 0xff) << 8,
            libc::CLD_DUMPED => (status & 0x7f) | 0x80,
            _ => status & 0x7f,
        };
        return Ok(Some((from, ExitStatus::from_raw(raw))));
    }
}

pub fn process_groups(leaders: &HashSet<u32>) -> HashMap<u32, Vec<u32>> {
    let mut groups: HashMap<u32, Vec<u32>> = HashMap::new();
    let entries = match std::fs::read_dir("/proc") {
        Ok(entries) => entries,
        Err(_) => return groups,
    };
    for pid in entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| !leaders.contains(pid))
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
