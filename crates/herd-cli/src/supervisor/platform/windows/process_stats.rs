//! herd's own process statistics on Windows, read from its process handle: the same
//! `process_*` metrics as on Unix, with Windows' nearest figures (as Prometheus' Go client
//! reports them on Windows).

use std::io;
use std::time::{Duration, SystemTime};

use herd_sys::windows::process;

use crate::supervisor::process_stats::ProcessStats;

/// Reads herd's statistics now; `None` if Windows refuses one of them.
pub fn process_stats() -> Option<ProcessStats> {
    read().ok()
}

fn read() -> io::Result<ProcessStats> {
    let me = process::current();
    Ok(stats(Figures {
        cpu: process::cpu_time(&me)?,
        working_set: process::working_set(&me)?,
        commit_charge: process::commit_charge(&me)?,
        handles: process::handle_count(&me)?,
        started: process::start_time(&me)?,
    }))
}

/// What Windows tells of a process.
struct Figures {
    cpu: Duration,
    working_set: u64,
    commit_charge: u64,
    handles: u32,
    started: SystemTime,
}

/// The `process_*` values of `figures`: resident memory is the working set, virtual memory
/// the commit charge, open fds the open handles (of every kind), and the fd limit Windows'
/// fixed limit on a process's handles.
fn stats(figures: Figures) -> ProcessStats {
    let started = figures
        .started
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    ProcessStats {
        cpu_seconds: figures.cpu.as_secs_f64(),
        resident_bytes: figures.working_set,
        virtual_bytes: figures.commit_charge,
        open_fds: u64::from(figures.handles),
        max_fds: process::MAX_HANDLES,
        start_time_seconds: started.as_secs_f64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_figures_become_the_process_metrics() {
        let stats = stats(Figures {
            cpu: Duration::from_millis(2500),
            working_set: 4096,
            commit_charge: 8192,
            handles: 42,
            started: SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_500),
        });
        assert_eq!(
            stats,
            ProcessStats {
                cpu_seconds: 2.5,
                resident_bytes: 4096,
                virtual_bytes: 8192,
                open_fds: 42,
                max_fds: 1 << 24,
                start_time_seconds: 1_700_000_000.5,
            }
        );
    }

    #[test]
    fn reads_this_process() {
        let stats = process_stats().expect("herd's own figures");
        assert!(
            stats.resident_bytes > 0 && stats.virtual_bytes > 0,
            "{stats:?}"
        );
        assert!(stats.cpu_seconds > 0.0, "{stats:?}");
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let age = now - stats.start_time_seconds;
        assert!((0.0..3600.0).contains(&age), "{stats:?}");
        assert!(stats.open_fds < stats.max_fds, "{stats:?}");
    }

    #[test]
    fn the_metrics_show_herds_own_figures_under_the_unix_names() {
        use crate::supervisor::metrics::{render, Counters, Snapshot};
        let snapshot = Snapshot {
            process: process_stats(),
            ..Snapshot::default()
        };
        let text = render(&Counters::default(), &snapshot).unwrap();
        assert!(text.contains("\nprocess_max_fds 16777216\n"), "{text}");
        for name in [
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_virtual_memory_bytes ",
            "process_open_fds ",
            "process_start_time_seconds ",
        ] {
            assert!(text.lines().any(|l| l.starts_with(name)), "{name}: {text}");
        }
    }
}
