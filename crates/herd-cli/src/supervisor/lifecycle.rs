//! What herd does when told to stop, upgrade or scale, by a signal or a control request.
use std::time::{Duration, Instant};

use herd_sys::process::Signal;
use tokio::sync::oneshot;

use crate::control::protocol::Response;
use crate::control::server::Reply;
use crate::logging::LogEvent;

use super::attached;
use super::leftovers;
use super::phase::{self, StopPlan};
use super::pool::{self, PoolError};
use super::{Supervisor, DEFAULT_UPGRADE_TIMEOUT};

impl Supervisor {
    /// What remains in the groups of attached processes that have exited is stopped and
    /// waited for like a worker's leftovers.
    pub(super) fn attached_leftovers(&mut self) {
        let leaders = self.attached.take_exited_leaders();
        if leaders.is_empty() {
            return;
        }
        let (stop_signal, grace) = (self.effects.stop_signal(), self.pool.config().grace);
        let stopping = self.attached.kill_at();
        for leader in leaders {
            self.leftovers.attached_exited(
                &mut leftovers::System::default(),
                leader,
                stopping,
                stop_signal,
                grace,
                Instant::now(),
            );
        }
    }

    pub(super) fn stop(&mut self, reason: &str, graceful: bool, grace: Option<Duration>) {
        let now = Instant::now();
        let grace = grace.unwrap_or(self.pool.config().grace);
        let Some(plan) = phase::stop_plan(graceful, self.pool.is_stopping(), grace, now) else {
            tracing::info!(
                event = LogEvent::AlreadyStopping.as_str(),
                signal = reason,
                "already stopping; send SIGQUIT to stop at once"
            );
            return;
        };
        let StopPlan {
            graceful,
            grace,
            deadline,
        } = plan;
        if graceful {
            tracing::info!(
                event = LogEvent::Stopping.as_str(),
                signal = reason,
                "stopping gracefully: workers get {} and {} to finish",
                self.effects.stop_signal(),
                humantime::format_duration(grace)
            );
        } else {
            tracing::info!(
                event = LogEvent::StoppingAtOnce.as_str(),
                signal = reason,
                "stopping at once: killing every worker"
            );
        }
        self.reexec_children.stop();
        self.reexec_file = None;
        self.effects.close_sockets();
        self.effects.service.stopping();
        let signal = if graceful {
            self.effects.stop_signal()
        } else {
            Signal::KILL
        };
        self.attached
            .stop(&mut attached::System, signal, grace, now);
        let actions = self.pool.stop(graceful, Some(grace), now);
        self.apply(actions, false);
        self.leftovers.stop(deadline);
        self.leftovers.check(&mut leftovers::System::default(), now);
    }

    pub(super) fn upgrade(
        &mut self,
        reason: &str,
        timeout: Option<Duration>,
        waiter: Option<oneshot::Sender<Reply>>,
    ) {
        let timeout = timeout.unwrap_or(DEFAULT_UPGRADE_TIMEOUT);
        let started = match self.pool.upgrade_too_short(timeout) {
            Some(why) => Err(why),
            None => self.pool.upgrade(timeout, Instant::now()),
        };
        match started {
            Ok((generation, actions)) => {
                tracing::info!(
                    event = LogEvent::UpgradeStarted.as_str(),
                    generation,
                    trigger = reason,
                    "rolling upgrade to generation {generation} started"
                );
                self.effects
                    .service
                    .reloading(&format!("upgrading to generation {generation}"));
                self.upgrade_waiters.extend(waiter);
                self.apply(actions, false);
            }
            Err(why) => {
                tracing::warn!(
                    event = LogEvent::UpgradeRefused.as_str(),
                    "{reason}: cannot upgrade: {why}"
                );
                if let Some(waiter) = waiter {
                    let response = Response::error(pool::error_code(&why), why.to_string());
                    let _ = waiter.send(response.into());
                }
            }
        }
    }

    pub(super) fn scale(&mut self, target: usize, reason: &str) -> Result<usize, PoolError> {
        let previous = self.pool.desired();
        let actions = self.pool.scale(target, Instant::now())?;
        tracing::info!(
            event = LogEvent::Scaling.as_str(),
            trigger = reason,
            "scaling from {previous} to {target} workers"
        );
        self.apply(actions, false);
        Ok(previous)
    }
}
