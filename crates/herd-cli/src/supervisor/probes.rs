//! The supervisor's side of `/healthz`, `/readyz` and `--drain-delay`: the endpoints it
//! serves, the [`HealthView`] it publishes after every turn, and stop requests, which go
//! through the [drain policy](super::drain_delay) before they stop anything.

use std::time::{Duration, Instant};

use crate::logging::LogEvent;

use super::drain_delay::{DrainDelay, DrainStep, StopRequest};
use super::effects::Effect;
use super::health::{HealthBoard, HealthView, Stage};
use super::http::Endpoint;
use super::pool::WorkerState;
use super::Supervisor;

/// What `/readyz` and the drain go by, and where the loop publishes its view.
#[derive(Debug)]
pub struct Probes {
    board: HealthBoard,
    /// `--ready-min`.
    ready_min: usize,
    /// `--drain-delay`.
    delay: Duration,
    drain: DrainDelay,
    /// Whether an HTTP endpoint serves the probes (the loop then keeps a heartbeat).
    served: bool,
}

impl Default for Probes {
    fn default() -> Probes {
        Probes {
            board: HealthBoard::new(1, Instant::now()),
            ready_min: 1,
            delay: Duration::ZERO,
            drain: DrainDelay::default(),
            served: false,
        }
    }
}

impl Probes {
    /// Where the loop publishes its view.
    pub fn board(&self) -> HealthBoard {
        self.board.clone()
    }

    /// Whether an HTTP endpoint serves the probes.
    pub fn served(&self) -> bool {
        self.served
    }

    /// Whether a stop waits out `--drain-delay`.
    pub fn draining(&self) -> bool {
        self.drain.until().is_some()
    }

    /// When the drain is over, while draining.
    pub fn drain_until(&self) -> Option<Instant> {
        self.drain.until()
    }
}

impl Supervisor {
    /// Serves `--metrics` (with `/healthz` and `/readyz`) on `listener` once running.
    pub fn set_metrics(&mut self, listener: std::net::TcpListener) {
        self.http_listeners.push((listener, Endpoint::Metrics));
        self.probes.served = true;
    }

    /// Serves `--health` (`/healthz` and `/readyz`) on `listener` once running.
    pub fn set_health(&mut self, listener: std::net::TcpListener) {
        self.http_listeners.push((listener, Endpoint::Health));
        self.probes.served = true;
    }

    /// `--ready-min` and `--drain-delay`.
    pub fn set_readiness(&mut self, ready_min: usize, drain_delay: Duration) {
        self.probes.ready_min = ready_min;
        self.probes.delay = drain_delay;
        self.publish_health();
    }

    /// A stop was asked for: it waits out `--drain-delay` first if it is graceful and herd
    /// serves; a second request skips the rest of the delay.
    pub(super) fn request_stop(&mut self, request: StopRequest) {
        let (delay, stopping) = (self.probes.delay, self.pool.is_stopping());
        let (now, trigger) = (Instant::now(), request.reason.clone());
        match self.probes.drain.request(request, delay, stopping, now) {
            DrainStep::Stop(request) => self.stop_as(request),
            DrainStep::Begin { .. } => {
                // Published before it is logged: whoever reads the log sees /readyz say no.
                self.publish_health();
                let report = self.phase.stopping().map(Effect::Report);
                self.effects.execute(report);
                tracing::info!(
                    event = LogEvent::Draining.as_str(),
                    signal = trigger,
                    delay = %humantime::format_duration(delay),
                    "draining for {}: /readyz answers 503 while the workers serve on, then \
                     herd stops gracefully (stop again to skip the rest)",
                    humantime::format_duration(delay)
                );
            }
        }
    }

    /// Stops as asked once the drain is over.
    pub(super) fn drain_due(&mut self) {
        if let Some(request) = self.probes.drain.due(Instant::now()) {
            self.stop_as(request);
        }
    }

    fn stop_as(&mut self, request: StopRequest) {
        let StopRequest {
            reason,
            graceful,
            grace,
        } = request;
        self.stop(&reason, graceful, grace);
    }

    /// What the drain has left at `now`, while draining.
    pub fn drain_left(&self, now: Instant) -> Option<Duration> {
        let until = self.probes.drain.until()?;
        Some(until.saturating_duration_since(now))
    }

    /// Publishes the view `/healthz` and `/readyz` answer from: the loop turned now.
    pub(super) fn publish_health(&self) {
        // Once per turn, one pass and no allocation (thousands of workers' READY=1 are
        // thousands of turns): the ready workers, and the paused among them.
        let (ready, paused) = (self.pool.workers().iter())
            .filter(|w| w.state == WorkerState::Ready)
            .fold((0, 0), |(ready, paused), w| {
                (ready + 1, paused + usize::from(w.paused))
            });
        let stage = match self.probes.drain.until() {
            _ if self.pool.is_stopping() => Stage::Stopping,
            Some(until) => Stage::Draining { until },
            None => Stage::Serving,
        };
        self.probes.board.publish(HealthView {
            turned: Instant::now(),
            ready,
            paused,
            ready_min: self.probes.ready_min,
            stage,
        });
    }
}
