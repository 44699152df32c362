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

/// The open files herd holds for each worker, for as long as the worker's slot runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PerWorker {
    /// `--balance reuseport`: the slot's own sockets, one per TCP socket herd binds.
    pub sockets: usize,
    /// `--worker-output prefix|json`: the read ends of the worker's stdout and stderr pipes.
    pub pipes: usize,
}

impl PerWorker {
    /// What a worker costs with `sockets` per-slot sockets, its output read by herd or not.
    pub fn new(sockets: usize, output_read: bool) -> PerWorker {
        PerWorker {
            sockets,
            pipes: if output_read { 2 } else { 0 },
        }
    }

    fn total(&self) -> usize {
        self.sockets + self.pipes
    }
}

/// The most workers that fit an open-file limit of `limit` when each costs herd `per_worker`,
/// or `None` when they cost none. A quarter of the limit and 64 more stay for what else herd
/// holds: control and metrics connections (an eighth of the limit each, at most), a pipe per
/// worker start. Past it every start fails for want of an fd, each slot logging it at every
/// retry, and the control socket has no fd left to serve the `herd scale` that would take it
/// back.
pub fn most_workers(per_worker: PerWorker, limit: u64) -> Option<usize> {
    if per_worker.total() == 0 {
        return None;
    }
    let usable = limit.saturating_sub(limit / 4 + 64);
    let most = usable / per_worker.total() as u64;
    Some(usize::try_from(most).unwrap_or(usize::MAX))
}

/// Why `workers` cannot run when each costs herd `per_worker` under the open-file limit
/// `limit`, if they cannot: one line that says what costs the files and how to fix it.
pub fn too_many_for_fds(workers: usize, per_worker: PerWorker, limit: u64) -> Option<String> {
    let most = most_workers(per_worker, limit)?;
    let PerWorker { sockets, pipes } = per_worker;
    let (costs, instead) = match (sockets, pipes) {
        (0, _) => (
            format!("{pipes} pipes to read its output (--worker-output)"),
            "--worker-output inherit",
        ),
        (_, 0) => (
            format!("{sockets} socket(s) of its own with --balance reuseport"),
            "--balance shared",
        ),
        _ => (
            format!(
                "{sockets} socket(s) of its own with --balance reuseport and {pipes} pipes to \
                 read its output (--worker-output)"
            ),
            "--balance shared or --worker-output inherit",
        ),
    };
    (workers > most).then(|| {
        format!(
            "{workers} workers do not fit herd's open-file limit of {limit}: herd holds {costs} \
             for each: at most {most}; raise the limit (ulimit -Hn, LimitNOFILE=) and start \
             herd again, or use {instead}"
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
        let sockets = |n| PerWorker::new(n, false);
        assert_eq!(most_workers(sockets(0), 1024), None);
        assert_eq!(most_workers(sockets(2), 1024), Some(352));
        assert_eq!(most_workers(sockets(1), 1024), Some(704));
        assert_eq!(most_workers(sockets(1), 10), Some(0));
        assert_eq!(too_many_for_fds(352, sockets(2), 1024), None);
        let why = too_many_for_fds(4096, sockets(2), 1024).unwrap();
        assert!(why.contains("at most 352;"), "{why}");
        assert!(why.contains("raise the limit"), "{why}");
        assert!(why.ends_with("or use --balance shared"), "{why}");
        assert_eq!(too_many_for_fds(4096, sockets(0), 1024), None);
        // systemd's default hard limit: every pool fits.
        assert_eq!(too_many_for_fds(4096, sockets(4), 524_288), None);
    }

    /// `--worker-output prefix` under `ulimit -n 1024` and `herd scale 1000`: the starts past
    /// the limit failed at every retry, a line each.
    #[test]
    fn workers_whose_output_herd_reads_cost_two_pipes_each() {
        assert_eq!(most_workers(PerWorker::new(0, true), 1024), Some(352));
        assert_eq!(most_workers(PerWorker::new(2, true), 1024), Some(176));
        let why = too_many_for_fds(1000, PerWorker::new(0, true), 1024).unwrap();
        assert!(why.contains("2 pipes to read its output"), "{why}");
        assert!(why.ends_with("or use --worker-output inherit"), "{why}");
        let why = too_many_for_fds(1000, PerWorker::new(1, true), 1024).unwrap();
        assert!(why.contains("reuseport and 2 pipes"), "{why}");
        assert!(why.contains("at most 234;"), "{why}");
    }
}
