//! `herd-loadgen ADDR RATE SECONDS [--threads N]`: sends `GET /` to ADDR at RATE requests per
//! second for SECONDS, a new TCP connection per request, open loop: each request has a
//! scheduled time, and its latency is measured from that time (so a stalled server shows as
//! latency, not as fewer requests: no coordinated omission).
//!
//! `--concurrency N` runs closed loop instead: N connections back to back, as fast as the
//! server answers (RATE is then ignored; pass 0), latency measured from each connect.
//!
//! Prints one JSON line: requests, answers (2xx only), failures by kind (refused, reset, eof,
//! timeout, other, and `http_error`: answers with another status, counted per code in
//! `http_status`, e.g. a load balancer's 503) and latency percentiles in microseconds. With `--shares`, also how many answers
//! carried each distinct body, largest first (workers that answer with their pid show how
//! the connections were spread).
//!
//! `--long-every N` asks for `/long` in one request of every N (and `/` otherwise), and
//! reports the latency of the two kinds separately (`short` and `long`). `--keep-alive`
//! (closed loop only) sends the requests of each connection over one HTTP/1.1 connection.
//! `--until-eof` stops sending when standard input closes (SECONDS is then the most it
//! sends), so that a script can keep the load up exactly as long as its changes take; the
//! output's `seconds` is then how long it really sent.
//!
//! `--timeline FILE` also writes one CSV record per request to FILE (when it started, its
//! latency and its outcome; see the `timeline` module), so that a script can cut the run into
//! windows, e.g. steady against inside a reload. Its offsets count from the output's
//! `start_unix_us` (the wall clock when the first request was due).

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use hdrhistogram::Histogram;

mod send;
mod timeline;
use send::{closed_loop, open_loop, Seen};

/// Command line; see the crate documentation.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "herd-loadgen",
    about = "Open-loop HTTP load: a new connection per request"
)]
struct Args {
    /// Server address, HOST:PORT (e.g. 127.0.0.1:8000).
    addr: SocketAddr,
    /// Requests per second (open loop); ignored with --concurrency.
    rate: f64,
    /// How long to send, in seconds.
    seconds: f64,
    /// Sending threads for the open loop (enough to cover the slowest answers).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=4096))]
    threads: u64,
    /// Closed loop: this many connections back to back instead of a fixed rate.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=4096))]
    concurrency: Option<u64>,
    /// Per-request timeout in seconds; an answer later than this counts as "timeout".
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// Count the answers per distinct body ("shares" in the output).
    #[arg(long)]
    shares: bool,
    /// Ask for /long in one request of every N; report short and long latency apart.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    long_every: Option<u64>,
    /// Closed loop over persistent HTTP/1.1 connections (needs --concurrency).
    #[arg(long, requires = "concurrency")]
    keep_alive: bool,
    /// Stop when standard input reaches end of file (or after SECONDS, whichever is first).
    #[arg(long)]
    until_eof: bool,
    /// Write one CSV record per request to FILE: start_us,latency_us,outcome.
    #[arg(long, value_name = "FILE")]
    timeline: Option<PathBuf>,
}

/// Set when standard input closed, with `--until-eof`.
static STOPPED: AtomicBool = AtomicBool::new(false);

fn stopped() -> bool {
    STOPPED.load(Ordering::Relaxed)
}

impl Args {
    fn path(&self, i: u64) -> &'static str {
        match self.long_every {
            Some(n) if i.is_multiple_of(n) => "/long",
            _ => "/",
        }
    }
}

/// Latency histograms: every request, and short and long ones apart.
struct Latency {
    all: Histogram<u64>,
    short: Histogram<u64>,
    long: Histogram<u64>,
}

impl Latency {
    fn new() -> Latency {
        Latency {
            all: histogram(),
            short: histogram(),
            long: histogram(),
        }
    }

    /// Records a request that started at `since` and ended now; returns its latency in µs.
    fn record(&mut self, since: Instant, path: &str) -> u64 {
        let us = (Instant::now().saturating_duration_since(since).as_micros() as u64).max(1);
        self.all.saturating_record(us);
        let kind = if path == "/long" {
            &mut self.long
        } else {
            &mut self.short
        };
        kind.saturating_record(us);
        us
    }

