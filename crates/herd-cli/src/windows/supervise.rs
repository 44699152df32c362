//! The Windows supervisor loop: herd-core's [`Pool`], the one every herd supervisor drives,
//! with processes started by [`herd::windows::spawn`] (each handed the sockets) and stopped by
//! `TerminateProcess`: Windows console programs have no graceful stop signal. Exits are polled
//! every 50 ms (`try_wait` on each worker). Workers live in a Job Object that ends them, and
//! their children, when herd ends, however it ends.

use std::collections::HashMap;
use std::io;
use std::os::windows::io::AsHandle;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use herd::windows::{spawn, Shared};
use herd_core::{Action, BackoffPolicy, Pool, PoolConfig, Readiness, WorkerExit};
use herd_sys::job::Job;

/// How often the workers' exits and the stop request are looked at.
const POLL: Duration = Duration::from_millis(50);

/// What [`supervise`] reports as it goes, for the caller to log.
#[derive(Debug)]
pub enum Event<'a> {
    /// Worker `slot` started as `pid`.
    Started { slot: usize, pid: u32 },
    /// Worker `slot` (`pid`) exited; its successor starts after `restart_in`, if one does.
    Exited {
        slot: usize,
        pid: u32,
        status: ExitStatus,
        restart_in: Option<Duration>,
    },
    /// Worker `slot` could not be started; the next try is after `retry_in`.
    SpawnFailed {
        slot: usize,
        error: &'a io::Error,
        retry_in: Duration,
    },
    /// The workers cannot be tied to herd's life (no Job Object): they outlive a killed herd.
    Unbound { error: &'a io::Error },
}

/// The pool's settings on Windows: a worker is ready once started; a stop terminates at once.
fn config(workers: usize) -> PoolConfig {
    PoolConfig {
        workers,
        grace: Duration::ZERO,
        backoff: BackoffPolicy::default(),
        readiness: Readiness::Delay(Duration::ZERO),
        watchdog: None,
        max_surge: 1,
        min_ready: Duration::ZERO,
        drain: None,
    }
}

/// The workers and what starts them.
struct Driver<'s, C, R> {
    pool: Pool,
    children: HashMap<u32, Child>,
    job: Option<Job>,
    command: C,
    sockets: &'s [Shared<'s>],
    report: R,
}

/// Runs `workers` workers, each started with `command(slot)` and handed `sockets`, restarts
/// each one that exits (after the pool's backoff) until `stop()` returns true, then terminates
/// them and waits for them. The sockets stay open throughout, so a restarting worker's clients
/// wait in the accept queue instead of being refused.
pub fn supervise(
    command: impl FnMut(usize) -> Command,
    sockets: &[Shared<'_>],
    workers: usize,
    mut stop: impl FnMut() -> bool,
    mut report: impl FnMut(Event<'_>),
) {
    let job = match Job::kill_on_close() {
        Ok(job) => Some(job),
        Err(error) => {
            report(Event::Unbound { error: &error });
            None
        }
    };
    let mut driver = Driver {
        pool: Pool::new(config(workers)),
        children: HashMap::new(),
        job,
        command,
        sockets,
        report,
    };
    while !stop() {
        driver.reap();
        let actions = driver.pool.due(Instant::now());
        driver.execute(actions);
        std::thread::sleep(POLL);
    }
    let actions = driver.pool.stop(false, None, Instant::now());
    driver.execute(actions);
    for child in driver.children.values_mut() {
        let _ = child.wait();
    }
}

impl<C, R> Driver<'_, C, R>
where
    C: FnMut(usize) -> Command,
    R: FnMut(Event<'_>),
{
    /// Tells the pool about the workers that exited.
    fn reap(&mut self) {
        let mut exited = Vec::new();
        for (&pid, child) in &mut self.children {
            if let Ok(Some(status)) = child.try_wait() {
                exited.push((pid, status));
            }
        }
        for (pid, status) in exited {
            self.children.remove(&pid);
            let (exit, actions) = match self.pool.exited(pid, worker_exit(status), Instant::now()) {
                Some(meaning) => meaning,
                None => continue,
            };
            (self.report)(Event::Exited {
                slot: exit.slot,
                pid,
                status,
                restart_in: exit.restart_in,
            });
            self.execute(actions);
        }
    }

    /// Carries out the pool's actions: starts and terminates workers.
    fn execute(&mut self, actions: Vec<Action>) {
        let mut queue: std::collections::VecDeque<Action> = actions.into();
        while let Some(action) = queue.pop_front() {
            match action {
                Action::Spawn { slot, generation } => queue.extend(self.start(slot, generation)),
                // No graceful stop for console programs: either way, terminate.
                Action::Stop { pid, .. } => {
                    if let Some(child) = self.children.get_mut(&pid) {
                        let _ = child.kill();
                    }
                }
                Action::Ready { .. } | Action::UpgradeEnded(_) | Action::DrainTimedOut { .. } => {}
            }
        }
    }

    fn start(&mut self, slot: usize, generation: u64) -> Vec<Action> {
        let mut command = (self.command)(slot);
        command.env("HERD_WORKER", slot.to_string());
        let now = Instant::now();
        match spawn(&mut command, self.sockets) {
            Ok(mut child) => {
                let pid = child.id();
                if let Some(job) = &self.job {
                    if let Err(error) = job.assign(child.as_handle()) {
                        (self.report)(Event::Unbound { error: &error });
                    }
                }
                if !self.pool.spawned(slot, generation, pid, now) {
                    // Unreachable by construction; never leave a worker unsupervised.
                    let _ = child.kill();
                    let _ = child.wait();
                    return Vec::new();
                }
                (self.report)(Event::Started { slot, pid });
                self.children.insert(pid, child);
                Vec::new()
            }
            Err(error) => {
                let (retry_in, actions) = self.pool.spawn_failed(slot, &error.to_string(), now);
                (self.report)(Event::SpawnFailed {
                    slot,
                    error: &error,
                    retry_in,
                });
                actions
            }
        }
    }
}

/// What the pool needs of a Windows exit status.
fn worker_exit(status: ExitStatus) -> WorkerExit {
    WorkerExit {
        success: status.success(),
        killed: false,
        description: status.to_string(),
        raw: status.code().unwrap_or(-1),
    }
}
