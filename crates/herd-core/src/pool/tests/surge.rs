//! The surge bounds, shared by upgrades and recycling: `max_surge` workers beyond the pool
//! (old workers in their grace period included), `max_starting` start-ups at once.
use super::upgrade::{new_worker, upgrading};
use super::*;

/// `workers` workers that must stay ready for 1 s, under these bounds.
fn bounded(workers: usize, max_surge: MaxSurge, max_starting: usize) -> PoolConfig {
    PoolConfig {
        max_surge,
        max_starting,
        ..with_min_ready(workers, SEC)
    }
}

/// Worker processes not yet exited, and those starting.
fn processes(h: &Harness) -> (usize, usize) {
    let all = h.pool.workers();
    let starting = all.iter().filter(|w| w.state == WorkerState::Starting);
    (all.len(), starting.count())
}

#[test]
fn the_limit_is_a_number_or_a_share_of_the_pool_rounded_up_and_never_zero() {
    assert_eq!(MaxSurge::Workers(3).limit(8), 3);
    assert_eq!(MaxSurge::Workers(0).limit(8), 1);
    assert_eq!(MaxSurge::Percent(100).limit(4), 4);
    assert_eq!(MaxSurge::Percent(25).limit(4), 1);
    assert_eq!(MaxSurge::Percent(25).limit(5), 2);
    assert_eq!(MaxSurge::Percent(100).limit(0), 1);
    assert_eq!(MaxSurge::Percent(u32::MAX).limit(usize::MAX), usize::MAX);
    assert_eq!(MaxSurge::Percent(25).to_string(), "25%");
}

#[test]
fn max_surge_1_is_one_worker_beyond_the_pool_through_min_ready_and_grace() {
    let mut h = upgrading(3, bounded(3, MaxSurge::Workers(1), 1));
    let first = new_worker(&h, 0);
    h.advance(100 * MS);
    h.notify(first, "READY=1");
    assert_eq!(
        processes(&h),
        (4, 0),
        "slot 1 waits: slot 0 holds two workers"
    );
    h.advance(SEC);
    assert_eq!(h.signals, [(100, StopMode::Graceful, Reason::Replaced)]);
    h.advance(SEC);
    assert_eq!(
        processes(&h),
        (4, 0),
        "worker 100, in its grace period, still counts"
    );
    h.exit(100, code(0));
    assert_eq!(
        processes(&h),
        (4, 1),
        "slot 1's successor starts once it has gone"
    );
    for slot in 1..3 {
        let new = new_worker(&h, slot);
        h.notify(new, "READY=1");
        h.advance(SEC);
        assert!(processes(&h).0 <= 4);
        h.stopped_workers_exit();
    }
    assert_eq!(h.ended, [Ok(2)]);
}

#[test]
fn by_default_start_ups_come_one_at_a_time_and_min_ready_waits_overlap() {
    // --max-surge 100%, --max-starting 1: 4 workers that start in 100 ms each are replaced
    // in their start-ups plus one --min-ready, never more than 8 processes.
    let mut h = upgrading(4, bounded(4, MaxSurge::Percent(100), 1));
    let started = h.now;
    for slot in 0..4 {
        let new = new_worker(&h, slot);
        assert_eq!(processes(&h), (5 + slot, 1), "one start-up at a time");
        h.advance(100 * MS);
        h.notify(new, "READY=1");
    }
    assert_eq!(processes(&h).0, 8);
    h.advance(SEC - 100 * MS - MS);
    assert!(h.ended.is_empty());
    while h.ended.is_empty() {
        h.advance(MS);
        h.stopped_workers_exit();
    }
    assert_eq!(h.ended, [Ok(2)]);
    assert_eq!(
        h.now - started,
        1400 * MS,
        "4 start-ups and one --min-ready"
    );
}

#[test]
fn max_starting_runs_start_ups_in_parallel_within_max_surge() {
    let mut h = upgrading(4, bounded(4, MaxSurge::Workers(3), 2));
    assert_eq!(processes(&h), (6, 2));
    for slot in 0..2 {
        let new = new_worker(&h, slot);
        h.notify(new, "READY=1");
    }
    assert_eq!(
        processes(&h),
        (7, 1),
        "the third replacement, the last max_surge allows"
    );
    let third = new_worker(&h, 2);
    h.notify(third, "READY=1");
    assert_eq!(processes(&h), (7, 0));
}

#[test]
fn recycling_counts_the_surge_and_the_start_ups_as_upgrades_do() {
    let mut h = Harness::new(PoolConfig {
        max_surge: MaxSurge::Workers(2),
        max_starting: 1,
        ..config(3, Readiness::Notify { timeout: 10 * SEC })
    });
    for pid in 100..103 {
        h.notify(pid, "READY=1");
    }
    let recycle = |h: &mut Harness, pid| {
        let actions = h.pool.recycle(pid, RecycleCause::Memory, h.now)?;
        h.apply(actions);
        Ok::<(), RecycleRefused>(())
    };
    recycle(&mut h, 100).unwrap();
    assert_eq!(
        recycle(&mut h, 101),
        Err(RecycleRefused::AtMaxStarting {
            max_starting: 1,
            starting: 1
        })
    );
    h.notify(103, "READY=1");
    recycle(&mut h, 101).unwrap();
    h.notify(104, "READY=1");
    assert_eq!(
        h.pool.surge(),
        2,
        "workers 100 and 101 in their grace period"
    );
    assert_eq!(
        recycle(&mut h, 102),
        Err(RecycleRefused::AtMaxSurge {
            max_surge: 2,
            surge: 2
        })
    );
    h.exit(100, code(0));
    recycle(&mut h, 102).unwrap();
}

/// A re-exec keeps the surge bounds the pool ran with, a share or a number, whatever the new
/// image's command line makes of them; the state of an older herd, without them, leaves the
/// command line's.
#[test]
fn a_reexec_keeps_the_surge_bounds_the_pool_ran_with() {
    for max_surge in [MaxSurge::Percent(25), MaxSurge::Workers(4)] {
        let h = Harness::new(bounded(4, max_surge, 3));
        let state = h.pool.export(Epoch::at(h.now)).unwrap();
        let reread = bounded(4, MaxSurge::Workers(1), 1);
        let bounds = |pool: &Pool| (pool.config().max_surge, pool.config().max_starting);
        let pool = import(reread.clone(), state.clone(), h.now);
        assert_eq!(bounds(&pool), (max_surge, 3));
        let older = PoolState {
            surge: None,
            ..state
        };
        let pool = import(reread, older, h.now);
        assert_eq!(bounds(&pool), (MaxSurge::Workers(1), 1));
    }
}
