//! `herd-loadgen ADDR RATE SECONDS [THREADS]`: sends `GET /` to ADDR at RATE requests per
//! second for SECONDS, a new TCP connection per request, open loop: each request has a
//! scheduled time, and its latency is measured from that time (so a stalled server shows as
//! latency, not as fewer requests: no coordinated omission). Prints one JSON line: requests,
//! answers, failures by kind (refused, reset, eof, timeout, other) and latency percentiles in
//! microseconds.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

#[derive(Default)]
struct Counts {
    ok: u64,
    refused: u64,
    reset: u64,
    eof: u64,
    timeout: u64,
    other: u64,
}

fn one(addr: SocketAddr) -> Result<(), &'static str> {
    let timeout = Duration::from_secs(10);
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(kind)?;
    s.set_read_timeout(Some(timeout)).map_err(kind)?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: bench\r\n\r\n")
        .map_err(kind)?;
    let mut buf = Vec::with_capacity(256);
    s.read_to_end(&mut buf).map_err(kind)?;
    if buf.starts_with(b"HTTP/1.") {
        Ok(())
    } else {
        Err("eof")
    }
}

fn kind(e: std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "refused",
        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe => "reset",
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => "timeout",
        std::io::ErrorKind::UnexpectedEof => "eof",
        _ => "other",
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: herd-loadgen ADDR RATE SECONDS [THREADS]");
        std::process::exit(2);
    }
    let addr: SocketAddr = args[1].parse().expect("ADDR is HOST:PORT");
    let rate: f64 = args[2].parse().expect("RATE is requests per second");
    let seconds: f64 = args[3].parse().expect("SECONDS");
    let threads: usize = args.get(4).and_then(|t| t.parse().ok()).unwrap_or(16);
    let total = (rate * seconds) as u64;
    let start = Instant::now() + Duration::from_millis(20);
    let workers: Vec<_> = (0..threads as u64)
        .map(|t| {
            std::thread::spawn(move || {
                let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
                let mut counts = Counts::default();
                let mut i = t;
                while i < total {
                    let scheduled = start + Duration::from_secs_f64(i as f64 / rate);
                    if let Some(wait) = scheduled.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    match one(addr) {
                        Ok(()) => counts.ok += 1,
                        Err("refused") => counts.refused += 1,
                        Err("reset") => counts.reset += 1,
                        Err("eof") => counts.eof += 1,
                        Err("timeout") => counts.timeout += 1,
                        Err(_) => counts.other += 1,
                    }
                    let latency = Instant::now().saturating_duration_since(scheduled);
                    let _ = hist.record((latency.as_micros() as u64).max(1));
                    i += threads as u64;
                }
                (hist, counts)
            })
        })
        .collect();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    let mut c = Counts::default();
    for w in workers {
        let (h, counts) = w.join().unwrap();
        hist.add(h).unwrap();
        c.ok += counts.ok;
        c.refused += counts.refused;
        c.reset += counts.reset;
        c.eof += counts.eof;
        c.timeout += counts.timeout;
        c.other += counts.other;
    }
    println!(
        "{{\"requests\":{total},\"ok\":{},\"refused\":{},\"reset\":{},\"eof\":{},\"timeout\":{},\"other\":{},\"p50_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{}}}",
        c.ok,
        c.refused,
        c.reset,
        c.eof,
        c.timeout,
        c.other,
        hist.value_at_quantile(0.5),
        hist.value_at_quantile(0.99),
        hist.value_at_quantile(0.999),
        hist.max()
    );
}
