//! A new policy (a config file read again) keeps what the recycler knows.

use super::*;

#[test]
fn a_worker_that_asked_is_still_recycled_after_the_policy_changes() {
    let mut sim = Sim::new(1, 1, no_memory_limit());
    sim.ready = false; // its successor never becomes available: the recycle stays under way
    sim.now += 2 * SEC;
    sim.recycler.ask(&sim.pool, 100, sim.now);
    sim.turn();
    sim.pool.exited(101, exited_with(1), sim.now).unwrap();
    sim.turn();
    assert_eq!(sim.started.len(), 1, "aborted, held back");
    sim.recycler.set_policy(lifetime_only(3600 * SEC));
    sim.now += 31 * SEC;
    sim.turn();
    assert_eq!(
        sim.started.len(),
        2,
        "the ask outlived the change: {:?}",
        sim.events
    );
}

#[test]
fn a_held_slot_stays_held_after_the_policy_changes() {
    let mut sim = Sim::new(1, 1, no_memory_limit());
    for _ in 0..3 {
        sim.all_ask(Duration::ZERO);
    }
    assert_eq!(sim.started.len(), 2, "the third start is held back 30s");
    sim.recycler.set_policy(RecyclePolicy {
        max_lifetime: Some(3600 * SEC),
        ..no_memory_limit()
    });
    sim.all_ask(29 * SEC);
    assert_eq!(
        sim.started.len(),
        2,
        "still held: the loop was not forgotten"
    );
    sim.all_ask(SEC);
    assert_eq!(sim.started.len(), 3);
}

#[test]
fn samples_over_the_old_limit_do_not_count_against_a_new_one() {
    let mut sim = Sim::new(1, 1, policy());
    sim.sample(60 * SEC, |_| 150 * MIB);
    assert!(sim.started.is_empty(), "once over 100 MiB: not yet");
    sim.recycler.set_policy(RecyclePolicy {
        max_memory: Some((MemoryKind::Rss, 120 * MIB)),
        ..policy()
    });
    sim.sample(SEC, |_| 150 * MIB);
    assert!(sim.started.is_empty(), "once over the new limit");
    sim.sample(SEC, |_| 150 * MIB);
    assert_eq!(sim.started, [(0, 100, RecycleCause::Memory)]);
}

#[test]
fn a_policy_that_keeps_the_lifetime_keeps_each_workers_jitter() {
    let jittered = RecyclePolicy {
        jitter: 60 * SEC,
        ..lifetime_only(600 * SEC)
    };
    let mut sim = Sim::new(4, 1, jittered);
    let before: Vec<Option<Duration>> = sim
        .pids()
        .iter()
        .map(|&p| sim.recycler.lifetime(p))
        .collect();
    sim.recycler.set_policy(RecyclePolicy {
        max_memory: Some((MemoryKind::Rss, 100 * MIB)),
        ..jittered
    });
    let after: Vec<Option<Duration>> = sim
        .pids()
        .iter()
        .map(|&p| sim.recycler.lifetime(p))
        .collect();
    assert_eq!(before, after);
}

#[test]
fn a_limit_lowered_below_what_a_fresh_worker_needs_holds_the_slot_back_at_once() {
    let mut sim = Sim::new(
        1,
        1,
        RecyclePolicy {
            max_memory: Some((MemoryKind::Rss, 200 * MIB)),
            ..policy()
        },
    );
    sim.sample(60 * SEC, |_| 150 * MIB);
    sim.recycler.set_policy(policy()); // 100 MiB: every worker is over it from its start
    sim.sample(SEC, |_| 150 * MIB);
    sim.sample(SEC, |_| 150 * MIB);
    assert_eq!(
        sim.started,
        [(0, 100, RecycleCause::Memory)],
        "once is no loop"
    );
    sim.sample(SEC, |_| 150 * MIB);
    sim.sample(SEC, |_| 150 * MIB);
    // Under the old limit, worker 100 counted as healthy and 101's recycle as a first one.
    assert_eq!(sim.started.len(), 1, "held back: {:?}", sim.events);
}
