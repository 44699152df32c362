//! A re-exec: the workers' requests, the slots' holds and the jitter's seed carry over to the
//! next image (its recycler saved, then restored into a new one).

use super::*;

fn count(sim: &Sim, which: fn(&RecycleEvent) -> bool) -> usize {
    sim.events.iter().filter(|e| which(e)).count()
}

#[test]
fn a_request_that_waits_is_carried_across_a_reexec() {
    // Not available for 10 s (--min-ready): the request waits.
    let mut sim = Sim::with_min_ready(1, 1, no_memory_limit(), 10 * SEC);
    sim.all_ask(2 * SEC);
    assert!(sim.started.is_empty(), "{:?}", sim.events);
    let deferred = |e: &RecycleEvent| matches!(e, RecycleEvent::Deferred { pid: 100, .. });
    assert_eq!(count(&sim, deferred), 1, "{:?}", sim.events);
    sim.now += SEC;
    sim.reexec();
    sim.turn();
    assert!(sim.started.is_empty());
    sim.now += 8 * SEC;
    sim.turn();
    assert_eq!(sim.started, [(0, 100, RecycleCause::Asked)], "asked before");
    assert_eq!(count(&sim, deferred), 1, "said once, in either image");
}

#[test]
fn a_held_slot_stays_held_across_a_reexec_and_its_count_goes_on() {
    let mut sim = Sim::new(1, 1, no_memory_limit());
    sim.all_ask(Duration::ZERO);
    sim.all_ask(Duration::ZERO);
    sim.all_ask(Duration::ZERO);
    assert_eq!(sim.started.len(), 2, "the third is held 30s");
    sim.now += 5 * SEC;
    sim.reexec();
    sim.turn();
    sim.now += 24 * SEC;
    sim.turn();
    assert_eq!(sim.started.len(), 2, "held on: {:?}", sim.events);
    sim.now += SEC;
    sim.turn();
    assert_eq!(
        sim.started[2],
        (0, 102, RecycleCause::Asked),
        "recycled once it has run 30s, without asking again"
    );
    let held = |e: &RecycleEvent| matches!(e, RecycleEvent::HeldBack { .. });
    assert_eq!(count(&sim, held), 1, "said once, in either image");
    // The count went on: the next worker that asks at once waits 60s, not 0.
    sim.all_ask(Duration::ZERO);
    sim.all_ask(59 * SEC);
    assert_eq!(sim.started.len(), 3);
    sim.all_ask(SEC);
    assert_eq!(sim.started.len(), 4);
}

#[test]
fn a_slot_held_after_an_aborted_recycle_stays_held_across_a_reexec() {
    let mut sim = Sim::new(1, 1, policy());
    sim.ready = false;
    sim.all_ask(2 * SEC);
    assert_eq!(sim.started, [(0, 100, RecycleCause::Asked)]);
    sim.pool.exited(101, exited_with(1), sim.now).unwrap();
    sim.turn();
    let aborted =
        |e: &RecycleEvent| matches!(e, RecycleEvent::Aborted { hold, .. } if *hold == 30 * SEC);
    assert_eq!(count(&sim, aborted), 1, "{:?}", sim.events);
    sim.now += SEC;
    sim.reexec();
    sim.now += 28 * SEC;
    sim.turn();
    assert_eq!(sim.started.len(), 1, "held: {:?}", sim.events);
    sim.now += 2 * SEC;
    sim.turn();
    assert_eq!(
        sim.started.len(),
        2,
        "asked before, tried again after the hold"
    );
}

#[test]
fn lifetimes_keep_their_jitter_across_a_reexec() {
    let jittered = RecyclePolicy {
        max_lifetime: Some(600 * SEC),
        jitter: 300 * SEC,
        ..policy()
    };
    let mut sim = Sim::new(3, 1, jittered);
    let before: Vec<_> = [100, 101, 102]
        .iter()
        .map(|&pid| sim.recycler.lifetime(pid))
        .collect();
    sim.now += SEC;
    sim.reexec();
    let after: Vec<_> = [100, 101, 102]
        .iter()
        .map(|&pid| sim.recycler.lifetime(pid))
        .collect();
    assert_eq!(before, after);
    // Nothing to carry without jitter, requests or holds: no state at all.
    let plain = Recycler::new(policy(), 7);
    assert!(plain.save(crate::Epoch::at(sim.now)).is_empty());
}

#[test]
fn a_worker_seen_under_the_limit_is_not_over_from_the_start_after_a_reexec() {
    let mut sim = Sim::new(1, 1, policy());
    // Worker 100 is over the limit from the start: recycled, which counts towards a loop.
    sim.sample(SEC, |_| 200 * MIB);
    sim.sample(SEC, |_| 200 * MIB);
    assert_eq!(sim.started, [(0, 100, RecycleCause::Memory)]);
    // Its successor is under the limit while ready, then herd re-executes itself.
    sim.sample(SEC, |_| MIB);
    sim.now += SEC;
    sim.reexec();
    // Over the limit later: a leak, recycled at once, not held as over from the start.
    sim.sample(SEC, |_| 200 * MIB);
    sim.sample(SEC, |_| 200 * MIB);
    let held = |e: &RecycleEvent| matches!(e, RecycleEvent::HeldBack { .. });
    assert_eq!(count(&sim, held), 0, "{:?}", sim.events);
    assert_eq!(sim.started[1], (0, 101, RecycleCause::Memory));
    // And the loop's count was reset: 102, over at once after a healthy predecessor, is not
    // held either.
    sim.sample(SEC, |_| 200 * MIB);
    sim.sample(SEC, |_| 200 * MIB);
    assert_eq!(count(&sim, held), 0, "{:?}", sim.events);
    assert_eq!(sim.started.len(), 3);
}

#[test]
fn a_saved_count_at_its_limit_holds_the_longest() {
    // A state whose count saturated: its hold is the longest, not an overflow.
    let mut sim = Sim::new(1, 1, no_memory_limit());
    let saved = SavedRecycler {
        slots: vec![SavedSlotHold {
            slot: 0,
            quick: u32::MAX,
            failed: 0,
            not_before_ms: None,
            normal_since_ms: None,
            counted: None,
        }],
        ..SavedRecycler::default()
    };
    sim.recycler.restore(saved, crate::Epoch::at(sim.now));
    sim.all_ask(Duration::ZERO);
    let waits: Vec<Duration> = sim
        .events
        .iter()
        .filter_map(|e| match e {
            RecycleEvent::HeldBack { wait, .. } => Some(*wait),
            _ => None,
        })
        .collect();
    assert_eq!(waits, [600 * SEC], "{:?}", sim.events);
}
