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

/// The open files herd holds for each worker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PerWorker {
    /// `--balance reuseport`: the slot's own sockets, one per TCP socket herd binds, held for
    /// as long as the slot runs.
    pub sockets: usize,
    /// `--worker-output prefix|json`: the read ends of each worker process's stdout and stderr
    /// pipes, so as many again for a successor an upgrade runs beside it (`--max-surge`).
    pub pipes: usize,
    /// The sockets herd binds (and shared memory it makes), whatever the workers: a worker's
    /// start holds a second copy of each (see [`files_for_herd`]), beside the files above.
    pub bound: usize,
}

impl PerWorker {
    /// What a worker costs with `sockets` per-slot sockets, its output read by herd or not.
    pub fn new(sockets: usize, output_read: bool) -> PerWorker {
        PerWorker {
            sockets,
            pipes: if output_read { 2 } else { 0 },
            bound: 0,
        }
    }

    /// The same, with `bound` sockets (and shared memory) bound by herd, held twice while a
    /// worker starts: under a limit of 232 with 100 binds, `--worker-output prefix` and 27
    /// workers (which each check passed alone) every worker start but two failed.
    pub fn with_bound(self, bound: usize) -> PerWorker {
        PerWorker { bound, ..self }
    }

    /// The files `workers` cost herd while `surge` successors run beside them.
    fn files(&self, workers: usize, surge: usize) -> u64 {
        let processes = workers.saturating_add(surge) as u64;
        (self.sockets as u64)
            .saturating_mul(workers as u64)
            .saturating_add((self.pipes as u64).saturating_mul(processes))
            .saturating_add((self.bound as u64).saturating_mul(2))
    }
}

/// The most workers that fit an open-file limit of `limit` when each costs herd `per_worker`
/// and an upgrade runs `surge(workers)` successors beside them (`--max-surge`), or `None` when
/// they cost none. A quarter of the limit and 64 more stay for what else herd holds: control
/// and metrics connections (an eighth of the limit each, at most), a pipe per worker start.
/// Past it starts fail for want of an fd, each slot logging it at every retry, and the control
/// socket has no fd left to serve the `herd scale` that would take it back.
pub fn most_workers(
    per_worker: PerWorker,
    surge: impl Fn(usize) -> usize,
    limit: u64,
) -> Option<usize> {
    if per_worker.sockets + per_worker.pipes == 0 {
        return None;
    }
    let usable = usable(limit);
    let fits = |workers: usize| per_worker.files(workers, surge(workers).min(workers)) <= usable;
    // Every worker costs at least one file: the largest that fits, by bisection.
    let (mut low, mut high) = (0, usize::try_from(usable).unwrap_or(usize::MAX));
    while low < high {
        let mid = low + (high - low).div_ceil(2);
        if fits(mid) {
            low = mid;
        } else {
            high = mid - 1;
        }
    }
    Some(low)
}

/// What of the open-file limit `limit` workers may take: a quarter of it and 64 more stay for
/// what else herd holds (see [`most_workers`]).
fn usable(limit: u64) -> u64 {
    limit.saturating_sub(limit / 4 + 64)
}

/// The lowest open-file limit that leaves `files` usable by workers (what they cost herd,
/// with their successors): the inverse of [`usable`].
fn limit_for(files: u64) -> u64 {
    let (mut low, mut high) = (0u64, u64::MAX / 2);
    while low < high {
        let mid = low + (high - low) / 2;
        if usable(mid) >= files {
            high = mid;
        } else {
            low = mid + 1;
        }
    }
    low
}

/// The fewest open files herd supervises with, beyond the sockets it binds: its standard
/// streams, the control and notify sockets, its event loop, signals and threads, and a pipe
/// for each worker start. Under a limit of 16 herd bound its sockets and then failed every
/// worker start, at every retry, for want of a pipe.
pub const FEWEST_FILES: u64 = 32;

/// The open files herd needs with `sockets` bound (and shared memory made): [`FEWEST_FILES`],
/// and each socket twice, since a worker's start holds a second copy of each (the child
/// copies every inherited fd above 3, 4, ... before it moves them there, in herd's fd
/// table's copy, under herd's limit). With 20 sockets under a limit of 52 herd ran, and every
/// worker start failed, at every retry, with "cannot place the worker's inherited sockets".
pub fn files_for_herd(sockets: usize) -> u64 {
    FEWEST_FILES.saturating_add((sockets as u64).saturating_mul(2))
}

