//! Upgrades that fail on what their new workers do once available, or for want of any:
//! a crash past `--min-ready`, a stop's grace over an aborted upgrade's workers, no worker.
use super::upgrade::{new_worker, upgrading};
use super::*;

/// A build that crashes past `--min-ready` while its upgrade goes on fails it: the upgrade
/// went on replacing old workers that served, slot by slot, down to none ready. The slot goes
/// back to the old build; the failure says which new workers serve on.
#[test]
fn a_new_worker_that_crashes_past_min_ready_aborts_the_upgrade() {
    let mut h = upgrading(3, with_min_ready(3, SEC));
    let first = new_worker(&h, 0);
    h.notify(first, "READY=1");
    h.advance(SEC);
    assert_eq!(h.signals, [(100, StopMode::Graceful, Reason::Replaced)]);
    h.exit(100, code(0));
    let second = new_worker(&h, 1);
    h.notify(second, "READY=1");
    h.advance(SEC);
    h.exit(101, code(0));
    assert!(h.ended.is_empty(), "still upgrading");
    let exit = h.exit(first, code(5));
    assert!(exit.restart_in.is_some(), "slot 0 restarts");
    let why = h.ended[0].as_ref().unwrap_err();
    assert!(
        why.contains("exited 2s after it was ready, past --min-ready 1s: exit code 5")
            && why.contains("1 of its workers had replaced old ones already and serve on"),
        "{why}"
    );
    assert!(
        !h.signals.iter().any(|s| s.0 == 102),
        "slot 2's old worker serves on"
    );
    let back: Vec<u64> = (h.live().iter())
        .filter(|w| w.0 == 0)
        .map(|w| w.2)
        .collect();
    assert_eq!(back, [1], "slot 0 runs the old build again");
}

/// Past `--min-ready`, only a crash fails the upgrade: not an exit 0 (a worker that recycles
/// itself) nor a SIGKILL herd did not send (an operator, the OOM killer).
#[test]
fn past_min_ready_an_exit_0_or_an_outside_kill_does_not_fail_the_upgrade() {
    for status in [code(0), killed()] {
        let mut h = upgrading(2, with_min_ready(2, SEC));
        let first = new_worker(&h, 0);
        h.notify(first, "READY=1");
        h.advance(SEC);
        h.exit(100, code(0));
        h.exit(first, status.clone());
        assert!(h.ended.is_empty(), "{status:?}: {:?}", h.ended);
    }
}

/// `herd stop --grace 1s` during an upgrade: its new workers, stopped as the upgrade is
/// aborted with their own grace, have 1 s too.
#[test]
fn a_stops_grace_holds_for_an_aborted_upgrades_workers() {
    let mut h = upgrading(2, with_min_ready(2, SEC));
    let new = new_worker(&h, 0);
    let stop = h.pool.stop(true, Some(SEC), h.now);
    h.apply(stop);
    h.advance(SEC);
    assert!(
        h.signals
            .contains(&(new, StopMode::Kill, Reason::GraceExpired)),
        "{:?}",
        h.signals
    );
}

/// An upgrade left with no slot (`herd scale 0` meanwhile, or before) proved nothing: it
/// fails, and a later scale-up runs the old build.
#[test]
fn an_upgrade_with_no_worker_to_prove_it_fails() {
    let mut h = upgrading(2, with_min_ready(2, SEC));
    let scaled = h.pool.scale(0, h.now).unwrap();
    h.apply(scaled);
    let why = h.ended[0].as_ref().unwrap_err();
    assert!(
        why.starts_with("no worker runs (herd scale 0) to prove generation 2"),
        "{why}"
    );
    assert_eq!(h.pool.generation(), 1);
    h.stopped_workers_exit();
    let (_, actions) = h.pool.upgrade(60 * SEC, h.now).unwrap();
    h.apply(actions);
    assert!(h.ended[1].is_err(), "at 0 workers too");
    let scaled = h.pool.scale(1, h.now).unwrap();
    h.apply(scaled);
    assert_eq!(h.live().iter().map(|w| w.2).collect::<Vec<_>>(), [1]);
}
