//! Starting, restarting, stopping, scaling, readiness and watchdogs, export and import.
use super::*;

#[test]
fn starts_every_slot_and_counts_them_ready_after_the_delay() {
    let mut h = Harness::new(config(3, Readiness::Delay(SEC)));
    assert_eq!(h.live().len(), 3);
    assert!(h.live().iter().all(|w| w.3 == WorkerState::Starting));
    assert_eq!(h.pool.next_deadline(), Some(h.now + SEC));
    h.advance(SEC);
    assert!(h.live().iter().all(|w| w.3 == WorkerState::Ready));
    assert_eq!(h.pool.next_deadline(), None);
}

#[test]
fn ready_notifications_count_at_once() {
    let mut h = Harness::new(config(1, Readiness::Notify { timeout: 10 * SEC }));
    h.notify(100, "STATUS=warming up\nREADY=1");
    assert_eq!(h.live()[0].3, WorkerState::Ready);
    assert_eq!(h.pool.workers()[0].status.as_deref(), Some("warming up"));
}

#[test]
fn a_crashed_worker_is_restarted_in_its_slot_with_backoff() {
    let mut h = Harness::new(config(2, Readiness::Delay(SEC)));
    let exit = h.exit(101, code(1));
    assert_eq!((exit.slot, exit.restart_in), (1, Some(Duration::ZERO)));
    assert_eq!(h.pid_in(1), 102, "restarted at once");
    let exit = h.exit(102, code(1));
    assert_eq!(exit.restart_in, Some(100 * MS));
    assert_eq!(h.live().len(), 1);
    h.advance(100 * MS);
    assert_eq!(h.pid_in(1), 103);
    assert_eq!(h.pool.slots()[1].restarts, 2);
    assert_eq!(h.pool.slots()[1].last_exit, Some(code(1)));
}

#[test]
fn a_start_is_a_restart_only_after_an_unexpected_exit_not_a_scale_up_into_a_used_slot() {
    let mut h = Harness::new(config(2, Readiness::Delay(SEC)));
    // A crash: the start the pool asks for next in its slot is a restart.
    let (_, mut actions) = h.pool.exited(101, code(1), h.now).unwrap();
    actions.extend(h.pool.due(h.now));
    assert!(
        matches!(actions[..], [Action::Spawn { slot: 1, .. }]),
        "{actions:?}"
    );
    assert!(h.pool.starts_restart(1) && !h.pool.starts_restart(0));
    h.apply(actions);
    assert!(!h.pool.starts_restart(1), "spawned: no start under way");
    // Scaled away and back: the slot had workers and exits before, but this start is no
    // restart (a scale-up beside serving workers warms up as one).
    let actions = h.pool.scale(1, h.now).unwrap();
    h.apply(actions);
    h.stopped_workers_exit();
    let mut actions = h.pool.scale(2, h.now).unwrap();
    actions.extend(h.pool.due(h.now));
    assert!(
        matches!(actions[..], [Action::Spawn { slot: 1, .. }]),
        "{actions:?}"
    );
    assert!(h.pool.slots()[1].last_exit.is_some());
    assert!(!h.pool.starts_restart(1));
}

#[test]
fn a_successor_not_started_yet_when_its_slot_loses_its_worker_starts_as_the_restart() {
    let mut h = Harness::new(config(2, Readiness::Delay(SEC)));
    h.advance(SEC);
    let (_, mut actions) = h.pool.upgrade(60 * SEC, h.now).unwrap();
    actions.extend(h.pool.due(h.now));
    // The successor is handed out, not started yet (queued, or awaiting its fork server).
    let slot = actions
        .iter()
        .find_map(|a| match a {
            Action::Spawn { slot, .. } => Some(*slot),
            _ => None,
        })
        .expect("a successor's start");
    assert!(!h.pool.starts_restart(slot));
    let old = h.pid_in(slot);
    let (exit, _) = h.pool.exited(old, killed(), h.now).unwrap();
    assert!(exit.lost && exit.restart_in.is_none(), "{exit:?}");
    assert!(h.pool.starts_restart(slot), "it is the slot's restart now");
}

#[test]
fn workers_killed_from_outside_restart_at_once_without_growing_the_backoff() {
    let mut h = Harness::new(config(1, Readiness::Delay(SEC)));
    h.exit(100, code(1)); // a crash: restarted at once, failures 1
    h.exit(101, code(1)); // another: 100ms
    h.advance(100 * MS);
    assert_eq!(h.pool.failures(0), 2);
    for pid in 102..112 {
        let exit = h.exit(pid, killed());
        assert_eq!(exit.restart_in, Some(Duration::ZERO), "kill {pid}");
    }
    assert_eq!(h.pool.failures(0), 2, "kills do not count as crashes");
    assert_eq!(h.pool.slots()[0].restarts, 12);
}

