use std::time::{Duration, Instant};

use super::*;
use crate::{Action, BackoffPolicy, MaxSurge, NotifyMessage, PoolConfig, Readiness, WorkerExit};

const SEC: Duration = Duration::from_secs(1);
const MIB: u64 = 1 << 20;

fn policy() -> RecyclePolicy {
    RecyclePolicy {
        max_memory: Some((MemoryKind::Rss, 100 * MIB)),
        max_lifetime: None,
        jitter: Duration::ZERO,
        samples: 2,
        hold: 30 * SEC,
        max_hold: 600 * SEC,
    }
}

/// [`policy`] without `--max-memory`: workers are recycled only when they ask.
fn no_memory_limit() -> RecyclePolicy {
    RecyclePolicy {
        max_memory: None,
        ..policy()
    }
}

/// [`policy`] with a `--max-lifetime` of `lifetime` and no `--max-memory`.
fn lifetime_only(lifetime: Duration) -> RecyclePolicy {
    RecyclePolicy {
        max_memory: None,
        max_lifetime: Some(lifetime),
        ..policy()
    }
}

/// A worker's exit with `code`.
fn exited_with(code: i32) -> WorkerExit {
    WorkerExit {
        success: code == 0,
        killed: false,
        description: format!("exit code {code}"),
        raw: code << 8,
    }
}

/// A pool and a recycler, played like the supervisor does: pids from 100 up, every started
/// worker ready at once.
struct Sim {
    pool: Pool,
    recycler: Recycler,
    now: Instant,
    next_pid: u32,
    /// (slot, pid, cause) of every recycle started.
    started: Vec<(usize, u32, RecycleCause)>,
    events: Vec<RecycleEvent>,
    /// Whether new workers become ready.
    ready: bool,
}

impl Sim {
    fn new(workers: usize, max_surge: usize, policy: RecyclePolicy) -> Sim {
        Sim::with_min_ready(workers, max_surge, policy, Duration::ZERO)
    }

    fn with_min_ready(
        workers: usize,
        max_surge: usize,
        policy: RecyclePolicy,
        min_ready: Duration,
    ) -> Sim {
        let config = PoolConfig {
            workers,
            grace: 5 * SEC,
            backoff: BackoffPolicy::default(),
            readiness: Readiness::Notify { timeout: 10 * SEC },
            watchdog: None,
            max_surge: MaxSurge::Workers(max_surge),
            max_starting: max_surge,
            min_ready,
            drain: None,
        };
        let mut sim = Sim {
            pool: Pool::new(config),
            recycler: Recycler::new(policy, 7),
            now: Instant::now(),
            next_pid: 100,
            started: Vec::new(),
            events: Vec::new(),
            ready: true,
        };
        sim.turn();
        sim
    }

    fn apply(&mut self, actions: Vec<Action>) {
        let mut queue = actions;
        while !queue.is_empty() {
            for action in std::mem::take(&mut queue) {
                match action {
                    Action::Spawn { slot, generation } => {
                        let pid = self.next_pid;
                        self.next_pid += 1;
                        assert!(self.pool.spawned(slot, generation, pid, self.now));
                        if self.ready {
                            let ready = NotifyMessage::parse(b"READY=1").unwrap();
                            self.pool.notified(pid, &ready, self.now);
                        }
                    }
                    // Stopped workers exit at once.
                    Action::Stop { pid, .. } => {
                        let exit = exited_with(0);
                        let (_, more) = self.pool.exited(pid, exit, self.now).unwrap();
                        queue.extend(more);
                    }
                    _ => {}
                }
            }
            queue.extend(self.pool.due(self.now));
        }
    }

    /// One loop turn: the pool's due actions, then the recycler's.
    fn turn(&mut self) {
        let actions = self.pool.due(self.now);
        self.apply(actions);
        for event in self.recycler.due(&mut self.pool, self.now) {
            if let RecycleEvent::Started {
                slot,
                pid,
                cause,
                actions,
                ..
            } = &event
            {
                self.started.push((*slot, *pid, *cause));
                let actions = actions.clone();
                self.apply(actions);
            }
            self.events.push(event);
        }
    }

