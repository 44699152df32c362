//! What `max_starting` counts, for upgrades and recycling alike: every worker starting (first
//! starts, scale-ups, replacements) except restarts, which a crash loop never ends.
use super::upgrade::new_worker;
use super::*;

/// `workers` workers that must send `READY=1`, one start-up at a time.
fn one_at_a_time(workers: usize) -> PoolConfig {
    PoolConfig {
        max_starting: 1,
        ..config(workers, Readiness::Notify { timeout: 10 * SEC })
    }
}

#[test]
fn first_starts_count_and_restarts_do_not() {
    let mut h = Harness::new(one_at_a_time(2));
    assert_eq!(h.pool.start_ups(), 2, "two first starts");
    h.notify(100, "READY=1");
    crash_loop(&mut h, 1, 3);
    assert_eq!(h.pool.start_ups(), 0, "slot 1 restarting");
    h.notify(h.pid_in(1), "READY=1");
    assert!(h.pool.all_ready());
}

/// A fix deployed by upgrade to a pool with a slot in a crash loop: the other slots are
/// replaced while that slot restarts, and its old worker, never ready, is replaced in turn.
#[test]
fn a_slot_restarting_in_a_crash_loop_does_not_hold_back_an_upgrade() {
    let mut h = Harness::new(one_at_a_time(2));
    h.notify(100, "READY=1");
    crash_loop(&mut h, 1, 3);
    let looping = h.pid_in(1);
    let (_, actions) = h.pool.upgrade(60 * SEC, h.now).unwrap();
    h.apply(actions);
    // The slot that serves nothing goes first.
    let fix = new_worker(&h, 1);
    h.notify(fix, "READY=1");
    assert_eq!(h.signals, [(looping, StopMode::Graceful, Reason::Replaced)]);
    let successor = new_worker(&h, 0);
    h.notify(successor, "READY=1");
    assert_eq!(
        h.signals[1..],
        [(100, StopMode::Graceful, Reason::Replaced)]
    );
    assert_eq!(h.ended, [Ok(2)]);
}

/// A worker killed from outside restarts at once, its backoff unchanged: a slot killed in a
/// loop (by an operator, the OOM killer) holds back no recycle either.
#[test]
fn a_slot_restarting_in_a_crash_loop_does_not_hold_back_a_recycle() {
    let mut h = Harness::new(one_at_a_time(2));
    h.notify(100, "READY=1");
    for _ in 0..3 {
        let pid = h.pid_in(1);
        assert_eq!(h.exit(pid, killed()).restart_in, Some(Duration::ZERO));
    }
    assert_eq!(h.pool.start_ups(), 0, "slot 1 restarting");
    recycle(&mut h, 100).unwrap();
    assert_eq!(h.pool.start_ups(), 1, "worker 100's successor");
    assert_eq!(recycle(&mut h, 100), Err(RecycleRefused::AlreadyRecycling));
}

/// Starts that end (a scale-up's) take the CPU as a replacement's would: a recycle waits
/// for them, as an upgrade step does.
#[test]
fn a_recycle_waits_for_a_scale_up_starting() {
    let mut h = Harness::new(one_at_a_time(2));
    h.notify(100, "READY=1");
    h.notify(101, "READY=1");
    let actions = h.pool.scale(3, h.now).unwrap();
    h.apply(actions);
    let refused = recycle(&mut h, 100).unwrap_err();
    assert_eq!(
        refused,
        RecycleRefused::AtMaxStarting {
            max_starting: 1,
            starting: 1
        }
    );
    assert_eq!(
        refused.to_string(),
        "1 worker(s) starting already (first starts, scale-ups and replacements; restarts do \
         not count), the most --max-starting allows is 1"
    );
    h.notify(h.pid_in(2), "READY=1");
    recycle(&mut h, 100).unwrap();
}

