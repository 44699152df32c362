//! Samples for `--metrics` and the autoscaler: the pool's figures and what the platform says
//! of the processes.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::logging::LogEvent;
use crate::spec::Listener;

use super::autoscale::{Autoscaler, Sample};
use super::effects::{Count, Effect};
use super::http::Scrape;
use super::pool::WorkerState;
use super::sources::Sources;
use super::status::{AutoscaleDecision, AutoscaleStatus};
use super::Supervisor;
use super::{busyness, metrics, platform};

impl Supervisor {
    /// Answers `first` and every scrape waiting behind it with one rendering: the last one
    /// again, while it is young and nothing has happened since (see
    /// [`LastRendering`](metrics::LastRendering)).
    pub(super) fn answer_scrapes(&mut self, first: Scrape, sources: &mut Sources) {
        let scrapes: Vec<Scrape> = std::iter::once(first)
            .chain(sources.waiting_scrapes())
            .collect();
        let now = Instant::now();
        let happened = self.happened();
        let rendered = match self.last_rendering.reusable(now, &happened) {
            Some(rendered) => rendered.clone(),
            None => {
                let rendered = self.effects.render(&self.metrics_snapshot(&happened));
                self.last_rendering.keep(now, happened, rendered.clone());
                rendered
            }
        };
        self.effects
            .execute([Effect::AnswerScrapes { scrapes, rendered }]);
    }

    /// What the metrics count and follow as things happen.
    fn happened(&self) -> metrics::Happened {
        let mut ready: BTreeMap<u64, i64> = BTreeMap::new();
        for w in self
            .pool
            .workers()
            .iter()
            .filter(|w| w.state == WorkerState::Ready)
        {
            *ready.entry(w.generation).or_default() += 1;
        }
        metrics::Happened {
            desired: self.pool.desired() as i64,
            running: self.pool.workers().len() as i64,
            ready: ready.into_iter().collect(),
            attached: self.attached.as_slice().len() as i64,
            counted: self.effects.counted(),
        }
    }

    /// The values `--metrics` reports, with `happened`'s.
    fn metrics_snapshot(&self, happened: &metrics::Happened) -> metrics::Snapshot {
        let per_second = platform::ticks_per_second() as f64;
        // One read of /proc for herd's own figures; its resident memory also feeds the older
        // herd_supervisor_resident_memory metric.
        let process = platform::process_stats();
        let rss = process.as_ref().map_or(0, |p| p.resident_bytes as i64);
        let listeners = self.effects.listeners();
        metrics::Snapshot {
            desired: happened.desired,
            running: happened.running,
            ready: happened.ready.clone(),
            attached: happened.attached,
            saturation: self.saturation(),
            queues: listeners
                .iter()
                .filter_map(|l| {
                    let (waiting, max) = l.accept_queue()?;
                    Some((l.name.clone(), i64::from(waiting), i64::from(max)))
                })
                .collect(),
            listen: self
                .backlogs
                .last()
                .iter()
                .map(|q| (q.socket.clone(), i64::from(q.queued), i64::from(q.backlog)))
                .collect(),
            cpu: self
                .pool
                .workers()
                .iter()
                .filter_map(|w| Some((w.slot, platform::cpu_ticks(w.pid)? as f64 / per_second)))
                .collect(),
            rss,
            process,
        }
    }

    /// `herd_pool_saturation`: the ready workers' CPU use at the last sample, over the most
    /// workers the pool may run (the autoscaler's maximum, else the number asked for).
    fn saturation(&self) -> f64 {
        let ready = self.pool.workers().iter();
        let ready = ready.filter(|w| w.state == WorkerState::Ready);
        let shares = ready.filter_map(|w| self.recycling.cpu_share(w.pid));
        let max = self
            .autoscaler
            .as_ref()
            .map_or(self.pool.desired(), |a| a.max);
        busyness::saturation(shares, max)
    }

    /// Turns autoscaling on between `bounds`, or off.
    pub fn set_autoscale(&mut self, bounds: Option<(usize, usize)>) {
        self.autoscaler = bounds.map(|(min, max)| {
            tracing::info!(
                event = LogEvent::AutoscaleOn.as_str(),
                min,
                max,
                "autoscaling between {min} and {max} workers"
            );
            Autoscaler::new(min, max)
        });
    }

    /// Samples the load and applies the autoscaler's decision. An `early` sample, taken because
    /// the queue grew between two regular ones, reuses the last busyness: CPU ticks over a few
    /// milliseconds would say nothing.
    pub(super) fn autoscale_tick(&mut self, early: bool) {
        // A pool about to stop is left as it is.
        if self.probes.draining() {
            return;
        }
        let now = Instant::now();
        let busy = match early {
            true => self.cpu.last(),
            false => self.busyness(now),
        };
        let sample = Sample {
            queued: self.queued(),
            busy,
            settled: self.all_ready(),
        };
        let current = self.pool.desired();
        let Some(decision) = self
            .autoscaler
            .as_mut()
            .and_then(|a| a.sample(current, sample, now))
        else {
            return;
        };
        tracing::info!(
            event = LogEvent::Autoscale.as_str(),
            from = current,
            to = decision.workers,
            reason = %decision.reason,
            "autoscale: {current} -> {} {}: {}",
            decision.workers,
            crate::text::workers(decision.workers),
            decision.reason
        );
        let up = decision.workers > current;
        self.effects
            .execute([Effect::Count(Count::Autoscale { up })]);
        if let Err(why) = self.scale(decision.workers, "autoscale") {
            tracing::warn!(event = LogEvent::ScaleRefused.as_str(), "autoscale: {why}");
        }
    }

    /// Connections waiting in the TCP accept queues.
    pub(super) fn queued(&self) -> u32 {
        self.effects
            .listeners()
            .iter()
            .filter_map(Listener::accept_queue)
            .map(|(waiting, _)| waiting)
            .sum()
    }

    /// The workers' average CPU use since the last sample, 0.0 to 1.0.
    fn busyness(&mut self, now: Instant) -> f64 {
        let readings = self
            .pool
            .workers()
            .iter()
            .filter(|w| w.state == WorkerState::Ready)
            .filter_map(|w| Some((w.pid, platform::cpu_ticks(w.pid)?)));
        let per_second = platform::ticks_per_second();
        self.cpu.sample(readings, per_second, now)
    }

    /// Autoscaling's state, for `herd status`.
    pub fn autoscale_status(&self) -> Option<AutoscaleStatus> {
        let a = self.autoscaler.as_ref()?;
        let last = a.last.as_ref().map(|(at, d)| AutoscaleDecision {
            workers: d.workers,
            reason: d.reason.clone(),
            ago_ms: at.elapsed().as_millis() as u64,
        });
        Some(AutoscaleStatus {
            min: a.min,
            max: a.max,
            last_decision: last,
        })
    }
}
