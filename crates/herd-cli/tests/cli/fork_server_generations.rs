//! `--fork-server` across generations: an older generation's fork server, started for a
//! restart during an upgrade, is closed once the upgrade has ended (docs/fork-server.md).

use std::path::Path;

use crate::fork_server::{fork_server_pid, forked_with_preload, kill_9};
use crate::util::*;

/// A restart of generation 1 held for its fork server (paused while it loads) when an upgrade
/// begins: generation 2's fork server, once ready, kills it, and the restart starts another
/// generation-1 fork server, which says READY=1 after generation 2's. Once the upgrade has
/// ended, none of generation 1's workers starts again: that fork server exits.
#[test]
fn an_older_generations_fork_server_started_during_an_upgrade_goes_when_it_ends() {
    let source =
        "import os, time\nwhile os.path.exists(os.environ['FLAG']):\n    time.sleep(0.01)\n";
    let (herd, hold, _dir) = forked_with_preload(source, &["--min-ready", "1s"]);
    let first = fork_server_pid(&herd.wait_for_event("fork_server_ready", &[]));
    std::fs::write(&hold, "").unwrap();
    kill_9(first);
    herd.wait_for_event("fork_server_exited", &[("pid", first.into())]);
    kill_9(worker_pids(&herd.status())[1]);
    let held = herd.wait_events("a second generation-1 fork server", 2, |e| {
        is_event(e, "fork_server_started", &[("generation", 1.into())])
    });
    let paused = fork_server_pid(&held[1]);
    kill(paused, libc::SIGSTOP);
    std::fs::remove_file(&hold).unwrap();
    let (code, stdout, stderr) = herd.ctl(&["upgrade", "--timeout", "60s"]);
    assert_eq!(code, 0, "{stdout}{stderr}{}", last_lines(&herd.lines()));
    let restarted = herd.wait_events("a third generation-1 fork server", 3, |e| {
        is_event(e, "fork_server_started", &[("generation", 1.into())])
    });
    let late = fork_server_pid(&restarted[2]);
    wait_until("the late generation-1 fork server to be gone", || {
        let gone = !Path::new(&format!("/proc/{late}")).exists();
        gone.then_some(())
            .ok_or_else(|| herd.status()["fork_servers"].clone())
    });
    let status = wait_status(&herd, "generation 2 alone", |s| settled(s, 2));
    assert_eq!(
        status["fork_servers"].as_array().map(Vec::len),
        Some(1),
        "{status}"
    );
}
