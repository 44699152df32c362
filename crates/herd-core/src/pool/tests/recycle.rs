//! Recycling: a successor first, the old worker stopped once it is available.
use super::*;

const MEMORY: RecycleCause = RecycleCause::Memory;

/// A pool of `workers` ready workers (pids 100 up), `max_surge` recycles at a time.
pub(super) fn ready_pool(workers: usize, max_surge: usize) -> Harness {
    let mut h = Harness::new(PoolConfig {
        max_surge: MaxSurge::Workers(max_surge),
        max_starting: max_surge,
        ..config(workers, Readiness::Notify { timeout: 10 * SEC })
    });
    for pid in 100..100 + workers as u32 {
        h.notify(pid, "READY=1");
    }
    h
}

#[test]
fn a_recycled_worker_serves_until_its_successor_is_ready_then_stops_gracefully() {
    let mut h = ready_pool(2, 1);
    recycle(&mut h, 100).unwrap();
    // The successor starts in slot 0, of the same generation; nobody is stopped yet.
    assert_eq!(h.live().len(), 3);
    assert_eq!(
        h.pool.worker(102).map(|w| (w.slot, w.generation)),
        Some((0, 1))
    );
    assert!(h.signals.is_empty());
    assert_eq!(h.pool.recycles_in_progress(), 1);
    h.notify(102, "READY=1");
    assert_eq!(
        h.signals,
        [(100, StopMode::Graceful, Reason::Recycled(MEMORY))]
    );
    let exit = h.exit(100, code(0));
    assert_eq!(
        (exit.stopped_for, exit.restart_in),
        (Some(Reason::Recycled(MEMORY)), None),
        "the successor holds the slot: nothing restarts"
    );
    assert_eq!(h.pool.recycles_in_progress(), 0);
    assert_eq!(h.pid_in(0), 102);
    assert_eq!(h.pool.slots()[0].restarts, 0, "a recycle is no restart");
}

#[test]
fn the_old_worker_waits_for_min_ready() {
    let mut h = Harness::new(with_min_ready(1, 5 * SEC));
    h.notify(100, "READY=1");
    h.advance(5 * SEC);
    recycle(&mut h, 100).unwrap();
    h.notify(101, "READY=1");
    h.advance(4 * SEC);
    assert!(h.signals.is_empty(), "not available yet");
    h.advance(SEC);
    assert_eq!(h.signals.len(), 1);
}

#[test]
fn at_most_max_surge_recycles_run_at_once() {
    let mut h = ready_pool(3, 2);
    recycle(&mut h, 100).unwrap();
    recycle(&mut h, 101).unwrap();
    assert_eq!(
        recycle(&mut h, 102),
        Err(RecycleRefused::AtMaxSurge {
            max_surge: 2,
            surge: 2
        })
    );
    assert_eq!(recycle(&mut h, 100), Err(RecycleRefused::AlreadyRecycling));
    // One successor is ready and its old worker told to stop: it is still in its grace
    // period, so the recycle is still under way.
    h.notify(103, "READY=1");
    assert_eq!(h.signals.len(), 1);
    assert_eq!(h.pool.recycles_in_progress(), 2);
    assert_eq!(
        recycle(&mut h, 102),
        Err(RecycleRefused::AtMaxSurge {
            max_surge: 2,
            surge: 2
        })
    );
    // Once it has exited: room for the third.
    h.exit(100, code(0));
    assert_eq!(h.pool.recycles_in_progress(), 1);
    recycle(&mut h, 102).unwrap();
}

#[test]
fn an_old_worker_in_a_long_grace_period_holds_back_the_next_recycle() {
    let mut h = ready_pool(2, 1);
    recycle(&mut h, 100).unwrap();
    h.notify(102, "READY=1");
    assert_eq!(
        h.signals,
        [(100, StopMode::Graceful, Reason::Recycled(MEMORY))]
    );
    // Worker 100 takes its time to leave: no second leaky worker may join it.
    h.advance(SEC);
    assert_eq!(
        recycle(&mut h, 101),
        Err(RecycleRefused::AtMaxSurge {
            max_surge: 1,
            surge: 1
        })
    );
    h.exit(100, code(0));
    assert_eq!(h.pool.recycles_in_progress(), 0);
    recycle(&mut h, 101).unwrap();
}

#[test]
fn no_recycle_while_a_slot_has_no_ready_worker_or_an_upgrade_runs() {
    let mut h = ready_pool(2, 2);
    h.exit(101, code(1));
    // Slot 1's new worker is starting, not ready.
    assert_eq!(
        recycle_for(&mut h, 100, RecycleCause::Lifetime),
        Err(RecycleRefused::ShortOfReady {
            ready: 1,
            desired: 2
        })
    );
    assert_eq!(recycle(&mut h, 102), Err(RecycleRefused::NotAvailable));
    h.notify(102, "READY=1");
    let (_, actions) = h.pool.upgrade(60 * SEC, h.now).unwrap();
    h.apply(actions);
    assert_eq!(recycle(&mut h, 100), Err(RecycleRefused::Upgrading));
    assert_eq!(recycle(&mut h, 999), Err(RecycleRefused::NotAWorker));
    h.pool.stop(true, None, h.now);
    assert_eq!(recycle(&mut h, 100), Err(RecycleRefused::NotAWorker));
}

