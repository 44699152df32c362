//! The metrics endpoint: what it serves, and scrapers that misbehave.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use crate::util::*;

#[test]
fn prometheus_metrics() {
    let herd = Herd::start(&[
        "run",
        "-w",
        "2",
        "--ready",
        "notify",
        "--metrics",
        "127.0.0.1:0",
        "-b",
        "http=127.0.0.1:0",
        "--",
        "python3",
        &example("hello.py"),
    ]);
    let metrics = metrics_address(&herd);
    wait_status(&herd, "2 ready workers", |s| settled(s, 2));
    // OpenMetrics text, served as such.
    let response = http_raw(&metrics, "GET /metrics HTTP/1.0\r\n\r\n", TIMEOUT).unwrap();
    let (head, text) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(
        head.contains(
            "\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\n"
        ),
        "{head}"
    );
    assert!(text.ends_with("# EOF\n"), "{text}");
    for line in [
        "herd_workers_desired 2",
        "herd_workers_running 2",
        "herd_workers_ready{generation=\"1\"} 2",
        "herd_accept_queue_limit{socket=\"http\"}",
        "herd_supervisor_resident_memory_bytes",
        "herd_worker_cpu_seconds_total{slot=\"0\"}",
        // Labelled counters exist before their first event.
        "herd_upgrades_total{result=\"ok\"} 0",
        "herd_upgrades_total{result=\"failed\"} 0",
        "herd_autoscale_decisions_total{direction=\"up\"} 0",
        "herd_worker_exits_total{cause=\"signal\"} 0",
        // The standard process metrics, for herd itself.
        "process_cpu_seconds_total ",
        "process_resident_memory_bytes ",
        "process_virtual_memory_bytes ",
        "process_open_fds ",
        "process_max_fds ",
        "process_start_time_seconds ",
    ] {
        assert!(text.contains(line), "{line:?} missing from:\n{text}");
    }
    let victim = herd.started(2)[0].1;
    // SAFETY: kill with a worker's pid.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    herd.wait_events("the replacement", 3, is_start);
    let text = get(&metrics, "/metrics").unwrap();
    assert!(
        text.contains("herd_worker_exits_total{cause=\"signal\"} 1"),
        "{text}"
    );
    assert!(text.contains("herd_worker_restarts_total 1"), "{text}");
    assert!(get(&metrics, "/nope").unwrap().contains("try GET /metrics"));

    // An address in use is a clear error.
    let (code, stderr) = herd_output(&[
        "run",
        "--metrics",
        &metrics,
        "-b",
        "127.0.0.1:0",
        "--",
        "true",
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("cannot serve metrics on") && stderr.contains("--metrics"),
        "{stderr}"
    );
}

/// Sends `raw` as a whole request to `addr`; returns the response (head and body).
fn http_raw(addr: &str, raw: &str, limit: Duration) -> std::io::Result<String> {
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(limit))?;
    stream.write_all(raw.as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

#[test]
fn metrics_answer_scrapers_despite_idle_clients() {
    let herd = sleeper_with_metrics();
    let metrics = metrics_address(&herd);
    // A query string is ignored; another method than GET is refused as such.
    let response = http_raw(&metrics, "GET /metrics?x HTTP/1.0\r\n\r\n", TIMEOUT).unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(response.ends_with("# EOF\n"), "{response}");
    let response = http_raw(
        &metrics,
        "POST /metrics HTTP/1.0\r\nContent-Length: 0\r\n\r\n",
        TIMEOUT,
    )
    .unwrap();
    assert!(
        response.starts_with("HTTP/1.1 405 Method Not Allowed\r\n")
            && response.contains("\r\nAllow: GET, HEAD\r\n"),
        "{response}"
    );
    // `OPTIONS *`, of the server as a whole, is told the same (it was 404).
    let response = http_raw(&metrics, "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", TIMEOUT).unwrap();
    assert!(
        response.starts_with("HTTP/1.1 405 Method Not Allowed\r\n")
            && response.contains("\r\nAllow: GET, HEAD\r\n"),
        "{response}"
    );
    // Every slot held by a client that never sends a request: a scrape still gets its answer
    // well within Prometheus' default 10 s scrape timeout.
    let idle: Vec<std::net::TcpStream> = (0..64)
        .map(|_| std::net::TcpStream::connect(&metrics).unwrap())
        .collect();
    let started = Instant::now();
    let response = http_raw(
        &metrics,
        "GET /metrics HTTP/1.0\r\n\r\n",
        Duration::from_secs(6),
    )
    .unwrap_or_else(|e| panic!("no answer after {:?}: {e}", started.elapsed()));
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    drop(idle);
}

#[test]
fn a_crowd_of_scrapers_does_not_keep_herd_status_waiting() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    const WORKERS: u64 = 500;
    let herd = sleepers(&["-w", &WORKERS.to_string(), "--metrics", "127.0.0.1:0"]);
    let metrics = metrics_address(&herd);
    wait_status(&herd, "every worker ready", |s| settled(s, WORKERS));
    // 30 scrapers, each asking again as soon as it has its answer: the supervisor's loop still
    // gets to the control socket at once (`herd status` took 5.5 s here, and 19 s with 1000
    // workers, when every scrape was a rendering of its own, each read every worker's CPU
    // time, and the loop turned for the queued scrapes without a pause; 50 ms now).
    let stop = Arc::new(AtomicBool::new(false));
    let scraped = Arc::new(AtomicUsize::new(0));
    let scrapers: Vec<_> = (0..30)
        .map(|_| {
            let (stop, scraped, metrics) =
                (Arc::clone(&stop), Arc::clone(&scraped), metrics.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if get(&metrics, "/metrics").is_ok_and(|text| text.ends_with("# EOF\n")) {
                        scraped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    wait_until("the scrapers under way", || {
        (scraped.load(Ordering::Relaxed) >= 30).then_some(())
    });
    let started = Instant::now();
    let (code, stdout, stderr) = herd.ctl(&["status"]);
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    scrapers.into_iter().for_each(|s| s.join().unwrap());
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("500"), "{stdout}");
    assert!(took < Duration::from_secs(2), "herd status took {took:?}");
}
