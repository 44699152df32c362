//! Rolling upgrades and `--min-ready`.
use super::*;

#[test]
fn rolling_upgrade_replaces_each_slot_after_its_successor_is_ready() {
    let mut h = Harness::new(config(2, Readiness::Notify { timeout: 10 * SEC }));
    h.notify(100, "READY=1");
    h.notify(101, "READY=1");
    let (generation, actions) = h.pool.upgrade(60 * SEC, h.now).unwrap();
    assert_eq!(generation, 2);
    h.apply(actions);
    // One surge worker for slot 0; nobody is stopped yet.
    assert_eq!(h.live().len(), 3);
    assert!(h.signals.is_empty());
    assert!(
        h.pool.upgrade(60 * SEC, h.now).is_err(),
        "one upgrade at a time"
    );

    h.notify(102, "READY=1");
    assert_eq!(h.signals, [(100, StopMode::Graceful, Reason::Replaced)]);
    assert_eq!(
        h.pid_in(1),
        101,
        "slot 1's old worker serves until its successor is ready"
    );
    let new_in_1 = h
        .pool
        .workers()
        .iter()
        .find(|w| w.slot == 1 && w.generation == 2)
        .unwrap()
        .pid;
    h.notify(new_in_1, "READY=1");
    assert_eq!(
        h.signals.last(),
        Some(&(101, StopMode::Graceful, Reason::Replaced))
    );
    assert_eq!(h.ended, [Ok(2)]);
    assert_eq!(h.pool.generation(), 2);
    let exit = h.exit(100, code(0));
    assert_eq!(
        (exit.stopped_for, exit.restart_in),
        (Some(Reason::Replaced), None)
    );
}

#[test]
fn an_upgrade_whose_worker_exits_aborts_and_keeps_the_old_ones() {
    let mut h = Harness::new(config(2, Readiness::Notify { timeout: 10 * SEC }));
    h.notify(100, "READY=1");
    h.notify(101, "READY=1");
    let (_, actions) = h.pool.upgrade(60 * SEC, h.now).unwrap();
    h.apply(actions);
    let exit = h.exit(102, code(3));
    assert_eq!(exit.restart_in, None, "the old worker still holds slot 0");
    assert_eq!(h.ended.len(), 1);
    let why = h.ended[0].as_ref().unwrap_err();
    assert!(
        why.contains("exited before it was ready: exit code 3"),
        "{why}"
    );
    let live: Vec<u32> = h.live().iter().map(|w| w.1).collect();
    assert_eq!(live, [100, 101]);
    assert_eq!(h.pool.generation(), 1);
    assert!(h.pool.upgrade_in_progress().is_none());
    // A later upgrade may try again.
    assert_eq!(h.pool.upgrade(60 * SEC, h.now).unwrap().0, 3);
}

#[test]
fn an_upgrade_whose_worker_is_never_ready_aborts() {
    let mut h = Harness::new(config(1, Readiness::Notify { timeout: 10 * SEC }));
    h.notify(100, "READY=1");
    let (_, actions) = h.pool.upgrade(60 * SEC, h.now).unwrap();
    h.apply(actions);
    h.advance(10 * SEC);
    assert!(h.ended[0]
        .as_ref()
        .unwrap_err()
        .contains("did not send READY=1"));
    assert_eq!(
        h.signals,
        [(101, StopMode::Graceful, Reason::UpgradeAborted)]
    );
    assert_eq!(h.live().iter().map(|w| w.1).collect::<Vec<_>>(), [100]);
}

#[test]
fn an_upgrade_whose_worker_cannot_start_aborts() {
    let mut pool = Pool::new(config(1, Readiness::Delay(SEC)));
    let t0 = Instant::now();
    pool.due(t0);
    assert!(pool.spawned(0, 1, 100, t0));
    pool.due(t0 + SEC);
    let (_, actions) = pool.upgrade(60 * SEC, t0 + SEC).unwrap();
    assert_eq!(
        actions,
        [Action::Spawn {
            slot: 0,
            generation: 2
        }]
    );
    let (_, actions) = pool.spawn_failed(0, "no such file", t0 + SEC);
    assert!(
        matches!(&actions[..], [Action::UpgradeEnded(Err(why))] if why.contains("no such file"))
    );
}