    /// One memory sample `d` after the last, each live worker at `bytes(pid)`.
    fn sample(&mut self, d: Duration, bytes: impl Fn(u32) -> u64) {
        self.now += d;
        let readings: Vec<(u32, u64)> = self
            .pool
            .workers()
            .iter()
            .map(|w| (w.pid, bytes(w.pid)))
            .collect();
        self.recycler.record_memory(&self.pool, readings);
        self.turn();
    }

    /// Every live worker not being recycled asks to be replaced (`HERD_RECYCLE=1`), `after`
    /// from now; then a turn.
    fn all_ask(&mut self, after: Duration) {
        let pids: Vec<u32> = self
            .pool
            .workers()
            .iter()
            .filter(|w| w.live() && w.recycling.is_none())
            .map(|w| w.pid)
            .collect();
        self.now += after;
        for pid in pids {
            self.recycler.ask(&self.pool, pid, self.now);
        }
        self.turn();
    }

    /// herd re-executes itself: the pool and the recycler are saved, and continued in a new
    /// image (a recycler of another seed), as herd-cli does. The exec's moments are lost to
    /// every timer, as in herd (and the times are kept to the millisecond): the clock is not
    /// moved.
    fn reexec(&mut self) {
        let saved_at = crate::Epoch::at(self.now);
        let pool = self
            .pool
            .export(saved_at)
            .expect("a pool a re-exec can save");
        let recycler = self.recycler.save(saved_at);
        let loaded_at = crate::Epoch::at(self.now);
        let config = self.pool.config().clone();
        self.pool = Pool::import(config, pool, loaded_at, exited_with);
        self.recycler = Recycler::new(*self.recycler.policy(), 8);
        self.recycler.restore(recycler, loaded_at);
    }

    fn pids(&self) -> Vec<u32> {
        self.pool.workers().iter().map(|w| w.pid).collect()
    }
}

#[test]
fn a_worker_over_the_limit_for_two_samples_in_a_row_is_recycled() {
    let mut sim = Sim::new(2, 1, policy());
    sim.sample(60 * SEC, |_| 50 * MIB);
    sim.sample(SEC, |pid| if pid == 100 { 150 * MIB } else { 50 * MIB });
    sim.sample(SEC, |_| 50 * MIB);
    sim.sample(SEC, |pid| if pid == 100 { 150 * MIB } else { 50 * MIB });
    assert!(
        sim.started.is_empty(),
        "one sample over, then under: not in a row"
    );
    sim.sample(SEC, |pid| if pid == 100 { 150 * MIB } else { 50 * MIB });
    assert_eq!(sim.started, [(0, 100, RecycleCause::Memory)]);
    let why = sim.events.iter().find_map(|e| match e {
        RecycleEvent::Started { why, .. } => Some(why.clone()),
        _ => None,
    });
    assert_eq!(
        why.as_deref(),
        Some("rss 150 MiB above --max-memory 100 MiB for 2 samples")
    );
    assert_eq!(sim.pids(), [101, 102], "replaced by a successor");
    assert_eq!(sim.recycler.memory(101), Some(50 * MIB));
}

#[test]
fn leaking_workers_are_recycled_at_most_max_surge_at_a_time() {
    let mut sim = Sim::new(4, 2, policy());
    sim.ready = false;
    sim.sample(60 * SEC, |_| 500 * MIB);
    sim.sample(SEC, |_| 500 * MIB);
    assert_eq!(sim.started.len(), 2);
    assert_eq!(sim.pool.recycles_in_progress(), 2);
    let deferred = sim
        .events
        .iter()
        .filter(|e| matches!(e, RecycleEvent::Deferred { .. }))
        .count();
    assert_eq!(deferred, 2, "the other two are told to wait, once each");
    sim.sample(SEC, |pid| if pid >= 104 { MIB } else { 500 * MIB });
    assert_eq!(sim.started.len(), 2, "still none to spare");
    let deferred_again = sim
        .events
        .iter()
        .filter(|e| matches!(e, RecycleEvent::Deferred { .. }))
        .count();
    assert_eq!(deferred_again, 2, "a deferral is said once");
    // The successors become ready: the old ones stop, and the next two go.
    for pid in [104, 105] {
        let ready = NotifyMessage::parse(b"READY=1").unwrap();
        sim.pool.notified(pid, &ready, sim.now);
    }
    sim.turn();
    assert_eq!(sim.started.len(), 4);
    assert!(sim.pool.recycles_in_progress() <= 2);
}

