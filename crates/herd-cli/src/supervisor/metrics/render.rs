//! Rendering the metrics in the OpenMetrics text format.

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use super::{
    export_at_zero, Counters, GenerationLabel, SlotLabel, Snapshot, SocketLabel, DIRECTIONS,
    EXIT_CAUSES, RECYCLE_REASONS, UPGRADE_RESULTS,
};
use crate::supervisor::process_stats::ProcessStats;

/// The content type of the OpenMetrics text format that [`render`] writes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Renders the metrics in the OpenMetrics text format ([`CONTENT_TYPE`]).
pub fn render(counters: &Counters, snapshot: &Snapshot) -> Result<String, std::fmt::Error> {
    export_at_zero(&counters.exits, &EXIT_CAUSES);
    export_at_zero(&counters.upgrades, &UPGRADE_RESULTS);
    export_at_zero(&counters.autoscale, &DIRECTIONS);
    export_at_zero(&counters.recycles, &RECYCLE_REASONS);
    let mut registry = Registry::default();
    register_workers(&mut registry, snapshot);
    register_counters(&mut registry, counters);
    register_queues(&mut registry, snapshot);
    register_resources(&mut registry, snapshot);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)?;
    Ok(text)
}

/// A gauge set to `value`.
fn gauge(value: i64) -> Gauge {
    let g: Gauge = Gauge::default();
    g.set(value);
    g
}

/// How many workers herd wants, runs, has ready (by generation), and has attached.
fn register_workers(registry: &mut Registry, snapshot: &Snapshot) {
    registry.register(
        "herd_workers_desired",
        "Workers herd keeps running",
        gauge(snapshot.desired),
    );
    registry.register(
        "herd_workers_running",
        "Worker processes alive, stopping ones included",
        gauge(snapshot.running),
    );
    let ready: Family<GenerationLabel, Gauge> = Family::default();
    for (generation, n) in &snapshot.ready {
        ready
            .get_or_create(&GenerationLabel {
                generation: generation.to_string(),
            })
            .set(*n);
    }
    registry.register("herd_workers_ready", "Ready workers, by generation", ready);
    registry.register(
        "herd_attached_workers",
        "Processes started with herd attach",
        gauge(snapshot.attached),
    );
    let saturation: Gauge<f64, AtomicU64> = Gauge::default();
    saturation.set(snapshot.saturation);
    registry.register(
        "herd_pool_saturation",
        "Busy workers (by CPU) over the pool's maximum, 0 to 1",
        saturation,
    );
}

/// The counters the supervisor bumps.
fn register_counters(registry: &mut Registry, counters: &Counters) {
    registry.register(
        "herd_worker_restarts",
        "Workers restarted after an unexpected exit",
        counters.restarts.clone(),
    );
    registry.register(
        "herd_worker_exits",
        "Worker exits, by cause (exit, signal, stopped)",
        counters.exits.clone(),
    );
    registry.register(
        "herd_upgrades",
        "Rolling upgrades, by result (ok, failed)",
        counters.upgrades.clone(),
    );
    registry.register(
        "herd_autoscale_decisions",
        "Autoscaling decisions, by direction (up, down)",
        counters.autoscale.clone(),
    );
    registry.register(
        "herd_sockets_restored",
        "Shared sockets a worker shut down (for every holder) that herd made listen again",
        counters.sockets_restored.clone(),
    );
    registry.register(
        "herd_worker_recycles",
        "Workers recycled (replaced by a successor), by reason (memory, lifetime, asked)",
        counters.recycles.clone(),
    );
}

/// Each socket's accept queue: its length and its limit.
fn register_queues(registry: &mut Registry, snapshot: &Snapshot) {
    let queue: Family<SocketLabel, Gauge> = Family::default();
    let limit: Family<SocketLabel, Gauge> = Family::default();
    for (socket, length, max) in &snapshot.queues {
        queue
            .get_or_create(&SocketLabel {
                socket: socket.clone(),
            })
            .set(*length);
        limit
            .get_or_create(&SocketLabel {
                socket: socket.clone(),
            })
            .set(*max);
    }
    registry.register(
        "herd_accept_queue_length",
        "Connections waiting to be accepted (TCP_INFO)",
        queue,
    );
    registry.register(
        "herd_accept_queue_limit",
        "Accept queue limit, the backlog (TCP_INFO)",
        limit,
    );
    let queue: Family<SocketLabel, Gauge> = Family::default();
    let backlog: Family<SocketLabel, Gauge> = Family::default();
    for (socket, length, max) in &snapshot.listen {
        let label = SocketLabel {
            socket: socket.clone(),
        };
        queue.get_or_create(&label).set(*length);
        backlog.get_or_create(&label).set(*max);
    }
    registry.register(
        "herd_listen_queue_length",
        "Connections waiting to be accepted, read about once a second (TCP_INFO)",
        queue,
    );
    registry.register(
        "herd_listen_backlog",
        "The backlog in force, which a worker's own listen() may have replaced (TCP_INFO)",
        backlog,
    );
}