#[test]
fn stopping_during_an_upgrade_ends_it() {
    let mut h = Harness::new(config(1, Readiness::Delay(SEC)));
    h.advance(SEC);
    let (_, actions) = h.pool.upgrade(60 * SEC, h.now).unwrap();
    h.apply(actions);
    let actions = h.pool.stop(true, None, h.now);
    h.apply(actions);
    assert_eq!(h.ended, [Err("herd is stopping".to_string())]);
    assert!(h.pool.scale(3, h.now).is_err());
    assert!(h.pool.upgrade(SEC, h.now).is_err());
}

/// A harness whose workers (pids 100..) are all ready and available, then an upgrade started.
pub(super) fn upgrading(workers: usize, cfg: PoolConfig) -> Harness {
    let mut h = Harness::new(cfg);
    for pid in 100..100 + workers as u32 {
        h.notify(pid, "READY=1");
    }
    h.advance(h.pool.config().min_ready);
    assert!(h.pool.all_available());
    let (_, actions) = h.pool.upgrade(60 * SEC, h.now).unwrap();
    h.apply(actions);
    h
}

pub(super) fn new_worker(h: &Harness, slot: usize) -> u32 {
    h.pool
        .workers()
        .iter()
        .find(|w| w.slot == slot && w.generation == 2 && w.live())
        .unwrap()
        .pid
}

#[test]
fn an_old_worker_stops_only_once_its_successor_stayed_ready_for_min_ready() {
    let mut h = upgrading(1, with_min_ready(1, SEC));
    let new = new_worker(&h, 0);
    h.notify(new, "READY=1");
    assert!(h.signals.is_empty(), "ready is not enough");
    assert_eq!(h.pool.next_deadline(), Some(h.now + SEC));
    h.advance(999 * MS);
    assert!(h.signals.is_empty());
    h.advance(MS);
    assert_eq!(h.signals, [(100, StopMode::Graceful, Reason::Replaced)]);
    assert_eq!(h.ended, [Ok(2)]);
}

#[test]
fn a_new_worker_that_dies_within_min_ready_aborts_the_upgrade() {
    let mut h = upgrading(2, with_min_ready(2, SEC));
    let new = new_worker(&h, 0);
    h.notify(new, "READY=1");
    h.advance(300 * MS);
    let exit = h.exit(new, code(1));
    assert_eq!(exit.restart_in, None, "the old worker still holds slot 0");
    let why = h.ended[0].as_ref().unwrap_err();
    assert!(
        why.contains("exited 300ms after it was ready, within --min-ready 1s: exit code 1"),
        "{why}"
    );
    assert!(
        h.signals.iter().all(|s| s.0 != 100 && s.0 != 101),
        "no old worker was stopped: {:?}",
        h.signals
    );
    h.stopped_workers_exit();
    h.advance(10 * SEC);
    let live: Vec<(u32, u64)> = h.live().iter().map(|w| (w.1, w.2)).collect();
    assert_eq!(live, [(100, 1), (101, 1)], "the old workers keep serving");
    assert_eq!(h.pool.generation(), 1);
}

#[test]
fn an_aborted_upgrade_stops_its_ready_but_unavailable_workers() {
    let mut cfg = with_min_ready(2, SEC);
    cfg.max_surge = MaxSurge::Workers(2);
    cfg.max_starting = 2;
    let mut h = upgrading(2, cfg);
    let (a, b) = (new_worker(&h, 0), new_worker(&h, 1));
    h.notify(a, "READY=1");
    h.notify(b, "READY=1");
    h.advance(500 * MS);
    h.exit(a, code(2));
    assert!(h.ended[0].as_ref().unwrap_err().contains("exit code 2"));
    assert_eq!(h.signals, [(b, StopMode::Graceful, Reason::UpgradeAborted)]);
    h.stopped_workers_exit();
    let live: Vec<u32> = h.live().iter().map(|w| w.1).collect();
    assert_eq!(live, [100, 101]);
}

#[test]
fn an_old_worker_waits_for_its_own_successor_even_when_others_are_available() {
    let mut h = upgrading(2, with_min_ready(2, SEC));
    let first = new_worker(&h, 0);
    h.notify(first, "READY=1");
    h.advance(MS);
    let second = new_worker(&h, 1);
    h.advance(SEC);
    assert_eq!(h.signals, [(100, StopMode::Graceful, Reason::Replaced)]);
    h.exit(second, code(1));
    let why = h.ended[0].as_ref().unwrap_err();
    assert!(why.contains("before it was ready"), "{why}");
    assert!(
        h.live().iter().any(|w| w.1 == 101),
        "slot 1's old worker keeps serving"
    );
}