#[test]
fn a_successor_over_the_limit_at_once_is_held_back_longer_each_time() {
    let mut sim = Sim::new(1, 1, policy());
    // The limit is below what a fresh worker needs.
    let always = |_| 200 * MIB;
    sim.sample(SEC, always);
    sim.sample(SEC, always);
    assert_eq!(
        sim.started,
        [(0, 100, RecycleCause::Memory)],
        "once is no loop"
    );
    sim.sample(SEC, always);
    sim.sample(SEC, always);
    assert_eq!(sim.started.len(), 1);
    let held: Vec<&RecycleEvent> = sim
        .events
        .iter()
        .filter(|e| matches!(e, RecycleEvent::HeldBack { .. }))
        .collect();
    assert_eq!(held.len(), 1);
    match held[0] {
        RecycleEvent::HeldBack { pid, wait, why, .. } => {
            assert_eq!((*pid, *wait), (101, 28 * SEC));
            assert!(why.contains("recycling it would loop"), "{why}");
            assert!(why.contains("once it has run 30s"), "{why}");
            assert!(why.contains("since it became ready"), "{why}");
        }
        _ => unreachable!(),
    }
    for _ in 0..25 {
        sim.sample(SEC, always);
    }
    assert_eq!(sim.started.len(), 1, "said once, held for 30s");
    for _ in 0..3 {
        sim.sample(SEC, always);
    }
    assert_eq!(sim.started.len(), 2, "recycled once it has run 30s");
    for _ in 0..58 {
        sim.sample(SEC, always);
    }
    assert_eq!(sim.started.len(), 2, "the next one waits 60s");
    sim.sample(SEC, always);
    sim.sample(SEC, always);
    assert_eq!(sim.started.len(), 3);
}

#[test]
fn a_worker_that_grew_slowly_resets_the_hold() {
    let mut sim = Sim::new(1, 1, policy());
    let always = |_| 200 * MIB;
    sim.sample(SEC, always);
    sim.sample(SEC, always);
    // Worker 101 starts small and leaks over the limit after a minute: a normal recycle.
    sim.sample(SEC, |_| MIB);
    sim.sample(60 * SEC, always);
    sim.sample(SEC, always);
    assert_eq!(sim.started.len(), 2);
    // 102 goes over at once, but after a healthy predecessor: no hold.
    sim.sample(SEC, always);
    sim.sample(SEC, always);
    assert_eq!(sim.started.len(), 3);
}

#[test]
fn an_aborted_recycle_holds_its_slot_back() {
    let mut sim = Sim::new(1, 1, policy());
    sim.ready = false;
    sim.sample(SEC, |_| MIB);
    sim.sample(SEC, |_| 200 * MIB);
    sim.sample(SEC, |_| 200 * MIB);
    assert_eq!(sim.started.len(), 1);
    // The successor dies before it is ready.
    let exit = exited_with(1);
    sim.pool.exited(101, exit, sim.now).unwrap();
    sim.turn();
    assert!(sim.events.iter().any(|e| matches!(
        e,
        RecycleEvent::Aborted { pid: 100, hold, .. } if *hold == 30 * SEC
    )));
    assert_eq!(
        sim.recycler.next_deadline(&sim.pool, sim.now),
        Some(sim.now + 30 * SEC)
    );
    sim.sample(SEC, |_| 200 * MIB);
    assert_eq!(sim.started.len(), 1, "held back");
    sim.sample(30 * SEC, |_| 200 * MIB);
    assert_eq!(sim.started.len(), 2, "tried again");
}

