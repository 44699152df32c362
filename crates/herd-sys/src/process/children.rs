//! This process's own children, found rather than remembered: being a child subreaper
//! (`PR_SET_CHILD_SUBREAPER`, Linux), so that what the children leave behind is re-parented
//! here, and listing the children (`/proc/self/task/*/children`, or a `/proc` scan).

use std::io;

use super::stat::parse_stat_fields;

/// A child of this process, as `/proc/PID/stat` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Child {
    /// Its pid.
    pub pid: u32,
    /// Its process group.
    pub group: u32,
    /// Its command name (`comm`, at most 15 bytes), as the system shows it.
    pub name: String,
}

/// **Linux and Android only; `Ok(false)` elsewhere.** Makes this process a child subreaper
/// (`prctl(PR_SET_CHILD_SUBREAPER, 1)`): a process whose parent dies is re-parented to its
/// nearest living subreaper ancestor instead of init. The setting survives `execve` and is not
/// inherited by children. `Ok(true)` once set.
pub fn become_subreaper() -> io::Result<bool> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes and returns plain integers.
        if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(true)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    Ok(false)
}

/// **Linux and Android only; empty elsewhere.** The pids of this process's children, exited
/// (unreaped) or not: from each thread's `/proc/self/task/TID/children`, or, where the kernel
/// has no such file, a scan of every `/proc/PID/stat` for this parent.
pub fn own_children() -> Vec<u32> {
    listed_children().unwrap_or_else(scanned_children)
}

/// Process `pid` as `/proc/PID/stat` shows it (Linux and Android), a name that is not UTF-8
/// with U+FFFD for its odd bytes; `None` if it is gone (or the system does not say).
pub fn describe_child(pid: u32) -> Option<Child> {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    parse_child(pid, &String::from_utf8_lossy(&stat))
}

/// The pids in every `/proc/self/task/*/children`; `None` if the kernel does not have them.
fn listed_children() -> Option<Vec<u32>> {
    let mut pids = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let list = std::fs::read_to_string(task.path().join("children")).ok()?;
        pids.extend(
            list.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
    pids.sort_unstable();
    pids.dedup();
    Some(pids)
}

/// The pids whose `/proc/PID/stat` names this process as their parent.
fn scanned_children() -> Vec<u32> {
    let me = super::current_pid();
    let entries = match std::fs::read_dir("/proc") {
        Ok(entries) => entries,
        Err(_) => return Vec::new(),
    };
    let mut pids: Vec<u32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| super::parent_of(pid) == Some(me))
        .collect();
    pids.sort_unstable();
    pids
}

/// Child `pid` from its `/proc/PID/stat` line: the name between the first `(` and the last
/// `)`, the group from field 5.
fn parse_child(pid: u32, stat: &str) -> Option<Child> {
    let name = stat.get(stat.find('(')? + 1..stat.rfind(')')?)?.to_string();
    let group = parse_stat_fields(stat, &[5])?[0].parse().ok()?;
    Some(Child { pid, group, name })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_gives_the_name_and_group_even_with_parentheses_in_the_name() {
        let stat = "42 (a (b) c) S 1 40 40 0 -1 4194560 0 0";
        assert_eq!(
            parse_child(42, stat),
            Some(Child {
                pid: 42,
                group: 40,
                name: "a (b) c".to_string()
            })
        );
        assert_eq!(parse_child(42, "42 (cut"), None);
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn a_child_is_listed_by_both_ways_until_reaped() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        let listed = own_children();
        let scanned = scanned_children();
        let described = describe_child(pid);
        let _ = child.kill();
        let _ = child.wait();
        assert!(listed.contains(&pid) && scanned.contains(&pid));
        assert_eq!(described.map(|c| c.name).as_deref(), Some("sleep"));
        assert!(!own_children().contains(&pid), "reaped");
    }
}
