//! The "became ready" transition: each worker is announced once, when it becomes ready.
use super::*;

#[test]
fn a_worker_is_announced_ready_once_when_it_sends_ready() {
    let mut h = Harness::new(config(2, Readiness::Notify { timeout: 10 * SEC }));
    assert!(h.ready.is_empty(), "starting is not ready");
    let message = NotifyMessage::parse(b"READY=1").unwrap();
    assert!(h.pool.notified(100, &message, h.now));
    assert_eq!(
        h.pool.due(h.now),
        [Action::Ready {
            slot: 0,
            pid: 100,
            generation: 1
        }]
    );
    // Again READY=1, a watchdog ping, a status: nothing new to announce.
    h.notify(100, "READY=1\nWATCHDOG=1\nSTATUS=busy");
    h.advance(SEC);
    h.notify(101, "READY=1");
    assert_eq!(h.ready, [101]);
}

#[test]
fn a_delay_readiness_announces_each_worker_when_its_delay_is_over() {
    let mut h = Harness::new(config(2, Readiness::Delay(SEC)));
    h.advance(SEC - MS);
    assert!(h.ready.is_empty());
    h.advance(MS);
    assert_eq!(h.ready, [100, 101]);
    // A restarted worker is announced when it is ready in turn.
    h.exit(101, code(1));
    h.advance(SEC);
    assert_eq!(h.ready, [100, 101, 102]);
}

#[test]
fn a_worker_that_exits_before_it_is_announced_is_not() {
    let mut h = Harness::new(config(1, Readiness::Notify { timeout: 10 * SEC }));
    let message = NotifyMessage::parse(b"READY=1").unwrap();
    assert!(h.pool.notified(100, &message, h.now));
    let (_, actions) = h.pool.exited(100, code(1), h.now).unwrap();
    assert!(actions.is_empty());
    let due = h.pool.due(h.now);
    assert!(
        !due.iter().any(|a| matches!(a, Action::Ready { .. })),
        "{due:?}"
    );
}

#[test]
fn imported_ready_workers_are_not_announced_again_but_starting_ones_are() {
    let mut h = Harness::new(config(2, Readiness::Notify { timeout: 10 * SEC }));
    h.notify(100, "READY=1");
    let state = h.pool.export(Epoch::at(h.now)).unwrap();
    let mut pool = import(h.pool.config().clone(), state, h.now);
    assert!(pool.due(h.now).is_empty());
    let message = NotifyMessage::parse(b"READY=1").unwrap();
    assert!(pool.notified(101, &message, h.now));
    assert_eq!(
        pool.due(h.now),
        [Action::Ready {
            slot: 1,
            pid: 101,
            generation: 1
        }]
    );
}

#[test]
fn commands_refused_say_why_in_a_typed_error() {
    let mut h = Harness::new(config(1, Readiness::Delay(SEC)));
    let (generation, actions) = h.pool.upgrade(60 * SEC, h.now).unwrap();
    h.apply(actions);
    assert_eq!(
        h.pool.upgrade(60 * SEC, h.now).unwrap_err(),
        PoolError::UpgradeInProgress { generation }
    );
    let actions = h.pool.stop(true, None, h.now);
    h.apply(actions);
    assert_eq!(h.pool.scale(2, h.now).unwrap_err(), PoolError::Stopping);
    assert_eq!(h.pool.upgrade(SEC, h.now).unwrap_err(), PoolError::Stopping);
    assert_eq!(PoolError::Stopping.to_string(), "herd is stopping");
}

#[test]
fn the_pool_serves_once_a_wanted_slots_worker_is_ready_and_until_none_is() {
    let mut h = Harness::new(config(2, Readiness::Notify { timeout: 10 * SEC }));
    // herd's first workers start beside no server.
    assert!(!h.pool.serves());
    h.notify(100, "READY=1");
    assert!(h.pool.serves());
    // Its restart after an exit starts beside none again.
    h.exit(100, code(1));
    assert!(!h.pool.serves());
    // A ready worker of a slot scaled away serves nothing the pool wants.
    h.notify(101, "READY=1");
    let actions = h.pool.scale(1, h.now).unwrap();
    h.apply(actions);
    assert!(!h.pool.serves());
}

#[test]
fn a_slot_serves_once_its_worker_is_ready_and_until_it_exits() {
    let mut h = Harness::new(config(2, Readiness::Notify { timeout: 10 * SEC }));
    assert!(!h.pool.slot_serves(0) && !h.pool.slot_serves(1));
    h.notify(100, "READY=1");
    assert!(h.pool.slot_serves(0) && !h.pool.slot_serves(1));
    // The pool serves as long as one slot does; a slot past the pool serves nothing.
    h.notify(101, "READY=1");
    h.exit(100, code(1));
    assert!(!h.pool.slot_serves(0) && h.pool.serves());
    assert!(!h.pool.slot_serves(7));
}

#[test]
fn the_pool_serves_on_through_an_upgrade_whose_old_workers_exit_after_their_successors() {
    let mut h = Harness::new(config(2, Readiness::Notify { timeout: 10 * SEC }));
    h.notify(100, "READY=1");
    h.notify(101, "READY=1");
    let upgrade = h.pool.upgrade(60 * SEC, h.now).unwrap().1;
    h.apply(upgrade);
    let starting = |h: &Harness| {
        let mut live = h.live().into_iter();
        live.find(|w| w.3 == WorkerState::Starting).map(|w| w.1)
    };
    while let Some(pid) = starting(&h) {
        assert!(h.pool.serves());
        h.notify(pid, "READY=1");
    }
    h.exit(101, code(0));
    h.exit(100, code(0));
    assert!(h.pool.serves());
}
