//! herd as a container's PID 1, in a PID namespace of its own (`unshare --pid --fork
//! --kill-child --mount-proc`, which needs root): it reaps the orphans of the whole namespace,
//! takes the runtime's SIGTERM as a graceful stop (a request in flight finishes), even one sent
//! before its handlers are in place, exits 0, and leaves nothing behind.

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

/// Starts `herd --log-format json ARGS` as PID 1 of a new PID namespace (`unshare`, which
/// herd is the only child of). A test that fails mid-way drops its guard, which kills
/// unshare, and herd with it (`--kill-child`).
fn as_pid_1(args: &[&str]) -> Herd {
    Herd::start_with(|_| {
        let mut cmd = Command::new("unshare");
        cmd.args(["--pid", "--fork", "--kill-child", "--mount-proc", HERD])
            .args(["--log-format", "json"])
            .args(args);
        cmd
    })
}

#[test]
fn herd_as_pid_1_reaps_every_orphan_and_drains_on_sigterm() {
    if !root_or_skip("a PID namespace (unshare --pid) needs root") {
        return;
    }
    let pid1_py = worker("pid1.py");
    let mut herd = as_pid_1(&[
        "run",
        "-w",
        "1",
        "--ready",
        "notify",
        "--grace",
        "20s",
        "--drain-delay",
        "1s",
        "-b",
        "web=127.0.0.1:0",
        "--",
        "python3",
        &pid1_py,
    ]);
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

/// Whether SIGTERM is in `pid`'s blocked mask and in its caught one, read at once from
/// `/proc/PID/status`; `None` once the process is gone.
fn sigterm_held_and_caught(pid: u32) -> Option<(bool, bool)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let has = |field: &str| -> Option<bool> {
        let mask = status.lines().find_map(|l| l.strip_prefix(field))?;
        let mask = u64::from_str_radix(mask.trim(), 16).ok()?;
        Some(mask & (1 << (libc::SIGTERM - 1)) != 0)
    };
    Some((has("SigBlk:")?, has("SigCgt:")?))
}

/// A SIGTERM that reaches herd as PID 1 before its handlers are in place is held, not lost:
/// herd stops as soon as it listens, and exits 0. The test sends it while herd holds it back;
/// a start too quick to catch there is tried again, a few times.
#[test]
fn a_sigterm_before_herd_as_pid_1_listens_stops_it() {
    if !root_or_skip("a PID namespace (unshare --pid) needs root") {
        return;
    }
    for _ in 0..5 {
        if sigterm_while_held() {
            return;
        }
    }
    panic!("herd handled SIGTERM each time, and never held it back before");
}

/// Starts herd as PID 1 and sends SIGTERM while herd holds it back: herd exits 0. False
/// when herd handled SIGTERM before the test saw it held (it is then stopped).
fn sigterm_while_held() -> bool {
    let mut herd = as_pid_1(&[
        "run",
        "-w",
        "1",
        "--grace",
        "5s",
        "-b",
        "127.0.0.1:0",
        "--",
        "sleep",
        "600",
    ]);
    let children = format!("/proc/{0}/task/{0}/children", herd.pid());
    let deadline = std::time::Instant::now() + TIMEOUT;
    // herd's first instructions hold SIGTERM back until its handlers are in place (without
    // them, it is never blocked before herd handles it).
    let pid1 = loop {
        assert!(std::time::Instant::now() < deadline, "herd never started");
        let child = std::fs::read_to_string(&children).unwrap_or_default();
        let Some(pid) = child.split_whitespace().next().and_then(|p| p.parse().ok()) else {
            continue;
        };
        let herd_image = std::fs::read_link(format!("/proc/{pid}/exe"))
            .is_ok_and(|exe| exe == std::path::Path::new(HERD));
        match sigterm_held_and_caught(pid) {
            Some((true, _)) if herd_image => break pid,
            Some((false, true)) if herd_image => {
                // Too late: herd handles SIGTERM already. Killing the namespace's PID 1 ends
                // the namespace and then unshare.
                // SAFETY: kill with the pid of herd, our grandchild, not reaped meanwhile.
                assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
                herd.wait_exit();
                return false;
            }
            _ => {}
        }
    };
    // SAFETY: kill with the pid of herd, our grandchild, which cannot be reaped meanwhile.
    assert_eq!(unsafe { libc::kill(pid1 as i32, libc::SIGTERM) }, 0);
    let status = herd.wait_exit();
    assert_eq!(status.code(), Some(0), "herd's exit, through unshare");
    herd.wait_for_event("stopped", &[]);
    true
}

/// `herd attach` from outside herd's PID namespace (the host, with herd as a container's PID
/// 1): herd has no pid for the peer (`SO_PEERCRED` says 0), so it cannot hold or stop it. It
/// is refused in one line that says so, not "the attaching process has exited" (`internal`),
/// and herd lists nothing attached.
#[test]
fn an_attach_from_outside_herds_pid_namespace_is_refused_saying_so() {
    if !root_or_skip("a PID namespace (unshare --pid) needs root") {
        return;
    }
    let mut herd = as_pid_1(&["run", "-w", "1", "-b", "127.0.0.1:0", "--", "sleep", "600"]);
    herd.started(1);
    let (code, stdout, stderr) = herd.ctl(&["attach", "--", "true"]);
    assert_eq!((code, stdout.as_str()), (1, ""), "{stderr}");
    assert!(
        stderr.contains("(unavailable): herd cannot attach a process outside its PID namespace")
            && stderr.trim_end().lines().count() == 1,
        "{stderr}"
    );
    assert_eq!(herd.status()["attached"], serde_json::json!([]));
    // herd's status, seen from here: its pids are its namespace's, and the table says so
    // (killing one from here would hit another process).
    let pid1 = children(herd.pid())[0].0;
    let (code, stdout, stderr) = herd.ctl(&["status"]);
    assert!(code == 0 || code == 3, "{stderr}"); // 3: its worker may not be ready yet
    let seen = format!("pid 1 ({pid1} here: the pids below are in its PID namespace), up ");
    assert!(stdout.lines().next().unwrap().contains(&seen), "{stdout}");
    // Stopped here, as a user would (the guard's drop kills unshare, and herd with it).
    let (code, _, stderr) = herd.ctl(&["stop"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(herd.wait_exit().code(), Some(0));
}
