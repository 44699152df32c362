//! An upgrade with settings of its own (a config file read again): they are its new
//! generation's, and the older workers and their restarts keep what they had.
use super::*;

/// A ready pool of two workers without a watchdog, and the settings a reload brings.
fn ready_pool_and_reloaded() -> (Harness, PoolConfig) {
    let mut h = Harness::new(config(2, Readiness::Notify { timeout: 10 * SEC }));
    h.notify(100, "READY=1");
    h.notify(101, "READY=1");
    let reloaded = PoolConfig {
        watchdog: Some(5 * SEC),
        grace: SEC,
        ..config(7, Readiness::Notify { timeout: 30 * SEC })
    };
    (h, reloaded)
}

/// The live worker of the newest generation in `slot`.
fn newest_in(h: &Harness, slot: usize) -> u32 {
    let live = h.live().into_iter().filter(|w| w.0 == slot);
    live.max_by_key(|w| w.2).expect("a live worker").1
}

fn kills(h: &Harness) -> Vec<(u32, Reason)> {
    h.signals
        .iter()
        .filter(|s| s.1 == StopMode::Kill)
        .map(|s| (s.0, s.2))
        .collect()
}

#[test]
fn a_reloaded_watchdog_does_not_reach_the_old_generation() {
    let (mut h, reloaded) = ready_pool_and_reloaded();
    let (generation, actions) = h
        .pool
        .upgrade_with(60 * SEC, Some(reloaded), h.now)
        .unwrap();
    h.apply(actions);
    h.advance(6 * SEC);
    h.advance(6 * SEC);
    assert_eq!(
        kills(&h),
        [],
        "old workers never sent WATCHDOG=1, nor were asked to"
    );
    assert_eq!(
        h.pool.config().watchdog,
        None,
        "the pool's, until it finishes"
    );
    // The new worker has the reloaded readiness timeout (30 s), not the old one (10 s).
    let new = newest_in(&h, 0);
    assert_eq!(h.live().len(), 3);
    h.notify(new, "READY=1");
    assert_eq!(h.signals, [(100, StopMode::Graceful, Reason::Replaced)]);
    // The old worker stops with its own grace (5 s), not the reloaded one (1 s).
    h.advance(2 * SEC);
    assert_eq!(kills(&h), []);
    h.advance(3 * SEC);
    // And the new worker, silent for 5 s since it was ready, has the reloaded watchdog.
    assert_eq!(
        kills(&h),
        [(100, Reason::GraceExpired), (new, Reason::Watchdog)]
    );
    assert!(h.pool.generation() < generation, "not finished yet");
}

#[test]
fn a_finished_upgrade_makes_its_settings_the_pools() {
    let (mut h, reloaded) = ready_pool_and_reloaded();
    let (generation, actions) = h
        .pool
        .upgrade_with(60 * SEC, Some(reloaded), h.now)
        .unwrap();
    h.apply(actions);
    for slot in 0..2 {
        h.notify(newest_in(&h, slot), "READY=1");
    }
    assert_eq!(h.ended, [Ok(generation)]);
    let config = h.pool.config();
    assert_eq!((config.watchdog, config.grace), (Some(5 * SEC), SEC));
    assert_eq!(config.workers, 2, "the number of workers stays the pool's");
    h.stopped_workers_exit();
    // Restarts of the new generation's workers keep its watchdog.
    h.advance(5 * SEC);
    let watchdog = kills(&h).iter().filter(|k| k.1 == Reason::Watchdog).count();
    assert_eq!(watchdog, 2);
}

#[test]
fn an_aborted_upgrade_drops_its_settings() {
    let (mut h, reloaded) = ready_pool_and_reloaded();
    let (_, actions) = h
        .pool
        .upgrade_with(60 * SEC, Some(reloaded), h.now)
        .unwrap();
    h.apply(actions);
    let new = newest_in(&h, 0);
    h.exit(new, code(1));
    assert!(h.ended[0].is_err());
    assert_eq!(h.pool.config().watchdog, None);
    // An old worker's restart is the old generation's, with the old settings.
    h.exit(101, code(1));
    h.advance(SEC);
    let restarted = h.pid_in(1);
    h.notify(restarted, "READY=1");
    h.advance(20 * SEC);
    assert_eq!(kills(&h), []);
    assert_eq!(h.pool.upgrade(60 * SEC, h.now).map(|u| u.0), Ok(3));
}

#[test]
fn an_upgrade_is_too_short_for_its_own_settings() {
    let (h, reloaded) = ready_pool_and_reloaded();
    let slow = PoolConfig {
        min_ready: 60 * SEC,
        ..reloaded
    };
    assert_eq!(h.pool.upgrade_too_short(60 * SEC), None);
    assert_eq!(
        h.pool.upgrade_too_short_with(60 * SEC, &slow),
        Some(PoolError::UpgradeTooShort {
            timeout: 60 * SEC,
            min_ready: 60 * SEC
        })
    );
}
