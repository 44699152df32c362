//! herd's own process statistics for the standard `process_*` metrics (the names and units
//! Prometheus' client libraries export); each platform reads them its own way
//! (`platform::process_stats`).

/// What the `process_*` metrics report about herd itself.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProcessStats {
    /// User and system CPU time, in seconds (`/proc/self/stat` utime + stime).
    pub cpu_seconds: f64,
    /// Resident memory, in bytes (`VmRSS` in `/proc/self/status`).
    pub resident_bytes: u64,
    /// Virtual memory, in bytes (`/proc/self/stat` vsize).
    pub virtual_bytes: u64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// The open-file limit (soft `RLIMIT_NOFILE`).
    pub max_fds: u64,
    /// When the process started, in seconds since the Unix epoch (boot time plus
    /// `/proc/self/stat` starttime). A re-exec keeps the process, and so this time.
    pub start_time_seconds: f64,
}
