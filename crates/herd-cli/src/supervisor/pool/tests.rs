use super::*;
use std::os::unix::process::ExitStatusExt;

const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);

fn config(workers: usize, readiness: Readiness) -> PoolConfig {
    PoolConfig {
        workers,
        grace: 5 * SEC,
        stop_signal: Signal::TERM,
        backoff: BackoffPolicy::default(),
        readiness,
        watchdog: None,
        max_surge: 1,
        min_ready: Duration::ZERO,
    }
}

fn code(n: i32) -> ExitStatus {
    ExitStatus::from_raw(n << 8)
}

/// Plays the driver: starts what the pool asks for, with pids from 100 up.
struct Harness {
    pool: Pool,
    now: Instant,
    next_pid: u32,
    ended: Vec<Result<u64, String>>,
    signals: Vec<(u32, Signal, Reason)>,
    /// Whether every step checks the pool's indexes against a recount.
    recount: bool,
}

impl Harness {
    fn new(config: PoolConfig) -> Harness {
        let mut h = Harness {
            pool: Pool::new(config),
            now: Instant::now(),
            next_pid: 100,
            ended: Vec::new(),
            signals: Vec::new(),
            recount: true,
        };
        h.tick();
        h
    }

    /// Carries out `actions`, then whatever becomes due, until nothing is.
    fn apply(&mut self, actions: Vec<Action>) {
        let mut queue = actions;
        loop {
            let mut more = Vec::new();
            for action in queue {
                match action {
                    Action::Spawn { slot, generation } => {
                        let pid = self.next_pid;
                        self.next_pid += 1;
                        assert!(self.pool.spawned(slot, generation, pid, self.now));
                    }
                    Action::Signal {
                        pid,
                        signal,
                        reason,
                        ..
                    } => self.signals.push((pid, signal, reason)),
                    Action::UpgradeEnded(result) => self.ended.push(result),
                }
            }
            more.extend(self.pool.due(self.now));
            if self.recount {
                assert_indexes_match_a_recount(&self.pool);
            }
            if more.is_empty() {
                return;
            }
            queue = more;
        }
    }

    fn tick(&mut self) {
        let actions = self.pool.due(self.now);
        self.apply(actions);
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.tick();
    }

    fn exit(&mut self, pid: u32, status: ExitStatus) -> Exit {
        let (exit, actions) = self.pool.exited(pid, status, self.now).expect("a worker");
        assert_indexes_match_a_recount(&self.pool);
        self.apply(actions);
        exit
    }

    fn notify(&mut self, pid: u32, text: &str) {
        let message = NotifyMessage::parse(text.as_bytes()).unwrap();
        assert!(self.pool.notified(pid, &message, self.now));
        self.tick();
    }

    fn live(&self) -> Vec<(usize, u32, u64, WorkerState)> {
        self.pool
            .workers()
            .iter()
            .filter(|w| w.live())
            .map(|w| (w.slot, w.pid, w.generation, w.state))
            .collect()
    }

    fn pid_in(&self, slot: usize) -> u32 {
        self.pool
            .workers()
            .iter()
            .find(|w| w.slot == slot && w.live())
            .unwrap()
            .pid
    }