/// A scale-up during an upgrade: its slots start as the start-ups under way end, one at a
/// time, before the upgrade's successors of slots that serve (empty slots serve nothing: the
/// capacity asked for waited for the whole upgrade), and the upgrade is done once they are
/// ready too.
#[test]
fn a_scale_up_during_an_upgrade_starts_its_slots_as_start_ups_end() {
    let mut h = Harness::new(one_at_a_time(2));
    h.notify(100, "READY=1");
    h.notify(101, "READY=1");
    let (_, actions) = h.pool.upgrade(60 * SEC, h.now).unwrap();
    h.apply(actions);
    let successor = new_worker(&h, 0);
    let actions = h.pool.scale(4, h.now).unwrap();
    h.apply(actions);
    assert_eq!(
        h.live().len(),
        3,
        "slots 2 and 3 wait for slot 0's successor"
    );
    assert_eq!(h.pool.start_ups(), 1);
    h.notify(successor, "READY=1");
    // The empty slots first, which serve nothing (a scale-up's capacity waited for the whole
    // upgrade), then slot 1's successor.
    let two = new_worker(&h, 2);
    assert_eq!(
        h.live().len(),
        3,
        "slot 2 first; slot 0's old worker stopped"
    );
    assert_eq!(h.pool.start_ups(), 1, "slot 2, not slot 3 yet");
    h.notify(two, "READY=1");
    let three = new_worker(&h, 3);
    assert_eq!(h.pool.start_ups(), 1, "slot 3, not slot 1's successor yet");
    h.notify(three, "READY=1");
    assert!(h.ended.is_empty(), "slot 1 still to replace");
    let last = new_worker(&h, 1);
    h.notify(last, "READY=1");
    assert_eq!(h.ended, [Ok(2)]);
}

/// The upgrade's new build starts at once in a slot waiting out its crash-loop backoff: a
/// first start, which counts (it ends: ready, or the upgrade fails).
#[test]
fn an_upgrades_start_into_a_slot_waiting_out_its_backoff_counts() {
    let mut h = Harness::new(one_at_a_time(2));
    h.notify(100, "READY=1");
    crash_loop(&mut h, 1, 3);
    let wait = h.exit(h.pid_in(1), code(1)).restart_in.unwrap();
    assert!(wait > Duration::ZERO);
    let (_, actions) = h.pool.upgrade(60 * SEC, h.now).unwrap();
    h.apply(actions);
    assert!(!h.pool.worker(new_worker(&h, 1)).unwrap().restart);
    assert_eq!(
        h.pool.start_ups(),
        1,
        "slot 1's new build, which serves nothing yet: slot 0's successor waits for it"
    );
}

/// A re-exec keeps which workers are restarts.
#[test]
fn a_restart_is_still_one_after_a_reexec() {
    let mut h = Harness::new(one_at_a_time(2));
    h.notify(100, "READY=1");
    crash_loop(&mut h, 1, 2);
    let state = h.pool.export(Epoch::at(h.now)).unwrap();
    assert_eq!(
        (state.workers.iter().map(|w| w.restart)).collect::<Vec<_>>(),
        [false, true]
    );
    let pool = import(one_at_a_time(2), state, h.now);
    assert!(pool.worker(h.pid_in(1)).unwrap().restart);
    assert_eq!(pool.start_ups(), 0);
}

/// The slots that have a live worker, in order.
fn occupied(h: &Harness) -> Vec<usize> {
    let mut slots: Vec<usize> = h.live().iter().map(|&(slot, ..)| slot).collect();
    slots.sort_unstable();
    slots
}

/// `herd scale 5` beside serving workers: one start-up at a time (`max_starting` 1), the
/// next as each is ready, as an upgrade's successors start; a first start still under way
/// counts. All at once, 4 start-ups beside serving workers on a 2-core machine gave 5.9x-8.4x
/// the steady p99 at 2000/s, one at a time 4.3x-5.7x (4 stdlib Python workers, 3 runs each).
#[test]
fn a_scale_up_beside_serving_workers_starts_max_starting_at_a_time() {
    let mut h = Harness::new(one_at_a_time(2));
    h.notify(100, "READY=1");
    let actions = h.pool.scale(5, h.now).unwrap();
    h.apply(actions);
    assert_eq!(occupied(&h), [0, 1], "slot 1's first start is under way");
    h.notify(101, "READY=1");
    assert_eq!(occupied(&h), [0, 1, 2]);
    h.notify(h.pid_in(2), "READY=1");
    assert_eq!(occupied(&h), [0, 1, 2, 3]);
    // A start-up that ends by exiting makes room too; its slot restarts (a restart is not
    // held back, nor counted).
    assert_eq!(
        h.exit(h.pid_in(3), code(1)).restart_in,
        Some(Duration::ZERO)
    );
    assert_eq!(occupied(&h), [0, 1, 2, 3, 4]);
    assert_eq!(h.pool.start_ups(), 1, "slot 4; slot 3 restarting");
    let at = PoolConfig {
        max_starting: 3,
        ..one_at_a_time(2)
    };
    let mut h = Harness::new(at);
    h.notify(100, "READY=1");
    h.notify(101, "READY=1");
    let actions = h.pool.scale(6, h.now).unwrap();
    h.apply(actions);
    assert_eq!(occupied(&h), [0, 1, 2, 3, 4], "--max-starting 3");
}

