//! Paused workers (`SIGSTOP`, a debugger): they serve nothing, so they replace no older worker.
use super::upgrade::{new_worker, upgrading};
use super::*;

/// A paused successor (`kill -STOP`, a debugger) serves nothing: it replaces no old worker
/// until it runs again, and an upgrade whose successors stay paused times out with the old
/// workers serving (it stopped them, leaving nothing that served).
#[test]
fn a_paused_successor_replaces_no_old_worker_until_it_runs_again() {
    let mut h = upgrading(1, with_min_ready(1, SEC));
    let new = new_worker(&h, 0);
    h.notify(new, "READY=1");
    h.pool.set_paused(new, true, h.now);
    h.advance(5 * SEC);
    assert!(h.signals.is_empty(), "{:?}", h.signals);
    // Nothing to wait for while it is paused: a deadline already past had herd spin.
    assert!(
        h.pool.next_deadline().map_or(true, |at| at > h.now),
        "a deadline passed"
    );
    // Running again, it proves itself afresh: time stopped is no time served.
    h.pool.set_paused(new, false, h.now);
    h.tick();
    assert!(h.signals.is_empty(), "{:?}", h.signals);
    h.advance(999 * MS);
    assert!(h.signals.is_empty(), "{:?}", h.signals);
    h.advance(MS);
    assert_eq!(h.signals, [(100, StopMode::Graceful, Reason::Replaced)]);
    assert_eq!(h.ended, [Ok(2)]);

    let mut h = upgrading(1, with_min_ready(1, SEC));
    let new = new_worker(&h, 0);
    h.notify(new, "READY=1");
    h.advance(500 * MS);
    h.pool.set_paused(new, true, h.now);
    h.advance(60 * SEC);
    let why = h.ended[0].as_ref().unwrap_err();
    assert!(
        why.ends_with(&format!(
            "; new worker {new} is paused (kill -CONT resumes it)"
        )),
        "{why}"
    );
    assert!(h.signals.iter().all(|s| s.0 != 100), "{:?}", h.signals);
}

/// A paused successor serves nothing: the recycled worker serves on until it runs again. A
/// paused worker may still be recycled itself (it was available).
#[test]
fn a_recycled_worker_serves_on_while_its_successor_is_paused() {
    let mut h = super::recycle::ready_pool(2, 1);
    recycle(&mut h, 100).unwrap();
    h.pool.set_paused(102, true, h.now);
    h.notify(102, "READY=1");
    assert!(h.signals.is_empty(), "{:?}", h.signals);
    h.pool.set_paused(102, false, h.now);
    h.tick();
    assert_eq!(
        h.signals,
        [(
            100,
            StopMode::Graceful,
            Reason::Recycled(RecycleCause::Memory)
        )]
    );
    h.exit(100, code(0));
    h.pool.set_paused(101, true, h.now);
    assert_eq!(recycle(&mut h, 101), Ok(()));
}

/// A worker paused while it starts is not ready by its delay (`--ready delay=...`), which
/// counts only time it runs: after it runs again, the delay, then `min_ready`.
#[test]
fn a_paused_worker_is_not_ready_by_its_delay_until_it_has_run_for_it() {
    let mut h = Harness::new(PoolConfig {
        min_ready: SEC,
        ..config(1, Readiness::Delay(SEC))
    });
    h.advance(500 * MS);
    h.pool.set_paused(100, true, h.now);
    h.advance(5 * SEC);
    assert!(!h.pool.all_ready(), "ready by its delay while paused");
    assert!(
        h.pool.next_deadline().map_or(true, |at| at > h.now),
        "a deadline passed"
    );
    h.pool.set_paused(100, false, h.now);
    h.tick();
    h.advance(999 * MS);
    assert!(
        !h.pool.all_ready(),
        "ready within its delay of running again"
    );
    h.advance(MS);
    assert!(h.pool.all_ready() && !h.pool.all_available());
    h.advance(SEC);
    assert!(h.pool.all_available());
}

/// A ready worker paused, then running again, is available only `min_ready` later: stopped,
/// it served nothing.
#[test]
fn a_ready_worker_paused_is_available_min_ready_after_it_runs_again() {
    let mut h = Harness::new(with_min_ready(1, SEC));
    h.notify(100, "READY=1");
    h.advance(SEC);
    assert!(h.pool.all_available());
    h.pool.set_paused(100, true, h.now);
    assert!(!h.pool.all_available());
    h.advance(5 * SEC);
    h.pool.set_paused(100, false, h.now);
    h.tick();
    h.advance(999 * MS);
    assert!(
        !h.pool.all_available(),
        "available within min_ready of running again"
    );
    h.advance(MS);
    assert!(h.pool.all_available());
}
