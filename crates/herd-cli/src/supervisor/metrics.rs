//! `--metrics ADDR`: Prometheus metrics over HTTP, in the OpenMetrics text format (via the
//! `prometheus-client` crate, which writes it: `_total` counters, `# UNIT`, `# EOF`), served
//! with that format's content type. Every metric is listed in `docs/metrics.md`.
//!
//! Each scrape is a connection task of the [HTTP endpoints](super::http) that asks the
//! supervisor for a rendering over a channel; a slow or hostile scraper only ever holds its
//! own task, so the endpoint never blocks the supervisor. The supervisor answers every scrape
//! waiting at that moment with one rendering, and reuses it for those that follow while
//! nothing happens, for at most [`REUSE_FOR`](reuse::REUSE_FOR): rendering reads every worker's CPU
//! time, and a crowd of scrapers must not keep the loop from its other inputs.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use herd_core::RecycleCause;

mod render;
mod reuse;

pub use render::{render, CONTENT_TYPE};
pub use reuse::{Happened, LastRendering, Rendered};

/// Counters the supervisor bumps as things happen; gauges are set when rendering.
#[derive(Default)]
pub struct Counters {
    /// Workers restarted after an unexpected exit.
    pub restarts: Counter,
    /// Worker exits by cause: `exit`, `signal`, `stopped`.
    pub exits: Family<ExitLabel, Counter>,
    /// Rolling upgrades by result: `ok`, `failed`.
    pub upgrades: Family<ResultLabel, Counter>,
    /// Autoscaling decisions by direction: `up`, `down`.
    pub autoscale: Family<DirectionLabel, Counter>,
    /// Shared sockets that a worker shut down and herd made listen again.
    pub sockets_restored: Counter,
    /// Workers recycled by reason: `memory`, `lifetime`, `asked`.
    pub recycles: Family<ReasonLabel, Counter>,
}

/// `reason` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// `memory`, `lifetime` or `asked`.
    pub reason: String,
}

impl OneLabel for ReasonLabel {
    fn with_value(reason: String) -> Self {
        ReasonLabel { reason }
    }
}

/// `cause` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExitLabel {
    /// `exit`, `signal` or `stopped`.
    pub cause: String,
}

/// `result` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// `ok` or `failed`.
    pub result: String,
}

/// `direction` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabel {
    /// `up` or `down`.
    pub direction: String,
}

/// `socket` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SocketLabel {
    /// The socket's name.
    pub socket: String,
}

/// `generation` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GenerationLabel {
    /// The generation number.
    pub generation: String,
}

/// `slot` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SlotLabel {
    /// The worker's slot.
    pub slot: String,
}

/// The values of the moment, read by the supervisor when a scrape arrives.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Desired workers.
    pub desired: i64,
    /// Running worker processes.
    pub running: i64,
    /// Ready workers by generation.
    pub ready: Vec<(u64, i64)>,
    /// Attached processes.
    pub attached: i64,
    /// Busy workers over the pool's maximum, 0.0 to 1.0.
    pub saturation: f64,
    /// Accept queue length and limit by socket.
    pub queues: Vec<(String, i64, i64)>,
    /// Accept queue length and backlog by socket, as the sampler's thread last read them.
    pub listen: Vec<(String, i64, i64)>,
    /// CPU seconds used by each slot's current worker.
    pub cpu: Vec<(usize, f64)>,
    /// herd's resident memory, in bytes.
    pub rss: i64,
    /// herd's own process statistics, for the standard `process_*` metrics.
    pub process: Option<super::process_stats::ProcessStats>,
}

/// The label values of the labelled counters, exported at 0 before their first event, so
/// that `rate()` and alerts see the series from the start.
const EXIT_CAUSES: [&str; 3] = ["exit", "signal", "stopped"];
const UPGRADE_RESULTS: [&str; 2] = ["ok", "failed"];
const DIRECTIONS: [&str; 2] = ["up", "down"];
const RECYCLE_REASONS: [&str; 3] = [
    RecycleCause::Memory.as_str(),
    RecycleCause::Lifetime.as_str(),
    RecycleCause::Asked.as_str(),
];

/// The counters' values, handed over by a re-exec so that they keep counting.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct SavedCounters {
    restarts: u64,
    exits: Vec<(String, u64)>,
    upgrades: Vec<(String, u64)>,
    autoscale: Vec<(String, u64)>,
    sockets_restored: u64,
    /// Only those counted (absent when none was, and in the state of a herd before
    /// recycling).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    recycles: Vec<(String, u64)>,
}