/// With no worker serving there is no one to leave the CPU to: a scale-up before the first
/// workers are ready starts at once, as they did; so do restarts beside a scale-up starting.
#[test]
fn a_scale_up_with_no_worker_serving_and_restarts_start_at_once() {
    let mut h = Harness::new(one_at_a_time(2));
    let actions = h.pool.scale(4, h.now).unwrap();
    h.apply(actions);
    assert_eq!(occupied(&h), [0, 1, 2, 3]);
    let mut h = Harness::new(one_at_a_time(2));
    h.notify(100, "READY=1");
    h.notify(101, "READY=1");
    let actions = h.pool.scale(4, h.now).unwrap();
    h.apply(actions);
    assert_eq!(occupied(&h), [0, 1, 2]);
    assert_eq!(h.exit(101, killed()).restart_in, Some(Duration::ZERO));
    assert_eq!(occupied(&h), [0, 1, 2], "slot 1 restarted at once");
    assert_ne!(h.pid_in(1), 101);
}

/// A scale-down cancels the slots still waiting to start, and a scale-up after it waits for
/// room again.
#[test]
fn a_scale_down_cancels_the_slots_waiting_to_start() {
    let mut h = Harness::new(one_at_a_time(1));
    h.notify(100, "READY=1");
    let actions = h.pool.scale(4, h.now).unwrap();
    h.apply(actions);
    assert_eq!(occupied(&h), [0, 1]);
    let actions = h.pool.scale(2, h.now).unwrap();
    h.apply(actions);
    h.notify(h.pid_in(1), "READY=1");
    assert_eq!(occupied(&h), [0, 1], "slots 2 and 3 were scaled away");
    let actions = h.pool.scale(3, h.now).unwrap();
    h.apply(actions);
    assert_eq!(occupied(&h), [0, 1, 2]);
    let actions = h.pool.scale(4, h.now).unwrap();
    h.apply(actions);
    assert_eq!(occupied(&h), [0, 1, 2], "slot 3 waits for slot 2");
}

/// A re-exec keeps the slots a scale-up added that wait to start: the new image starts them
/// one at a time too (it had started them all at once, beside the serving workers).
#[test]
fn slots_waiting_to_start_still_wait_after_a_reexec() {
    let mut h = Harness::new(one_at_a_time(1));
    h.notify(100, "READY=1");
    let actions = h.pool.scale(4, h.now).unwrap();
    h.apply(actions);
    h.notify(h.pid_in(1), "READY=1");
    assert_eq!(occupied(&h), [0, 1, 2]);
    let state = h.pool.export(Epoch::at(h.now)).unwrap();
    let queued: Vec<bool> = state.slots.iter().map(|s| s.queued).collect();
    assert_eq!(queued, [false, false, false, true]);
    h.pool = import(one_at_a_time(4), state, h.now);
    h.tick();
    assert_eq!(occupied(&h), [0, 1, 2], "slot 3 waits for slot 2");
    h.notify(h.pid_in(2), "READY=1");
    assert_eq!(occupied(&h), [0, 1, 2, 3]);
}

/// A slot a scale-up added while its old worker was still there (killed for its ready
/// timeout, scaled away and back): once that worker has exited, the slot restarts when its
/// backoff says, not when room under `max_starting` comes.
#[test]
fn a_restart_in_a_slot_a_scale_up_added_does_not_wait_for_room() {
    let mut h = Harness::new(one_at_a_time(2));
    h.notify(100, "READY=1");
    h.advance(11 * SEC);
    let late = 101;
    assert!(
        !h.pool.worker(late).unwrap().live(),
        "killed for its ready timeout"
    );
    for n in [1, 2, 3] {
        let actions = h.pool.scale(n, h.now).unwrap();
        h.apply(actions);
    }
    let two = h.pid_in(2);
    assert_eq!(
        h.pool.start_ups(),
        1,
        "slot 2 starting; slot 1 held by the killed worker"
    );
    let exit = h.exit(late, killed());
    let wait = exit.restart_in.expect("a restart");
    h.advance(wait);
    assert_eq!(
        occupied(&h),
        [0, 1, 2],
        "slot 1 restarted while slot 2 still starts"
    );
    assert_eq!(h.pid_in(2), two);
    let status: Vec<bool> = h.pool.slots().iter().map(|s| s.waits_to_start()).collect();
    assert_eq!(status, [false, false, false]);
}