#[test]
fn a_successor_that_dies_ends_the_recycle_and_the_old_worker_serves_on() {
    let mut h = ready_pool(1, 1);
    recycle(&mut h, 100).unwrap();
    let exit = h.exit(101, code(3));
    assert_eq!(exit.restart_in, None, "the old worker still holds the slot");
    assert_eq!(h.pool.take_recycles_aborted(), [(0, 100, MEMORY)]);
    assert_eq!(h.pool.take_recycles_aborted(), []);
    assert_eq!(h.pool.worker(100).unwrap().recycling, None);
    assert_eq!(h.live().len(), 1);
    assert_eq!(h.pool.next_deadline(), None, "nothing left to wake up for");
    // It may be recycled again later.
    recycle(&mut h, 100).unwrap();
}

#[test]
fn a_successor_that_cannot_start_ends_the_recycle_without_a_busy_deadline() {
    let mut h = ready_pool(1, 1);
    let actions = h.pool.recycle(100, MEMORY, h.now).unwrap();
    assert_eq!(
        actions,
        [Action::Spawn {
            slot: 0,
            generation: 1
        }]
    );
    let (_, more) = h.pool.spawn_failed(0, "no such file", h.now);
    h.apply(more);
    assert_eq!(h.pool.take_recycles_aborted(), [(0, 100, MEMORY)]);
    assert_eq!(h.pool.next_deadline(), None);
}

/// A recycle's successor that cannot start leaves the slot to its old worker, which serves
/// on: no retry, and no crash counted in the slot's backoff (it is not looping), so the old
/// worker's own first quick crash later restarts at once.
#[test]
fn a_successor_that_cannot_start_does_not_grow_the_slots_backoff() {
    let mut h = ready_pool(1, 1);
    for _ in 0..3 {
        let actions = h.pool.recycle(100, MEMORY, h.now).unwrap();
        assert_eq!(actions.len(), 1, "{actions:?}");
        let (retry, more) = h.pool.spawn_failed(0, "no such file", h.now);
        assert_eq!(retry, None, "the old worker serves on");
        h.apply(more);
        assert_eq!(h.pool.take_recycles_aborted(), [(0, 100, MEMORY)]);
    }
    assert_eq!(h.pool.failures(0), 0, "no crash of the worker that runs");
    let exit = h.exit(100, code(1));
    assert_eq!(
        exit.restart_in,
        Some(Duration::ZERO),
        "one crash is no loop"
    );
}

#[test]
fn an_upgrade_during_a_recycle_replaces_both_workers_of_the_slot() {
    let mut h = ready_pool(1, 1);
    recycle(&mut h, 100).unwrap();
    let (_, actions) = h.pool.upgrade(60 * SEC, h.now).unwrap();
    h.apply(actions);
    h.notify(101, "READY=1");
    assert_eq!(
        h.signals,
        [(100, StopMode::Graceful, Reason::Recycled(MEMORY))]
    );
    // Worker 100, in its grace period, is the one worker --max-surge 1 allows beyond the
    // pool: the new generation's starts once it has exited.
    assert!(h.pool.workers().iter().all(|w| w.generation == 1));
    h.exit(100, code(0));
    let new = h
        .pool
        .workers()
        .iter()
        .find(|w| w.generation == 2)
        .unwrap()
        .pid;
    h.notify(new, "READY=1");
    assert_eq!(h.ended, [Ok(2)]);
    assert_eq!(
        h.signals.last(),
        Some(&(101, StopMode::Graceful, Reason::Replaced))
    );
}

#[test]
fn a_recycle_in_progress_survives_a_re_exec() {
    let mut h = ready_pool(1, 1);
    recycle(&mut h, 100).unwrap();
    let epoch = Epoch::at(h.now);
    let state = h.pool.export(epoch).expect("not spawning any more");
    assert_eq!(state.workers[0].recycling, Some(MEMORY));
    h.pool = import(h.pool.config().clone(), state, h.now);
    h.notify(101, "READY=1");
    assert_eq!(
        h.signals,
        [(100, StopMode::Graceful, Reason::Recycled(MEMORY))]
    );
}

/// A slot that crash-loops (its worker waits out a backoff, or starts and exits again) does
/// not hold back a worker over `--max-memory`: it would grow until the OOM killer ended it.
#[test]
fn a_worker_over_max_memory_is_recycled_while_another_slot_crash_loops() {
    let mut h = ready_pool(2, 1);
    crash_loop(&mut h, 1, 4);
    let exit = h.exit(h.pid_in(1), code(1));
    assert!(exit.restart_in.unwrap() > Duration::ZERO, "{exit:?}");
    assert!(!h.pool.all_ready());
    assert_eq!(
        recycle_for(&mut h, 100, RecycleCause::Lifetime),
        Err(RecycleRefused::ShortOfReady {
            ready: 1,
            desired: 2
        }),
        "a lifetime recycle waits"
    );
    recycle(&mut h, 100).unwrap();
    let successor = h
        .pool
        .workers()
        .iter()
        .find(|w| w.slot == 0 && w.pid != 100)
        .unwrap()
        .pid;
    h.notify(successor, "READY=1");
    assert_eq!(
        h.signals,
        [(100, StopMode::Graceful, Reason::Recycled(MEMORY))]
    );
}
