//! `herd-loadgen ADDR RATE SECONDS [--threads N]`: sends `GET /` to ADDR at RATE requests per
//! second for SECONDS, a new TCP connection per request, open loop: each request has a
//! scheduled time, and its latency is measured from that time (so a stalled server shows as
//! latency, not as fewer requests: no coordinated omission).
//!
//! `--concurrency N` runs closed loop instead: N connections back to back, as fast as the
//! server answers (RATE is then ignored; pass 0), latency measured from each connect.
//!
//! Prints one JSON line: requests, answers, failures by kind (refused, reset, eof, timeout,
//! other) and latency percentiles in microseconds. With `--shares`, also how many answers
//! carried each distinct body, largest first (workers that answer with their pid show how
//! the connections were spread).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;

/// Command line; see the crate documentation.
#[derive(Parser, Debug)]
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
        }
    }

    fn add(&mut self, o: &Counts) {
        self.ok += o.ok;
        self.refused += o.refused;
        self.reset += o.reset;
        self.eof += o.eof;
        self.timeout += o.timeout;
        self.other += o.other;
        for (body, n) in &o.bodies {
            *self.bodies.entry(body.clone()).or_default() += n;
        }
    }

    fn total(&self) -> u64 {
        self.ok + self.refused + self.reset + self.eof + self.timeout + self.other
    }
}

/// Why a request got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Refused,
    Reset,
    Eof,
    Timeout,
    Other,
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

/// One request on a new connection; Ok with the body when an HTTP status line came back.
fn one(addr: SocketAddr, timeout: Duration) -> Result<Vec<u8>, Failure> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: bench\r\n\r\n")?;
    let mut buf = Vec::with_capacity(256);
    s.read_to_end(&mut buf)?;
    if buf.starts_with(b"HTTP/1.") {
        let body = buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(0, |i| i + 4);
        Ok(buf.split_off(body))
    } else {
        Err(Failure::Eof)
    }
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 10 min at 3 significant digits: valid bounds, so this cannot fail.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

fn record(hist: &mut Histogram<u64>, since: Instant) {
    let latency = Instant::now().saturating_duration_since(since);
    hist.saturating_record((latency.as_micros() as u64).max(1));
}

/// Open loop: request `i` is due at `start + i / rate`; thread `t` sends `t, t + threads, ...`.
fn open_loop(args: &Args, timeout: Duration) -> (Histogram<u64>, Counts) {
    let total = (args.rate * args.seconds) as u64;
    let (rate, threads, addr, shares) = (args.rate, args.threads, args.addr, args.shares);
    let start = Instant::now() + Duration::from_millis(20);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            std::thread::spawn(move || {
                let (mut hist, mut counts) = (histogram(), Counts::default());
                let mut i = t;
                while i < total {
                    let scheduled = start + Duration::from_secs_f64(i as f64 / rate);
                    if let Some(wait) = scheduled.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    counts.record(one(addr, timeout), shares);
                    record(&mut hist, scheduled);
                    i += threads;
                }
                (hist, counts)
            })
        })
        .collect();
    merge(handles)
}

/// Closed loop: `concurrency` threads send back to back until the time is up.
fn closed_loop(args: &Args, concurrency: u64, timeout: Duration) -> (Histogram<u64>, Counts) {
    let (addr, shares) = (args.addr, args.shares);
    let end = Instant::now() + Duration::from_secs_f64(args.seconds);
    let handles: Vec<_> = (0..concurrency)
        .map(|_| {
            std::thread::spawn(move || {
                let (mut hist, mut counts) = (histogram(), Counts::default());
                while Instant::now() < end {
                    let sent = Instant::now();
                    counts.record(one(addr, timeout), shares);
                    record(&mut hist, sent);
                }
                (hist, counts)
            })
        })
        .collect();
    merge(handles)
}

fn merge(
    handles: Vec<std::thread::JoinHandle<(Histogram<u64>, Counts)>>,
) -> (Histogram<u64>, Counts) {
    let (mut hist, mut counts) = (histogram(), Counts::default());
    for h in handles {
        // A sending thread only panics on a bug; say so rather than print partial numbers.
        let (h, c) = h.join().expect("a sending thread panicked");
        // Same bounds on both sides, so adding cannot fail.
        hist.add(h).expect("histograms with equal bounds");
        counts.add(&c);
    }
    (hist, counts)
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
    let (hist, c) = match args.concurrency {
        Some(n) => closed_loop(&args, n, timeout),
        None => open_loop(&args, timeout),
    };
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
    println!(
        "{{\"requests\":{},\"ok\":{},\"refused\":{},\"reset\":{},\"eof\":{},\"timeout\":{},\"other\":{},\"seconds\":{},\"p50_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{}{shares}}}",
        c.total(),
        c.ok,
        c.refused,
        c.reset,
        c.eof,
        c.timeout,
        c.other,
        args.seconds,
        hist.value_at_quantile(0.5),
        hist.value_at_quantile(0.99),
        hist.value_at_quantile(0.999),
        hist.max()
    );
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A server on loopback that answers `n` connections with `reply`, then returns.
    fn serve(n: usize, reply: &'static [u8]) -> (SocketAddr, std::thread::JoinHandle<()>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let h = std::thread::spawn(move || {
            for _ in 0..n {
                let (mut s, _) = l.accept().unwrap();
                let mut buf = [0u8; 256];
                let _ = s.read(&mut buf);
                let _ = s.write_all(reply);
            }
        });
        (addr, h)
    }

    #[test]
    fn an_answer_counts_as_ok() {
        let (addr, h) = serve(1, b"HTTP/1.0 200 OK\r\n\r\nhi");
        assert_eq!(one(addr, Duration::from_secs(5)), Ok(b"hi".to_vec()));
        h.join().unwrap();
    }

    #[test]
    fn a_close_without_answer_counts_as_eof() {
        let (addr, h) = serve(1, b"");
        assert_eq!(one(addr, Duration::from_secs(5)), Err(Failure::Eof));
        h.join().unwrap();
    }

    #[test]
    fn a_closed_port_counts_as_refused() {
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        assert_eq!(one(addr, Duration::from_secs(5)), Err(Failure::Refused));
    }

    #[test]
    fn the_open_loop_sends_every_scheduled_request() {
        let (addr, h) = serve(20, b"HTTP/1.0 200 OK\r\n\r\nok");
        let args = Args::parse_from([
            "herd-loadgen",
            &addr.to_string(),
            "200",
            "0.1",
            "--threads",
            "2",
            "--shares",
        ]);
        let (hist, counts) = open_loop(&args, Duration::from_secs(5));
        assert_eq!(counts.ok, 20);
        assert_eq!(counts.total(), 20);
        assert_eq!(counts.bodies, HashMap::from([(b"ok".to_vec(), 20)]));
        assert_eq!(hist.len(), 20);
        h.join().unwrap();
    }
}
