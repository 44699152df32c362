//! `herd signal`: what it says when no worker takes the signal.

use crate::util::*;

/// A signal to a pool with no worker says so (exit 0, as for any pool: it reached every
/// worker there is), and one to a slot names the slots that have one, here none. Was: "sent
/// SIGWINCH to 0 worker(s)".
#[test]
fn a_signal_to_a_pool_without_workers_says_so() {
    let herd = sleepers(&["-w", "1"]);
    herd.started(1);
    let (code, _, stderr) = herd.ctl(&["scale", "0"]);
    assert_eq!(code, 0, "{stderr}");
    herd.wait_for_event("worker_exited", &[]);
    let (code, stdout, stderr) = herd.ctl(&["signal", "WINCH"]);
    assert_eq!(
        (code, stdout.trim()),
        (0, "sent SIGWINCH to no worker: none is starting or ready"),
        "{stderr}"
    );
    let (code, _, stderr) = herd.ctl(&["signal", "WINCH", "--worker", "0"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("no worker runs in slot 0; none is starting or ready in any slot"),
        "{stderr}"
    );
    let (code, _, stderr) = herd.ctl(&["stop"]);
    assert_eq!(code, 0, "{stderr}");
}