/// Why herd cannot supervise under the open-file limit `limit` with `sockets` bound (and
/// shared memory made), if it cannot: one line that says what to raise.
pub fn too_few_for_herd(limit: u64, sockets: usize) -> Option<String> {
    let needed = files_for_herd(sockets);
    (limit < needed).then(|| {
        format!(
            "herd's open-file limit of {limit} is too low to supervise: herd holds {FEWEST_FILES} \
             files of its own (its control and notify sockets, its event loop, a pipe for each \
             worker start) and the {sockets} it binds, twice over while a worker starts: raise \
             the limit to at least {needed} (ulimit -Hn, LimitNOFILE=) and start herd again"
        )
    })
}

/// Why `workers` cannot run when each costs herd `per_worker` and an upgrade runs `surge`
/// successors beside them, under the open-file limit `limit`, if they cannot: one line that
/// says what costs the files and how to fix it.
pub fn too_many_for_fds(
    workers: usize,
    per_worker: PerWorker,
    surge: impl Fn(usize) -> usize,
    limit: u64,
) -> Option<String> {
    let needed = limit_for(per_worker.files(workers, surge(workers).min(workers)));
    let most = most_workers(per_worker, surge, limit)?;
    let PerWorker {
        sockets,
        pipes,
        bound,
    } = per_worker;
    let pipes_text = format!(
        "{pipes} pipes to read its output (--worker-output), and as many for the successor an \
         upgrade starts beside it (--max-surge)"
    );
    let (costs, instead) = match (sockets, pipes) {
        (0, _) => (pipes_text, "--worker-output inherit"),
        (_, 0) => (
            format!("{sockets} socket(s) of its own (--balance reuseport)"),
            "--balance shared",
        ),
        _ => (
            format!("{sockets} socket(s) of its own (--balance reuseport) and {pipes_text}"),
            "--balance shared or --worker-output inherit",
        ),
    };
    let also = match bound {
        0 => String::new(),
        n => format!(", and {} for the {n} socket(s) it binds", 2 * n),
    };
    let asked = match workers {
        1 => "1 worker does".to_string(),
        n => format!("{n} workers do"),
    };
    (workers > most).then(|| {
        format!(
            "{asked} not fit herd's open-file limit of {limit}: for each worker, \
             herd holds {costs}, and it keeps a quarter of the limit and 64 files more for \
             itself{also}: at most {most}; raise the limit to at least {needed} (ulimit -Hn, \
             LimitNOFILE=) and start herd again, or use {instead}"
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

    /// Whatever the workers cost, herd needs files of its own: under a limit of 16 it bound its
    /// socket, then failed every worker start for want of a pipe.
    #[test]
    fn herd_needs_files_of_its_own() {
        assert_eq!(too_few_for_herd(FEWEST_FILES + 4, 2), None);
        let why = too_few_for_herd(16, 1).unwrap();
        assert!(
            why.starts_with("herd's open-file limit of 16 is too low"),
            "{why}"
        );
        assert!(why.contains("raise the limit to at least 34 "), "{why}");
        // 20 sockets under 52 (32 and one each): every worker start failed to place them.
        let why = too_few_for_herd(52, 20).unwrap();
        assert!(why.contains("raise the limit to at least 72 "), "{why}");
        assert_eq!(too_few_for_herd(72, 20), None);
    }

    /// The sockets herd binds count against what the workers may take: 100 binds,
    /// `--worker-output prefix` and 27 workers passed both checks under 232 (each alone), and
    /// every worker start but two failed to place its sockets.
    #[test]
    fn the_sockets_herd_binds_leave_less_for_the_workers() {
        let all = |workers| workers;
        let output = PerWorker::new(0, true);
        assert_eq!(most_workers(output, all, 232), Some(27));
        assert_eq!(most_workers(output.with_bound(100), all, 232), Some(0));
        let why = too_many_for_fds(27, output.with_bound(100), all, 232).unwrap();
        assert!(
            why.contains("and 200 for the 100 socket(s) it binds: at most 0"),
            "{why}"
        );
        // 32 + 200 + 2 pipes for each of 27 workers and their 27 successors: 340 at least.
        let needed: u64 = why
            .split("at least ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap();
        assert!(needed >= 340, "{why}");
        assert_eq!(
            too_many_for_fds(27, output.with_bound(100), all, needed),
            None
        );
    }

    /// `ulimit -n 1024`, two reuseport sockets and `herd scale 4096`: 497 workers started,
    /// the rest failed to start at every retry (thousands of lines a round), and `herd scale`
    /// and `herd stop` were answered "herd is at its open-file limit".
    #[test]
    fn the_workers_that_fit_the_open_file_limit() {
        let sockets = |n| PerWorker::new(n, false);
        let surge = |workers| workers; // --max-surge 100%: sockets are the slots' all the same
        assert_eq!(most_workers(sockets(0), surge, 1024), None);
        assert_eq!(most_workers(sockets(2), surge, 1024), Some(352));
        assert_eq!(most_workers(sockets(1), surge, 1024), Some(704));
        assert_eq!(most_workers(sockets(1), surge, 10), Some(0));
        assert_eq!(too_many_for_fds(352, sockets(2), surge, 1024), None);
        let why = too_many_for_fds(4096, sockets(2), surge, 1024).unwrap();
        assert!(why.contains("at most 352;"), "{why}");
        assert!(why.contains("raise the limit"), "{why}");
        assert!(why.ends_with("or use --balance shared"), "{why}");
        assert_eq!(too_many_for_fds(4096, sockets(0), surge, 1024), None);
        // systemd's default hard limit: every pool fits.
        assert_eq!(too_many_for_fds(4096, sockets(4), surge, 524_288), None);
    }

    /// `--worker-output prefix` under `ulimit -n 1024` and `herd scale 1000`: the starts past
    /// the limit failed at every retry, a line each. An upgrade's successors read their output
    /// beside the old workers: with `--max-surge 100%`, twice the pipes.
    #[test]
    fn workers_whose_output_herd_reads_cost_two_pipes_each_and_their_successors_two_more() {
        let output = |sockets| PerWorker::new(sockets, true);
        let sockets_only = |sockets| PerWorker::new(sockets, false);
        let (none, all, one) = (|_| 0, |workers| workers, |_| 1);
        assert_eq!(most_workers(output(0), none, 1024), Some(352));
        assert_eq!(most_workers(output(0), all, 1024), Some(176));
        assert_eq!(most_workers(output(0), one, 1024), Some(351));
        assert_eq!(most_workers(output(2), none, 1024), Some(176));
        assert_eq!(most_workers(output(2), all, 1024), Some(117));
        let why = too_many_for_fds(1000, output(0), all, 1024).unwrap();
        assert!(
            why.contains("for each worker, herd holds 2 pipes to read its output"),
            "{why}"
        );
        assert!(why.contains("at most 176;"), "{why}");
        assert!(why.ends_with("or use --worker-output inherit"), "{why}");
        // A limit too low for any: one line all the same, in the singular.
        let why = too_many_for_fds(1, output(0), all, 80).unwrap();
        assert!(
            why.starts_with("1 worker does not fit") && why.contains("at most 0;"),
            "{why}"
        );
        // It said "at most 0" and no more: what limit would do.
        assert!(why.contains("raise the limit to at least 90 "), "{why}");
        assert_eq!(most_workers(output(0), all, 90), Some(1));
        assert_eq!(most_workers(output(0), all, 89), Some(0));
        let why = too_many_for_fds(4096, sockets_only(2), all, 1024).unwrap();
        assert!(why.contains("raise the limit to at least 11007 "), "{why}");
        assert_eq!(most_workers(sockets_only(2), all, 11007), Some(4096));
        assert_eq!(most_workers(sockets_only(2), all, 11006), Some(4095));
        let why = too_many_for_fds(1000, output(1), none, 1024).unwrap();
        assert!(why.contains("(--balance reuseport) and 2 pipes"), "{why}");
        assert!(why.contains("at most 234;"), "{why}");
    }
}