/// CPU time by slot, herd's own memory and process metrics, and its lost log lines.
fn register_resources(registry: &mut Registry, snapshot: &Snapshot) {
    // A counter: it only grows, except when the slot's worker is replaced (a counter reset,
    // which rate() handles).
    let cpu: Family<SlotLabel, Counter<f64, AtomicU64>> = Family::default();
    for (slot, seconds) in &snapshot.cpu {
        cpu.get_or_create(&SlotLabel {
            slot: slot.to_string(),
        })
        .inc_by(*seconds);
    }
    registry.register_with_unit(
        "herd_worker_cpu",
        "CPU time used by each slot's current worker",
        Unit::Seconds,
        cpu,
    );
    registry.register_with_unit(
        "herd_supervisor_resident_memory",
        "herd's own resident memory",
        Unit::Bytes,
        gauge(snapshot.rss),
    );
    if let Some(process) = &snapshot.process {
        register_process(registry, process);
    }
    let log_lost: Counter = Counter::default();
    log_lost.inc_by(crate::logging::lines_dropped());
    registry.register(
        "herd_log_lines_dropped",
        "herd's own log lines lost because its stderr was closed, full or not read",
        log_lost,
    );
    let output_lost: Counter = Counter::default();
    output_lost.inc_by(crate::output::lines_dropped());
    registry.register(
        "herd_worker_output_lines_dropped",
        "lines of worker output (--worker-output prefix|json) lost because herd's stdout or \
         stderr was not written as fast as the workers wrote",
        output_lost,
    );
}

/// The standard `process_*` metrics, for herd itself.
fn register_process(registry: &mut Registry, process: &ProcessStats) {
    let cpu: Counter<f64, AtomicU64> = Counter::default();
    cpu.inc_by(process.cpu_seconds);
    registry.register_with_unit(
        "process_cpu",
        "Total user and system CPU time spent",
        Unit::Seconds,
        cpu,
    );
    let gauge = |value: u64| {
        let g: Gauge = Gauge::default();
        g.set(i64::try_from(value).unwrap_or(i64::MAX));
        g
    };
    registry.register_with_unit(
        "process_resident_memory",
        "Resident memory size",
        Unit::Bytes,
        gauge(process.resident_bytes),
    );
    registry.register_with_unit(
        "process_virtual_memory",
        "Virtual memory size",
        Unit::Bytes,
        gauge(process.virtual_bytes),
    );
    registry.register(
        "process_open_fds",
        "Open file descriptors",
        gauge(process.open_fds),
    );
    registry.register(
        "process_max_fds",
        "Maximum number of open file descriptors",
        gauge(process.max_fds),
    );
    let start: Gauge<f64, AtomicU64> = Gauge::default();
    start.set(process.start_time_seconds);
    registry.register_with_unit(
        "process_start_time",
        "Start time of the process since the Unix epoch",
        Unit::Seconds,
        start,
    );
}

#[cfg(test)]
mod tests {
    use super::super::ResultLabel;
    use super::*;

    #[test]
    fn labelled_counters_start_at_zero_and_names_follow_the_rules() {
        let counters = Counters::default();
        let snapshot = Snapshot {
            cpu: vec![(0, 1.5)],
            listen: vec![("http".to_string(), 3, 100)],
            process: Some(ProcessStats {
                cpu_seconds: 2.5,
                resident_bytes: 4096,
                virtual_bytes: 8192,
                open_fds: 7,
                max_fds: 1024,
                start_time_seconds: 1_700_000_000.5,
            }),
            ..Snapshot::default()
        };
        let text = render(&counters, &snapshot).unwrap();
        for line in [
            "herd_worker_exits_total{cause=\"exit\"} 0",
            "herd_worker_exits_total{cause=\"signal\"} 0",
            "herd_worker_exits_total{cause=\"stopped\"} 0",
            "herd_upgrades_total{result=\"ok\"} 0",
            "herd_upgrades_total{result=\"failed\"} 0",
            "herd_autoscale_decisions_total{direction=\"up\"} 0",
            "herd_autoscale_decisions_total{direction=\"down\"} 0",
            "# TYPE herd_worker_cpu_seconds counter",
            "# UNIT herd_worker_cpu_seconds seconds",
            "herd_worker_cpu_seconds_total{slot=\"0\"} 1.5",
            "herd_listen_queue_length{socket=\"http\"} 3",
            "herd_listen_backlog{socket=\"http\"} 100",
            "# UNIT herd_supervisor_resident_memory_bytes bytes",
            "# TYPE process_cpu_seconds counter",
            "process_cpu_seconds_total 2.5",
            "process_resident_memory_bytes 4096",
            "process_virtual_memory_bytes 8192",
            "process_open_fds 7",
            "process_max_fds 1024",
            "process_start_time_seconds 1700000000.5",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line:?} missing from:\n{text}"
            );
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
        // A second rendering adds nothing twice.
        counters
            .upgrades
            .get_or_create(&ResultLabel {
                result: "ok".to_string(),
            })
            .inc();
        let text = render(&counters, &Snapshot::default()).unwrap();
        assert!(
            text.contains("herd_upgrades_total{result=\"ok\"} 1"),
            "{text}"
        );
        assert_eq!(text.matches("herd_upgrades_total{").count(), 2, "{text}");
        assert!(
            !text.contains("process_"),
            "no process metrics without stats"
        );
    }
}
