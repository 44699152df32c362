//! A process's priority class (`GetPriorityClass`, `SetPriorityClass`), and the processes it
//! started, from the parent pids of a Toolhelp32 process snapshot: what `--starting-nice`
//! lowers a starting worker with and raises it and its descendants back with on Windows.
//!
//! Windows starts a child of an `IDLE_PRIORITY_CLASS` or `BELOW_NORMAL_PRIORITY_CLASS`
//! process in its parent's class, any other process's in `NORMAL_PRIORITY_CLASS`
//! (`CreateProcess`'s documentation). A priority class is also a `CreateProcess` creation
//! flag: a process created with one runs in it from its first instruction.

use std::collections::{HashMap, HashSet};
use std::io;
use std::mem;
use std::os::windows::io::{AsHandle, AsRawHandle, FromRawHandle, OwnedHandle};

use windows_sys::Win32::Foundation::INVALID_HANDLE_VALUE;
use windows_sys::Win32::System::Diagnostics::ToolHelp::{
    CreateToolhelp32Snapshot, Process32FirstW, Process32NextW, PROCESSENTRY32W, TH32CS_SNAPPROCESS,
};
use windows_sys::Win32::System::Threading::{
    GetPriorityClass, OpenProcess, SetPriorityClass, PROCESS_QUERY_LIMITED_INFORMATION,
    PROCESS_SET_INFORMATION,
};

use super::check;

/// `IDLE_PRIORITY_CLASS`: runs only when nothing of a higher class is ready to.
pub const IDLE: u32 = windows_sys::Win32::System::Threading::IDLE_PRIORITY_CLASS;
/// `BELOW_NORMAL_PRIORITY_CLASS`.
pub const BELOW_NORMAL: u32 = windows_sys::Win32::System::Threading::BELOW_NORMAL_PRIORITY_CLASS;
/// `NORMAL_PRIORITY_CLASS`: what a process gets unless it or its parent asks for another.
pub const NORMAL: u32 = windows_sys::Win32::System::Threading::NORMAL_PRIORITY_CLASS;

/// The priority class of `process` (`GetPriorityClass`): one of [`IDLE`], [`BELOW_NORMAL`],
/// [`NORMAL`], or a higher one (`ABOVE_NORMAL_PRIORITY_CLASS`, `HIGH_PRIORITY_CLASS`,
/// `REALTIME_PRIORITY_CLASS`).
pub fn class_of(process: &impl AsHandle) -> io::Result<u32> {
    // SAFETY: the handle is live for the call.
    let class = unsafe { GetPriorityClass(process.as_handle().as_raw_handle()) };
    if class == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(class)
}

/// Puts `process` in priority `class` (`SetPriorityClass`). The handle needs
/// `PROCESS_SET_INFORMATION`, which a `std::process::Child`'s has.
pub fn set_class(process: &impl AsHandle, class: u32) -> io::Result<()> {
    // SAFETY: the handle is live for the call; the class is an integer the call checks.
    check(unsafe { SetPriorityClass(process.as_handle().as_raw_handle(), class) })
}

/// Process `pid` and every process it started, and they started, that still runs (children
/// first listed after their parent), from one Toolhelp32 process snapshot, at most
/// [`MAX_PROCESSES`]. A process whose parent pid is one of these but that was created before it
/// is not its child (the parent's pid was reused): `started_before(child, parent)` says so, and
/// such a process and what it started are left out. Only `pid` itself when it started nothing;
/// empty when it is gone.
pub fn tree(pid: u32, started_before: impl Fn(u32, u32) -> bool) -> io::Result<Vec<u32>> {
    Ok(descendants(&parents()?, pid, started_before, MAX_PROCESSES))
}

/// [`tree`] from `parents` (each process's pid and its parent's), at most `max` long: the walk
/// stops there, so a worker that starts processes without end costs herd no more than `max`
/// looks at their start times.
fn descendants(
    parents: &[(u32, u32)],
    pid: u32,
    started_before: impl Fn(u32, u32) -> bool,
    max: usize,
) -> Vec<u32> {
    if max == 0 || !parents.iter().any(|&(p, _)| p == pid) {
        return Vec::new();
    }
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for &(child, parent) in parents {
        // The System Idle Process (0) lists itself as its parent.
        if child != parent {
            children.entry(parent).or_default().push(child);
        }
    }
    let mut tree = vec![pid];
    let mut seen = HashSet::from([pid]);
    let mut next = 0;
    while let Some(&parent) = tree.get(next) {
        next += 1;
        for &child in children.get(&parent).map_or(&[][..], Vec::as_slice) {
            if tree.len() == max {
                return tree;
            }
            if !seen.contains(&child) && !started_before(child, parent) {
                seen.insert(child);
                tree.push(child);
            }
        }
    }
    tree
}

/// The most processes one walk takes in: a worker that starts processes without end does not
/// hold herd.
const MAX_PROCESSES: usize = 4096;