#[test]
fn min_ready_zero_replaces_at_once() {
    let mut h = upgrading(1, with_min_ready(1, Duration::ZERO));
    let new = new_worker(&h, 0);
    h.notify(new, "READY=1");
    assert_eq!(h.signals, [(100, StopMode::Graceful, Reason::Replaced)]);
    assert_eq!(h.ended, [Ok(2)]);
}

#[test]
fn a_takeover_waits_for_every_worker_to_be_available() {
    let mut h = Harness::new(with_min_ready(2, SEC));
    h.notify(100, "READY=1");
    h.advance(500 * MS);
    h.notify(101, "READY=1");
    h.advance(500 * MS);
    assert!(!h.pool.all_available(), "slot 1 has been ready for 500ms");
    let exit = h.exit(101, code(1));
    assert!(exit.was_ready && !exit.was_available);
    h.notify(102, "READY=1");
    h.advance(SEC);
    assert!(h.pool.all_available());
    assert!(h.exit(100, code(1)).was_available);
}

#[test]
fn the_min_ready_timer_survives_export_and_import() {
    let mut h = Harness::new(with_min_ready(1, SEC));
    h.notify(100, "READY=1");
    h.advance(300 * MS);
    let state = h.pool.export(Epoch::at(h.now)).unwrap();
    let later = h.now + 5 * MS;
    let mut pool = import(with_min_ready(1, SEC), state, later);
    assert!(!pool.all_available());
    assert_eq!(pool.next_deadline(), Some(later + 700 * MS));
    pool.due(later + 699 * MS);
    assert!(!pool.all_available());
    pool.due(later + 700 * MS);
    assert!(pool.all_available());
    assert_eq!(pool.next_deadline(), None);
}

#[test]
fn exits_right_after_a_socket_was_shut_down_do_not_fail_an_upgrade() {
    let mut h = upgrading(2, with_min_ready(2, SEC));
    let new = new_worker(&h, 0);
    h.notify(new, "READY=1");
    h.advance(300 * MS);
    // A worker shut the shared socket down: every accept() failed, the new one's too.
    h.pool.excuse_exits_until(h.now + 2 * SEC);
    h.exit(new, code(1));
    assert!(h.ended.is_empty(), "the upgrade goes on: {:?}", h.ended);
    let other = new_worker(&h, 1);
    h.notify(other, "READY=1");
    // Once the window has passed, a new worker that dies fails the upgrade again.
    h.advance(3 * SEC);
    let next = new_worker(&h, 0);
    h.notify(next, "READY=1");
    h.advance(300 * MS);
    h.exit(next, code(1));
    assert!(h.ended[0].is_err(), "{:?}", h.ended);
}

#[test]
fn an_upgrade_shorter_than_min_ready_is_refused_up_front() {
    let h = Harness::new(with_min_ready(4, SEC));
    assert_eq!(h.pool.shortest_upgrade(), SEC, "the slots' waits overlap");
    let why = h.pool.upgrade_too_short(SEC / 2).unwrap().to_string();
    assert!(
        why.contains("of 500ms is too short") && why.contains("--min-ready 1s"),
        "{why}"
    );
    assert!(h.pool.upgrade_too_short(SEC).is_some());
    assert!(h.pool.upgrade_too_short(SEC + MS).is_none());
    let none = Harness::new(with_min_ready(4, Duration::ZERO));
    assert!(none.pool.upgrade_too_short(MS).is_none());
    assert!(none.pool.upgrade_too_short(Duration::ZERO).is_some());
}

/// Starts that fail an upgrade end it, no loop: they are not counted as the slot's crashes,
/// so the first quick crash of the build that runs there later restarts at once.
#[test]
fn failed_upgrade_starts_do_not_grow_the_slots_backoff() {
    let mut h = Harness::new(config(1, Readiness::Delay(SEC)));
    h.advance(SEC);
    for _ in 0..3 {
        let (_, actions) = h.pool.upgrade(60 * SEC, h.now).unwrap();
        assert!(matches!(actions[..], [Action::Spawn { slot: 0, .. }]));
        let (retry, actions) = h.pool.spawn_failed(0, "no such file", h.now);
        assert_eq!(retry, None, "the old worker serves on in its slot");
        h.apply(actions);
    }
    assert_eq!(h.ended.len(), 3);
    assert_eq!(h.pool.failures(0), 0, "no crash of the build that runs");
    // The fixed build rolls out, and its worker crashes quickly once.
    let (_, actions) = h.pool.upgrade(60 * SEC, h.now).unwrap();
    h.apply(actions);
    h.advance(SEC);
    h.stopped_workers_exit();
    assert!(matches!(h.ended.last(), Some(Ok(_))), "{:?}", h.ended);
    let exit = h.exit(h.pid_in(0), code(1));
    assert_eq!(
        exit.restart_in,
        Some(Duration::ZERO),
        "one crash is no loop"
    );
}