#[test]
fn lifetimes_end_with_each_workers_own_jitter() {
    let lifetime = RecyclePolicy {
        max_memory: None,
        max_lifetime: Some(60 * SEC),
        jitter: 30 * SEC,
        ..policy()
    };
    let mut sim = Sim::new(8, 8, lifetime);
    let ends: Vec<Duration> = (100..108)
        .map(|pid| sim.recycler.lifetime(pid).unwrap())
        .collect();
    assert!(
        ends.iter().all(|&d| (60 * SEC..=90 * SEC).contains(&d)),
        "{ends:?}"
    );
    let mut distinct = ends.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 8, "{ends:?}");
    let first = *distinct.first().unwrap();
    assert_eq!(
        sim.recycler.next_deadline(&sim.pool, sim.now),
        Some(sim.now + first)
    );
    sim.now += first;
    sim.turn();
    assert_eq!(sim.started.len(), 1, "only the first lifetime is over");
    let why = sim.events.iter().find_map(|e| match e {
        RecycleEvent::Started { why, .. } => Some(why.clone()),
        _ => None,
    });
    assert!(why
        .unwrap()
        .contains("past --max-lifetime 1m plus its jitter"));
    sim.now += 30 * SEC;
    sim.turn();
    assert_eq!(sim.started.len(), 8);
    assert!(sim.started.iter().all(|s| s.2 == RecycleCause::Lifetime));
}

/// Workers due faster than they can be recycled (thousands started together, a lifetime
/// shorter than their replacement takes) wait their turn: each turn the pool is counted once,
/// not once per worker waiting (every turn cost workers², 1.8 s for 4000 in a debug build).
/// The wait is said once per worker all the same, and the next recycle starts when there is
/// room again.
#[test]
fn workers_waiting_for_room_cost_a_turn_no_walk_each() {
    let lifetime = lifetime_only(60 * SEC);
    const N: usize = 500;
    let mut sim = Sim::new(N, 1, lifetime);
    sim.ready = false; // the successor stays starting: the pool is at --max-surge
    sim.now += 61 * SEC;
    sim.turn();
    assert_eq!(sim.started.len(), 1);
    let deferred = |sim: &Sim| {
        (sim.events.iter())
            .filter(|e| matches!(e, RecycleEvent::Deferred { .. }))
            .count()
    };
    assert_eq!(deferred(&sim), N - 1, "each worker waiting is said once");
    crate::pool::SURGES_COUNTED.with(|n| n.set(0));
    for _ in 0..10 {
        sim.now += Duration::from_millis(10);
        sim.turn();
    }
    let counted = crate::pool::SURGES_COUNTED.with(|n| n.get());
    assert!(
        counted <= 2 * 10,
        "the pool counted {counted} times in 10 turns"
    );
    assert_eq!(deferred(&sim), N - 1, "said once");
    assert_eq!(sim.started.len(), 1);
    // Room again (the successor ready, its predecessor gone): the next oldest is recycled.
    let successor = sim.pool.workers().last().unwrap().pid;
    let ready = NotifyMessage::parse(b"READY=1").unwrap();
    sim.pool.notified(successor, &ready, sim.now);
    sim.turn();
    sim.turn();
    assert_eq!(sim.started.len(), 2);
    assert_eq!(sim.started[1].1, 101);
}

#[test]
fn without_limits_nothing_is_recycled() {
    let none = no_memory_limit();
    assert!(!none.is_on());
    let mut sim = Sim::new(2, 2, none);
    sim.sample(3600 * SEC, |_| u64::MAX);
    sim.sample(SEC, |_| u64::MAX);
    assert!(sim.started.is_empty());
    assert_eq!(sim.recycler.next_deadline(&sim.pool, sim.now), None);
}

#[test]
fn sizes_read_as_people_write_them() {
    assert_eq!(format_bytes(512), "512 B");
    assert_eq!(format_bytes(900 * 1024), "900 KiB");
    assert_eq!(format_bytes(512 * MIB), "512 MiB");
    assert_eq!(format_bytes(1536 * MIB), "1.5 GiB");
    // Rounded once, as shown: 1.96 MiB is 2 MiB as 2 MiB is (it read "2.0 MiB"), and what
    // rounds to 1024 of a unit is 1 of the next (it read "1024 KiB").
    assert_eq!(format_bytes(2 * MIB), "2 MiB");
    assert_eq!(format_bytes(2 * MIB - 40 * 1024), "2 MiB");
    assert_eq!(format_bytes(2 * MIB - 70 * 1024), "1.9 MiB");
    assert_eq!(format_bytes(MIB - 100), "1 MiB");
    assert_eq!(format_bytes(1024 * 1024 * MIB), "1 TiB");
    assert_eq!(format_bytes(u64::MAX), "16777216 TiB");
}

mod asked;
mod calm;
mod holds;
mod policy;
mod reexec;