impl Counters {
    /// The values, for a re-exec.
    /// Every counter is named, here and in [`restore`](Counters::restore), so that one added
    /// later does not compile until a re-exec carries it over.
    pub fn save(&self) -> SavedCounters {
        let Counters {
            restarts,
            exits,
            upgrades,
            autoscale,
            sockets_restored,
            recycles,
        } = self;
        SavedCounters {
            restarts: restarts.get(),
            exits: save_family(exits, &EXIT_CAUSES),
            upgrades: save_family(upgrades, &UPGRADE_RESULTS),
            autoscale: save_family(autoscale, &DIRECTIONS),
            sockets_restored: sockets_restored.get(),
            recycles: save_family(recycles, &RECYCLE_REASONS)
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .collect(),
        }
    }

    /// Everything counted, summed: it changes whenever something is counted.
    pub fn total(&self) -> u64 {
        let saved = self.save();
        let families = [saved.exits, saved.upgrades, saved.autoscale, saved.recycles];
        let labelled: u64 = families.iter().flatten().map(|(_, n)| n).sum();
        saved.restarts + saved.sockets_restored + labelled
    }

    /// Continues from the values a previous image saved.
    pub fn restore(&self, saved: &SavedCounters) {
        let Counters {
            restarts,
            exits,
            upgrades,
            autoscale,
            sockets_restored,
            recycles,
        } = self;
        restarts.inc_by(saved.restarts);
        restore_family(exits, &saved.exits);
        restore_family(upgrades, &saved.upgrades);
        restore_family(autoscale, &saved.autoscale);
        sockets_restored.inc_by(saved.sockets_restored);
        restore_family(recycles, &saved.recycles);
    }
}

/// A label set of one label, made from its value: what the labelled counters are counted by.
pub trait OneLabel: Clone + std::hash::Hash + Eq {
    /// The label set whose one label has `value`.
    fn with_value(value: String) -> Self;
}

impl OneLabel for ExitLabel {
    fn with_value(cause: String) -> Self {
        ExitLabel { cause }
    }
}

impl OneLabel for ResultLabel {
    fn with_value(result: String) -> Self {
        ResultLabel { result }
    }
}

impl OneLabel for DirectionLabel {
    fn with_value(direction: String) -> Self {
        DirectionLabel { direction }
    }
}

/// Counts one event labelled `value` in `family`.
pub fn bump<L: OneLabel>(family: &Family<L, Counter>, value: &str) {
    family
        .get_or_create(&L::with_value(value.to_string()))
        .inc();
}

/// The counts of `family` for each of `values` (0 for one never counted).
fn save_family<L: OneLabel>(family: &Family<L, Counter>, values: &[&str]) -> Vec<(String, u64)> {
    values
        .iter()
        .map(|v| {
            let count = family.get(&L::with_value(v.to_string()));
            (v.to_string(), count.map_or(0, |c| c.get()))
        })
        .collect()
}

/// Adds the `saved` counts to `family`.
fn restore_family<L: OneLabel>(family: &Family<L, Counter>, saved: &[(String, u64)]) {
    for (value, n) in saved {
        family
            .get_or_create(&L::with_value(value.clone()))
            .inc_by(*n);
    }
}

/// Creates `family`'s series for each of `values`, so that they are exported at 0.
fn export_at_zero<L: OneLabel>(family: &Family<L, Counter>, values: &[&str]) {
    for value in values {
        drop(family.get_or_create(&L::with_value(value.to_string())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_survive_a_save_and_restore() {
        let before = Counters::default();
        before.restarts.inc_by(3);
        before.sockets_restored.inc();
        let cause = "signal".to_string();
        before.exits.get_or_create(&ExitLabel { cause }).inc_by(2);
        let result = "failed".to_string();
        before.upgrades.get_or_create(&ResultLabel { result }).inc();
        let direction = "down".to_string();
        before
            .autoscale
            .get_or_create(&DirectionLabel { direction })
            .inc_by(4);
        for (reason, n) in [("memory", 5), ("asked", 2)] {
            let reason = reason.to_string();
            before
                .recycles
                .get_or_create(&ReasonLabel { reason })
                .inc_by(n);
        }
        let saved = serde_json::to_string(&before.save()).unwrap();
        assert!(saved.contains("asked"), "{saved}");
        let after = Counters::default();
        after.restore(&serde_json::from_str(&saved).unwrap());
        assert_eq!(serde_json::to_string(&after.save()).unwrap(), saved);
        assert_eq!(after.restarts.get(), 3);
        assert_eq!(after.total(), 3 + 1 + 2 + 1 + 4 + 5 + 2);
    }
}
