//! A slot whose worker runs normally for long forgets the recycles that went wrong in it.

use super::*;

/// The waits of the recycles that aborted, in order.
fn aborted_holds(sim: &Sim) -> Vec<Duration> {
    let holds = sim.events.iter().filter_map(|e| match e {
        RecycleEvent::Aborted { hold, .. } => Some(*hold),
        _ => None,
    });
    holds.collect()
}

/// Two workers in a row ask at once; the third serves `ran` without asking, then exits;
/// whether its successor, asking at once, is held back.
fn held_after_a_worker_that_ran(ran: Duration) -> bool {
    let mut sim = Sim::new(1, 1, no_memory_limit());
    sim.all_ask(Duration::ZERO);
    sim.all_ask(Duration::ZERO);
    assert_eq!(sim.pids(), [102]);
    sim.now += ran;
    sim.turn();
    sim.pool.exited(102, exited_with(1), sim.now).unwrap();
    sim.now += 10 * SEC;
    sim.turn();
    assert_eq!(sim.pids(), [103], "restarted");
    sim.all_ask(Duration::ZERO);
    sim.events
        .iter()
        .any(|e| matches!(e, RecycleEvent::HeldBack { pid: 103, .. }))
}

#[test]
fn a_worker_that_runs_normally_for_twice_the_longest_hold_ends_the_slots_loop() {
    // The test policy's longest hold is 10 min: calm after 20.
    assert!(
        held_after_a_worker_that_ran(1199 * SEC),
        "a loop just broken"
    );
    assert!(
        !held_after_a_worker_that_ran(1200 * SEC),
        "a loop long over: its next worker asking soon is the first in a row"
    );
}

#[test]
fn a_worker_that_asked_and_waits_past_the_calm_does_not_end_the_loop() {
    // Each worker is available only after 1300s (--min-ready), longer than the calm: one that
    // asked at once waits that long for its recycle, and its slot's count goes on.
    let mut sim = Sim::with_min_ready(1, 1, no_memory_limit(), 1300 * SEC);
    sim.all_ask(Duration::ZERO);
    for _ in 0..3 {
        // The worker that asked is available: recycled; its successor starts, and asks.
        sim.now += 1300 * SEC;
        sim.turn();
        sim.all_ask(Duration::ZERO);
    }
    assert_eq!(sim.started.len(), 3, "{:?}", sim.events);
    let held = sim
        .events
        .iter()
        .filter(|e| matches!(e, RecycleEvent::HeldBack { .. }))
        .count();
    assert_eq!(held, 2, "the third and the fourth: {:?}", sim.events);
}

#[test]
fn a_recycle_past_its_lifetime_that_keeps_failing_keeps_doubling_its_wait() {
    // A lifetime longer than the calm: the old worker serves on past both.
    let lifetime = lifetime_only(1300 * SEC);
    let mut sim = Sim::new(1, 1, lifetime);
    sim.ready = false;
    sim.now += 1300 * SEC;
    sim.turn();
    for successor in [101, 102, 103] {
        assert_eq!(sim.pids(), [100, successor], "{:?}", sim.events);
        sim.pool.exited(successor, exited_with(1), sim.now).unwrap();
        sim.turn();
        let hold = aborted_holds(&sim).last().copied();
        sim.now += hold.unwrap();
        sim.turn();
    }
    let holds: Vec<u64> = aborted_holds(&sim).iter().map(Duration::as_secs).collect();
    assert_eq!(holds, [30, 60, 120]);
}

#[test]
fn a_memory_recycle_that_keeps_failing_keeps_doubling_its_wait() {
    // Worker 100 is under the limit at first, then grows over it: not over from the start,
    // so each retry's start does not count as a loop; its successors die before ready.
    let mut sim = Sim::new(1, 1, policy());
    sim.ready = false;
    sim.sample(SEC, |_| MIB);
    sim.sample(60 * SEC, |_| 200 * MIB);
    sim.sample(SEC, |_| 200 * MIB);
    for successor in [101, 102, 103] {
        assert_eq!(sim.pids(), [100, successor], "{:?}", sim.events);
        sim.pool.exited(successor, exited_with(1), sim.now).unwrap();
        sim.turn();
        let hold = aborted_holds(&sim).last().copied();
        sim.sample(hold.unwrap(), |_| 200 * MIB);
    }
    let holds: Vec<u64> = aborted_holds(&sim).iter().map(Duration::as_secs).collect();
    assert_eq!(holds, [30, 60, 120]);
}

