//! Every piece of herd's runtime state survives `herd reexec`: the pool (generation, scale, a
//! crash-looping slot's backoff), autoscaling, attached processes, what exited workers left
//! behind, and the metrics counters.

use std::path::Path;

use serde_json::Value;

use crate::reexec::workers;
use crate::util::*;

/// Slot 1's workers leave a process that ignores the stop signal in their group; slot 2's
/// exit with code 3 until the file named by the last argument exists.
const WORKER: &str = r#"case "$HERD_WORKER" in
1) trap "" TERM; sleep 1000 & ;;
2) [ -e "$0" ] || exit 3 ;;
esac
exec sleep 1000"#;

/// One worker of [`WORKER`], metrics on; `healthy` is the file that ends slot 2's crashes.
fn start(healthy: &Path) -> Herd {
    let healthy = healthy.display().to_string();
    Herd::start(&[
        "run",
        "-w",
        "1",
        "--metrics",
        "127.0.0.1:0",
        "-b",
        "127.0.0.1:0",
        "--",
        "sh",
        "-c",
        WORKER,
        &healthy,
    ])
}

/// The metrics lines that count what happened (not gauges, which follow the pool), sorted.
fn counted(metrics: &str) -> Vec<String> {
    let mut lines: Vec<String> = get(metrics, "/metrics")
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("herd_") && l.contains("_total"))
        .filter(|l| !l.starts_with("herd_worker_cpu") && !l.starts_with("herd_log_lines"))
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

/// Changes every piece of herd's runtime state: generation 2 (an upgrade), a restart, 3
/// workers, autoscaling between 3 and 6 (idle: it stays at 3), an attached process, a
/// leftover process of slot 1's, slot 2 waiting out a crash-loop backoff of 3.2 s (its next
/// worker will be healthy); returns the status then and the attached process.
fn change_everything(herd: &Herd, healthy: &Path) -> (Value, std::process::Child) {
    herd.started(1);
    // Generation 2, by a rolling upgrade.
    let (code, _, stderr) = herd.ctl(&["upgrade"]);
    assert_eq!(code, 0, "{stderr}");
    // A worker that died and was restarted: the new generation's, once the old one is gone.
    let victim = wait_until("generation 2 alone", || {
        let s = herd.status();
        match s["workers"].as_array().map(Vec::as_slice) {
            Some([w]) if w["generation"] == 2 => Ok(w["pid"].as_u64().unwrap()),
            _ => Err(s),
        }
    });
    kill(victim as u32);
    herd.wait_event("the restart", |e| {
        e["event"] == "worker_started" && e["pid"] != victim && e["generation"] == 2
    });
    // Three workers, then autoscaling between 3 and 6 (idle: it stays at 3).
    let (code, _, stderr) = herd.ctl(&["scale", "3"]);
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = herd.ctl(&["scale", "3..6"]);
    assert_eq!(code, 0, "{stderr}");
    // An attached process.
    let attached = std::process::Command::new(HERD)
        .env("HERD_CONTROL", herd.control())
        .args(["attach", "--", "sleep", "1000"])
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let attached_pid = attached.id();
    herd.wait_event("the attached process", |e| {
        e["event"] == "worker_attached" && e["pid"] == attached_pid
    });
    // Slot 1's worker killed once its leftover runs: the leftover waits out the grace period.
    let slot1 = herd.wait_for_event("worker_started", &[("slot", 1.into())])["pid"]
        .as_u64()
        .unwrap() as u32;
    wait_until("slot 1's leftover", || match in_groups(&[slot1]).len() {
        2 => Ok(()),
        n => Err(format!("{n} processes in the group")),
    });
    kill(slot1);
    // Slot 2 crashed 7 times in a row (100 ms, then twice as long each time): 3.2 s to wait.
    herd.wait_for_event(
        "worker_exited",
        &[("slot", 2.into()), ("failures", 7.into())],
    );
    std::fs::write(healthy, "").unwrap();
    // Every worker of generation 2 and ready but slot 2's, no worker left stopping: the old
    // ones' exits are counted before the counts are read.
    let before = wait_until(
        "slots 0 and 1 ready in generation 2, slot 2 waiting",
        || {
            let s = herd.status();
            let workers = s["workers"].as_array().map_or(0, Vec::len);
            let all_new = s["workers"]
                .as_array()
                .is_some_and(|w| w.iter().all(|w| w["generation"] == 2));
            let waiting = s["waiting"][0]["slot"] == 2;
            let left = s["leftovers"].as_array().map_or(0, Vec::len) == 1;
            if s["ready"] == 2 && workers == 2 && all_new && waiting && left {
                Ok(s)
            } else {
                Err(s)
            }
        },
    );
    (before, attached)
}

