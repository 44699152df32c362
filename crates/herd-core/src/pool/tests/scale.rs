//! The pool's indexes, and the cost of a turn with thousands of workers.
use super::*;

/// What the supervisor checks on every loop turn besides [`Pool::due`]: whether every slot is
/// ready (service readiness, autoscale), which slots get new connections (reuseport
/// steering), whether every slot is available (takeover).
fn per_turn_checks(pool: &Pool) -> (bool, usize, bool) {
    (
        pool.all_ready(),
        pool.ready_slots().count(),
        pool.all_available(),
    )
}

/// Not a check: times a rolling upgrade of 4096 workers, 64 at a time, with one loop turn per
/// 64 events (`cargo test --release -p herd-core rolling_upgrade_of_4096 -- --ignored
/// --nocapture`).
#[test]
#[ignore]
fn rolling_upgrade_of_4096_workers() {
    const N: usize = 4096;
    const BATCH: usize = 64;
    let started = std::time::Instant::now();
    let cfg = PoolConfig {
        max_surge: MaxSurge::Workers(BATCH),
        max_starting: BATCH,
        ..config(
            N,
            Readiness::Notify {
                timeout: 3600 * SEC,
            },
        )
    };
    let mut h = Harness::new(cfg);
    h.recount = false;
    let mut turns = 0u64;
    // Summed and printed, so that the checks are not optimised away (black_box needs 1.66).
    let mut ready_seen = 0usize;
    let mut turn = |h: &mut Harness| {
        h.tick();
        ready_seen += per_turn_checks(&h.pool).1;
        turns += 1;
    };
    let pids: Vec<u32> = h.pool.workers().iter().map(|w| w.pid).collect();
    for chunk in pids.chunks(BATCH) {
        for &pid in chunk {
            let message = NotifyMessage::parse(b"READY=1").unwrap();
            assert!(h.pool.notified(pid, &message, h.now));
        }
        turn(&mut h);
    }
    let (_, actions) = h.pool.upgrade(3600 * SEC, h.now).unwrap();
    h.apply(actions);
    while h.ended.is_empty() {
        let starting: Vec<u32> = h
            .pool
            .workers()
            .iter()
            .filter(|w| w.state == WorkerState::Starting)
            .map(|w| w.pid)
            .collect();
        for chunk in starting.chunks(BATCH) {
            for &pid in chunk {
                let message = NotifyMessage::parse(b"READY=1").unwrap();
                assert!(h.pool.notified(pid, &message, h.now));
            }
            turn(&mut h);
        }
        let stopping: Vec<u32> = h
            .pool
            .workers()
            .iter()
            .filter(|w| !w.live())
            .map(|w| w.pid)
            .collect();
        for chunk in stopping.chunks(BATCH) {
            for &pid in chunk {
                let (_, actions) = h.pool.exited(pid, code(0), h.now).unwrap();
                assert!(actions.is_empty());
            }
            turn(&mut h);
        }
    }
    assert_eq!(h.ended, vec![Ok(2)]);
    eprintln!(
        "{N} workers, rolling upgrade {BATCH} at a time: {turns} turns in {:?} ({ready_seen} ready slots seen)",
        started.elapsed()
    );
}

/// Checks the pool's indexes (by pid, per-slot counts, ready and available slots) against a
/// count of its workers from scratch.
pub(super) fn assert_indexes_match_a_recount(pool: &Pool) {
    for (i, w) in pool.workers.iter().enumerate() {
        let first = pool.workers.iter().position(|o| o.pid == w.pid).unwrap();
        assert_eq!(pool.by_pid.get(&w.pid), Some(&first), "pid {}", w.pid);
        assert!(first <= i);
    }
    assert!(pool.by_pid.len() <= pool.workers.len());
    let draining = pool
        .workers
        .iter()
        .filter(|w| matches!(w.state, WorkerState::Draining { .. }))
        .count();
    assert_eq!(pool.draining, draining);
    for (slot, s) in pool.slots.iter().enumerate() {
        let here = pool.workers.iter().filter(|w| w.slot == slot);
        let recount = Count {
            live: here.clone().filter(|w| w.live()).count(),
            holding: here.clone().filter(|w| w.holds_slot()).count(),
            ready: here
                .clone()
                .filter(|w| w.state == WorkerState::Ready)
                .count(),
            live_available: here.filter(|w| w.live() && w.counts_available()).count(),
        };
        assert_eq!(s.count, recount, "slot {slot}");
    }
    let has = |slot: usize, pred: &dyn Fn(&Worker) -> bool| {
        pool.workers.iter().any(|w| w.slot == slot && pred(w))
    };
    let wanted = 0..pool.desired();
    let ready: Vec<usize> = wanted
        .clone()
        .filter(|&s| has(s, &|w| w.state == WorkerState::Ready))
        .collect();
    assert_eq!(pool.ready_slots().collect::<Vec<_>>(), ready);
    assert_eq!(pool.all_ready(), ready.len() == pool.desired());
    assert_eq!(
        pool.all_available(),
        wanted
            .clone()
            .all(|s| has(s, &|w| w.live() && w.counts_available()))
    );
}

#[test]
fn the_indexes_match_a_recount_through_every_change() {
    let cfg = PoolConfig {
        max_surge: MaxSurge::Workers(2),
        max_starting: 2,
        watchdog: Some(300 * SEC),
        ..with_min_ready(4, SEC)
    };
    let mut h = Harness::new(cfg);
    let started: Vec<u32> = h.pool.workers().iter().map(|w| w.pid).collect();
    for &pid in &started[..3] {
        h.notify(pid, "READY=1\nSTATUS=up");
    }
    h.advance(SEC);
    assert!(!h.pool.all_ready());
    h.notify(started[3], "READY=1");
    assert!(h.pool.all_ready());
    assert!(!h.pool.all_available());
    h.advance(SEC);
    assert!(h.pool.all_available());
    // A crash, and its restart.
    h.exit(started[1], code(1));
    assert!(!h.pool.all_ready());
    while !h.pool.workers().iter().any(|w| w.slot == 1) {
        h.advance(SEC);
    }
    let pid = h.pid_in(1);
    h.notify(pid, "READY=1");
    // Scale up and down, a rolling upgrade, an exit during it, the watchdog.
    let actions = h.pool.scale(6, h.now).unwrap();
    h.apply(actions);
    let actions = h.pool.scale(3, h.now).unwrap();
    h.apply(actions);
    h.stopped_workers_exit();
    h.advance(2 * SEC);
    let (_, actions) = h.pool.upgrade(60 * SEC, h.now).unwrap();
    h.apply(actions);
    for _ in 0..6 {
        let starting: Vec<u32> = h
            .pool
            .workers()
            .iter()
            .filter(|w| w.state == WorkerState::Starting)
            .map(|w| w.pid)
            .collect();
        for pid in starting {
            h.notify(pid, "READY=1");
        }
        h.advance(SEC);
        h.stopped_workers_exit();
    }
    assert_eq!(h.ended, vec![Ok(2)]);
    h.advance(301 * SEC);
    assert!(h.signals.iter().any(|s| s.2 == Reason::Watchdog));
    h.stopped_workers_exit();
    // Export and import, then stop.
    let state = h.pool.export(Epoch::at(h.now)).unwrap();
    h.pool = import(h.pool.config().clone(), state, h.now);
    assert_indexes_match_a_recount(&h.pool);
    let actions = h.pool.stop(true, None, h.now);
    h.apply(actions);
    h.stopped_workers_exit();
    assert!(h.pool.is_stopped());
}
