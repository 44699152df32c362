//! What `/proc` says of a process: its state, children, groups, fds, environment, limits.

use std::collections::BTreeSet;

use super::*;

/// The open-file limit of process `pid`, `SOFT:HARD` as `/proc/PID/limits` shows it.
pub fn nofile_limit(pid: u32) -> String {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let numbers: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
    numbers.join(":")
}

/// The processes whose parent is `parent`, with their states (`/proc/*/stat`).
pub fn children(parent: u32) -> Vec<(u32, char)> {
    proc_stats()
        .filter(|(_, fields)| fields.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(parent))
        .map(|(pid, fields)| (pid, fields[0].chars().next().unwrap_or('?')))
        .collect()
}

/// The live (not zombie) processes whose process group is one of `groups` (`/proc/*/stat`).
pub fn in_groups(groups: &[u32]) -> Vec<u32> {
    proc_stats()
        .filter(|(_, fields)| {
            let pgrp = fields.get(2).and_then(|p| p.parse::<u32>().ok());
            fields[0] != "Z" && pgrp.is_some_and(|g| groups.contains(&g))
        })
        .map(|(pid, _)| pid)
        .collect()
}

/// Every process in `/proc`, with the fields of its `stat` after the command name (the first
/// is the state, field 3 of proc(5)).
fn proc_stats() -> impl Iterator<Item = (u32, Vec<String>)> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_string_lossy().parse::<u32>().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (_, rest) = stat.rsplit_once(')')?;
            let fields: Vec<String> = rest.split_whitespace().map(String::from).collect();
            (!fields.is_empty()).then_some((pid, fields))
        })
}

/// The state of process `pid` (`R`, `S`, `T`, `Z`, ..., field 3 of proc(5)), `None` if there
/// is no such process.
pub fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
    Some(state.and_then(|s| s.chars().next()).unwrap_or('?'))
}

/// Whether `pid` is a live (not zombie) process.
pub fn alive(pid: u32) -> bool {
    !matches!(proc_state(pid), None | Some('Z') | Some('X'))
}

/// Waits until none of `pids` is alive.
pub fn wait_gone(pids: &[u32]) {
    wait_until("processes to exit", || {
        let live: Vec<u32> = pids.iter().copied().filter(|&p| alive(p)).collect();
        if live.is_empty() {
            Ok(())
        } else {
            Err(format!("still alive: {live:?}"))
        }
    });
}

/// The set of fd numbers open in `pid`.
pub fn open_fds(pid: u32) -> BTreeSet<i32> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_str().unwrap().parse().unwrap())
        .collect()
}

/// The lowest fd number `pid` has free, the least of a few looks 20 ms apart: a file herd has
/// open for a moment (its sampler reads /proc) is not one it holds.
pub fn lowest_free_fd(pid: u32) -> i32 {
    let lowest_free = || {
        let open = open_fds(pid);
        (0..).find(|fd| !open.contains(fd)).unwrap()
    };
    (0..5)
        .map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(20));
            lowest_free()
        })
        .min()
        .unwrap()
}

/// The `flags:` field (octal) of `/proc/PID/fdinfo/FD`.
pub fn fd_flags(pid: u32, fd: i32) -> u32 {
    let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).unwrap();
    let flags = info
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .unwrap()
        .trim();
    u32::from_str_radix(flags, 8).unwrap()
}

/// The environment of `pid`, as `KEY=VALUE` strings.
pub fn environ(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/environ"))
        .unwrap()
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// The value of `name` in the environment of `pid`, if set.
pub fn env_var(pid: u32, name: &str) -> Option<String> {
    let prefix = format!("{name}=");
    environ(pid)
        .into_iter()
        .find_map(|v| v.strip_prefix(&prefix).map(str::to_string))
}

/// A field of `/proc/PID/status` (`SigBlk`, `SigIgn`, ...).
pub fn status_field(pid: u32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap()
        .trim()
        .to_string()
}

/// Sends `signal` to process `pid`, which must exist.
pub fn kill(pid: u32, signal: i32) {
    // SAFETY: kill with a valid signal number, to a process this test started (herd, one of
    // its workers or fork servers, which live until herd is dropped).
    assert_eq!(unsafe { libc::kill(pid as i32, signal) }, 0, "kill {pid}");
}