/// A new worker that fails its upgrade in a slot whose old worker had crashed: the slot goes
/// back to the old build at once, its backoff as the old build's own crashes left it.
#[test]
fn a_new_worker_failing_its_upgrade_in_an_empty_slot_does_not_grow_the_backoff() {
    let mut h = upgrading(2, config(2, Readiness::Notify { timeout: 10 * SEC }));
    assert_eq!(h.pid_in(1), 101);
    let exit = h.exit(101, code(1));
    assert_eq!(exit.restart_in, Some(Duration::ZERO));
    assert_eq!(h.pool.failures(1), 1);
    let successor = new_worker(&h, 1);
    let exit = h.exit(successor, code(1));
    assert!(h.ended[0].is_err(), "{:?}", h.ended);
    assert_eq!(exit.restart_in, Some(Duration::ZERO));
    assert_eq!(
        h.pool.failures(1),
        1,
        "the new build's failure is not counted"
    );
    let live: Vec<(usize, u64)> = h.live().iter().map(|w| (w.0, w.2)).collect();
    assert!(live.contains(&(1, 1)), "the old build is back: {live:?}");
}

/// Two slots, the first ready and the second `crashes` times into a crash loop, its latest
/// worker ready (so the upgrade replaces slot 0 first), upgrading.
fn crash_loop_upgrading(crashes: usize) -> (Harness, u64) {
    let mut h = Harness::new(config(2, Readiness::Notify { timeout: 10 * SEC }));
    h.notify(100, "READY=1");
    crash_loop(&mut h, 1, crashes);
    let latest = h.pid_in(1);
    h.notify(latest, "READY=1");
    let (generation, actions) = h.pool.upgrade(60 * SEC, h.now).unwrap();
    h.apply(actions);
    (h, generation)
}

/// A fix deployed to a crash loop: an old worker that crashes while the upgrade runs is
/// followed by the new build at once, not after the crashing build's backoff (8 crashes:
/// 12.8 s), and once the upgrade finishes the backoff counts the new build's crashes only.
#[test]
fn an_old_worker_crashing_during_an_upgrade_is_followed_by_the_new_build_at_once() {
    let (mut h, generation) = crash_loop_upgrading(8);
    let exit = h.exit(h.pid_in(1), code(1));
    assert_eq!(exit.restart_in, Some(Duration::ZERO), "{exit:?}");
    let fixed = new_worker(&h, 1);
    h.notify(fixed, "READY=1");
    h.notify(new_worker(&h, 0), "READY=1");
    assert_eq!(h.ended, [Ok(generation)]);
    assert_eq!(h.pool.failures(1), 0, "the crashing build's count is gone");
}

/// The crashes of the build an upgrade replaces count on for that build should the upgrade
/// fail: its slot backs off as before.
#[test]
fn an_old_worker_crashing_during_a_failed_upgrade_keeps_its_backoff() {
    let (mut h, _) = crash_loop_upgrading(3);
    h.exit(h.pid_in(1), code(1));
    h.exit(new_worker(&h, 1), code(1));
    assert!(h.ended[0].is_err(), "{:?}", h.ended);
    assert_eq!(h.pool.failures(1), 4, "three crashes before, one during");
}

