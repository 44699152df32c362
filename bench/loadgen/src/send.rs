//! The sending threads: open loop at a fixed rate, closed loop back to back.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::timeline::Record;
use crate::{one, stopped, Args, Counts, Failure, KeepAlive, Latency};

/// What the sending threads saw: latencies, outcomes and, with `--timeline`, every request.
pub struct Seen {
    pub latency: Latency,
    pub counts: Counts,
    pub timeline: Option<Vec<Record>>,
}

impl Seen {
    pub fn new(timeline: bool) -> Seen {
        Seen {
            latency: Latency::new(),
            counts: Counts::default(),
            timeline: timeline.then(Vec::new),
        }
    }

    /// Records a request to `path` that started at `since` (the run started at `start`) and
    /// ended now with `outcome`.
    pub fn record(
        &mut self,
        outcome: Result<Vec<u8>, Failure>,
        (start, since): (Instant, Instant),
        path: &str,
        shares: bool,
    ) {
        let failure = outcome.as_ref().err().copied();
        self.counts.record(outcome, shares);
        let us = self.latency.record(since, path);
        if let Some(timeline) = &mut self.timeline {
            let offset = since.saturating_duration_since(start);
            timeline.push(Record::new(offset, us, failure));
        }
    }

    fn add(&mut self, o: Seen) {
        self.latency.add(o.latency);
        self.counts.add(&o.counts);
        if let (Some(all), Some(more)) = (&mut self.timeline, o.timeline) {
            all.extend(more);
        }
    }
}

/// Open loop from `start`: request `i` is due at `start + i / rate`; thread `t` sends `t, t +
/// threads, ...`.
pub fn open_loop(args: &Args, timeout: Duration, start: Instant) -> Seen {
    let total = (args.rate * args.seconds) as u64;
    let (rate, threads, addr, shares) = (args.rate, args.threads, args.addr, args.shares);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let args = args.clone();
            std::thread::spawn(move || {
                let mut seen = Seen::new(args.timeline.is_some());
                let mut i = t;
                while i < total && !stopped() {
                    let scheduled = start + Duration::from_secs_f64(i as f64 / rate);
                    sleep_until(scheduled);
                    let path = args.path(i);
                    seen.record(one(addr, timeout, path), (start, scheduled), path, shares);
                    i += threads;
                }
                seen
            })
        })
        .collect();
    merge(handles, args)
}

/// Closed loop from `start`: `concurrency` threads send back to back until the time is up.
/// With `--keep-alive`, a failed request's connection is replaced by a new one.
pub fn closed_loop(args: &Args, concurrency: u64, timeout: Duration, start: Instant) -> Seen {
    let (addr, shares, keep_alive) = (args.addr, args.shares, args.keep_alive);
    let end = start + Duration::from_secs_f64(args.seconds);
    let handles: Vec<_> = (0..concurrency)
        .map(|t| {
            let args = args.clone();
            std::thread::spawn(move || {
                let mut seen = Seen::new(args.timeline.is_some());
                let mut conn: Option<KeepAlive> = None;
                let mut i = t;
                sleep_until(start);
                while Instant::now() < end && !stopped() {
                    let (sent, path) = (Instant::now(), args.path(i));
                    let outcome = if keep_alive {
                        keep_alive_request(&mut conn, addr, timeout, path)
                    } else {
                        one(addr, timeout, path)
                    };
                    seen.record(outcome, (start, sent), path, shares);
                    i += concurrency;
                }
                seen
            })
        })
        .collect();
    merge(handles, args)
}

/// One request on the persistent connection `conn` (a new one if there is none); the
/// connection is kept only when the request succeeded.
fn keep_alive_request(
    conn: &mut Option<KeepAlive>,
    addr: SocketAddr,
    timeout: Duration,
    path: &str,
) -> Result<Vec<u8>, Failure> {
    let mut c = match conn.take() {
        Some(c) => c,
        None => KeepAlive::connect(addr, timeout)?,
    };
    let body = c.request(path)?;
    *conn = Some(c);
    Ok(body)
}

fn sleep_until(when: Instant) {
    if let Some(wait) = when.checked_duration_since(Instant::now()) {
        std::thread::sleep(wait);
    }
}

fn merge(handles: Vec<std::thread::JoinHandle<Seen>>, args: &Args) -> Seen {
    let mut seen = Seen::new(args.timeline.is_some());
    for h in handles {
        // A sending thread only panics on a bug; say so rather than print partial numbers.
        seen.add(h.join().expect("a sending thread panicked"));
    }
    seen
}
