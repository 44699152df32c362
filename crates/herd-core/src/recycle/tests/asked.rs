//! Workers that ask to be replaced (`HERD_RECYCLE=1`): recycled, retried, held back when
//! they ask at every start.

use super::*;

#[test]
fn an_asked_recycle_that_aborts_is_tried_again_after_the_hold() {
    let mut sim = Sim::new(1, 1, policy());
    sim.ready = false;
    // Not at once: that would count towards a loop.
    sim.now += 2 * SEC;
    sim.recycler.ask(&sim.pool, 100, sim.now);
    sim.turn();
    assert_eq!(sim.started, [(0, 100, RecycleCause::Asked)]);
    let exit = exited_with(1);
    sim.pool.exited(101, exit, sim.now).unwrap();
    sim.turn();
    assert!(sim.events.iter().any(|e| matches!(
        e,
        RecycleEvent::Aborted {
            pid: 100,
            cause: RecycleCause::Asked,
            ..
        }
    )));
    sim.now += SEC;
    sim.turn();
    assert_eq!(sim.started.len(), 1, "held back");
    sim.now += 30 * SEC;
    sim.turn();
    assert_eq!(sim.started.len(), 2, "asked once, tried again");
}

#[test]
fn a_worker_that_asks_at_every_start_is_held_back_longer_each_time() {
    let none = no_memory_limit();
    let mut sim = Sim::new(1, 1, none);
    sim.all_ask(Duration::ZERO);
    sim.all_ask(Duration::ZERO);
    let asked = [(0, 100, RecycleCause::Asked), (0, 101, RecycleCause::Asked)];
    assert_eq!(sim.started, asked, "twice is no loop yet");
    sim.all_ask(Duration::ZERO);
    assert_eq!(sim.started.len(), 2, "the third is held: {:?}", sim.events);
    let held: Vec<&RecycleEvent> = sim
        .events
        .iter()
        .filter(|e| matches!(e, RecycleEvent::HeldBack { .. }))
        .collect();
    match held[..] {
        [RecycleEvent::HeldBack {
            slot,
            pid,
            wait,
            why,
        }] => {
            assert_eq!((*slot, *pid, *wait), (0, 102, 30 * SEC));
            assert!(why.contains("HERD_RECYCLE=1"), "{why}");
            assert!(why.contains("recycling it would loop"), "{why}");
            assert!(why.contains("once it has run 30s"), "{why}");
        }
        _ => panic!("{:?}", sim.events),
    }
    assert_eq!(
        sim.recycler.next_deadline(&sim.pool, sim.now),
        Some(sim.now + 30 * SEC),
        "the loop wakes when the hold ends"
    );
    for _ in 0..29 {
        sim.all_ask(SEC);
    }
    assert_eq!(sim.started.len(), 2, "said once, held for 30s");
    sim.all_ask(SEC);
    assert_eq!(sim.started.len(), 3, "recycled once it has run 30s");
    sim.all_ask(Duration::ZERO);
    sim.all_ask(59 * SEC);
    assert_eq!(sim.started.len(), 3, "the next one waits 60s");
    sim.all_ask(SEC);
    assert_eq!(sim.started.len(), 4);
    let held = sim
        .events
        .iter()
        .filter(|e| matches!(e, RecycleEvent::HeldBack { .. }))
        .count();
    assert_eq!(held, 2, "once per held worker: {:?}", sim.events);
}

#[test]
fn a_worker_that_asks_after_its_first_moments_is_not_held_back() {
    let none = no_memory_limit();
    let mut sim = Sim::new(1, 1, none);
    for _ in 0..5 {
        sim.all_ask(2 * SEC);
    }
    assert_eq!(sim.started.len(), 5, "{:?}", sim.events);
    // Asking soon twice, then late once, starts the count again.
    sim.all_ask(Duration::ZERO);
    sim.all_ask(Duration::ZERO);
    sim.all_ask(2 * SEC);
    sim.all_ask(Duration::ZERO);
    sim.all_ask(Duration::ZERO);
    assert_eq!(sim.started.len(), 10, "{:?}", sim.events);
    assert!(!sim
        .events
        .iter()
        .any(|e| matches!(e, RecycleEvent::HeldBack { .. })));
}

#[test]
fn asking_soon_counts_from_ready_not_from_available() {
    let none = no_memory_limit();
    // Under --min-ready 30s a worker that asks 20 s after READY=1 is not available yet, but
    // it did not ask within its first moments: a busy worker reaching --max-requests.
    let mut sim = Sim::with_min_ready(1, 1, none, 30 * SEC);
    sim.now += 20 * SEC;
    sim.recycler.ask(&sim.pool, 100, sim.now);
    assert!(!sim.pool.worker(100).unwrap().available);
    assert!(!sim.recycler.asked_soon(100));
    // One that asks within a second of READY=1 did.
    let mut sim = Sim::with_min_ready(1, 1, policy(), 30 * SEC);
    sim.now += SEC / 2;
    sim.recycler.ask(&sim.pool, 100, sim.now);
    assert!(sim.recycler.asked_soon(100));
}

#[test]
fn a_pid_taken_again_does_not_inherit_a_request() {
    let none = no_memory_limit();
    let mut sim = Sim::new(1, 1, none);
    sim.recycler.ask(&sim.pool, 100, sim.now);
    let exit = exited_with(0);
    sim.pool.exited(100, exit, sim.now).unwrap();
    sim.next_pid = 100; // the restart gets the same pid
    sim.now += 10 * SEC;
    sim.turn();
    assert_eq!(sim.pids(), [100]);
    sim.turn();
    assert!(sim.started.is_empty(), "{:?}", sim.events);
}

#[test]
fn a_worker_that_asks_is_recycled_once_within_max_surge_even_without_limits() {
    let none = no_memory_limit();
    let mut sim = Sim::new(3, 1, none);
    sim.recycler.ask(&sim.pool, 100, sim.now);
    sim.recycler.ask(&sim.pool, 101, sim.now);
    sim.recycler.ask(&sim.pool, 999, sim.now); // no such worker
    sim.turn();
    assert_eq!(sim.started, [(0, 100, RecycleCause::Asked)]);
    let deferred = sim.events.iter().filter(|e| {
        matches!(
            e,
            RecycleEvent::Deferred {
                pid: 101,
                cause: RecycleCause::Asked,
                ..
            }
        )
    });
    assert_eq!(deferred.count(), 1, "{:?}", sim.events);
    sim.turn();
    sim.turn();
    let asked = [(0, 100, RecycleCause::Asked), (1, 101, RecycleCause::Asked)];
    assert_eq!(sim.started, asked, "each once, one at a time");
    assert_eq!(sim.pids(), [102, 103, 104]);
    let why = sim.events.iter().find_map(|e| match e {
        RecycleEvent::Started { why, .. } => Some(why.clone()),
        _ => None,
    });
    assert_eq!(
        why.as_deref(),
        Some("it asked to be replaced (HERD_RECYCLE=1)")
    );
}
