//! herd's own process statistics, read from Linux's `/proc`.

use crate::supervisor::process_stats::ProcessStats;

/// Reads herd's statistics now; `None` where `/proc` cannot be read (not Linux).
pub fn process_stats() -> Option<ProcessStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let system = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks = herd_sys::process::ticks_per_second() as f64;
    let mut stats = parse(&stat, &status, &system, ticks)?;
    // The directory listing's own fd is among the entries: not one of herd's.
    stats.open_fds = std::fs::read_dir("/proc/self/fd")
        .ok()?
        .count()
        .saturating_sub(1) as u64;
    stats.max_fds = herd_sys::process::nofile_limit().map_or(0, |(soft, _)| soft);
    Some(stats)
}

/// Parses `/proc/self/stat`, `/proc/self/status` and `/proc/stat` (with `ticks` clock ticks per
/// second); the fd counts are left at 0.
fn parse(stat: &str, status: &str, system: &str, ticks: f64) -> Option<ProcessStats> {
    // utime, stime, starttime and vsize, as numbered in proc(5).
    let fields = herd_sys::process::parse_stat_fields(stat, &[14, 15, 22, 23])?;
    let field = |i: usize| fields.get(i)?.parse::<u64>().ok();
    let cpu_ticks = field(0)? + field(1)?;
    let boot = system
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse::<u64>()
        .ok()?;
    let resident_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .ok()?;
    if ticks <= 0.0 {
        return None;
    }
    Some(ProcessStats {
        cpu_seconds: cpu_ticks as f64 / ticks,
        resident_bytes: resident_kib * 1024,
        virtual_bytes: field(3)?,
        open_fds: 0,
        max_fds: 0,
        start_time_seconds: boot as f64 + field(2)? as f64 / ticks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        let stat = "4242 (herd (x) y) S 1 4242 4242 0 -1 4194560 500 0 0 0 150 50 0 0 20 0 3 0 \
                    12345 104857600 900 18446744073709551615";
        let status = "Name:\therd\nVmRSS:\t    3600 kB\nThreads:\t3\n";
        let system = "cpu  1 2 3\nbtime 1700000000\nprocesses 10\n";
        let stats = parse(stat, status, system, 100.0).unwrap();
        assert_eq!(stats.cpu_seconds, 2.0);
        assert_eq!(stats.resident_bytes, 3600 * 1024);
        assert_eq!(stats.virtual_bytes, 104_857_600);
        assert_eq!(stats.start_time_seconds, 1_700_000_123.45);
        assert_eq!(parse("garbage", status, system, 100.0), None);
        assert_eq!(parse(stat, "", system, 100.0), None);
    }

    #[test]
    fn reads_this_process() {
        if !cfg!(target_os = "linux") {
            return;
        }
        let stats = process_stats().unwrap();
        assert!(stats.resident_bytes > 0 && stats.virtual_bytes >= stats.resident_bytes);
        assert!(stats.open_fds >= 3 && stats.max_fds >= stats.open_fds);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            (stats.start_time_seconds - now).abs() < 86400.0,
            "{stats:?}"
        );
    }
}
