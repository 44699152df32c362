use super::*;

mod drain;
mod pause;
mod ready;
mod recycle;
mod scale;
mod settings;
mod stall;
mod start_ups;
mod surge;
mod upgrade;
mod upgrade_failures;
mod workers;

use crate::backoff::BackoffPolicy;
use crate::notify::NotifyMessage;
use crate::relative::Epoch;
use scale::assert_indexes_match_a_recount;

const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);

fn config(workers: usize, readiness: Readiness) -> PoolConfig {
    PoolConfig {
        workers,
        grace: 5 * SEC,
        backoff: BackoffPolicy::default(),
        readiness,
        watchdog: None,
        max_surge: MaxSurge::Percent(100),
        max_starting: 1,
        min_ready: Duration::ZERO,
        drain: None,
    }
}

/// An exit with code `n`, as a Unix wait status.
fn code(n: i32) -> WorkerExit {
    WorkerExit {
        success: n == 0,
        killed: false,
        description: format!("exit code {n}"),
        raw: n << 8,
    }
}

/// A pool continuing at `now` from `state`, whose raw exit statuses are Unix wait statuses.
fn import(config: PoolConfig, state: PoolState, now: Instant) -> Pool {
    let exit = |raw: i32| match raw {
        9 => killed(),
        status => code(status >> 8),
    };
    Pool::import(config, state, Epoch::at(now), exit)
}

/// An exit by `SIGKILL`.
fn killed() -> WorkerExit {
    WorkerExit {
        success: false,
        killed: true,
        description: "killed by SIGKILL".to_string(),
        raw: 9,
    }
}

/// Plays the driver: starts what the pool asks for, with pids from 100 up.
struct Harness {
    pool: Pool,
    now: Instant,
    next_pid: u32,
    ended: Vec<Result<u64, String>>,
    signals: Vec<(u32, StopMode, Reason)>,
    /// The workers announced ready, in order.
    ready: Vec<u32>,
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
            ready: Vec::new(),
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
                    Action::Stop { pid, mode, reason } => self.signals.push((pid, mode, reason)),
                    Action::Ready { pid, .. } => self.ready.push(pid),
                    Action::DrainTimedOut { .. } => {}
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

    fn exit(&mut self, pid: u32, status: WorkerExit) -> Exit {
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

fn with_min_ready(workers: usize, min_ready: Duration) -> PoolConfig {
    PoolConfig {
        min_ready,
        ..config(workers, Readiness::Notify { timeout: 10 * SEC })
    }
}

/// Recycles worker `pid` for using too much memory, as the driver does: the pool's actions
/// applied.
fn recycle(h: &mut Harness, pid: u32) -> Result<(), RecycleRefused> {
    recycle_for(h, pid, RecycleCause::Memory)
}

/// Recycles worker `pid` for `cause`, as the driver does: the pool's actions applied.
fn recycle_for(h: &mut Harness, pid: u32, cause: RecycleCause) -> Result<(), RecycleRefused> {
    let actions = h.pool.recycle(pid, cause, h.now)?;
    h.apply(actions);
    Ok(())
}

/// `slot`'s worker crashes before it is ready, `times` times in a row, each restart after
/// its backoff: the slot is left restarting.
fn crash_loop(h: &mut Harness, slot: usize, times: usize) {
    for _ in 0..times {
        let pid = h.pid_in(slot);
        let wait = h.exit(pid, code(1)).restart_in.expect("a restart");
        h.advance(wait);
    }
    let restarting = h.pool.worker(h.pid_in(slot)).unwrap();
    assert!(restarting.restart && restarting.state == WorkerState::Starting);
}
