//! What herd does when told to stop, upgrade or scale, by a signal or a control request.
use std::time::{Duration, Instant};

use crate::control::protocol::{ErrorCode, Response};
use crate::logging::LogEvent;

use super::effects::{Client, Count, Effect};
use super::phase::{self, StopPlan};
use super::platform::Signal;
use super::pool::{self, PoolError};
use super::reload::ForUpgrade;
use super::waiters::{Answer, UpgradeOutcome};
use super::{Supervisor, DEFAULT_UPGRADE_TIMEOUT};

/// Why an upgrade is refused during `--drain-delay`.
const DRAINING: &str = "herd is draining before it stops (--drain-delay)";

impl Supervisor {
    pub(super) fn stop(&mut self, reason: &str, graceful: bool, grace: Option<Duration>) {
        let now = Instant::now();
        let asked = grace;
        let grace = grace.unwrap_or(self.pool.config().grace);
        let Some(plan) = phase::stop_plan(graceful, self.pool.is_stopping(), grace, now) else {
            // A grace asked for again is the most any worker still stopping has left.
            let shorter = match asked {
                Some(asked) => {
                    let actions = self.pool.stop(true, Some(asked), now);
                    self.apply(actions, false);
                    let left = (self.pool.workers().iter())
                        .filter_map(|w| match w.state {
                            pool::WorkerState::Stopping {
                                deadline,
                                killed: false,
                                ..
                            } => Some(deadline.saturating_duration_since(now)),
                            _ => None,
                        })
                        .max();
                    match left {
                        Some(left) => format!(
                            "the workers still stopping have {} at most; ",
                            humantime::format_duration(Duration::from_millis(
                                left.as_millis() as u64
                            ))
                        ),
                        None => String::new(),
                    }
                }
                None => String::new(),
            };
            tracing::info!(
                event = LogEvent::AlreadyStopping.as_str(),
                signal = reason,
                "already stopping; {shorter}{}",
                super::platform::STOP_AT_ONCE
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
        // What only the platform stops (Unix: re-exec checks die with herd, and their client
        // hears it).
        let mut effects = self.platform_stop_effects();
        effects.extend(self.waiters.reexec_cancelled().map(Effect::RefuseReexec));
        effects.extend(self.reading_stopped());
        effects.push(Effect::CloseSockets);
        effects.extend(self.phase.stopping().map(Effect::Report));
        self.effects.execute(effects);
        let signal = match graceful {
            true => self.effects.stop_signal(),
            false => Signal::KILL,
        };
        self.attached
            .stop(self.effects.attached(), signal, grace, now);
        let actions = self.pool.stop(graceful, Some(grace), now);
        self.apply(actions, false);
        self.platform_stopping(deadline, now);
        self.publish_health();
    }

    pub(super) fn upgrade(
        &mut self,
        reason: &str,
        timeout: Option<Duration>,
        client: Option<Client>,
    ) {
        self.upgrade_to(reason, timeout, client, None);
    }

    /// Starts a rolling upgrade; with `reloaded`, its new generation runs what a config file
    /// read again says, and what was read is forgotten if it cannot start.
    pub(super) fn upgrade_to(
        &mut self,
        reason: &str,
        timeout: Option<Duration>,
        client: Option<Client>,
        reloaded: Option<ForUpgrade>,
    ) {
        if self.probes.draining() {
            return self.upgrade_refused_while_draining(reason, client, reloaded.is_some());
        }
        let timeout = timeout.unwrap_or(DEFAULT_UPGRADE_TIMEOUT);
        let (config, reloaded) = match reloaded {
            Some((config, command, staged)) => (Some(config), Some((command, staged))),
            None => (None, None),
        };
        let too_short = match &config {
            Some(config) => self.pool.upgrade_too_short_with(timeout, config),
            None => self.pool.upgrade_too_short(timeout),
        };
        let started = match too_short {
            Some(why) => Err(why),
            None => self.pool.upgrade_with(timeout, config, Instant::now()),
        };
        match started {
            Ok((generation, actions)) => {
                tracing::info!(
                    event = LogEvent::UpgradeStarted.as_str(),
                    generation,
                    trigger = reason,
                    "rolling upgrade to generation {generation} started"
                );
                if let Some(report) = self.phase.upgrade_started(generation) {
                    self.effects.execute([Effect::Report(report)]);
                }
                self.waiters.upgrade_started(client);
                if let Some((command, staged)) = reloaded {
                    self.reloaded_upgrade_started(generation, command, staged);
                }
                self.apply(actions, false);
            }
            Err(why) => {
                if reloaded.is_some() {
                    self.reloaded_upgrade_refused();
                }
                tracing::warn!(
                    event = LogEvent::UpgradeRefused.as_str(),
                    "{reason}: cannot upgrade: {why}"
                );
                match client {
                    Some(client) => {
                        let response = Response::error(pool::error_code(&why), why.to_string());
                        self.effects
                            .execute([Effect::Answer(Answer::new(client, response))]);
                    }
                    // A signal's (`systemctl reload`): the service manager hears the outcome.
                    None => {
                        let upgrading = matches!(why, PoolError::UpgradeInProgress { .. });
                        let stopping = self.pool.is_stopping();
                        let why = why.to_string();
                        let reports = self.phase.upgrade_refused(&why, upgrading, stopping);
                        self.effects
                            .execute(reports.into_iter().map(Effect::Report));
                    }
                }
            }
        }
    }

    /// Refuses an upgrade asked for during `--drain-delay`: herd is about to stop (for the
    /// service manager it is stopping: no `READY=1` after `STOPPING=1`).
    fn upgrade_refused_while_draining(
        &mut self,
        reason: &str,
        client: Option<Client>,
        reloaded: bool,
    ) {
        if reloaded {
            self.reloaded_upgrade_refused();
        }
        tracing::warn!(
            event = LogEvent::UpgradeRefused.as_str(),
            "{reason}: cannot upgrade: {DRAINING}"
        );
        let effects = match client {
            Some(client) => {
                let response = Response::error(ErrorCode::Stopping, DRAINING.to_string());
                vec![Effect::Answer(Answer::new(client, response))]
            }
            None => {
                let reports = self.phase.upgrade_refused(DRAINING, false, true);
                reports.into_iter().map(Effect::Report).collect()
            }
        };
        self.effects.execute(effects);
    }

    /// The pool says the rolling upgrade ended with `result`: the log, the counters, its
    /// clients and the service manager hear how.
    pub(super) fn upgrade_ended(&mut self, result: Result<u64, String>) {
        let outcome = UpgradeOutcome::of(result, self.pool.is_stopping());
        let ok = matches!(outcome, UpgradeOutcome::Finished(_));
        self.effects.execute([Effect::Count(Count::Upgrade { ok })]);
        let overridden = self.reloaded_upgrade_ended(ok);
        match &outcome {
            UpgradeOutcome::Finished(generation) => tracing::info!(
                event = LogEvent::UpgradeFinished.as_str(),
                generation,
                "rolling upgrade to generation {generation} finished"
            ),
            UpgradeOutcome::Abandoned => tracing::info!(
                event = LogEvent::UpgradeAbandoned.as_str(),
                "rolling upgrade abandoned: herd is stopping"
            ),
            UpgradeOutcome::Aborted(why) => {
                tracing::error!(
                    event = LogEvent::UpgradeAborted.as_str(),
                    "rolling upgrade aborted; the old workers keep serving: {why}"
                );
                // `--fork-server`: the new generation's fork server, which may hold a whole
                // app loaded, would idle until the next upgrade.
                let generation = self.pool.generation();
                let cancelled = self.effects.spawner().close_fork_servers_after(generation);
                self.cancel_starts_after(generation, &cancelled);
            }
        }
        let answers = self.waiters.upgrade_ended(&outcome, &overridden);
        let generation = match outcome {
            UpgradeOutcome::Finished(generation) => Ok(generation),
            _ => Err(()),
        };
        let report = self.phase.upgrade_ended(generation, self.pool.desired());
        let effects = answers.into_iter().map(Effect::Answer);
        self.effects
            .execute(effects.chain([Effect::Report(report)]));
    }

    pub(super) fn scale(&mut self, target: usize, reason: &str) -> Result<usize, PoolError> {
        // A pool about to stop is neither grown nor shrunk.
        if self.probes.draining() {
            return Err(PoolError::Stopping);
        }
        let previous = self.pool.desired();
        let actions = self.pool.scale(target, Instant::now())?;
        tracing::info!(
            event = LogEvent::Scaling.as_str(),
            trigger = reason,
            "scaling from {previous} to {target} {}",
            crate::text::workers(target)
        );
        self.apply(actions, false);
        Ok(previous)
    }
}
