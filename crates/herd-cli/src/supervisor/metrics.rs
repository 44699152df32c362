//! `--metrics ADDR`: Prometheus metrics over HTTP, in the OpenMetrics text format (via the
//! `prometheus-client` crate, which writes it: `_total` counters, `# UNIT`, `# EOF`), served
//! with that format's content type. Every metric is listed in `docs/metrics.md`.
//!
//! Each scrape is a connection task that asks the supervisor for a fresh rendering over a
//! channel; rendering takes microseconds, and a slow or hostile scraper only ever holds its own
//! task, so the endpoint never blocks the supervisor.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, Semaphore};

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
    /// Accept queue length and limit by socket.
    pub queues: Vec<(String, i64, i64)>,
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

/// The counters' values, handed over by a re-exec so that they keep counting.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct SavedCounters {
    restarts: u64,
    exits: Vec<(String, u64)>,
    upgrades: Vec<(String, u64)>,
    autoscale: Vec<(String, u64)>,
    sockets_restored: u64,
}

impl Counters {
    /// The values, for a re-exec.
    pub fn save(&self) -> SavedCounters {
        SavedCounters {
            restarts: self.restarts.get(),
            exits: save_family(&self.exits, &EXIT_CAUSES),
            upgrades: save_family(&self.upgrades, &UPGRADE_RESULTS),
            autoscale: save_family(&self.autoscale, &DIRECTIONS),
            sockets_restored: self.sockets_restored.get(),
        }
    }

    /// Continues from the values a previous image saved.
    pub fn restore(&self, saved: &SavedCounters) {
        self.restarts.inc_by(saved.restarts);
        restore_family(&self.exits, &saved.exits);
        restore_family(&self.upgrades, &saved.upgrades);
        restore_family(&self.autoscale, &saved.autoscale);
        self.sockets_restored.inc_by(saved.sockets_restored);
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

/// The content type of the OpenMetrics text format that [`render`] writes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Renders the metrics in the OpenMetrics text format ([`CONTENT_TYPE`]).
pub fn render(counters: &Counters, snapshot: &Snapshot) -> Result<String, std::fmt::Error> {
    export_at_zero(&counters.exits, &EXIT_CAUSES);
    export_at_zero(&counters.upgrades, &UPGRADE_RESULTS);
    export_at_zero(&counters.autoscale, &DIRECTIONS);
    let mut registry = Registry::default();
    let gauge = |value: i64| {
        let g: Gauge = Gauge::default();
        g.set(value);
        g
    };
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
        register_process(&mut registry, process);
    }
    let log_lost: Counter = Counter::default();
    log_lost.inc_by(crate::logging::lines_dropped());
    registry.register(
        "herd_log_lines_dropped",
        "herd's own log lines lost because its stderr was closed, full or not read",
        log_lost,
    );
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)?;
    Ok(text)
}

