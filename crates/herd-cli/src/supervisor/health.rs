//! `/healthz` and `/readyz`: herd's liveness and readiness, for orchestrators and load
//! balancers. The loop publishes a [`HealthView`] on a [`HealthBoard`] after every turn (and
//! turns at least every [`HEARTBEAT_EVERY`]); the HTTP thread answers from the last view, so
//! a probe never waits for the loop, and a loop that stopped turning is seen as such.
//!
//! The verdicts are pure: [`liveness`] and [`readiness`] take the view (and the time) and say
//! why not, in one line.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the loop turns when nothing else happens, so that its heartbeat stays fresh.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);

/// How long the loop may go without turning before `/healthz` answers 503.
pub const STALL_LIMIT: Duration = Duration::from_secs(10);

/// Where herd is in its course, as readiness sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Serving: ready when enough workers are.
    Serving,
    /// A graceful stop waits out `--drain-delay` until this moment: not ready, still serving.
    Draining {
        /// When the workers are asked to stop.
        until: Instant,
    },
    /// Stopping: not ready.
    Stopping,
}

/// What the loop last published.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthView {
    /// When the loop last turned.
    pub turned: Instant,
    /// Ready workers (of any generation).
    pub ready: usize,
    /// Of them, those paused at the last look (`SIGSTOP`, a debugger): they serve nothing.
    pub paused: usize,
    /// `--ready-min`: how many ready workers make herd ready.
    pub ready_min: usize,
    /// Serving, draining or stopping.
    pub stage: Stage,
}

/// Whether herd is alive: its loop turned within [`STALL_LIMIT`] of `now`; else why not.
pub fn liveness(view: &HealthView, now: Instant) -> Result<(), String> {
    let since = now.saturating_duration_since(view.turned);
    if since > STALL_LIMIT {
        return Err(format!(
            "the supervisor's loop has not turned for {}s",
            since.as_secs()
        ));
    }
    Ok(())
}

/// Whether herd should get new connections: enough workers ready, and not draining or
/// stopping; else why not.
pub fn readiness(view: &HealthView) -> Result<(), String> {
    match view.stage {
        Stage::Stopping => Err("stopping".to_string()),
        Stage::Draining { .. } => Err("draining".to_string()),
        Stage::Serving if view.ready.saturating_sub(view.paused) < view.ready_min => {
            let paused = match view.paused {
                0 => String::new(),
                n => format!(" ({n} more paused, serving nothing)"),
            };
            Err(format!(
                "{} of {} ready workers needed{paused}",
                view.ready.saturating_sub(view.paused),
                view.ready_min
            ))
        }
        Stage::Serving => Ok(()),
    }
}

/// The last [`HealthView`], shared by the loop (which writes it) and the HTTP thread (which
/// reads it). Each side holds the lock only to copy a few words.
#[derive(Clone, Debug)]
pub struct HealthBoard(Arc<Mutex<HealthView>>);

impl HealthBoard {
    /// A board that says the loop turned `now`, with no worker ready yet.
    pub fn new(ready_min: usize, now: Instant) -> HealthBoard {
        HealthBoard(Arc::new(Mutex::new(HealthView {
            turned: now,
            ready: 0,
            paused: 0,
            ready_min,
            stage: Stage::Serving,
        })))
    }

    /// Publishes `view`.
    pub fn publish(&self, view: HealthView) {
        // A poisoned lock still holds a whole view: it is only ever assigned.
        let mut last = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *last = view;
    }

    /// The last view published.
    pub fn view(&self) -> HealthView {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(ready: usize, ready_min: usize, stage: Stage, turned: Instant) -> HealthView {
        HealthView {
            turned,
            ready,
            paused: 0,
            ready_min,
            stage,
        }
    }

    /// Ready workers that are paused (`kill -STOP`) serve nothing: `/readyz` answered 200
    /// while every worker was paused and requests timed out.
    #[test]
    fn paused_workers_do_not_make_herd_ready() {
        let paused = |n| HealthView {
            paused: n,
            ..view(2, 1, Stage::Serving, Instant::now())
        };
        assert_eq!(readiness(&paused(1)), Ok(()));
        assert_eq!(
            readiness(&paused(2)),
            Err("0 of 1 ready workers needed (2 more paused, serving nothing)".to_string())
        );
    }

    #[test]
    fn ready_takes_enough_ready_workers() {
        let t0 = Instant::now();
        assert_eq!(readiness(&view(3, 3, Stage::Serving, t0)), Ok(()));
        assert_eq!(readiness(&view(4, 3, Stage::Serving, t0)), Ok(()));
        assert_eq!(
            readiness(&view(2, 3, Stage::Serving, t0)),
            Err("2 of 3 ready workers needed".to_string())
        );
        // --ready-min 0: ready without a worker.
        assert_eq!(readiness(&view(0, 0, Stage::Serving, t0)), Ok(()));
    }

    #[test]
    fn draining_or_stopping_is_never_ready() {
        let t0 = Instant::now();
        let until = t0 + Duration::from_secs(5);
        let draining = view(4, 1, Stage::Draining { until }, t0);
        assert_eq!(readiness(&draining), Err("draining".to_string()));
        let stopping = view(4, 0, Stage::Stopping, t0);
        assert_eq!(readiness(&stopping), Err("stopping".to_string()));
    }

    #[test]
    fn alive_while_the_loop_turns() {
        let t0 = Instant::now();
        let v = view(0, 1, Stage::Stopping, t0);
        assert_eq!(liveness(&v, t0), Ok(()));
        assert_eq!(liveness(&v, t0 + STALL_LIMIT), Ok(()));
        let late = t0 + STALL_LIMIT + Duration::from_secs(2);
        assert_eq!(
            liveness(&v, late),
            Err("the supervisor's loop has not turned for 12s".to_string())
        );
        // A clock reading before the last turn is no stall.
        assert_eq!(liveness(&view(0, 1, Stage::Serving, late), t0), Ok(()));
    }

    #[test]
    fn the_board_hands_over_the_last_view() {
        let t0 = Instant::now();
        let board = HealthBoard::new(2, t0);
        assert_eq!(board.view(), view(0, 2, Stage::Serving, t0));
        let later = view(2, 2, Stage::Stopping, t0 + Duration::from_secs(1));
        board.clone().publish(later);
        assert_eq!(board.view(), later);
    }
}
