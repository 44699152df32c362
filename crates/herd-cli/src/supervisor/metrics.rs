//! `--metrics ADDR`: Prometheus metrics over HTTP (text exposition format, via the
//! `prometheus-client` crate). Every metric is listed in `docs/metrics.md`.
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
use prometheus_client::registry::Registry;
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
}

/// Renders the metrics in the Prometheus text format.
pub fn render(counters: &Counters, snapshot: &Snapshot) -> String {
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
    let cpu: Family<SlotLabel, Gauge<f64, AtomicU64>> = Family::default();
    for (slot, seconds) in &snapshot.cpu {
        cpu.get_or_create(&SlotLabel {
            slot: slot.to_string(),
        })
        .set(*seconds);
    }
    registry.register(
        "herd_worker_cpu_seconds",
        "CPU seconds used by each slot's current worker",
        cpu,
    );
    registry.register(
        "herd_supervisor_resident_memory_bytes",
        "herd's own resident memory",
        gauge(snapshot.rss),
    );
    let log_lost: Counter = Counter::default();
    log_lost.inc_by(crate::logging::lines_dropped());
    registry.register(
        "herd_log_lines_dropped",
        "herd's own log lines lost because its stderr was closed, full or not read",
        log_lost,
    );
    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, &registry).is_err() {
        text = "# cannot encode the metrics\n".to_string();
    }
    text
}

/// A scrape waiting for the supervisor's rendering.
pub type Scrape = oneshot::Sender<String>;

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
            let answer = async {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = stream.read(&mut buf).await?;
                    if n == 0 || head.len() > 8192 {
                        return Ok(());
                    }
                    head.extend_from_slice(&buf[..n]);
                }
                let line = String::from_utf8_lossy(&head);
                let path = line.split_whitespace().nth(1).unwrap_or("");
                let (status, body) =
                    if line.starts_with("GET ") && (path == "/metrics" || path == "/") {
                        let (reply, rendered) = oneshot::channel();
                        match scrapes.send(reply).await {
                            Ok(()) => ("200 OK", rendered.await.unwrap_or_default()),
                            Err(_) => ("503 Service Unavailable", "herd is stopping\n".to_string()),
                        }
                    } else {
                        ("404 Not Found", "try GET /metrics\n".to_string())
                    };
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                stream.write_all(response.as_bytes()).await
            };
            let _ = tokio::time::timeout(Duration::from_secs(10), answer).await;
        });
    }
}