/// The standard `process_*` metrics, for herd itself.
fn register_process(registry: &mut Registry, process: &super::process_stats::ProcessStats) {
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

/// A scrape waiting for the supervisor's rendering (an error if it could not be encoded).
pub type Scrape = oneshot::Sender<Result<String, std::fmt::Error>>;

/// The HTTP status, content type and body that answer a scrape: the rendering, or 500 if it
/// could not be encoded, or 503 if herd is stopping (`None`: no rendering will come).
fn scrape_response(
    rendered: Option<Result<String, std::fmt::Error>>,
) -> (&'static str, &'static str, String) {
    match rendered {
        Some(Ok(text)) => ("200 OK", CONTENT_TYPE, text),
        Some(Err(_)) => (
            "500 Internal Server Error",
            "text/plain; charset=utf-8",
            "herd cannot encode its metrics\n".to_string(),
        ),
        None => (
            "503 Service Unavailable",
            "text/plain; charset=utf-8",
            "herd is stopping\n".to_string(),
        ),
    }
}

/// The most scrapes served at once (fewer when herd has few fds: see
/// [`fdlimit::connection_cap`](crate::fdlimit::connection_cap)).
pub const MAX_CONNECTIONS: usize = 64;

/// Serves `GET /metrics` on `listener`, asking the supervisor through `scrapes`. At most
/// [`MAX_CONNECTIONS`] connections are open at once; the next ones wait in the kernel's accept
/// queue, where they cost herd no fd, so a crowd of idle clients can delay scrapes but never
/// take the fds that supervision and the control socket need.
pub async fn serve(listener: TcpListener, scrapes: mpsc::Sender<Scrape>) {
    let soft = herd_sys::process::nofile_limit().map_or(1024, |(soft, _)| soft);
    let slots = Arc::new(Semaphore::new(crate::fdlimit::connection_cap(
        soft,
        MAX_CONNECTIONS,
    )));
    loop {
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let Ok((mut stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let scrapes = scrapes.clone();
        tokio::spawn(async move {
            let _permit = permit;
            // A client that does not send its request head in time loses its slot: idle
            // connections cannot keep scrapers waiting for long.
            let Ok(Ok(Some(head))) =
                tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut stream)).await
            else {
                return;
            };
            let answer = async {
                let (status, extra, content_type, body) = match route(&head) {
                    Route::Scrape => {
                        let (reply, rendered) = oneshot::channel();
                        let rendered = match scrapes.send(reply).await {
                            Ok(()) => rendered.await.ok(),
                            Err(_) => None,
                        };
                        let (status, content_type, body) = scrape_response(rendered);
                        (status, "", content_type, body)
                    }
                    Route::MethodNotAllowed => (
                        "405 Method Not Allowed",
                        "Allow: GET\r\n",
                        "text/plain; charset=utf-8",
                        "only GET is served\n".to_string(),
                    ),
                    Route::NotFound => (
                        "404 Not Found",
                        "",
                        "text/plain; charset=utf-8",
                        "try GET /metrics\n".to_string(),
                    ),
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\n{extra}Content-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                stream.write_all(response.as_bytes()).await
            };
            let _ = tokio::time::timeout(ANSWER_TIMEOUT, answer).await;
        });
    }
}

/// How long a client has to send its request head once connected.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(2);
/// How long rendering and writing an answer may take.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest request head read.
const MAX_HEAD: usize = 8192;

/// Reads up to the end of the request head; `None` if the client closes first or sends more
/// than [`MAX_HEAD`] bytes.
async fn read_head(stream: &mut tokio::net::TcpStream) -> std::io::Result<Option<String>> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 || head.len() > MAX_HEAD {
            return Ok(None);
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(Some(String::from_utf8_lossy(&head).into_owned()))
}

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    /// `GET /metrics` or `GET /` (a query string is ignored).
    Scrape,
    /// Another method on those paths.
    MethodNotAllowed,
    /// Any other path.
    NotFound,
}

/// Routes a request by its request line.
fn route(head: &str) -> Route {
    let mut words = head.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/metrics" | "/") => Route::Scrape,
        (_, "/metrics" | "/") => Route::MethodNotAllowed,
        _ => Route::NotFound,
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
        let saved = serde_json::to_string(&before.save()).unwrap();
        let after = Counters::default();
        after.restore(&serde_json::from_str(&saved).unwrap());
        assert_eq!(serde_json::to_string(&after.save()).unwrap(), saved);
        assert_eq!(after.restarts.get(), 3);
    }

    #[test]
    fn labelled_counters_start_at_zero_and_names_follow_the_rules() {
        let counters = Counters::default();
        let snapshot = Snapshot {
            cpu: vec![(0, 1.5)],
            process: Some(super::super::process_stats::ProcessStats {
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

    #[test]
    fn requests_are_routed_by_method_and_path_without_the_query() {
        let r = |line: &str| route(&format!("{line}\r\nHost: x\r\n\r\n"));
        assert_eq!(r("GET /metrics HTTP/1.1"), Route::Scrape);
        assert_eq!(r("GET / HTTP/1.0"), Route::Scrape);
        assert_eq!(r("GET /metrics?x HTTP/1.1"), Route::Scrape);
        assert_eq!(r("GET /metrics?a=1&b=2 HTTP/1.1"), Route::Scrape);
        assert_eq!(r("POST /metrics HTTP/1.1"), Route::MethodNotAllowed);
        assert_eq!(r("PUT /?x HTTP/1.1"), Route::MethodNotAllowed);
        assert_eq!(r("GET /metricsx HTTP/1.1"), Route::NotFound);
        assert_eq!(r("GET /nope?metrics HTTP/1.1"), Route::NotFound);
        assert_eq!(r(""), Route::NotFound);
    }

    #[test]
    fn scrapes_get_the_right_status_and_type() {
        let (status, kind, body) = scrape_response(Some(Ok("x 1\n# EOF\n".to_string())));
        assert_eq!((status, kind), ("200 OK", CONTENT_TYPE));
        assert!(body.ends_with("# EOF\n"));
        let (status, kind, _) = scrape_response(Some(Err(std::fmt::Error)));
        assert_eq!(status, "500 Internal Server Error");
        assert!(kind.starts_with("text/plain"));
        let (status, _, body) = scrape_response(None);
        assert_eq!(
            (status, body.as_str()),
            ("503 Service Unavailable", "herd is stopping\n")
        );
    }
}
