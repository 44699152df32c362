//! A worker's memory, read from Linux's `/proc`: resident memory (`VmRSS` in
//! `/proc/PID/status`) or the proportional set size (`Pss` in `/proc/PID/smaps_rollup`).

use herd_core::MemoryKind;

/// Worker `pid`'s memory of `kind`, in bytes; `None` where `/proc` cannot tell (the worker
/// is gone, not Linux, a kernel before 4.14 for PSS).
pub fn memory(pid: u32, kind: MemoryKind) -> Option<u64> {
    let (file, field) = match kind {
        MemoryKind::Rss => ("status", "VmRSS:"),
        MemoryKind::Pss => ("smaps_rollup", "Pss:"),
    };
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).ok()?;
    kib_field(&text, field)
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
        let rss = memory(me, MemoryKind::Rss).unwrap();
        assert!(rss > 1 << 20, "{rss}");
        if let Some(pss) = memory(me, MemoryKind::Pss) {
            assert!(pss > 0 && pss <= rss * 2, "{pss} {rss}");
        }
        assert_eq!(memory(u32::MAX, MemoryKind::Rss), None);
    }
}