    fn add(&mut self, o: Latency) {
        // Same bounds on every side, so adding cannot fail.
        self.all.add(o.all).expect("histograms with equal bounds");
        self.short
            .add(o.short)
            .expect("histograms with equal bounds");
        self.long.add(o.long).expect("histograms with equal bounds");
    }
}

/// `{"n":..,"p50_us":..,"p99_us":..,"p999_us":..,"max_us":..}`.
fn percentiles(h: &Histogram<u64>) -> String {
    format!(
        "{{\"n\":{},\"p50_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{}}}",
        h.len(),
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max()
    )
}

/// Answers and failures by kind.
#[derive(Default, Debug, PartialEq, Eq)]
struct Counts {
    ok: u64,
    /// Answers per body, when counted.
    bodies: HashMap<Vec<u8>, u64>,
    refused: u64,
    reset: u64,
    eof: u64,
    timeout: u64,
    other: u64,
    /// Answers with a status other than 2xx, per status code.
    http: BTreeMap<u16, u64>,
}

impl Counts {
    fn record(&mut self, outcome: Result<Vec<u8>, Failure>, shares: bool) {
        match outcome {
            Ok(body) => {
                self.ok += 1;
                if shares {
                    *self.bodies.entry(body).or_default() += 1;
                }
            }
            Err(Failure::Refused) => self.refused += 1,
            Err(Failure::Reset) => self.reset += 1,
            Err(Failure::Eof) => self.eof += 1,
            Err(Failure::Timeout) => self.timeout += 1,
            Err(Failure::Other) => self.other += 1,
            Err(Failure::Status(code)) => *self.http.entry(code).or_default() += 1,
        }
    }

    fn add(&mut self, o: &Counts) {
        self.ok += o.ok;
        self.refused += o.refused;
        self.reset += o.reset;
        self.eof += o.eof;
        self.timeout += o.timeout;
        self.other += o.other;
        for (code, n) in &o.http {
            *self.http.entry(*code).or_default() += n;
        }
        for (body, n) in &o.bodies {
            *self.bodies.entry(body.clone()).or_default() += n;
        }
    }

    fn total(&self) -> u64 {
        self.ok
            + self.refused
            + self.reset
            + self.eof
            + self.timeout
            + self.other
            + self.http_errors()
    }

    /// Answers with a status other than 2xx.
    fn http_errors(&self) -> u64 {
        self.http.values().sum()
    }

    /// `{"503":2}`: the non-2xx answers per status code.
    fn http_status_json(&self) -> String {
        let codes: Vec<String> = self
            .http
            .iter()
            .map(|(c, n)| format!("\"{c}\":{n}"))
            .collect();
        format!("{{{}}}", codes.join(","))
    }
}

/// Why a request got no successful answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Refused,
    Reset,
    Eof,
    Timeout,
    Other,
    /// An answer with this status, not 2xx.
    Status(u16),
}

/// The status code of an HTTP/1 status line (`HTTP/1.1 503 Service Unavailable`).
fn status_code(line: &[u8]) -> Result<u16, Failure> {
    let code = line.strip_prefix(b"HTTP/1.").ok_or(Failure::Eof)?;
    let code = code.get(2..5).ok_or(Failure::Other)?;
    std::str::from_utf8(code)
        .ok()
        .and_then(|c| c.parse().ok())
        .ok_or(Failure::Other)
}

/// Ok for a 2xx status, else the failure it stands for.
fn success(code: u16) -> Result<(), Failure> {
    if (200..300).contains(&code) {
        Ok(())
    } else {
        Err(Failure::Status(code))
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        match e.kind() {
            K::ConnectionRefused => Failure::Refused,
            K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => Failure::Reset,
            K::TimedOut | K::WouldBlock => Failure::Timeout,
            K::UnexpectedEof => Failure::Eof,
            _ => Failure::Other,
        }
    }
}

/// One request on a new connection; Ok with the body when a 2xx status line came back.
fn one(addr: SocketAddr, timeout: Duration, path: &str) -> Result<Vec<u8>, Failure> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: bench\r\n\r\n").as_bytes())?;
    let mut buf = Vec::with_capacity(256);
    s.read_to_end(&mut buf)?;
    success(status_code(&buf)?)?;
    let body = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(0, |i| i + 4);
    Ok(buf.split_off(body))
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 10 min at 3 significant digits: valid bounds, so this cannot fail.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// A persistent HTTP/1.1 connection.
struct KeepAlive {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl KeepAlive {
    fn connect(addr: SocketAddr, timeout: Duration) -> Result<KeepAlive, Failure> {
        let s = TcpStream::connect_timeout(&addr, timeout)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_nodelay(true)?;
        Ok(KeepAlive {
            reader: BufReader::new(s.try_clone()?),
            writer: s,
        })
    }

