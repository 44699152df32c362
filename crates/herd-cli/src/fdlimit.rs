//! herd's own open-file limit. Everything herd serves costs it an fd per connection (control
//! clients, metrics scrapers), and supervision needs a few more (a pipe per worker start); so
//! at start herd raises its soft limit to the hard one, as systemd does for itself, and its
//! endpoints cap their connections well below it. Workers keep the limit herd was started
//! with (unless `--nofile` or `--rlimit nofile=` say otherwise). A re-exec never lowers the
//! limit in force (herd may hold more fds than the original limit allows, and the new image
//! must be able to open files from its first instruction): the original travels in the
//! re-exec's state instead, so the workers of the new image get it too.
//!
//! Windows has no such limit to raise: a process may hold 2^24 handles, so there only
//! [`handle_limit`] and the caps exist.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::*;
#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::*;

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
        // Windows' handle limit.
        assert_eq!(connection_cap(1 << 24, 64), 64);
    }
}
