//! The worker pool: herd-core's platform-neutral state machine ([`Pool`]), with what herd adds
//! around it: the control error code of each [`PoolError`], and the pool read back from a
//! re-exec's state (a slot's last exit through the platform's `exit_from_raw`).

pub use herd_core::{
    Action, Epoch, Exit, NotifyMessage, Pool, PoolConfig, PoolError, PoolState, Readiness, Reason,
    StopMode, Worker, WorkerExit, WorkerState,
};

use crate::cli::{ReadyMode, RunArgs};
use crate::control::protocol::ErrorCode;

/// The pool's settings from `herd run`'s command line, for `workers` workers (no drain: the
/// supervisor sets it from its listeners).
pub fn config(args: &RunArgs, workers: usize) -> PoolConfig {
    PoolConfig {
        workers,
        grace: args.grace,
        backoff: herd_core::BackoffPolicy::default(),
        readiness: match args.ready {
            ReadyMode::Delay(d) => Readiness::Delay(d),
            ReadyMode::Notify => Readiness::Notify {
                timeout: args.ready_timeout,
            },
        },
        watchdog: args.watchdog,
        max_surge: args.max_surge,
        max_starting: args.max_starting as usize,
        min_ready: args.min_ready,
        drain: None,
    }
}

/// The control protocol's code for a refused pool command.
pub fn error_code(error: &PoolError) -> ErrorCode {
    match error {
        PoolError::Stopping => ErrorCode::Stopping,
        PoolError::UpgradeInProgress { .. } => ErrorCode::Busy,
        PoolError::NoWorkerInSlot { .. }
        | PoolError::ZeroUpgradeTimeout
        | PoolError::UpgradeTooShort { .. } => ErrorCode::InvalidArgument,
    }
}

/// The pool's state as the re-exec state carries it, its slots' last exits read back by
/// the platform's `exit_from_raw`.
pub fn import(config: PoolConfig, state: PoolState, epoch: Epoch) -> Pool {
    Pool::import(config, state, epoch, super::platform::exit_from_raw)
}

