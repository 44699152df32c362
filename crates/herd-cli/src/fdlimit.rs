//! herd's own open-file limit. Everything herd serves costs it an fd per connection (control
//! clients, metrics scrapers), and supervision needs a few more (a pipe per worker start); so
//! at start herd raises its soft limit to the hard one, as systemd does for itself, and its
//! endpoints cap their connections well below it. Workers keep the limit herd was started
//! with (unless `--nofile` or `--rlimit nofile=` say otherwise). A re-exec never lowers the
//! limit in force (herd may hold more fds than the original limit allows, and the new image
//! must be able to open files from its first instruction): the original travels in the
//! re-exec's state instead, so the workers of the new image get it too.

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
    let target = hard.min(CEILING).max(soft);
    if target > soft && herd_sys::process::set_nofile_limit(target, hard).is_ok() {
        return target;
    }
    soft
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

/// How many connections an endpoint may hold at once with `soft` fds: an eighth of them, at
/// least 4 and at most `max`, so that the rest stays for supervision and the other endpoint.
pub fn connection_cap(soft: u64, max: usize) -> usize {
    usize::try_from(soft / 8)
        .unwrap_or(usize::MAX)
        .clamp(4, max.max(4))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_leave_most_fds_to_supervision() {
        assert_eq!(connection_cap(64, 64), 8);
        assert_eq!(connection_cap(10, 64), 4);
        assert_eq!(connection_cap(1024, 64), 64);
        assert_eq!(connection_cap(1 << 20, 64), 64);
    }
}
