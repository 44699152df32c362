//! What a worker has used, read from Linux's `/proc`: its CPU time, and its resident memory
//! (`VmRSS`) or proportional set size (`Pss` in `/proc/PID/smaps_rollup`).

use herd_core::MemoryKind;

use crate::supervisor::sampler::Usage;

/// Worker `pid`'s CPU time and memory of `kind`; `None` where `/proc` cannot tell (the worker
/// is gone, not Linux, a kernel before 4.14 for PSS). Resident memory comes with the CPU time
/// from one read of `/proc/PID/stat`: with thousands of workers, a second file each (`status`,
/// which the kernel is slow to write out) took most of herd's CPU while idle.
pub fn usage(pid: u32, kind: MemoryKind) -> Usage {
    match kind {
        MemoryKind::Rss => {
            let read = herd_sys::process::usage(pid);
            Usage {
                memory: read.and_then(|u| u.resident_bytes),
                cpu_ticks: read.map(|u| u.cpu_ticks),
                stopped: read.is_some_and(|u| u.stopped),
            }
        }
        MemoryKind::Pss => Usage {
            memory: std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
                .ok()
                .and_then(|text| kib_field(&text, "Pss:")),
            cpu_ticks: herd_sys::process::cpu_ticks(pid),
            stopped: herd_sys::process::is_stopped(pid),
        },
    }
}

/// The value of `field` (`NAME:   123 kB`) in `text`, in bytes.
fn kib_field(text: &str, field: &str) -> Option<u64> {
    let kib = text
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse::<u64>()
        .ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_kib_fields() {
        let status = "Name:\tpython3\nVmPeak:\t  9000 kB\nVmRSS:\t    3600 kB\n";
        assert_eq!(kib_field(status, "VmRSS:"), Some(3600 * 1024));
        let rollup = "55d0-7ffd ---p 00000000 00:00 0  [rollup]\nRss:  900 kB\nPss:  \
                      512 kB\nPss_Anon: 100 kB\n";
        assert_eq!(kib_field(rollup, "Pss:"), Some(512 * 1024));
        assert_eq!(kib_field("VmRSS: lots\n", "VmRSS:"), None);
        assert_eq!(kib_field("", "VmRSS:"), None);
    }

    #[test]
    fn reads_this_process() {
        if !cfg!(target_os = "linux") {
            return;
        }
        let me = std::process::id();
        let rss = usage(me, MemoryKind::Rss);
        let bytes = rss.memory.unwrap();
        assert!(bytes > 1 << 20, "{bytes}");
        assert!(rss.cpu_ticks.is_some());
        let pss = usage(me, MemoryKind::Pss);
        if let Some(pss) = pss.memory {
            assert!(pss > 0 && pss <= bytes * 2, "{pss} {bytes}");
        }
        assert!(pss.cpu_ticks.is_some());
        let gone = usage(u32::MAX, MemoryKind::Rss);
        assert_eq!((gone.memory, gone.cpu_ticks), (None, None));
    }
}
