//! Draining as a pool state: a worker scaled away from a slot with its own queue is told to
//! stop only once that queue has drained.
use super::*;

const DRAIN: DrainPolicy = DrainPolicy {
    settle: Duration::from_millis(250),
    limit: Duration::from_secs(2),
};

/// Three ready workers whose slots have queues of their own, then scaled to two.
fn draining() -> (Harness, u32) {
    let mut h = Harness::new(PoolConfig {
        drain: Some(DRAIN),
        ..config(3, Readiness::Delay(Duration::ZERO))
    });
    let drained = h.pid_in(2);
    let actions = h.pool.scale(2, h.now).unwrap();
    assert!(actions.is_empty(), "no stop yet: {actions:?}");
    h.apply(actions);
    (h, drained)
}

#[test]
fn a_scaled_down_worker_is_told_to_stop_once_its_slot_has_drained() {
    let (mut h, pid) = draining();
    let w = h.pool.worker(pid).unwrap();
    assert!(matches!(w.state, WorkerState::Draining { .. }) && !w.live());
    assert!(h.pool.is_draining());
    assert_eq!(
        h.pool.signal_targets(Some(2)),
        Err(PoolError::NoWorkerInSlot {
            slot: 2,
            running: vec![0, 1]
        })
    );
    assert_eq!(h.pool.next_deadline(), Some(h.now + DRAIN.limit));
    let start = h.now;
    // Not before the slot has been out of rotation for the settle time, nor while it queues.
    assert!(h.pool.release_drained(start + 100 * MS, |_| 0).is_empty());
    assert!(h.pool.release_drained(start + 300 * MS, |_| 3).is_empty());
    let stop = Action::Stop {
        pid,
        mode: StopMode::Graceful,
        reason: Reason::ScaleDown,
    };
    assert_eq!(
        h.pool
            .release_drained(start + 400 * MS, |slot| u32::from(slot != 2)),
        [stop]
    );
    assert!(!h.pool.is_draining());
    // It is killed at the end of the grace period that began when it was scaled away.
    h.advance(5 * SEC);
    assert_eq!(h.signals, [(pid, StopMode::Kill, Reason::GraceExpired)]);
}

#[test]
fn a_slot_that_does_not_drain_in_time_stops_its_worker_anyway() {
    let (mut h, pid) = draining();
    let until = h.now + DRAIN.limit;
    assert!(h.pool.release_drained(until - MS, |_| 4).is_empty());
    assert_eq!(
        h.pool.release_drained(until, |_| 4),
        [
            Action::DrainTimedOut {
                slot: 2,
                pid,
                queued: 4
            },
            Action::Stop {
                pid,
                mode: StopMode::Graceful,
                reason: Reason::ScaleDown
            }
        ]
    );
}

#[test]
fn a_stop_ends_every_drain_at_once() {
    let (mut h, pid) = draining();
    let actions = h.pool.stop(true, None, h.now);
    assert!(actions.contains(&Action::Stop {
        pid,
        mode: StopMode::Graceful,
        reason: Reason::ScaleDown
    }));
    assert_eq!(actions.len(), 3, "{actions:?}");
    assert!(!h.pool.is_draining());
}

#[test]
fn a_draining_worker_that_exits_is_not_replaced() {
    let (mut h, pid) = draining();
    let exit = h.exit(pid, code(0));
    assert_eq!(
        (exit.stopped_for, exit.restart_in),
        (Some(Reason::ScaleDown), None)
    );
    assert!(!h.pool.is_draining());
    assert_eq!(h.live().len(), 2);
}

/// A re-exec need not wait for a drain: it is pool state, handed over with the rest.
#[test]
fn a_drain_survives_export_and_import_with_its_timers() {
    let (h, pid) = draining();
    let state = h
        .pool
        .export(Epoch::at(h.now + 100 * MS))
        .expect("exportable while draining");
    let later = h.now + 105 * MS;
    let mut pool = import(h.pool.config().clone(), state, later);
    assert!(pool.is_draining());
    let w = pool.worker(pid).unwrap();
    assert!(matches!(w.state, WorkerState::Draining { .. }));
    assert_eq!(w.stopped_for(), Some(Reason::ScaleDown));
    // 100 ms of the 250 ms settle time had passed when it was exported.
    assert!(pool.release_drained(later + 140 * MS, |_| 0).is_empty());
    assert_eq!(pool.release_drained(later + 150 * MS, |_| 0).len(), 1);
    let (h, _) = draining();
    let state = h.pool.export(Epoch::at(h.now)).unwrap();
    let mut pool = import(h.pool.config().clone(), state, h.now);
    assert_eq!(pool.next_deadline(), Some(h.now + DRAIN.limit));
    // Told to stop at the limit, and killed when the grace period from the scale-down ends.
    assert_eq!(pool.release_drained(h.now + DRAIN.limit, |_| 1).len(), 2);
    assert_eq!(pool.next_deadline(), Some(h.now + 5 * SEC));
}

#[test]
fn without_a_drain_policy_a_scale_down_stops_at_once() {
    let mut h = Harness::new(config(2, Readiness::Delay(Duration::ZERO)));
    let actions = h.pool.scale(1, h.now).unwrap();
    assert!(matches!(
        actions[..],
        [Action::Stop {
            mode: StopMode::Graceful,
            reason: Reason::ScaleDown,
            ..
        }]
    ));
    assert!(!h.pool.is_draining());
    assert!(h.pool.release_drained(h.now + SEC, |_| 0).is_empty());
}