#[test]
fn exits_just_after_a_socket_repair_do_not_grow_the_backoff() {
    let mut h = Harness::new(config(1, Readiness::Delay(SEC)));
    h.exit(100, code(1));
    h.exit(101, code(1));
    h.advance(100 * MS);
    assert_eq!(h.pool.failures(0), 2);
    // A worker shut the shared socket down, herd repaired it: the crashes that follow are
    // victims' (accept() failed), restarted at once.
    h.pool.excuse_exits_until(h.now + 2 * SEC);
    for pid in 102..107 {
        let exit = h.exit(pid, code(1));
        assert_eq!(exit.restart_in, Some(Duration::ZERO), "crash {pid}");
    }
    assert_eq!(h.pool.failures(0), 2, "not counted as crashes");
    // Once the window is over, crashes count again.
    h.advance(2 * SEC);
    let exit = h.exit(h.pid_in(0), code(1));
    assert_eq!(exit.restart_in, Some(200 * MS));
}

#[test]
fn unknown_pids_are_ignored() {
    let mut h = Harness::new(config(1, Readiness::Delay(SEC)));
    assert!(h.pool.exited(999, code(0), h.now).is_none());
    assert!(!h.pool.notified(999, &NotifyMessage::default(), h.now));
}

#[test]
fn spawn_failures_back_off() {
    let mut pool = Pool::new(config(1, Readiness::Delay(SEC)));
    let t0 = Instant::now();
    let spawn = Action::Spawn {
        slot: 0,
        generation: 1,
    };
    assert_eq!(pool.due(t0), std::slice::from_ref(&spawn));
    assert!(pool.due(t0).is_empty(), "handed out once");
    assert_eq!(pool.spawn_failed(0, "boom", t0).0, Some(Duration::ZERO));
    assert_eq!(pool.due(t0), [spawn]);
    assert_eq!(pool.spawn_failed(0, "boom", t0).0, Some(100 * MS));
    assert!(pool.due(t0).is_empty());
    assert!(!pool.spawned(0, 1, 42, t0), "slot 0 was not handed out");
}

#[test]
fn graceful_stop_signals_waits_then_kills() {
    let mut h = Harness::new(config(2, Readiness::Delay(SEC)));
    let actions = h.pool.stop(true, None, h.now);
    assert_eq!(actions.len(), 2);
    h.apply(actions);
    assert!(h
        .signals
        .iter()
        .all(|s| s.1 == StopMode::Graceful && s.2 == Reason::Shutdown));
    let exit = h.exit(100, code(0));
    assert_eq!(
        (exit.stopped_for, exit.restart_in),
        (Some(Reason::Shutdown), None)
    );
    assert!(
        h.pool.stop(true, None, h.now).is_empty(),
        "asking twice changes nothing"
    );
    h.advance(4 * SEC);
    assert_eq!(h.signals.len(), 2);
    h.advance(SEC);
    assert_eq!(
        h.signals.last(),
        Some(&(101, StopMode::Kill, Reason::GraceExpired))
    );
    h.advance(SEC);
    assert_eq!(h.signals.len(), 3, "killed once");
    h.exit(101, killed());
    assert!(h.pool.is_stopped());
}

/// `herd stop --grace 1s`: no worker has more than 1 s left, those scaled down before (which
/// had the pool's 5 s) included; asked again shorter, shorter still; never longer.
#[test]
fn a_stops_grace_is_the_most_any_stopping_worker_has_left() {
    let mut h = Harness::new(config(3, Readiness::Delay(SEC)));
    let scaled = h.pool.scale(1, h.now).unwrap();
    h.apply(scaled);
    assert_eq!(h.signals.len(), 2, "2 scaled down, 5 s each");
    h.advance(SEC);
    let stop = h.pool.stop(true, Some(2 * SEC), h.now);
    h.apply(stop);
    assert!(
        h.pool.stop(true, Some(10 * SEC), h.now).is_empty(),
        "never longer"
    );
    h.advance(SEC);
    assert_eq!(h.signals.len(), 3, "nothing killed yet");
    h.pool.stop(true, Some(SEC / 2), h.now);
    h.advance(SEC / 2);
    let kills = h.signals.iter().filter(|s| s.1 == StopMode::Kill).count();
    assert_eq!(
        kills, 3,
        "every one killed 2.5 s after the first stop: {:?}",
        h.signals
    );
}

#[test]
fn fast_stop_kills_at_once_even_during_a_graceful_one() {
    let mut h = Harness::new(config(2, Readiness::Delay(SEC)));
    let graceful = h.pool.stop(true, None, h.now);
    h.apply(graceful);
    let fast = h.pool.stop(false, None, h.now);
    assert_eq!(fast.len(), 2);
    assert!(fast.iter().all(|a| matches!(
        a,
        Action::Stop {
            mode: StopMode::Kill,
            ..
        }
    )));
}