/// Whether process `child` was created before process `parent`, so it is not `parent`'s child
/// even if it names `parent`'s pid as its parent (the pid was reused): [`tree`]'s rule. One
/// that is gone, or not ours to read, counts as created before: it is left out.
pub fn started_before(child: u32, parent: u32) -> bool {
    let started = |pid| open_to_set(pid).and_then(|p| super::process::start_time(&p));
    match (started(child), started(parent)) {
        (Ok(child), Ok(parent)) => child < parent,
        _ => true,
    }
}

/// Moves process `pid`, and every process it started ([`tree`]), that is still in priority
/// class `from` to class `to`; one in another class chose it and keeps it. How many it moved:
/// 0 when `pid` is gone. A process that exits meanwhile is no error; otherwise the first
/// error met (access denied), once every process has been tried.
pub fn raise_tree(pid: u32, from: u32, to: u32) -> io::Result<usize> {
    let mut raised = 0;
    let mut failed = None;
    for pid in tree(pid, started_before)? {
        let moved = open_to_set(pid).and_then(|p| match class_of(&p)? == from {
            true => set_class(&p, to).map(|()| 1),
            false => Ok(0),
        });
        match moved {
            Ok(n) => raised += n,
            // ERROR_INVALID_PARAMETER: no such process (any more).
            Err(e) if e.raw_os_error() == Some(87) => {}
            Err(e) => failed = failed.or(Some(e)),
        }
    }
    failed.map_or(Ok(raised), Err)
}

/// Every process that runs, with its parent's pid (a Toolhelp32 process snapshot).
fn parents() -> io::Result<Vec<(u32, u32)>> {
    // SAFETY: takes integers; returns a fresh handle or INVALID_HANDLE_VALUE.
    let raw = unsafe { CreateToolhelp32Snapshot(TH32CS_SNAPPROCESS, 0) };
    if raw == INVALID_HANDLE_VALUE {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh handle that nothing else owns.
    let snapshot = unsafe { OwnedHandle::from_raw_handle(raw) };
    // SAFETY: the structure is integers and a UTF-16 array, for which all-zero is valid.
    let mut entry: PROCESSENTRY32W = unsafe { mem::zeroed() };
    entry.dwSize = mem::size_of::<PROCESSENTRY32W>() as u32;
    let mut parents = Vec::new();
    // SAFETY: the snapshot is live; `entry` is ours to fill, its size set.
    let mut listed = unsafe { Process32FirstW(snapshot.as_raw_handle(), &mut entry) } != 0;
    while listed {
        parents.push((entry.th32ProcessID, entry.th32ParentProcessID));
        // SAFETY: as for Process32FirstW.
        listed = unsafe { Process32NextW(snapshot.as_raw_handle(), &mut entry) } != 0;
    }
    Ok(parents)
}

/// Process `pid`, opened to read and set its priority class and read its times
/// (`PROCESS_QUERY_LIMITED_INFORMATION | PROCESS_SET_INFORMATION`); not inheritable.
pub fn open_to_set(pid: u32) -> io::Result<OwnedHandle> {
    let rights = PROCESS_QUERY_LIMITED_INFORMATION | PROCESS_SET_INFORMATION;
    // SAFETY: OpenProcess takes integers and returns a fresh handle or null.
    let raw = unsafe { OpenProcess(rights, 0, pid) };
    if raw.is_null() {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh handle that nothing else owns.
    Ok(unsafe { OwnedHandle::from_raw_handle(raw) })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chain 1 -> 2 -> ... -> 10, and 5 with a second child 20 that predates it.
    fn chain() -> Vec<(u32, u32)> {
        let mut parents: Vec<(u32, u32)> = (2..=10).map(|pid| (pid, pid - 1)).collect();
        parents.extend([(1, 0), (0, 0), (20, 5)]);
        parents
    }

    #[test]
    fn the_walk_takes_in_what_a_process_started_and_stops_at_its_cap() {
        let predates = |child: u32, _parent: u32| child == 20;
        let all: Vec<u32> = (3..=10).collect();
        assert_eq!(descendants(&chain(), 3, predates, 100), all);
        assert_eq!(descendants(&chain(), 3, predates, 4), [3, 4, 5, 6]);
        assert_eq!(descendants(&chain(), 3, predates, 1), [3]);
        assert_eq!(descendants(&chain(), 3, predates, 0), Vec::<u32>::new());
        assert_eq!(
            descendants(&chain(), 42, predates, 100),
            Vec::<u32>::new(),
            "gone"
        );
        // The start times are looked at only until the cap is reached.
        let looked = std::cell::Cell::new(0);
        let counting = |_: u32, _: u32| {
            looked.set(looked.get() + 1);
            false
        };
        let many: Vec<(u32, u32)> = (2..10_000).map(|pid| (pid, 1)).chain([(1, 0)]).collect();
        assert_eq!(descendants(&many, 1, counting, 50).len(), 50);
        assert_eq!(looked.get(), 49);
    }
}