/// A fix deployed to a crash loop: the new build starts at once in the slot that waits out
/// the crashing build's backoff (it waited up to 30 s, past a short upgrade's deadline), and
/// once the upgrade finishes the backoff counts the new build's crashes only.
#[test]
fn an_upgrade_starts_at_once_in_a_slot_waiting_out_its_backoff() {
    let mut h = Harness::new(config(1, Readiness::Notify { timeout: 10 * SEC }));
    crash_loop(&mut h, 0, 8);
    let exit = h.exit(h.pid_in(0), code(1));
    assert!(exit.restart_in.unwrap() >= 10 * SEC, "{exit:?}");
    assert!(h.live().is_empty(), "the slot waits out its backoff");
    let (generation, actions) = h.pool.upgrade(5 * SEC, h.now).unwrap();
    h.apply(actions);
    let fixed = new_worker(&h, 0);
    assert_eq!(h.live(), [(0, fixed, generation, WorkerState::Starting)]);
    h.notify(fixed, "READY=1");
    assert_eq!(h.ended, [Ok(generation)]);
    assert_eq!(h.pool.failures(0), 0, "the crashing build's count is gone");
    let exit = h.exit(fixed, code(1));
    assert_eq!(
        exit.restart_in,
        Some(Duration::ZERO),
        "one crash is no loop"
    );
}

/// An upgrade whose first successor cannot start (its program was removed, or made not
/// executable) ends, and the old worker serves on with no deadline left due: a restart left
/// due in its slot made herd's loop turn without pause (a core's worth of CPU) from then on.
#[test]
fn a_successor_that_cannot_start_ends_the_upgrade_without_a_busy_deadline() {
    let mut h = Harness::new(config(1, Readiness::Delay(SEC)));
    h.advance(SEC);
    let (_, actions) = h.pool.upgrade(60 * SEC, h.now).unwrap();
    assert!(matches!(actions[..], [Action::Spawn { slot: 0, .. }]));
    let (_, actions) = h.pool.spawn_failed(0, "no such file", h.now);
    h.apply(actions);
    assert!(h.ended[0].is_err(), "{:?}", h.ended);
    assert_eq!(h.live(), [(0, 100, 1, WorkerState::Ready)]);
    assert_eq!(h.pool.next_deadline(), None, "nothing left to wake up for");
}

/// An old worker that exits while its successor's start still waits in the driver's queue
/// leaves a restart in its slot, which the successor holds once started: that restart is no
/// deadline. It was one always due: herd's loop would turn without pause for as long as the
/// new worker ran.
#[test]
fn a_held_slot_with_a_stale_restart_gives_no_deadline() {
    let mut h = Harness::new(config(1, Readiness::Delay(SEC)));
    h.advance(SEC);
    let (_, actions) = h.pool.upgrade(60 * SEC, h.now).unwrap();
    assert_eq!(
        actions,
        [Action::Spawn {
            slot: 0,
            generation: 2
        }]
    );
    h.exit(100, code(1));
    assert_eq!(
        h.pool.slots()[0].restart_at,
        None,
        "the start under way replaces the exited worker: nothing to restart"
    );
    assert!(h.pool.spawned(0, 2, 200, h.now));
    // A stale restart time (from a path not foreseen) still gives no deadline to a held slot.
    h.pool.slots[0].restart_at = Some(h.now);
    assert_eq!(
        h.pool.next_deadline(),
        Some(h.now + SEC),
        "its readiness only"
    );
    h.advance(SEC);
    assert_eq!(h.ended, [Ok(2)]);
    assert_eq!(h.live(), [(0, 200, 2, WorkerState::Ready)]);
    assert_eq!(h.pool.next_deadline(), None, "nothing left to wake up for");
}

#[test]
fn an_upgrade_replaces_old_workers_that_never_became_ready_first_and_at_once() {
    // Slot 1 serves; the workers of slots 0 and 2 hang in their start-up (never READY=1),
    // and the fix is deployed by upgrade.
    let mut h = Harness::new(config(3, Readiness::Notify { timeout: 120 * SEC }));
    h.notify(101, "READY=1");
    let (_, actions) = h.pool.upgrade(60 * SEC, h.now).unwrap();
    h.apply(actions);
    // Before, the old workers still starting took --max-starting's room: nothing started
    // until --ready-timeout killed them.
    let new: Vec<(usize, u32)> = h
        .pool
        .workers()
        .iter()
        .filter(|w| w.generation == 2)
        .map(|w| (w.slot, w.pid))
        .collect();
    assert_eq!(new.len(), 1, "one start-up at a time: {new:?}");
    assert_eq!(new[0].0, 0, "a slot that serves nothing first");
    h.notify(new[0].1, "READY=1");
    let next: Vec<usize> = (h.pool.workers().iter())
        .filter(|w| w.generation == 2 && w.state == WorkerState::Starting)
        .map(|w| w.slot)
        .collect();
    assert_eq!(next, [2], "then the other one that never served");
}