#[test]
fn stop_cancels_pending_restarts() {
    let mut h = Harness::new(config(2, Readiness::Delay(SEC)));
    h.exit(100, code(1));
    h.exit(102, code(1)); // the immediate successor crashes too: slot 0 waits 100ms
    h.exit(101, code(1));
    let actions = h.pool.stop(true, None, h.now);
    h.apply(actions);
    h.stopped_workers_exit();
    assert!(h.pool.is_stopped());
    assert!(h.pool.due(h.now + SEC).is_empty());
}

#[test]
fn scaling_down_stops_the_highest_slots_and_up_fills_new_ones() {
    let mut h = Harness::new(config(4, Readiness::Delay(SEC)));
    let actions = h.pool.scale(2, h.now).unwrap();
    h.apply(actions);
    let stopped: Vec<u32> = h.signals.iter().map(|s| s.0).collect();
    assert_eq!(stopped, [103, 102], "highest slot first");
    assert!(h.signals.iter().all(|s| s.2 == Reason::ScaleDown));
    let exit = h.exit(103, code(0));
    assert_eq!(exit.restart_in, None);
    // A scaled-down worker that crashes instead of stopping is not restarted either.
    assert_eq!(h.exit(102, code(1)).restart_in, None);
    assert_eq!(h.live().len(), 2);

    let actions = h.pool.scale(5, h.now).unwrap();
    h.apply(actions);
    let slots: Vec<usize> = h.live().iter().map(|w| w.0).collect();
    assert_eq!(slots, [0, 1, 2, 3, 4]);
}

#[test]
fn starts_handed_out_for_slots_scaled_away_before_they_ran_are_refused() {
    let mut h = Harness::new(config(2, Readiness::Delay(SEC)));
    let spawns: Vec<(usize, u64)> = (h.pool.scale(100, h.now).unwrap().into_iter())
        .filter_map(|a| match a {
            Action::Spawn { slot, generation } => Some((slot, generation)),
            _ => None,
        })
        .collect();
    assert_eq!(spawns.len(), 98);
    // Scaled down again before the driver ran them: none is wanted any more.
    let actions = h.pool.scale(2, h.now).unwrap();
    h.apply(actions);
    assert!(spawns.iter().all(|&(slot, _)| !h.pool.wants_start(slot)));
    let (slot, generation) = spawns[3];
    assert!(
        !h.pool.spawned(slot, generation, 900, h.now),
        "a worker nobody wants"
    );
    assert_eq!(h.live().len(), 2);
    // Up again: the slots are wanted again, once each.
    let again = h.pool.scale(6, h.now).unwrap();
    assert_eq!(again.len(), 4, "{again:?}");
    assert!(h.pool.wants_start(5));
    assert!(h.pool.spawned(5, generation, 901, h.now));
    assert!(!h.pool.wants_start(5), "started");
    assert!(
        !h.pool.spawned(5, generation, 902, h.now),
        "a second start of the slot"
    );
}

#[test]
fn a_worker_never_ready_is_killed_and_replaced() {
    let mut h = Harness::new(config(1, Readiness::Notify { timeout: 10 * SEC }));
    h.advance(10 * SEC);
    assert_eq!(h.signals, [(100, StopMode::Kill, Reason::NotReady)]);
    let exit = h.exit(100, killed());
    assert_eq!(exit.restart_in, Some(Duration::ZERO));
    assert_eq!(h.pid_in(0), 101);
}

#[test]
fn a_silent_worker_is_killed_by_the_watchdog_and_replaced() {
    let mut cfg = config(1, Readiness::Notify { timeout: 10 * SEC });
    cfg.watchdog = Some(2 * SEC);
    let mut h = Harness::new(cfg);
    h.notify(100, "READY=1");
    h.advance(SEC);
    h.notify(100, "WATCHDOG=1");
    h.advance(SEC + 500 * MS);
    assert!(h.signals.is_empty(), "the ping reset the deadline");
    h.advance(500 * MS);
    assert_eq!(h.signals, [(100, StopMode::Kill, Reason::Watchdog)]);
    assert_eq!(h.exit(100, killed()).restart_in, Some(Duration::ZERO));
}

#[test]
fn signals_reach_live_workers_only() {
    let mut h = Harness::new(config(3, Readiness::Delay(SEC)));
    // Slot 2's worker is told to stop (scaled down) but has not exited yet: it is not live.
    let actions = h.pool.scale(2, h.now).unwrap();
    h.apply(actions);
    assert_eq!(
        h.pool.workers().len(),
        3,
        "the scaled-down worker still runs"
    );
    assert_eq!(h.pool.signal_targets(None).unwrap(), [100, 101]);
    assert_eq!(h.pool.signal_targets(Some(1)).unwrap(), [101]);
    assert_eq!(
        h.pool.signal_targets(Some(2)),
        Err(PoolError::NoWorkerInSlot {
            slot: 2,
            running: vec![0, 1]
        }),
        "slot 2's worker is stopping"
    );
    assert_eq!(
        h.pool.signal_targets(Some(7)).unwrap_err().to_string(),
        "no worker runs in slot 7; workers run in slots 0-1"
    );
}

