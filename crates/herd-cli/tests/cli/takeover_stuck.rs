//! Takeover from an old herd that cannot answer: one that hangs on the stop, one stopped
//! (SIGSTOP) before or while the new herd takes over.

use crate::takeover::takeover;
use crate::util::*;

#[test]
fn a_takeover_whose_old_herd_never_answers_the_stop_serves_on() {
    let dir = tempfile::tempdir().unwrap();
    let control = dir.path().join("old.sock");
    let old = FakeHerd::start("--silent-stop", &control);
    let control = control.to_str().unwrap();
    let mut new = takeover(
        control,
        &[
            "-w",
            "1",
            "--ready",
            "notify",
            "--",
            "python3",
            &example("hello.py"),
        ],
    );
    new.wait_for_event("takeover_complete", &[]);
    // The fake's grace is 0: the bound is the margin alone.
    let silent = new.wait_for_event("old_herd_silent", &[]);
    assert_eq!(silent["waited"], "5s", "{silent}");
    assert_eq!(silent["level"], "WARN", "{silent}");
    // This herd serves on, at the old herd's control socket and on the socket it took.
    let status = status_at(control);
    assert_eq!(status["pid"], new.pid());
    let worker = worker_pids(&status)[0];
    let answer = get(&old.serves, "/").unwrap();
    assert!(answer.contains(&format!("pid {worker}")), "{answer}");
    new.signal(libc::SIGTERM);
    assert_eq!(new.wait_exit().code(), Some(0));
}