#[test]
fn a_worker_over_the_limit_that_dips_under_once_is_not_calm() {
    // Worker 100 has been ready for hours when it grows over the limit; its successor dies.
    let mut sim = Sim::new(1, 1, policy());
    sim.ready = false;
    sim.sample(SEC, |_| MIB);
    sim.sample(7200 * SEC, |_| MIB);
    sim.sample(SEC, |_| 200 * MIB);
    sim.sample(SEC, |_| 200 * MIB);
    assert_eq!(sim.started.len(), 1);
    sim.pool.exited(101, exited_with(1), sim.now).unwrap();
    sim.turn();
    sim.sample(10 * SEC, |_| 200 * MIB);
    sim.sample(10 * SEC, |_| 200 * MIB);
    // The wait is over as it dips under the limit for one sample: it has not run normally
    // for twice max_hold, only for 10s; its slot keeps its count.
    sim.sample(10 * SEC, |_| MIB);
    sim.sample(10 * SEC, |_| 200 * MIB);
    sim.sample(10 * SEC, |_| 200 * MIB);
    assert_eq!(sim.started.len(), 2, "{:?}", sim.events);
    sim.pool.exited(102, exited_with(1), sim.now).unwrap();
    sim.turn();
    let holds: Vec<u64> = aborted_holds(&sim).iter().map(Duration::as_secs).collect();
    assert_eq!(holds, [30, 60]);
}

#[test]
fn a_slot_recycled_by_lifetime_more_often_than_the_calm_still_calms_down() {
    // Lifetime 5 min, calm 20: every worker is recycled long before it could run 20 min, and
    // those recycles going well are no break (the slot kept its count forever: the second
    // failure, hours later, waited twice as long).
    let lifetime = lifetime_only(300 * SEC);
    let mut sim = Sim::new(1, 1, lifetime);
    let fail_next_recycle = |sim: &mut Sim| {
        sim.ready = false;
        for _ in 0..40 {
            sim.now += 10 * SEC;
            sim.turn();
            if sim.pids().len() == 2 {
                break;
            }
        }
        let successor = sim.pids()[1];
        sim.pool.exited(successor, exited_with(1), sim.now).unwrap();
        sim.turn();
        sim.ready = true;
    };
    fail_next_recycle(&mut sim);
    // Two hours of recycles that go well.
    for _ in 0..720 {
        sim.now += 10 * SEC;
        sim.turn();
    }
    assert!(sim.started.len() > 20, "{}", sim.started.len());
    fail_next_recycle(&mut sim);
    let holds: Vec<u64> = aborted_holds(&sim).iter().map(Duration::as_secs).collect();
    assert_eq!(holds, [30, 30], "the second is a first again");
}

#[test]
fn a_recycle_that_keeps_failing_slower_than_the_calm_keeps_doubling_its_wait() {
    // Each successor is available only after 1300s (--min-ready), and dies at 1250s: the old
    // worker serves on all the while, its recycle in flight, longer than the calm (20 min).
    let lifetime = lifetime_only(60 * SEC);
    let mut sim = Sim::with_min_ready(1, 1, lifetime, 1300 * SEC);
    for _ in 0..3 {
        for _ in 0..200 {
            sim.now += 10 * SEC;
            sim.turn();
            if sim.pids().len() == 2 {
                break;
            }
        }
        assert_eq!(sim.pids().len(), 2, "{:?}", sim.events);
        let successor = sim.pids()[1];
        for _ in 0..125 {
            sim.now += 10 * SEC;
            sim.turn();
        }
        sim.pool.exited(successor, exited_with(1), sim.now).unwrap();
        sim.turn();
    }
    let holds: Vec<u64> = aborted_holds(&sim).iter().map(Duration::as_secs).collect();
    assert_eq!(holds, [30, 60, 120]);
}
