//! herd's own stalls ([`Pool::resumed_after`]): the time herd could not act in counts against
//! no deadline that judges a worker; the deadlines herd set for stopping workers keep theirs.
use super::upgrade::{new_worker, upgrading};
use super::*;

/// herd could not act for `gap` (stopped, frozen, starved), then turns again: the driver
/// reports the stall before it reads what the workers sent meanwhile, then the pool looks.
fn stall(h: &mut Harness, gap: Duration) {
    h.now += gap;
    h.pool.resumed_after(gap);
    h.tick();
}

fn watched(workers: usize, watchdog: Duration) -> Harness {
    let mut cfg = config(workers, Readiness::Notify { timeout: 10 * SEC });
    cfg.watchdog = Some(watchdog);
    let mut h = Harness::new(cfg);
    for pid in 100..100 + workers as u32 {
        h.notify(pid, "READY=1");
    }
    h
}

#[test]
fn a_watchdog_that_expired_only_during_a_stall_is_not_failed() {
    let mut h = watched(2, 2 * SEC);
    h.advance(SEC);
    h.notify(100, "WATCHDOG=1");
    h.advance(500 * MS);
    // herd stops for 10 s; worker 100 pinged 0.5 s before, 101 1.5 s before.
    stall(&mut h, 10 * SEC);
    assert!(h.signals.is_empty(), "{:?}", h.signals);
    // The pings queued during the stall are read now: they count from the resume.
    h.notify(100, "WATCHDOG=1");
    // 101 sent nothing: its watchdog ends 0.5 s after the resume, as it would have without
    // the stall.
    h.advance(499 * MS);
    assert!(h.signals.is_empty(), "{:?}", h.signals);
    h.advance(MS);
    assert_eq!(h.signals, [(101, StopMode::Kill, Reason::Watchdog)]);
    // 100 is judged as before: silent for 2 s after its last ping, it is killed.
    h.advance(1500 * MS);
    assert_eq!(h.signals[1..], [(100, StopMode::Kill, Reason::Watchdog)]);
}

#[test]
fn a_watchdog_already_expired_before_a_stall_still_fails() {
    let mut h = watched(1, 2 * SEC);
    // The pool was last asked at 1 s; the driver saw herd stall for the last 2 s of the 4 s
    // until it looked again (the first 2 s were ordinary time): the deadline, at 2 s, passed
    // before the stall began.
    h.advance(SEC);
    h.now += 2 * SEC;
    stall(&mut h, 2 * SEC);
    assert_eq!(h.signals, [(100, StopMode::Kill, Reason::Watchdog)]);
}

#[test]
fn a_readiness_timeout_that_passed_only_during_a_stall_is_not_failed() {
    let mut h = Harness::new(config(2, Readiness::Notify { timeout: 5 * SEC }));
    h.advance(150 * MS);
    stall(&mut h, 7 * SEC);
    assert!(h.signals.is_empty(), "{:?}", h.signals);
    // READY=1, sent during the stall, is read now.
    h.notify(100, "READY=1");
    assert_eq!(h.ready, [100]);
    // The worker that never sends it fails 5 s after its start, the stall not counted.
    h.advance(4849 * MS);
    assert!(h.signals.is_empty(), "{:?}", h.signals);
    h.advance(MS);
    assert_eq!(h.signals, [(101, StopMode::Kill, Reason::NotReady)]);
}

#[test]
fn a_delay_readiness_does_not_count_a_stall_either() {
    let mut h = Harness::new(config(1, Readiness::Delay(SEC)));
    h.advance(500 * MS);
    stall(&mut h, 3 * SEC);
    assert!(h.ready.is_empty(), "herd did not see it alive for 1 s");
    h.advance(500 * MS);
    assert_eq!(h.ready, [100]);
}

