//! The open-file limit on Unix: `RLIMIT_NOFILE`, raised at start.

use std::sync::OnceLock;

/// The limit herd was started with, `(soft, hard)`, once [`raise`] ran.
static ORIGINAL: OnceLock<(u64, u64)> = OnceLock::new();

/// The highest soft limit asked for, whatever the hard limit (which may be unlimited, more
/// than Linux's `fs.nr_open` allows).
const CEILING: u64 = 1 << 20;

/// Raises the soft open-file limit to the hard limit (at most 2^20), and remembers the
/// original: `inherited`, the limit the first image was started with, handed over by a
/// re-exec, or else the limit in force now. Returns the soft limit now in force. Failing to
/// raise is harmless: herd keeps what it has.
pub fn raise(inherited: Option<(u64, u64)>) -> u64 {
    let Ok((soft, hard)) = herd_sys::process::nofile_limit() else {
        return 0;
    };
    let _ = ORIGINAL.set(inherited.unwrap_or((soft, hard)));
    let target = raised(soft, hard);
    if target > soft && herd_sys::process::set_nofile_limit(target, hard).is_ok() {
        return target;
    }
    soft
}

/// The soft limit [`raise`] asks for, given the limit in force `(soft, hard)`.
pub fn raised(soft: u64, hard: u64) -> u64 {
    hard.min(CEILING).max(soft)
}

/// The limit herd was started with, if it differs from the one in force: what workers get by
/// default.
pub fn original() -> Option<(u64, u64)> {
    let &(soft, hard) = ORIGINAL.get()?;
    let now = herd_sys::process::nofile_limit().ok()?;
    (now.0 != soft).then_some((soft, hard))
}

/// The limit herd was started with, once [`raise`] ran: what a re-exec hands over.
pub fn started_with() -> Option<(u64, u64)> {
    ORIGINAL.get().copied()
}

/// The most fds herd may hold now: its soft limit (1024 if it cannot be read).
pub fn handle_limit() -> u64 {
    herd_sys::process::nofile_limit().map_or(1024, |(soft, _)| soft)
}
