//! `herd logs` when the system refuses herd what it needs to answer.

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
    let herd = herd_under_nproc(
        LOGS_UID,
        6,
        &[
            "-w",
            "8",
            "--worker-output",
            "prefix",
            "-b",
            "127.0.0.1:0",
            "--",
            "sleep",
            "1000",
        ],
    );
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
