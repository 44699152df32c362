//! Elsewhere: no `WNOWAIT` pinning and no `/proc`.

use std::collections::{HashMap, HashSet};
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

/// No peeking at an unnamed child: `waitid(WNOWAIT)` is Linux's.
pub fn peek_any_exit() -> io::Result<Option<(u32, ExitStatus)>> {
    Ok(None)
}

pub fn process_groups(_leaders: &HashSet<u32>) -> HashMap<u32, Vec<u32>> {
    HashMap::new()
}
