//! What `/proc/PID/stat` says of a process (Linux): its parent, group, session, state, start
//! time and CPU time, and every process group at once; and the clock of start times.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use super::imp;

/// **Linux and Android only; empty elsewhere.** The live (not zombie) processes of process
/// group `pgid`, other than `pgid` itself (`/proc/*/stat`). Exact only while the group's id
/// cannot be reused: while its leader is alive or an unreaped zombie.
pub fn group_members(pgid: u32) -> Vec<u32> {
    let mut groups = process_groups();
    let mut members = groups.remove(&pgid).unwrap_or_default();
    members.retain(|&pid| pid != pgid);
    members
}

/// **Linux and Android only; empty elsewhere.** Every live (not zombie) process, by process
/// group: one pass over `/proc/*/stat`, for looking at many groups at once.
pub fn process_groups() -> HashMap<u32, Vec<u32>> {
    imp::process_groups(&HashSet::new())
}

/// As [`process_groups`], without reading the processes in `leaders`, which the caller knows
/// lead groups of their own (herd's live workers): they are left out. With thousands of
/// workers that is most of `/proc`, and reading it takes tens of milliseconds.
pub fn process_groups_except(leaders: &HashSet<u32>) -> HashMap<u32, Vec<u32>> {
    imp::process_groups(leaders)
}

/// The parent pid of `pid`, read from `/proc/PID/stat` (Linux); `None` if it is gone.
pub fn parent_of(pid: u32) -> Option<u32> {
    stat_field(pid, 4)?.parse().ok()
}

/// The process group of `pid`, read from `/proc/PID/stat` (Linux); `None` if it is gone or
/// the system does not say.
pub fn group_of(pid: u32) -> Option<u32> {
    stat_field(pid, 5)?.parse().ok()
}

/// The session of `pid` (`/proc/PID/stat` field 6, Linux), zombie or not; `None` if it is
/// gone or the system does not say.
pub fn session_of(pid: u32) -> Option<u32> {
    stat_field(pid, 6)?.parse().ok()
}

/// The session and start time of `pid` (`/proc/PID/stat` fields 6 and 22, Linux, read at
/// once), zombie or not: what tells a group's leftovers from a stranger's. `None` if it is
/// gone or the system does not say.
pub fn session_and_start_time(pid: u32) -> Option<(u32, u64)> {
    let fields = stat_fields(pid, &[6, 22])?;
    Some((fields[0].parse().ok()?, fields[1].parse().ok()?))
}

/// Whether `pid` is stopped (`T`, by SIGSTOP or Ctrl-Z, or `t`, by a debugger), from
/// `/proc/PID/stat` (Linux); `false` if it is not, is gone, or the system does not say.
pub fn is_stopped(pid: u32) -> bool {
    matches!(stat_field(pid, 3).as_deref(), Some("T") | Some("t"))
}

/// Whether `pid` is stopped by a signal (`T`: SIGSTOP, SIGTSTP...), not by a debugger (`t`,
/// which a tracer such as `strace -f` causes at every system call), from `/proc/PID/stat`
/// (Linux); `false` if it is not, is gone, or the system does not say.
pub fn is_stopped_by_signal(pid: u32) -> bool {
    stat_field(pid, 3).as_deref() == Some("T")
}

/// When `pid` started, in clock ticks since boot (`/proc/PID/stat` field 22, Linux): with the
/// pid, it names one process even after the pid is reused. `None` if it is gone or a zombie.
pub fn start_time(pid: u32) -> Option<u64> {
    // One read, so that the state and the start time are of the same process.
    let fields = stat_fields(pid, &[3, 22])?;
    if fields[0] == "Z" {
        return None;
    }
    fields[1].parse().ok()
}

/// CPU time `pid` has used, user and system, in clock ticks (`/proc/PID/stat` fields 14 and
/// 15, Linux); `None` if it is gone.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let fields = stat_fields(pid, &[14, 15])?;
    let user: u64 = fields[0].parse().ok()?;
    let system: u64 = fields[1].parse().ok()?;
    Some(user.saturating_add(system))
}

/// What a process has used, from one read of `/proc/PID/stat`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    /// CPU time, user and system, in clock ticks (fields 14 and 15).
    pub cpu_ticks: u64,
    /// Resident memory in bytes (field 24, in pages), the figure `VmRSS` of `/proc/PID/status`
    /// gives (which costs the kernel several times as much to write out), and like it none
    /// once the process has no memory left (a zombie, or one exiting): the kernel then writes
    /// 0 pages, and 0 for its virtual size (field 23), which a process with memory never has.
    pub resident_bytes: Option<u64>,
    /// Whether it is stopped (`SIGSTOP`, `SIGTSTP`) or held by a tracer (field 3: `T`, `t`).
    pub stopped: bool,
}