#[test]
fn an_upgrade_whose_worker_got_ready_during_a_stall_finishes() {
    let mut h = Harness::new(config(2, Readiness::Notify { timeout: 5 * SEC }));
    h.notify(100, "READY=1");
    h.notify(101, "READY=1");
    let (_, actions) = h.pool.upgrade(60 * SEC, h.now).unwrap();
    h.apply(actions);
    let new = new_worker(&h, 0);
    h.advance(150 * MS);
    stall(&mut h, 7 * SEC);
    assert!(h.ended.is_empty(), "{:?}", h.ended);
    h.notify(new, "READY=1");
    h.notify(new_worker(&h, 1), "READY=1");
    assert_eq!(h.ended, [Ok(2)]);
}

#[test]
fn an_upgrade_deadline_does_not_count_a_stall() {
    let mut h = Harness::new(config(1, Readiness::Notify { timeout: 10 * SEC }));
    h.notify(100, "READY=1");
    let (_, actions) = h.pool.upgrade(5 * SEC, h.now).unwrap();
    h.apply(actions);
    h.advance(SEC);
    stall(&mut h, 20 * SEC);
    assert!(h.ended.is_empty(), "{:?}", h.ended);
    h.advance(3999 * MS);
    assert!(h.ended.is_empty(), "{:?}", h.ended);
    h.advance(MS);
    assert!(
        h.ended[0]
            .as_ref()
            .unwrap_err()
            .contains("before its deadline"),
        "{:?}",
        h.ended
    );
}

#[test]
fn a_stall_does_not_count_toward_min_ready() {
    // A new worker ready 1 s before herd stalls, under --min-ready 5s, exits during the 10 s
    // stall: herd reaps it only after the resume, and must not have taken it for available
    // meanwhile (it would have replaced an old worker with a build that crashed).
    let mut h = upgrading(1, with_min_ready(1, 5 * SEC));
    let new = new_worker(&h, 0);
    h.notify(new, "READY=1");
    h.advance(SEC);
    stall(&mut h, 10 * SEC);
    assert!(
        h.signals.is_empty(),
        "the old worker serves on: {:?}",
        h.signals
    );
    h.exit(new, code(1));
    let why = h.ended[0].as_ref().unwrap_err();
    assert!(why.contains("within --min-ready 5s"), "{why}");
    // Without an exit it is available once it has been seen ready for 5 s.
    let mut h = upgrading(1, with_min_ready(1, 5 * SEC));
    let new = new_worker(&h, 0);
    h.notify(new, "READY=1");
    h.advance(SEC);
    stall(&mut h, 10 * SEC);
    h.advance(3999 * MS);
    assert!(h.signals.is_empty());
    h.advance(MS);
    assert_eq!(h.signals, [(100, StopMode::Graceful, Reason::Replaced)]);
    assert_eq!(h.ended, [Ok(2)]);
}

#[test]
fn a_grace_period_herd_set_is_kept_through_a_stall() {
    let mut h = watched(2, 2 * SEC);
    let actions = h.pool.scale(1, h.now).unwrap();
    h.apply(actions);
    assert_eq!(h.signals, [(101, StopMode::Graceful, Reason::ScaleDown)]);
    // The stopping worker had its grace period (5 s) during the stall: killed on the resume.
    // The serving one, silent only while herd could not listen, is not.
    h.advance(SEC);
    stall(&mut h, 10 * SEC);
    assert_eq!(
        h.signals[1..],
        [(101, StopMode::Kill, Reason::GraceExpired)]
    );
}

#[test]
fn a_stall_survives_export_and_import() {
    let mut h = watched(1, 2 * SEC);
    h.advance(SEC);
    stall(&mut h, 10 * SEC);
    let state = h.pool.export(Epoch::at(h.now)).unwrap();
    let mut cfg = config(1, Readiness::Notify { timeout: 10 * SEC });
    cfg.watchdog = Some(2 * SEC);
    let mut pool = import(cfg, state, h.now);
    assert!(pool.due(h.now + 999 * MS).is_empty());
    assert_eq!(
        pool.due(h.now + SEC),
        [Action::Stop {
            pid: 100,
            mode: StopMode::Kill,
            reason: Reason::Watchdog
        }]
    );
}
