//! `herd logs` when the system refuses herd what it needs to answer.

use std::os::unix::process::CommandExt;

use crate::util::*;

/// Where no thread can start (its user's process limit is reached), `herd logs` is told so in
/// one line (its reader thread was once a tokio blocking task, whose spawn panicked then), and
/// herd goes on answering.
#[test]
fn herd_logs_says_when_no_thread_can_start() {
    if !root_or_skip("needs root to run herd as another user with RLIMIT_NPROC") {
        return;
    }
    // A uid no other test runs processes as (see fork_failures_are_retried_without_spinning).
    const LOGS_UID: u32 = 64_997;
    const UID: &str = "64997";
    let running = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read_to_string(e.path().join("status")).is_ok_and(|s| {
                s.lines()
                    .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some(UID))
            })
        })
        .count();
    let limit = (running + 6).to_string();
    let herd = Herd::start_with(|dir| {
        std::os::unix::fs::chown(dir, Some(LOGS_UID), Some(LOGS_UID)).unwrap();
        let mut cmd = std::process::Command::new("prlimit");
        cmd.arg(format!("--nproc={limit}:{limit}"))
            .arg(HERD)
            .args([
                "--log-format",
                "json",
                "run",
                "-w",
                "8",
                "--worker-output",
                "prefix",
                "-b",
                "127.0.0.1:0",
                "--",
                "sleep",
                "1000",
            ])
            .uid(LOGS_UID)
            .gid(LOGS_UID);
        cmd
    });
    // Workers fill the limit: forks fail from now on, and so does any new thread.
    herd.wait_for_events("worker_start_failed", 2, &[]);
    let (code, stdout, stderr) = herd.ctl(&["--control-owner", UID, "logs"]);
    assert_ne!(code, 0, "herd logs answered: {stdout}");
    assert!(
        stderr.contains("cannot start a thread") && stderr.contains("ulimit -u"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    let (code, _, stderr) = herd.ctl(&["--control-owner", UID, "status", "--json"]);
    assert_eq!(code, 0, "herd status failed: {stderr}");
    assert!(
        !herd
            .lines()
            .iter()
            .any(|l| matches!(l, Line::Text(t) if t.contains("panicked"))),
        "herd panicked{}",
        last_lines(&herd.lines())
    );
}
