//! The slots held back from recycling, as `herd status` shows them.

use super::*;

#[test]
fn a_worker_that_asks_at_every_start_shows_its_slot_held_until_it_is_recycled() {
    let none = no_memory_limit();
    let mut sim = Sim::new(2, 1, none);
    sim.all_ask(Duration::ZERO);
    sim.turn();
    sim.all_ask(Duration::ZERO);
    sim.turn();
    assert_eq!(
        sim.recycler.holds(&sim.pool, sim.now),
        [],
        "twice is no loop"
    );
    sim.all_ask(Duration::ZERO);
    let held = |pid, left| RecycleHold {
        slot: 0,
        pid: Some(pid),
        left,
        kind: HoldKind::AskedAtStart,
    };
    let holds = sim.recycler.holds(&sim.pool, sim.now);
    assert_eq!(holds.len(), 2, "{holds:?}");
    assert_eq!(holds[0], held(holds[0].pid.unwrap(), 30 * SEC));
    assert_eq!(holds[1].slot, 1, "by slot");
    sim.now += 10 * SEC;
    let holds = sim.recycler.holds(&sim.pool, sim.now);
    assert_eq!(holds[0].left, 20 * SEC, "{holds:?}");
    sim.now += 20 * SEC;
    sim.turn();
    sim.turn();
    assert_eq!(
        sim.recycler.holds(&sim.pool, sim.now),
        [],
        "recycled: their successors have not asked"
    );
}

#[test]
fn a_slot_waiting_after_a_failed_recycle_shows_held_with_no_worker_due() {
    let mut sim = Sim::new(1, 1, policy());
    sim.ready = false;
    sim.all_ask(2 * SEC);
    sim.pool.exited(101, exited_with(1), sim.now).unwrap();
    sim.turn();
    let failed = |pid, left| RecycleHold {
        slot: 0,
        pid,
        left,
        kind: HoldKind::Failed,
    };
    assert_eq!(
        sim.recycler.holds(&sim.pool, sim.now),
        [failed(Some(100), 30 * SEC)],
        "the worker that asked waits"
    );
    // It exits: its slot's next worker is not due, but the slot still waits.
    sim.pool.exited(100, exited_with(0), sim.now).unwrap();
    sim.now += 5 * SEC;
    sim.turn();
    assert_eq!(
        sim.recycler.holds(&sim.pool, sim.now),
        [failed(None, 25 * SEC)]
    );
    sim.now += 25 * SEC;
    assert_eq!(sim.recycler.holds(&sim.pool, sim.now), []);
}

#[test]
fn a_slot_scaled_away_shows_no_hold() {
    let mut sim = Sim::new(2, 2, policy());
    sim.ready = false;
    sim.all_ask(2 * SEC);
    let slot1 = sim
        .pool
        .workers()
        .iter()
        .find(|w| w.slot == 1)
        .map(|w| w.pid)
        .unwrap();
    let successor = sim
        .pool
        .workers()
        .iter()
        .filter(|w| w.slot == 1 && w.pid != slot1)
        .map(|w| w.pid)
        .next();
    // Slot 1's recycle fails: the slot is held.
    if let Some(pid) = successor {
        sim.pool.exited(pid, exited_with(1), sim.now).unwrap();
    }
    sim.turn();
    let held = |sim: &Sim| {
        sim.recycler
            .holds(&sim.pool, sim.now)
            .iter()
            .map(|h| h.slot)
            .collect::<Vec<_>>()
    };
    assert!(
        held(&sim).contains(&1),
        "{:?}",
        sim.recycler.holds(&sim.pool, sim.now)
    );
    // Scaled to 1: slot 1's worker goes, and with it the hold.
    let actions = sim.pool.scale(1, sim.now).unwrap();
    sim.apply(actions);
    for pid in sim
        .pool
        .workers()
        .iter()
        .filter(|w| w.slot == 1)
        .map(|w| w.pid)
        .collect::<Vec<_>>()
    {
        sim.pool.exited(pid, exited_with(0), sim.now).unwrap();
    }
    sim.turn();
    assert!(
        !held(&sim).contains(&1),
        "{:?}",
        sim.recycler.holds(&sim.pool, sim.now)
    );
}

#[test]
fn holds_have_their_words() {
    assert_eq!(HoldKind::AskedAtStart.as_str(), "asked_at_start");
    assert!(HoldKind::AskedAtStart
        .describe()
        .contains("HERD_RECYCLE=1) at every start"));
    assert_eq!(HoldKind::OverFromStart.as_str(), "over_memory_from_start");
    assert_eq!(HoldKind::Failed.as_str(), "recycle_failed");
}

/// Worker 100 asks at once; its successor dies before ready, and the recycle is tried again
/// after its wait (across a re-exec if `reexec`): one worker that asked, not two in a row.
fn tried_again_counts_once(reexec: bool) {
    let mut sim = Sim::new(1, 1, no_memory_limit());
    sim.ready = false;
    sim.all_ask(Duration::ZERO);
    sim.pool.exited(101, exited_with(1), sim.now).unwrap();
    sim.turn();
    if reexec {
        sim.reexec();
    }
    sim.ready = true;
    sim.now += 30 * SEC;
    sim.turn();
    sim.turn();
    assert_eq!(sim.pids(), [102], "{:?}", sim.events);
    // 102 asks at once too: the second in a row, recycled; 103 doing so is the third, held.
    sim.all_ask(Duration::ZERO);
    let held = |sim: &Sim, pid| {
        sim.events
            .iter()
            .any(|e| matches!(e, RecycleEvent::HeldBack { pid: p, .. } if *p == pid))
    };
    assert!(!held(&sim, 102), "{:?}", sim.events);
    sim.turn();
    sim.all_ask(Duration::ZERO);
    assert!(held(&sim, 103), "{:?}", sim.events);
}

#[test]
fn a_recycle_tried_again_after_it_failed_counts_once_in_a_loop() {
    tried_again_counts_once(false);
    tried_again_counts_once(true);
}