fn kill(pid: u32) {
    // SAFETY: kill with a worker's pid.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
}

#[test]
fn every_piece_of_runtime_state_survives_a_reexec() {
    let dir = tempfile::tempdir().unwrap();
    let healthy = dir.path().join("healthy");
    let mut herd = start(&healthy);
    let metrics = metrics_address(&herd);
    let (before, mut attached) = change_everything(&herd, &healthy);
    let attached_pid = attached.id();
    let counts = counted(&metrics);

    let (code, _, stderr) = herd.ctl(&["reexec"]);
    assert_eq!(code, 0, "{stderr}");

    let after = herd.status();
    assert_eq!(workers(&after), workers(&before), "{after}");
    for field in ["generation", "desired", "ready", "pid"] {
        assert_eq!(after[field], before[field], "{field}: {after}");
    }
    assert!(
        after["uptime_ms"].as_u64() >= before["uptime_ms"].as_u64(),
        "uptime went back: {after}"
    );
    assert_eq!(
        (&after["autoscale"]["min"], &after["autoscale"]["max"]),
        (&3.into(), &6.into()),
        "{after}"
    );
    assert_eq!(after["attached"][0]["pid"], attached_pid, "{after}");
    ages_carry_on(&before, &after);
    waits_carry_on(&before, &after);
    assert_eq!(counted(&metrics), counts);
    assert!(
        counts.iter().any(|l| l == "herd_worker_restarts_total 9"),
        "a victim, slot 1's worker, slot 2's 7 crashes: {counts:?}"
    );
    assert!(
        counts
            .iter()
            .any(|l| l == "herd_upgrades_total{result=\"ok\"} 1"),
        "{counts:?}"
    );
    // Slot 2's healthy worker starts when the backoff ends.
    herd.wait_for_event(
        "worker_started",
        &[("slot", 2.into()), ("generation", 2.into())],
    );
    let (code, _, stderr) = herd.ctl(&["stop", "--fast"]);
    assert_eq!(code, 0, "{stderr}");
    herd.wait_exit();
    let _ = attached.wait();
}

/// Every worker's and the attached process's age carries on across the re-exec.
fn ages_carry_on(before: &Value, after: &Value) {
    let ages = |s: &Value, list: &str| -> Vec<(u64, u64)> {
        let entries = s[list].as_array().unwrap().iter();
        let age = |e: &Value| (e["pid"].as_u64().unwrap(), e["uptime_ms"].as_u64().unwrap());
        entries.map(age).collect()
    };
    for list in ["workers", "attached"] {
        for ((pid, was), (_, is)) in ages(before, list).into_iter().zip(ages(after, list)) {
            assert!(
                is >= was,
                "{list}: {pid} is {is} ms old, was {was} ms: {after}"
            );
        }
    }
}

/// Slot 2 still waits out its backoff, no longer than it had left; the leftover still gets
/// SIGKILL when the grace period from its worker's exit ends, not a new one.
fn waits_carry_on(before: &Value, after: &Value) {
    let (waited, waits) = (&before["waiting"][0], &after["waiting"][0]);
    assert_eq!(
        (&waits["slot"], &waits["restarts"]),
        (&2.into(), &waited["restarts"])
    );
    let left = |s: &Value, field: &str| s[field].as_u64().unwrap();
    assert!(
        left(waits, "restart_in_ms") <= left(waited, "restart_in_ms"),
        "{after}"
    );
    let (was, is) = (&before["leftovers"][0], &after["leftovers"][0]);
    assert_eq!(
        (&is["pid"], &is["slot"]),
        (&was["pid"], &1.into()),
        "{after}"
    );
    assert!(left(is, "kill_in_ms") <= left(was, "kill_in_ms"), "{after}");
}