/// The CPU time and resident memory of `pid` (Linux), read at once: a sampler of thousands
/// of workers opens one file each instead of two. `None` if it is gone.
pub fn usage(pid: u32) -> Option<Usage> {
    let fields = stat_fields(pid, &[14, 15, 23, 24, 3])?;
    let user: u64 = fields[0].parse().ok()?;
    let system: u64 = fields[1].parse().ok()?;
    let virtual_bytes: u64 = fields[2].parse().ok()?;
    let pages: u64 = fields[3].parse().ok()?;
    Some(Usage {
        cpu_ticks: user.saturating_add(system),
        resident_bytes: (virtual_bytes > 0).then(|| pages.saturating_mul(page_size())),
        stopped: matches!(fields[4].as_str(), "T" | "t"),
    })
}

/// The size of a memory page in bytes (`sysconf(_SC_PAGESIZE)`), the unit of `/proc`'s
/// page counts.
pub fn page_size() -> u64 {
    sysconf_or(libc::_SC_PAGESIZE, 4096)
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`), the unit of [`cpu_ticks`].
pub fn ticks_per_second() -> u64 {
    sysconf_or(libc::_SC_CLK_TCK, 100)
}

/// `sysconf(name)`, or `fallback` where the system does not say (-1, or 0).
fn sysconf_or(name: libc::c_int, fallback: u64) -> u64 {
    // SAFETY: sysconf takes an integer and returns one.
    let n = unsafe { libc::sysconf(name) };
    u64::try_from(n).ok().filter(|&n| n > 0).unwrap_or(fallback)
}

/// Fields `ns` (numbered from 1 as in proc(5), each at least 3) of a `/proc/PID/stat` line,
/// in the order asked; `None` if one is missing. The command name (field 2) may contain
/// spaces and parentheses: the fields after it start after the last `)`.
pub fn parse_stat_fields<'a>(stat: &'a str, ns: &[usize]) -> Option<Vec<&'a str>> {
    let rest: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    ns.iter()
        .map(|&n| rest.get(n.checked_sub(3)?).copied())
        .collect()
}

/// Fields `ns` of `/proc/PID/stat` (see [`parse_stat_fields`]), read at once.
pub(super) fn stat_fields(pid: u32, ns: &[usize]) -> Option<Vec<String>> {
    let mut buffer = [0u8; STAT_BYTES];
    let stat = read_small(&format!("/proc/{pid}/stat"), &mut buffer)?;
    let fields = parse_stat_fields(&stat, ns)?;
    Some(fields.into_iter().map(str::to_string).collect())
}

/// Room for a `/proc/PID/stat` line: 52 fields of at most 20 digits and a name of at most 64
/// bytes.
const STAT_BYTES: usize = 2048;

/// The text of the file at `path` if it fits in `buffer`, read without `fs::read_to_string`'s
/// `statx` for a size hint (a `/proc` file has no size): herd's sampler reads one of these for
/// each of thousands of workers every second. Bytes that are not UTF-8 (a command name is the
/// name of the file a process ran, any bytes) read as U+FFFD, so that such a process is not
/// taken for gone. `None` if it cannot be read or does not fit.
fn read_small<'a>(path: &str, buffer: &'a mut [u8]) -> Option<Cow<'a, str>> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).ok()?;
    let mut len = 0;
    loop {
        match file.read(&mut buffer[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
        if len == buffer.len() {
            return None;
        }
    }
    Some(String::from_utf8_lossy(&buffer[..len]))
}

/// Field `n` of `/proc/PID/stat` (see [`parse_stat_fields`]).
pub(super) fn stat_field(pid: u32, n: usize) -> Option<String> {
    stat_fields(pid, &[n])?.pop()
}

/// **Linux and Android only; `None` elsewhere.** The time since boot in clock ticks
/// (`CLOCK_BOOTTIME`), the clock and unit of a process's start time in `/proc/PID/stat`
/// (unlike `/proc/uptime`, which a container's lxcfs may replace).
pub fn boot_ticks() -> Option<u64> {
    imp::boot_ticks()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_reads_refuse_what_does_not_fit() {
        let dir = std::env::temp_dir().join(format!("herd-sys-small-{}", std::process::id()));
        std::fs::write(&dir, b"12345").unwrap();
        let path = dir.to_str().unwrap();
        assert_eq!(read_small(path, &mut [0; 6]).as_deref(), Some("12345"));
        assert_eq!(
            read_small(path, &mut [0; 5]).as_deref(),
            None,
            "no room to see the end"
        );
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(read_small(path, &mut [0; 6]).as_deref(), None, "gone");
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn usage_agrees_with_status() {
        let me = std::process::id();
        // Read first: the counters only grow, and the other tests' threads, counted in this
        // process's, add ticks between the two reads.
        let ticks_before = cpu_ticks(me).unwrap();
        let usage = usage(me).unwrap();
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap();
        // Both are the same counters, read a moment apart.
        let (a, b) = (usage.resident_bytes.unwrap(), kib * 1024);
        assert!(a.abs_diff(b) <= b / 10 + (1 << 20), "{a} vs {b}");
        assert!(usage.cpu_ticks >= ticks_before);
        assert_eq!(super::usage(u32::MAX - 3), None, "no such process");
    }

    /// A process whose command name is not UTF-8 (the name of the file it ran, here a link
    /// named with bytes 0xff 0xfe) is read like any other: a worker's leftover named so is
    /// still seen in its group, and its usage sampled.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn a_process_whose_name_is_not_utf8_is_read_all_the_same() {
        use std::os::unix::ffi::OsStrExt;
        let dir = std::env::temp_dir().join(format!("herd-sys-name-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let link = dir.join(std::ffi::OsStr::from_bytes(b"\xff\xfe"));
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink("/bin/sleep", &link).unwrap();
        let mut child = std::process::Command::new(&link).arg("60").spawn().unwrap();
        let pid = child.id();
        // Its name is the link's once it has exec'd.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !std::fs::read(format!("/proc/{pid}/comm"))
            .unwrap()
            .starts_with(b"\xff")
        {
            assert!(
                std::time::Instant::now() < deadline,
                "{pid} never ran the link"
            );
            std::thread::yield_now();
        }
        let (usage, group) = (usage(pid), group_of(pid));
        let groups = process_groups();
        let described = crate::process::describe_child(pid);
        child.kill().unwrap();
        child.wait().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(usage.is_some(), "no usage");
        let me = group_of(std::process::id());
        assert!(group.is_some() && group == me, "{group:?}, not {me:?}");
        assert!(groups[&group.unwrap()].contains(&pid), "not in its group");
        let described = described.expect("not described as a child");
        assert_eq!(described.name, "\u{fffd}\u{fffd}");
    }

    /// A zombie has no memory: `/proc/PID/status` has no `VmRSS` for it, and `usage` no
    /// resident figure (not the 0 pages `stat` shows), though it still tells its CPU time.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn a_zombie_has_no_resident_memory_as_status_has_no_vmrss() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while stat_field(pid, 3).as_deref() != Some("Z") {
            assert!(std::time::Instant::now() < deadline, "{pid} never exited");
            std::thread::yield_now();
        }
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let zombie = usage(pid);
        child.wait().unwrap();
        assert!(!status.contains("VmRSS:"), "{status}");
        let zombie = zombie.expect("a zombie is still there");
        assert_eq!(zombie.resident_bytes, None);
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn known_leaders_are_not_read() {
        let me = std::process::id();
        let my_group = group_of(me).unwrap();
        let has_me = |groups: &HashMap<u32, Vec<u32>>| {
            groups.get(&my_group).map_or(false, |g| g.contains(&me))
        };
        assert!(has_me(&process_groups()));
        let groups = process_groups_except(&HashSet::from([me]));
        assert!(!has_me(&groups));
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn boot_ticks_is_the_clock_of_start_times() {
        let before = boot_ticks().unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let started = start_time(child.id());
        let after = boot_ticks().unwrap();
        let _ = child.kill();
        let _ = child.wait();
        let started = started.unwrap();
        assert!(
            before <= started + 1 && started <= after + 1,
            "{before} <= {started} <= {after}"
        );
    }

    #[test]
    fn stat_fields_start_after_the_last_parenthesis() {
        let line = "42 (a) b (c)) S 1 42 42 0 -1 4194560 1 0 0 0 7 3 0 0 20 0 1 0 1234 0";
        assert_eq!(
            parse_stat_fields(line, &[3, 4, 6]),
            Some(vec!["S", "1", "42"])
        );
        assert_eq!(
            parse_stat_fields(line, &[14, 15, 22]),
            Some(vec!["7", "3", "1234"])
        );
        assert_eq!(parse_stat_fields(line, &[24]), None, "past the end");
        assert_eq!(
            parse_stat_fields(line, &[2]),
            None,
            "the name is not a field here"
        );
        assert_eq!(parse_stat_fields("no parenthesis 1 2 3", &[3]), None);
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn this_process_has_a_session_and_a_start_time() {
        let pid = std::process::id();
        let (session, start) = session_and_start_time(pid).unwrap();
        assert_eq!(session_of(pid), Some(session));
        assert_eq!(start_time(pid), Some(start));
    }
}
