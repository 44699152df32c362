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

/// The most workers whose per-slot sockets fit an open-file limit of `limit` with
/// `per_slot_sockets` sockets for each slot (`--balance reuseport`: one per TCP socket herd
/// binds), or `None` when slots hold none. A quarter of the limit and 64 more stay for what
/// else herd holds: control and metrics connections (an eighth of the limit each, at most),
/// a pipe per worker start, the workers' output. Past it every start fails for want of an
/// fd, each slot logging it at every retry, and the control socket has no fd left to serve
/// the `herd scale` that would take it back.
pub fn most_workers(per_slot_sockets: usize, limit: u64) -> Option<usize> {
    if per_slot_sockets == 0 {
        return None;
    }
    let usable = limit.saturating_sub(limit / 4 + 64);
    let most = usable / per_slot_sockets as u64;
    Some(usize::try_from(most).unwrap_or(usize::MAX))
}

/// Why `workers` cannot run with `per_slot_sockets` sockets each under the open-file limit
/// `limit`, if they cannot: one line that says how to fix it.
pub fn too_many_for_fds(workers: usize, per_slot_sockets: usize, limit: u64) -> Option<String> {
    let most = most_workers(per_slot_sockets, limit)?;
    (workers > most).then(|| {
        format!(
            "{workers} workers do not fit herd's open-file limit of {limit} with --balance \
             reuseport ({per_slot_sockets} socket(s) of its own for each worker's slot): at \
             most {most}; raise the limit (ulimit -Hn, LimitNOFILE=) and start herd again, or \
             use --balance shared"
        )
    })
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

    /// `ulimit -n 1024`, two reuseport sockets and `herd scale 4096`: 497 workers started,
    /// the rest failed to start at every retry (thousands of lines a round), and `herd scale`
    /// and `herd stop` were answered "herd is at its open-file limit".
    #[test]
    fn the_workers_that_fit_the_open_file_limit() {
        assert_eq!(most_workers(0, 1024), None);
        assert_eq!(most_workers(2, 1024), Some(352));
        assert_eq!(most_workers(1, 1024), Some(704));
        assert_eq!(most_workers(1, 10), Some(0));
        assert_eq!(too_many_for_fds(352, 2, 1024), None);
        let why = too_many_for_fds(4096, 2, 1024).unwrap();
        assert!(why.contains("at most 352;"), "{why}");
        assert!(why.contains("raise the limit"), "{why}");
        assert_eq!(too_many_for_fds(4096, 0, 1024), None);
        // systemd's default hard limit: every pool fits.
        assert_eq!(too_many_for_fds(4096, 4, 524_288), None);
    }
}
