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

/// The pids in every `/proc/self/task/*/children`; `None` if the kernel does not have them, or
/// if this process's threads kept changing while they were read.
fn listed_children() -> Option<Vec<u32>> {
    stable_listing(
        || {
            let mut tasks: Vec<_> = std::fs::read_dir("/proc/self/task")
                .ok()?
                .flatten()
                .map(|task| task.path())
                .collect();
            tasks.sort();
            Some(tasks)
        },
        |task| std::fs::read_to_string(task.join("children")).ok(),
    )
}

/// How many times the children are listed before a `/proc` scan is left to find them.
const LISTINGS: usize = 3;

/// The pids that `children` lists for each of `tasks()`, from a listing during which the
/// tasks stayed the same: a thread that exits while its list is read (a list of more than a
/// page is read in turns) hands its children to another, perhaps one read before it, so a
/// listing during which one exited may have missed some. `None` if a read
/// fails or the tasks changed during each of [`LISTINGS`] tries.
fn stable_listing<T: PartialEq>(
    mut tasks: impl FnMut() -> Option<Vec<T>>,
    mut children: impl FnMut(&T) -> Option<String>,
) -> Option<Vec<u32>> {
    let mut before = tasks()?;
    for _ in 0..LISTINGS {
        let mut pids = Vec::new();
        for task in &before {
            let list = children(task)?;
            pids.extend(
                list.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
        let after = tasks()?;
        if after == before {
            pids.sort_unstable();
            pids.dedup();
            return Some(pids);
        }
        before = after;
    }
    None
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

    /// Threads as `stable_listing` sees them: each look at the tasks takes the next of
    /// `looks`; each task lists the children it holds at the time of that look.
    fn listing(looks: Vec<Vec<(u32, &'static str)>>) -> Option<Vec<u32>> {
        let looks = std::cell::RefCell::new(looks.into_iter());
        let current = std::cell::RefCell::new(Vec::new());
        stable_listing(
            || {
                let look = looks.borrow_mut().next()?;
                *current.borrow_mut() = look.clone();
                Some(look.iter().map(|&(tid, _)| tid).collect())
            },
            |tid| {
                let current = current.borrow();
                let (_, list) = current.iter().find(|(t, _)| t == tid)?;
                Some(list.to_string())
            },
        )
    }

    #[test]
    fn a_thread_that_exits_during_a_listing_is_listed_again() {
        // Thread 2 exits while its list is read, which ends early (30 left out), and its
        // children go to thread 1, read before it: the next listing has them all.
        let during = vec![(1, "10"), (2, "20")];
        let after = vec![(1, "10 20 30")];
        let got = listing(vec![during.clone(), after.clone(), after.clone()]);
        assert_eq!(got, Some(vec![10, 20, 30]));
        // Threads that stay the same: one listing.
        let same = vec![(1, "10"), (2, "30 20")];
        assert_eq!(listing(vec![same.clone(), same]), Some(vec![10, 20, 30]));
        // Threads that never stay the same: the scan instead.
        let changing = vec![during.clone(), after.clone(), during.clone(), after];
        assert_eq!(listing(changing), None);
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