    /// Lets every signalled worker exit, as well-behaved workers do.
    fn stopped_workers_exit(&mut self) {
        let stopping: Vec<u32> = self
            .pool
            .workers()
            .iter()
            .filter(|w| !w.live())
            .map(|w| w.pid)
            .collect();
        for pid in stopping {
            self.exit(pid, code(0));
        }
    }
}

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
fn workers_killed_from_outside_restart_at_once_without_growing_the_backoff() {
    let mut h = Harness::new(config(1, Readiness::Delay(SEC)));
    h.exit(100, code(1)); // a crash: restarted at once, failures 1
    h.exit(101, code(1)); // another: 100ms
    h.advance(100 * MS);
    assert_eq!(h.pool.failures(0), 2);
    for pid in 102..112 {
        let exit = h.exit(pid, ExitStatus::from_raw(libc::SIGKILL));
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
    assert_eq!(pool.spawn_failed(0, "boom", t0).0, Duration::ZERO);
    assert_eq!(pool.due(t0), [spawn]);
    assert_eq!(pool.spawn_failed(0, "boom", t0).0, 100 * MS);
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
        .all(|s| s.1 == Signal::TERM && s.2 == Reason::Shutdown));
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
        Some(&(101, Signal::KILL, Reason::GraceExpired))
    );
    h.advance(SEC);
    assert_eq!(h.signals.len(), 3, "killed once");
    h.exit(101, ExitStatus::from_raw(9));
    assert!(h.pool.is_stopped());
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
        Action::Signal {
            signal: Signal::KILL,
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
fn rolling_upgrade_replaces_each_slot_after_its_successor_is_ready() {
    let mut h = Harness::new(config(2, Readiness::Notify { timeout: 10 * SEC }));
    h.notify(100, "READY=1");
    h.notify(101, "READY=1");
    let (generation, actions) = h.pool.upgrade(60 * SEC, h.now).unwrap();
    assert_eq!(generation, 2);
    h.apply(actions);
    // One surge worker for slot 0; nobody is stopped yet.
    assert_eq!(h.live().len(), 3);
    assert!(h.signals.is_empty());
    assert!(
        h.pool.upgrade(60 * SEC, h.now).is_err(),
        "one upgrade at a time"
    );

    h.notify(102, "READY=1");
    assert_eq!(h.signals, [(100, Signal::TERM, Reason::Replaced)]);
    assert_eq!(
        h.pid_in(1),
        101,
        "slot 1's old worker serves until its successor is ready"
    );
    let new_in_1 = h
        .pool
        .workers()
        .iter()
        .find(|w| w.slot == 1 && w.generation == 2)
        .unwrap()
        .pid;
    h.notify(new_in_1, "READY=1");
    assert_eq!(
        h.signals.last(),
        Some(&(101, Signal::TERM, Reason::Replaced))
    );
    assert_eq!(h.ended, [Ok(2)]);
    assert_eq!(h.pool.generation(), 2);
    let exit = h.exit(100, code(0));
    assert_eq!(
        (exit.stopped_for, exit.restart_in),
        (Some(Reason::Replaced), None)
    );
}

#[test]
fn an_upgrade_whose_worker_exits_aborts_and_keeps_the_old_ones() {
    let mut h = Harness::new(config(2, Readiness::Notify { timeout: 10 * SEC }));
    h.notify(100, "READY=1");
    h.notify(101, "READY=1");
    let (_, actions) = h.pool.upgrade(60 * SEC, h.now).unwrap();
    h.apply(actions);
    let exit = h.exit(102, code(3));
    assert_eq!(exit.restart_in, None, "the old worker still holds slot 0");
    assert_eq!(h.ended.len(), 1);
    let why = h.ended[0].as_ref().unwrap_err();
    assert!(
        why.contains("exited before it was ready: exit code 3"),
        "{why}"
    );
    let live: Vec<u32> = h.live().iter().map(|w| w.1).collect();
    assert_eq!(live, [100, 101]);
    assert_eq!(h.pool.generation(), 1);
    assert!(h.pool.upgrade_in_progress().is_none());
    // A later upgrade may try again.
    assert_eq!(h.pool.upgrade(60 * SEC, h.now).unwrap().0, 3);
}

#[test]
fn an_upgrade_whose_worker_is_never_ready_aborts() {
    let mut h = Harness::new(config(1, Readiness::Notify { timeout: 10 * SEC }));
    h.notify(100, "READY=1");
    let (_, actions) = h.pool.upgrade(60 * SEC, h.now).unwrap();
    h.apply(actions);
    h.advance(10 * SEC);
    assert!(h.ended[0]
        .as_ref()
        .unwrap_err()
        .contains("did not send READY=1"));
    assert_eq!(h.signals, [(101, Signal::TERM, Reason::UpgradeAborted)]);
    assert_eq!(h.live().iter().map(|w| w.1).collect::<Vec<_>>(), [100]);
}

#[test]
fn an_upgrade_whose_worker_cannot_start_aborts() {
    let mut pool = Pool::new(config(1, Readiness::Delay(SEC)));
    let t0 = Instant::now();
    pool.due(t0);
    assert!(pool.spawned(0, 1, 100, t0));
    pool.due(t0 + SEC);
    let (_, actions) = pool.upgrade(60 * SEC, t0 + SEC).unwrap();
    assert_eq!(
        actions,
        [Action::Spawn {
            slot: 0,
            generation: 2
        }]
    );
    let (_, actions) = pool.spawn_failed(0, "no such file", t0 + SEC);
    assert!(
        matches!(&actions[..], [Action::UpgradeEnded(Err(why))] if why.contains("no such file"))
    );
}

#[test]
fn stopping_during_an_upgrade_ends_it() {
    let mut h = Harness::new(config(1, Readiness::Delay(SEC)));
    h.advance(SEC);
    let (_, actions) = h.pool.upgrade(60 * SEC, h.now).unwrap();
    h.apply(actions);
    let actions = h.pool.stop(true, None, h.now);
    h.apply(actions);
    assert_eq!(h.ended, [Err("herd is stopping".to_string())]);
    assert!(h.pool.scale(3, h.now).is_err());
    assert!(h.pool.upgrade(SEC, h.now).is_err());
}

#[test]
fn a_worker_never_ready_is_killed_and_replaced() {
    let mut h = Harness::new(config(1, Readiness::Notify { timeout: 10 * SEC }));
    h.advance(10 * SEC);
    assert_eq!(h.signals, [(100, Signal::KILL, Reason::NotReady)]);
    let exit = h.exit(100, ExitStatus::from_raw(9));
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
    assert_eq!(h.signals, [(100, Signal::KILL, Reason::Watchdog)]);
    assert_eq!(
        h.exit(100, ExitStatus::from_raw(9)).restart_in,
        Some(Duration::ZERO)
    );
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
    let pids = |actions: Vec<Action>| -> Vec<u32> {
        actions
            .into_iter()
            .map(|a| match a {
                Action::Signal { pid, signal, .. } => {
                    assert_eq!(signal, Signal::HUP);
                    pid
                }
                other => panic!("not a signal: {other:?}"),
            })
            .collect()
    };
    assert_eq!(pids(h.pool.signal(Signal::HUP, None).unwrap()), [100, 101]);
    assert_eq!(pids(h.pool.signal(Signal::HUP, Some(1)).unwrap()), [101]);
    assert!(
        h.pool.signal(Signal::HUP, Some(2)).is_err(),
        "slot 2's worker is stopping"
    );
    assert!(h.pool.signal(Signal::HUP, Some(7)).is_err());
}

#[test]
fn notify_messages_parse_like_systemd() {
    let m = NotifyMessage::parse(b"READY=1\nSTATUS=serving 3 clients\nX_CUSTOM=1\n").unwrap();
    assert!(m.ready && !m.watchdog && !m.stopping);
    assert_eq!(m.status.as_deref(), Some("serving 3 clients"));
    assert!(NotifyMessage::parse(b"READY").is_none());
    assert!(NotifyMessage::parse(&[0xff, 0xfe]).is_none());
    assert_eq!(
        NotifyMessage::parse(b"READY=0").unwrap(),
        NotifyMessage::default()
    );
}

#[test]
fn export_and_import_keep_workers_and_timers() {
    let mut h = Harness::new(config(3, Readiness::Notify { timeout: 10 * SEC }));
    h.notify(100, "READY=1\nSTATUS=fine");
    h.exit(101, code(1)); // restarted at once as 103
    h.exit(103, code(1)); // waits 100ms
    let state = h.pool.export(h.now).expect("exportable while serving");
    let json = serde_json::to_string(&state).unwrap();
    let state: PoolState = serde_json::from_str(&json).unwrap();
    let later = h.now + 5 * MS;
    let mut pool = Pool::import(
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
fn no_export_while_upgrading_or_stopping() {
    let mut h = Harness::new(config(1, Readiness::Delay(SEC)));
    let (_, actions) = h.pool.upgrade(60 * SEC, h.now).unwrap();
    h.apply(actions);
    assert!(h.pool.export(h.now).is_none());
    let actions = h.pool.stop(true, None, h.now);
    h.apply(actions);
    assert!(h.pool.export(h.now).is_none());
}

fn with_min_ready(workers: usize, min_ready: Duration) -> PoolConfig {
    PoolConfig {
        min_ready,
        ..config(workers, Readiness::Notify { timeout: 10 * SEC })
    }
}

/// A harness whose workers (pids 100..) are all ready and available, then an upgrade started.
fn upgrading(workers: usize, cfg: PoolConfig) -> Harness {
    let mut h = Harness::new(cfg);
    for pid in 100..100 + workers as u32 {
        h.notify(pid, "READY=1");
    }
    h.advance(h.pool.config().min_ready);
    assert!(h.pool.all_available());
    let (_, actions) = h.pool.upgrade(60 * SEC, h.now).unwrap();
    h.apply(actions);
    h
}

fn new_worker(h: &Harness, slot: usize) -> u32 {
    h.pool
        .workers()
        .iter()
        .find(|w| w.slot == slot && w.generation == 2 && w.live())
        .unwrap()
        .pid
}

#[test]
fn an_old_worker_stops_only_once_its_successor_stayed_ready_for_min_ready() {
    let mut h = upgrading(1, with_min_ready(1, SEC));
    let new = new_worker(&h, 0);
    h.notify(new, "READY=1");
    assert!(h.signals.is_empty(), "ready is not enough");
    assert_eq!(h.pool.next_deadline(), Some(h.now + SEC));
    h.advance(999 * MS);
    assert!(h.signals.is_empty());
    h.advance(MS);
    assert_eq!(h.signals, [(100, Signal::TERM, Reason::Replaced)]);
    assert_eq!(h.ended, [Ok(2)]);
}

#[test]
fn a_new_worker_that_dies_within_min_ready_aborts_the_upgrade() {
    let mut h = upgrading(2, with_min_ready(2, SEC));
    let new = new_worker(&h, 0);
    h.notify(new, "READY=1");
    h.advance(300 * MS);
    let exit = h.exit(new, code(1));
    assert_eq!(exit.restart_in, None, "the old worker still holds slot 0");
    let why = h.ended[0].as_ref().unwrap_err();
    assert!(
        why.contains("exited 300ms after it was ready, within --min-ready 1s: exit code 1"),
        "{why}"
    );
    assert!(h.signals.is_empty(), "no old worker was stopped");
    h.advance(10 * SEC);
    let live: Vec<(u32, u64)> = h.live().iter().map(|w| (w.1, w.2)).collect();
    assert_eq!(live, [(100, 1), (101, 1)], "the old workers keep serving");
    assert_eq!(h.pool.generation(), 1);
}

#[test]
fn an_aborted_upgrade_stops_its_ready_but_unavailable_workers() {
    let mut cfg = with_min_ready(2, SEC);
    cfg.max_surge = 2;
    let mut h = upgrading(2, cfg);
    let (a, b) = (new_worker(&h, 0), new_worker(&h, 1));
    h.notify(a, "READY=1");
    h.notify(b, "READY=1");
    h.advance(500 * MS);
    h.exit(a, code(2));
    assert!(h.ended[0].as_ref().unwrap_err().contains("exit code 2"));
    assert_eq!(h.signals, [(b, Signal::TERM, Reason::UpgradeAborted)]);
    h.stopped_workers_exit();
    let live: Vec<u32> = h.live().iter().map(|w| w.1).collect();
    assert_eq!(live, [100, 101]);
}

#[test]
fn surge_counts_new_workers_until_they_are_available() {
    let mut h = upgrading(2, with_min_ready(2, SEC));
    let first = new_worker(&h, 0);
    h.notify(first, "READY=1");
    assert_eq!(
        h.live().len(),
        3,
        "slot 1's successor waits for slot 0's to be available"
    );
    h.advance(SEC);
    assert_eq!(
        h.live().len(),
        3,
        "slot 0's old worker stopped, slot 1's successor started"
    );
    assert_eq!(h.signals, [(100, Signal::TERM, Reason::Replaced)]);
    new_worker(&h, 1);
}

#[test]
fn min_ready_zero_replaces_at_once() {
    let mut h = upgrading(1, with_min_ready(1, Duration::ZERO));
    let new = new_worker(&h, 0);
    h.notify(new, "READY=1");
    assert_eq!(h.signals, [(100, Signal::TERM, Reason::Replaced)]);
    assert_eq!(h.ended, [Ok(2)]);
}

#[test]
fn a_takeover_waits_for_every_worker_to_be_available() {
    let mut h = Harness::new(with_min_ready(2, SEC));
    h.notify(100, "READY=1");
    h.advance(500 * MS);
    h.notify(101, "READY=1");
    h.advance(500 * MS);
    assert!(!h.pool.all_available(), "slot 1 has been ready for 500ms");
    let exit = h.exit(101, code(1));
    assert!(exit.was_ready && !exit.was_available);
    h.notify(102, "READY=1");
    h.advance(SEC);
    assert!(h.pool.all_available());
    assert!(h.exit(100, code(1)).was_available);
}

#[test]
fn the_min_ready_timer_survives_export_and_import() {
    let mut h = Harness::new(with_min_ready(1, SEC));
    h.notify(100, "READY=1");
    h.advance(300 * MS);
    let state = h.pool.export(h.now).unwrap();
    let json = serde_json::to_string(&state).unwrap();
    let state: PoolState = serde_json::from_str(&json).unwrap();
    let later = h.now + 5 * MS;
    let mut pool = Pool::import(with_min_ready(1, SEC), state, later);
    assert!(!pool.all_available());
    assert_eq!(pool.next_deadline(), Some(later + 700 * MS));
    pool.due(later + 699 * MS);
    assert!(!pool.all_available());
    pool.due(later + 700 * MS);
    assert!(pool.all_available());
    assert_eq!(pool.next_deadline(), None);
}

#[test]
fn exits_right_after_a_socket_was_shut_down_do_not_fail_an_upgrade() {
    let mut h = upgrading(2, with_min_ready(2, SEC));
    let new = new_worker(&h, 0);
    h.notify(new, "READY=1");
    h.advance(300 * MS);
    // A worker shut the shared socket down: every accept() failed, the new one's too.
    h.pool.excuse_exits_until(h.now + 2 * SEC);
    h.exit(new, code(1));
    assert!(h.ended.is_empty(), "the upgrade goes on: {:?}", h.ended);
    // Once the window has passed, a new worker that dies fails the upgrade again.
    h.advance(3 * SEC);
    let next = new_worker(&h, 0);
    h.notify(next, "READY=1");
    h.advance(300 * MS);
    h.exit(next, code(1));
    assert!(h.ended[0].is_err(), "{:?}", h.ended);
}

#[test]
fn an_upgrade_shorter_than_min_ready_is_refused_up_front() {
    let h = Harness::new(with_min_ready(4, SEC));
    assert_eq!(h.pool.shortest_upgrade(), 4 * SEC, "4 rounds of one");
    let why = h.pool.upgrade_too_short(3 * SEC).unwrap();
    assert!(
        why.contains("--min-ready 1s") && why.contains("4 workers, 1 at a time: at least 4s"),
        "{why}"
    );
    assert!(h.pool.upgrade_too_short(4 * SEC).is_some());
    assert!(h.pool.upgrade_too_short(4 * SEC + MS).is_none());
    let surge = Harness::new(PoolConfig {
        max_surge: 4,
        ..with_min_ready(4, SEC)
    });
    let why = surge.pool.upgrade_too_short(MS).unwrap();
    assert!(!why.contains("at a time"), "{why}");
    assert!(surge.pool.upgrade_too_short(2 * SEC).is_none());
    let none = Harness::new(with_min_ready(4, Duration::ZERO));
    assert!(none.pool.upgrade_too_short(MS).is_none());
    assert!(none.pool.upgrade_too_short(Duration::ZERO).is_some());
}

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
/// 64 events (`cargo test --release -p herd-cli --lib rolling_upgrade_of_4096 -- --ignored
/// --nocapture`).
#[test]
#[ignore]
fn rolling_upgrade_of_4096_workers() {
    const N: usize = 4096;
    const BATCH: usize = 64;
    let started = std::time::Instant::now();
    let cfg = PoolConfig {
        max_surge: BATCH,
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
    let mut turn = |h: &mut Harness| {
        h.tick();
        std::hint::black_box(per_turn_checks(&h.pool));
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
        "{N} workers, rolling upgrade {BATCH} at a time: {turns} turns in {:?}",
        started.elapsed()
    );
}

/// Checks the pool's indexes (by pid, per-slot counts, ready and available slots) against a
/// count of its workers from scratch.
fn assert_indexes_match_a_recount(pool: &Pool) {
    for (i, w) in pool.workers.iter().enumerate() {
        let first = pool.workers.iter().position(|o| o.pid == w.pid).unwrap();
        assert_eq!(pool.by_pid.get(&w.pid), Some(&first), "pid {}", w.pid);
        assert!(first <= i);
    }
    assert!(pool.by_pid.len() <= pool.workers.len());
    for (slot, s) in pool.slots.iter().enumerate() {
        let here = pool.workers.iter().filter(|w| w.slot == slot);
        let recount = Count {
            live: here.clone().filter(|w| w.live()).count(),
            holding: here.clone().filter(|w| w.holds_slot()).count(),
            ready: here
                .clone()
                .filter(|w| w.state == WorkerState::Ready)
                .count(),
            live_available: here.filter(|w| w.live() && w.available).count(),
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
        wanted.clone().all(|s| has(s, &|w| w.live() && w.available))
    );
}

#[test]
fn the_indexes_match_a_recount_through_every_change() {
    let cfg = PoolConfig {
        max_surge: 2,
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
    let state = h.pool.export(h.now).unwrap();
    h.pool = Pool::import(h.pool.config().clone(), state, h.now);
    assert_indexes_match_a_recount(&h.pool);
    let actions = h.pool.stop(true, None, h.now);
    h.apply(actions);
    h.stopped_workers_exit();
    assert!(h.pool.is_stopped());
}