    /// One request; the answer must carry a Content-Length and keep the connection open, and
    /// a 2xx status to count as a success.
    fn request(&mut self, path: &str) -> Result<Vec<u8>, Failure> {
        let request = format!("GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n");
        self.writer.write_all(request.as_bytes())?;
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(Failure::Eof);
        }
        let code = status_code(line.as_bytes())?;
        let (mut length, mut close) = (None, false);
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(Failure::Eof);
            }
            if line == "\r\n" {
                break;
            }
            let lower = line.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = v.trim().parse::<usize>().ok();
            } else if lower.starts_with("connection:") && lower.contains("close") {
                close = true;
            }
        }
        let mut body = vec![0; length.ok_or(Failure::Other)?];
        self.reader.read_exact(&mut body)?;
        success(code)?;
        if close {
            return Err(Failure::Eof);
        }
        Ok(body)
    }
}

/// A finite number above zero.
fn positive(x: f64) -> bool {
    x.is_finite() && x > 0.0
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.concurrency.is_none() && !positive(args.rate) {
        eprintln!("herd-loadgen: RATE must be a positive number of requests per second (or use --concurrency N)");
        return ExitCode::from(2);
    }
    if !positive(args.seconds) || !positive(args.timeout) {
        eprintln!("herd-loadgen: SECONDS and --timeout must be positive numbers of seconds");
        return ExitCode::from(2);
    }
    let timeout = Duration::from_secs_f64(args.timeout);
    if args.until_eof {
        std::thread::spawn(|| {
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
            STOPPED.store(true, Ordering::Relaxed);
        });
    }
    // The first request is due a little later, once every thread is started.
    let start = Instant::now() + Duration::from_millis(20);
    let start_unix_us = (SystemTime::now() + Duration::from_millis(20))
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    let seen = match args.concurrency {
        Some(n) => closed_loop(&args, n, timeout, start),
        None => open_loop(&args, timeout, start),
    };
    let seconds = if args.until_eof {
        (start.elapsed().as_secs_f64() * 100.0).round() / 100.0
    } else {
        args.seconds
    };
    println!("{}", summary(&args, &seen, seconds, start_unix_us));
    if let (Some(path), Some(records)) = (&args.timeline, seen.timeline) {
        let written = std::fs::File::create(path).and_then(|f| timeline::write(records, f));
        if let Err(e) = written {
            eprintln!(
                "herd-loadgen: cannot write the timeline to {}: {e}",
                path.display()
            );
            return ExitCode::from(1);
        }
    }
    ExitCode::SUCCESS
}

/// The output's JSON line: counts by outcome, latency percentiles, and what was asked for.
fn summary(args: &Args, seen: &Seen, seconds: f64, start_unix_us: u128) -> String {
    let (latency, c) = (&seen.latency, &seen.counts);
    let mut shares: Vec<u64> = c.bodies.values().copied().collect();
    shares.sort_unstable_by(|a, b| b.cmp(a));
    let shares = if args.shares {
        format!(
            ",\"shares\":[{}]",
            shares
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(",")
        )
    } else {
        String::new()
    };
    let kinds = if args.long_every.is_some() {
        format!(
            ",\"short\":{},\"long\":{}",
            percentiles(&latency.short),
            percentiles(&latency.long)
        )
    } else {
        String::new()
    };
    let hist = &latency.all;
    format!(
        "{{\"requests\":{},\"ok\":{},\"refused\":{},\"reset\":{},\"eof\":{},\"timeout\":{},\"other\":{},\"http_error\":{},\"http_status\":{},\"seconds\":{seconds},\"start_unix_us\":{start_unix_us},\"p50_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{}{shares}{kinds}}}",
        c.total(),
        c.ok,
        c.refused,
        c.reset,
        c.eof,
        c.timeout,
        c.other,
        c.http_errors(),
        c.http_status_json(),
        hist.value_at_quantile(0.5),
        hist.value_at_quantile(0.99),
        hist.value_at_quantile(0.999),
        hist.max()
    )
}

#[cfg(test)]
mod tests;