/// A pool of `workers` for tests: 5 s grace, the default backoff, ready when started, one
/// surge worker, draining by `drain`.
#[cfg(test)]
pub fn test_config(workers: usize, drain: Option<herd_core::DrainPolicy>) -> PoolConfig {
    use std::time::Duration;
    PoolConfig {
        workers,
        grace: Duration::from_secs(5),
        backoff: herd_core::BackoffPolicy::default(),
        readiness: Readiness::Delay(Duration::ZERO),
        watchdog: None,
        max_surge: herd_core::MaxSurge::Workers(1),
        max_starting: 1,
        min_ready: Duration::ZERO,
        drain,
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use herd_core::MaxSurge;

    use super::*;

    /// Starts the workers `pool` has due at `now`, each as the pid `pid` gives for its slot.
    fn start_due(pool: &mut Pool, now: Instant, pid: impl Fn(usize) -> u32) {
        for action in pool.due(now) {
            if let Action::Spawn { slot, generation } = action {
                assert!(pool.spawned(slot, generation, pid(slot), now));
            }
        }
    }

    #[test]
    fn every_pool_error_has_its_control_code() {
        assert_eq!(error_code(&PoolError::Stopping), ErrorCode::Stopping);
        let busy = PoolError::UpgradeInProgress { generation: 2 };
        assert_eq!(error_code(&busy), ErrorCode::Busy);
        let slot = PoolError::NoWorkerInSlot {
            slot: 1,
            running: Vec::new(),
        };
        assert_eq!(error_code(&slot), ErrorCode::InvalidArgument);
    }

    /// The re-exec JSON keeps its format, so that a herd of an earlier version can hand over.
    #[test]
    fn the_state_survives_json_in_the_format_of_earlier_versions() {
        let config = test_config(2, None);
        let now = Instant::now();
        let mut pool = Pool::new(config.clone());
        start_due(&mut pool, now, |slot| 100 + slot as u32);
        pool.due(now);
        let exit = super::super::platform::exit_from_raw(1 << 8);
        pool.exited(101, exit.clone(), now);
        let state = pool.export(Epoch::at(now)).unwrap();
        let json = serde_json::to_value(&state).unwrap();
        assert_eq!(json["slots"][1]["last_exit"], 256);
        let back: PoolState = serde_json::from_value(json).unwrap();
        let restored = import(config, back, Epoch::at(now));
        assert_eq!(
            restored.slots()[1]
                .last_exit
                .as_ref()
                .map(|e| e.description.as_str()),
            Some(exit.description.as_str())
        );
        assert_eq!(restored.workers().len(), pool.workers().len());
    }

    /// A worker that restarts its slot says so in the JSON, which leaves the flag out
    /// otherwise; a state without it (an older herd's) reads as a start that counts against
    /// `--max-starting`, as every start-up did there.
    #[test]
    fn a_restart_survives_json_and_is_left_out_when_not_one() {
        let config = test_config(2, None);
        let now = Instant::now();
        let mut pool = Pool::new(config.clone());
        start_due(&mut pool, now, |slot| 100 + slot as u32);
        let exit = super::super::platform::exit_from_raw(1 << 8);
        pool.exited(101, exit, now);
        start_due(&mut pool, now, |_| 102);
        let json = serde_json::to_value(pool.export(Epoch::at(now)).unwrap()).unwrap();
        assert_eq!(json["workers"][0].get("restart"), None);
        assert_eq!(json["workers"][1]["restart"], true);
        let back: PoolState = serde_json::from_value(json.clone()).unwrap();
        let restored = import(config.clone(), back, Epoch::at(now));
        assert!(restored.worker(102).unwrap().restart);
        assert_eq!(restored.start_ups(), 0);
        let mut older = json;
        older["workers"][1]
            .as_object_mut()
            .unwrap()
            .remove("restart");
        let back: PoolState = serde_json::from_value(older).unwrap();
        let restored = import(config, back, Epoch::at(now));
        assert_eq!(restored.start_ups(), 1);
    }

    /// The surge bounds survive JSON, a share of the pool and a number alike, and win over
    /// the command line the new image reads.
    #[test]
    fn the_surge_bounds_survive_json() {
        let now = Instant::now();
        let cases = [
            (MaxSurge::Percent(25), serde_json::json!({"Percent": 25})),
            (MaxSurge::Workers(4), serde_json::json!({"Workers": 4})),
        ];
        for (max_surge, saved) in cases {
            let config = PoolConfig {
                max_surge,
                max_starting: 3,
                ..test_config(2, None)
            };
            let pool = Pool::new(config);
            let json = serde_json::to_value(pool.export(Epoch::at(now)).unwrap()).unwrap();
            let expected = serde_json::json!({"max_surge": saved, "max_starting": 3});
            assert_eq!(json["surge"], expected);
            let back: PoolState = serde_json::from_value(json).unwrap();
            let restored = import(test_config(2, None), back, Epoch::at(now));
            assert_eq!(restored.config().max_surge, max_surge);
            assert_eq!(restored.config().max_starting, 3);
        }
    }

    /// A draining worker reads, to a herd of an earlier version, as scaled down and stopping.
    #[test]
    fn a_draining_worker_survives_json_and_reads_as_stopping_to_earlier_versions() {
        let drain = herd_core::DrainPolicy {
            settle: Duration::from_millis(250),
            limit: Duration::from_secs(2),
        };
        let config = test_config(2, Some(drain));
        let now = Instant::now();
        let mut pool = Pool::new(config.clone());
        start_due(&mut pool, now, |slot| 100 + slot as u32);
        let actions = pool.scale(1, now).unwrap();
        assert!(
            !actions.iter().any(|a| matches!(a, Action::Stop { .. })),
            "slot 1 drains first: {actions:?}"
        );
        let json = serde_json::to_value(pool.export(Epoch::at(now)).unwrap()).unwrap();
        let drainer = &json["workers"][1];
        assert_eq!(
            drainer["stopping"],
            serde_json::json!(["ScaleDown", 5000, false])
        );
        assert_eq!(drainer["draining"], serde_json::json!([0, 2000]));
        let back: PoolState = serde_json::from_value(json).unwrap();
        let restored = import(config, back, Epoch::at(now));
        assert!(restored.is_draining());
        assert!(matches!(
            restored.worker(101).unwrap().state,
            WorkerState::Draining { .. }
        ));
    }

    #[test]
    fn durations_read_as_humantime_writes_them() {
        for ms in [
            0,
            1,
            999,
            1000,
            1500,
            60_000,
            61_001,
            3_600_000,
            90_061_001,
            86_400_000 * 400,
        ] {
            let d = Duration::from_millis(ms);
            assert_eq!(
                herd_core::format_duration(d).to_string(),
                humantime::format_duration(d).to_string()
            );
        }
        let d = Duration::new(3, 1_001_001);
        assert_eq!(
            herd_core::format_duration(d).to_string(),
            humantime::format_duration(d).to_string()
        );
    }
}