#[test]
fn export_and_import_keep_workers_and_timers() {
    let mut h = Harness::new(config(3, Readiness::Notify { timeout: 10 * SEC }));
    h.notify(100, "READY=1\nSTATUS=fine");
    h.exit(101, code(1)); // restarted at once as 103
    h.exit(103, code(1)); // waits 100ms
    let state = h
        .pool
        .export(Epoch::at(h.now))
        .expect("exportable while serving");
    let later = h.now + 5 * MS;
    let mut pool = import(
        config(3, Readiness::Notify { timeout: 10 * SEC }),
        state,
        later,
    );
    let ready = pool.worker(100).unwrap();
    assert_eq!(
        (ready.state, ready.status.as_deref()),
        (WorkerState::Ready, Some("fine"))
    );
    assert_eq!(pool.worker(102).unwrap().state, WorkerState::Starting);
    assert_eq!(pool.slots()[1].restarts, 2);
    assert_eq!(pool.failures(1), 2);
    // The pending restart keeps its remaining delay.
    assert!(pool.due(later + 90 * MS).is_empty());
    assert_eq!(
        pool.due(later + 100 * MS),
        [Action::Spawn {
            slot: 1,
            generation: 1
        }]
    );
}

#[test]
fn export_and_import_keep_last_exits_and_the_excused_exits_window() {
    let mut h = Harness::new(config(2, Readiness::Delay(SEC)));
    h.exit(101, killed());
    h.pool.excuse_exits_until(h.now + 2 * SEC);
    let state = h.pool.export(Epoch::at(h.now)).unwrap();
    assert_eq!(state.slots[1].last_exit, Some(9), "the raw status");
    assert_eq!(state.excused_for_ms, Some(crate::Ahead(2000)));
    let later = h.now + 5 * SEC;
    h.pool = import(h.pool.config().clone(), state, later);
    h.now = later;
    assert_eq!(h.pool.slots()[1].last_exit, Some(killed()));
    // Still excused 1.9 s after the import: a crash restarts at once and is not counted.
    h.advance(1900 * MS);
    let exit = h.exit(100, code(1));
    assert_eq!(exit.restart_in, Some(Duration::ZERO));
    assert_eq!(h.pool.failures(0), 0);
}

#[test]
fn no_export_while_upgrading_or_stopping() {
    let mut h = Harness::new(config(1, Readiness::Delay(SEC)));
    let (_, actions) = h.pool.upgrade(60 * SEC, h.now).unwrap();
    h.apply(actions);
    assert!(h.pool.export(Epoch::at(h.now)).is_none());
    let actions = h.pool.stop(true, None, h.now);
    h.apply(actions);
    assert!(h.pool.export(Epoch::at(h.now)).is_none());
}

/// A slot's last exit says why the pool stopped its worker: `herd status` said "killed by
/// SIGTERM" after every upgrade, a planned stop read as a kill; and after a failed upgrade, a
/// slot whose old worker serves on showed its failed successor's exit as if its own.
#[test]
fn a_slots_last_exit_says_why_the_pool_stopped_its_worker() {
    let mut h = Harness::new(config(1, Readiness::Notify { timeout: 10 * SEC }));
    h.notify(100, "READY=1");
    let (_, actions) = h.pool.upgrade(60 * SEC, h.now).unwrap();
    h.apply(actions);
    h.exit(101, code(3));
    let last = |h: &Harness| h.pool.slots()[0].last_exit_said().unwrap();
    assert_eq!(last(&h), "exit code 3 (generation 2, its upgrade failed)");
    let (_, actions) = h.pool.upgrade(60 * SEC, h.now).unwrap();
    h.apply(actions);
    let successor = h
        .pool
        .workers()
        .iter()
        .find(|w| w.generation == 3)
        .unwrap()
        .pid;
    h.notify(successor, "READY=1");
    h.exit(100, code(0));
    assert_eq!(last(&h), "exit code 0 (replaced by a newer generation)");
    // Kept across a re-exec, whose state has only the raw status else.
    let state = h.pool.export(Epoch::at(h.now)).unwrap();
    let pool = import(
        config(1, Readiness::Notify { timeout: 10 * SEC }),
        state,
        h.now,
    );
    let said = pool.slots()[0].last_exit_said();
    assert_eq!(
        said.as_deref(),
        Some("exit code 0 (replaced by a newer generation)")
    );
}
