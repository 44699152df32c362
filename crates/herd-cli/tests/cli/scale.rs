//! Scaling while the starts of an earlier scale still wait for their turn.

use crate::util::*;

/// The worker processes of `herd` (its live children).
fn live_children(herd: &Herd) -> usize {
    children(herd.pid())
        .iter()
        .filter(|(_, state)| *state != 'Z')
        .count()
}

#[test]
fn a_scale_down_cancels_the_starts_an_earlier_scale_up_queued() {
    let herd = sleeper_on_http();
    // herd starts a few workers a turn: most of the 200 still wait when the scale-down comes.
    let (code, _, stderr) = herd.ctl(&["scale", "200"]);
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = herd.ctl(&["scale", "2"]);
    assert_eq!(code, 0, "{stderr}");
    wait_status(&herd, "2 workers", |s| settled(s, 2));
    // Before, the queued starts ran all the same: their workers served for good, unlisted
    // in the pool's count and kept through upgrades.
    wait_until("only the 2 workers to run", || match live_children(&herd) {
        2 => Ok(()),
        n => Err(format!("{n} children")),
    });
    let (code, _, stderr) = herd.ctl(&["upgrade"]);
    assert_eq!(code, 0, "{stderr}");
    let status = wait_status(&herd, "2 workers of generation 2", |s| {
        settled(s, 2) && s["generation"] == 2
    });
    assert_eq!(worker_pids(&status).len(), 2, "{status:#}");
    wait_until("only the 2 new workers to run", || {
        match live_children(&herd) {
            2 => Ok(()),
            n => Err(format!("{n} children")),
        }
    });
}
