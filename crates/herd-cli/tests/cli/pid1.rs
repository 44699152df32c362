//! herd as a container's PID 1, in a PID namespace of its own (`unshare --pid --fork
//! --mount-proc`, which needs root): it reaps the orphans of the whole namespace, takes the
//! runtime's SIGTERM as a graceful stop (a request in flight finishes), exits 0, and leaves
//! nothing behind.

use std::process::Command;

use crate::util::*;

/// A process of the namespace, seen from the test's: its pid here and there, and its state.
#[derive(Debug)]
struct Inside {
    pid: u32,
    ns_pid: u32,
    state: char,
}

/// The processes in the PID namespace `ns` (a `/proc/PID/ns/pid` link's target).
fn processes_in(ns: &str) -> Vec<Inside> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let link = std::fs::read_link(format!("/proc/{pid}/ns/pid"));
        if link.map(|l| l.display().to_string()).ok().as_deref() != Some(ns) {
            continue;
        }
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let ns_pid = status
            .lines()
            .find_map(|l| l.strip_prefix("NSpid:"))
            .and_then(|l| l.split_whitespace().last()?.parse().ok());
        if let (Some(ns_pid), Some(state)) = (ns_pid, proc_state(pid)) {
            found.push(Inside { pid, ns_pid, state });
        }
    }
    found
}

#[test]
fn herd_as_pid_1_reaps_every_orphan_and_drains_on_sigterm() {
    if !root_or_skip("a PID namespace (unshare --pid) needs root") {
        return;
    }
    let mut herd = Herd::start_with(|_| {
        let mut cmd = Command::new("unshare");
        cmd.args([
            "--pid",
            "--fork",
            "--mount-proc",
            HERD,
            "--log-format",
            "json",
        ])
        .args(["run", "-w", "1", "--ready", "notify", "--grace", "20s"])
        .args(["-b", "web=127.0.0.1:0", "--", "python3", &worker("pid1.py")]);
        cmd
    });
    let addr = herd.address("web");
    herd.started(1);
    // herd, as the namespace's init: unshare's only child.
    let pid1 = wait_until("herd under unshare", || match &children(herd.pid())[..] {
        [(pid, _)] => Some(*pid),
        _ => None,
    });
    let ns = std::fs::read_link(format!("/proc/{pid1}/ns/pid"))
        .unwrap()
        .display()
        .to_string();
    let inside = processes_in(&ns);
    assert!(
        inside.iter().any(|p| p.pid == pid1 && p.ns_pid == 1),
        "{inside:?}"
    );

    // Orphans that exit at once: herd reaps them all, no zombie stays in the namespace.
    let orphans: Vec<u32> = get(&addr, "/orphans")
        .unwrap()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(orphans.len(), 3);
    wait_until("the orphans to be reaped", || {
        let inside = processes_in(&ns);
        let left: Vec<&Inside> = inside
            .iter()
            .filter(|p| p.state == 'Z' || orphans.contains(&p.ns_pid))
            .collect();
        left.is_empty().then_some(()).ok_or(format!("{left:?}"))
    });

    // A daemon a worker left running, and a request in flight, as the runtime stops herd.
    let daemon: u32 = get(&addr, "/daemon").unwrap().parse().unwrap();
    let slow = {
        let addr = addr.clone();
        std::thread::spawn(move || get(&addr, "/slow"))
    };
    herd.wait_text("slow started");
    // SAFETY: kill with the pid of herd, our grandchild, which cannot be reaped meanwhile.
    assert_eq!(unsafe { libc::kill(pid1 as i32, libc::SIGTERM) }, 0);
    assert_eq!(slow.join().unwrap().unwrap(), "slow done");
    let status = herd.wait_exit();
    assert_eq!(status.code(), Some(0), "herd's exit, through unshare");
    herd.wait_for_event("orphan_signalled", &[]);
    assert!(
        herd.lines()
            .iter()
            .all(|l| !format!("{l:?}").contains("orphan_stuck")),
        "the daemon ({daemon}) stopped with herd"
    );
    let left = processes_in(&ns);
    assert!(left.is_empty(), "left in the namespace: {left:?}");
}
