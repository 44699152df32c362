//! Reading the workers' memory and CPU time, and the listening sockets' accept queues, off the
//! supervisor's loop.
//!
//! `/proc/PID/smaps_rollup` (`--max-memory pss=`) walks a worker's page tables under its mmap
//! lock: milliseconds for a large worker, and as long as a page fault of the worker is stuck
//! (a hung NFS or FUSE mapping) behind a queued writer. So a thread of its own reads every
//! worker's figures, one round at a time; the loop asks for a round on its timer
//! ([`Sampler::ask`]) and takes the answer as an input ([`Sampler::recv`]), never waiting for
//! it. While a round is out, later asks are skipped; one out for [`SLOW_AFTER`] is reported
//! once, with the worker being read, and when it ends.

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc as std_mpsc, Arc};
use std::time::{Duration, Instant};

use herd_core::MemoryKind;
use tokio::sync::mpsc;

use super::platform;

/// How long a round may be out before herd says that sampling is stuck.
pub const SLOW_AFTER: Duration = Duration::from_secs(10);

/// One worker's figures; `None` where the platform cannot tell (the worker is gone).
#[derive(Clone, Debug, PartialEq)]
pub struct Figures {
    /// The worker.
    pub pid: u32,
    /// Its memory of the kind asked for, in bytes.
    pub memory: Option<u64>,
    /// The CPU time it has used, in `platform::ticks_per_second` units.
    pub cpu_ticks: Option<u64>,
    /// Whether it was stopped (`SIGSTOP`, a debugger): it serves nothing until `SIGCONT`.
    pub stopped: bool,
    /// When its CPU time was read.
    pub at: Instant,
}

/// What the platform says a worker has used; `None` where it cannot tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    /// Its memory of the kind asked for, in bytes.
    pub memory: Option<u64>,
    /// The CPU time it has used, in `platform::ticks_per_second` units.
    pub cpu_ticks: Option<u64>,
    /// Whether it is stopped (`SIGSTOP`, a debugger); false where the platform cannot tell.
    pub stopped: bool,
}

/// A listening socket's accept queue, as a round read it (TCP on Linux: `TCP_INFO`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenQueue {
    /// The socket's name.
    pub socket: String,
    /// Connections waiting to be accepted (over all its sockets, under `reuseport`).
    pub queued: u32,
    /// The backlog in force (the smallest of its sockets', under `reuseport`).
    pub backlog: u32,
    /// The backlog herd listened with, if known.
    pub set: Option<u32>,
}

/// The figures of one round.
#[derive(Debug)]
pub struct Samples {
    /// Each worker's, in the order asked.
    pub figures: Vec<Figures>,
    /// Each listening socket's accept queue, where the platform can read it.
    pub queues: Vec<ListenQueue>,
    /// How long the round took, if it was reported as slow.
    pub late: Option<Duration>,
}

/// A round that has been out for [`SLOW_AFTER`], reported once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slow {
    /// How long it has been out.
    pub waited: Duration,
    /// The worker whose figures are being read, if any.
    pub pid: Option<u32>,
}

/// Whether a round is out: the pure part of [`Sampler`].
#[derive(Debug, Default)]
struct Round {
    /// When the round out was asked for.
    asked: Option<Instant>,
    /// Whether it was reported as slow.
    warned: bool,
}

/// What [`Round::ask`] decides.
#[derive(Debug, PartialEq, Eq)]
enum Ask {
    /// No round is out: ask for one.
    Now,
    /// One is out since `waited`; `warn` the first time it has been out for [`SLOW_AFTER`].
    Waiting { waited: Duration, warn: bool },
}

impl Round {
    fn ask(&mut self, now: Instant) -> Ask {
        let Some(asked) = self.asked else {
            self.asked = Some(now);
            return Ask::Now;
        };
        let waited = now.saturating_duration_since(asked);
        let warn = waited >= SLOW_AFTER && !self.warned;
        self.warned |= warn;
        Ask::Waiting { waited, warn }
    }

    /// The round came back at `now`: how long it took, if it was reported as slow.
    fn answered(&mut self, now: Instant) -> Option<Duration> {
        let asked = self.asked.take()?;
        std::mem::take(&mut self.warned).then(|| now.saturating_duration_since(asked))
    }
}

/// What the thread is asked to read.
struct Request {
    pids: Vec<u32>,
    kind: MemoryKind,
    sockets: Vec<platform::QueueProbe>,
}

/// The sampling thread, and the round out.
pub struct Sampler {
    requests: std_mpsc::Sender<Request>,
    results: mpsc::Receiver<Samples>,
    /// The pid whose figures the thread is reading, 0 between reads.
    reading: Arc<AtomicU32>,
    round: Round,
}

impl Sampler {
    /// Starts the thread, which reads the platform's figures. It ends when the sampler is
    /// dropped and its read in progress, if any, returns.
    pub fn start() -> io::Result<Sampler> {
        Sampler::with_reader(|pid, kind| {
            let Usage {
                memory,
                cpu_ticks,
                stopped,
            } = platform::usage(pid, kind);
            Figures {
                pid,
                memory,
                cpu_ticks,
                stopped,
                at: Instant::now(),
            }
        })
    }

    /// Starts the thread, which reads each worker's figures with `read`.
    fn with_reader<F>(read: F) -> io::Result<Sampler>
    where
        F: Fn(u32, MemoryKind) -> Figures + Send + 'static,
    {
        let (requests, asked) = std_mpsc::channel::<Request>();
        let (answer, results) = mpsc::channel(1);
        let reading = Arc::new(AtomicU32::new(0));
        let now_reading = Arc::clone(&reading);
        std::thread::Builder::new()
            .name("herd-sampler".to_string())
            .spawn(move || {
                for Request {
                    pids,
                    kind,
                    sockets,
                } in asked
                {
                    let mut figures = Vec::with_capacity(pids.len());
                    for pid in pids {
                        now_reading.store(pid, Ordering::Relaxed);
                        figures.push(read(pid, kind));
                    }
                    now_reading.store(0, Ordering::Relaxed);
                    let samples = Samples {
                        figures,
                        queues: sockets
                            .iter()
                            .filter_map(platform::QueueProbe::read)
                            .collect(),
                        late: None,
                    };
                    if answer.blocking_send(samples).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Sampler {
            requests,
            results,
            reading,
            round: Round::default(),
        })
    }

    /// Asks for the figures of `pids` (memory of `kind`) and the queues of `sockets` unless a
    /// round is still out; says so, once, when that round has been out for [`SLOW_AFTER`].
    /// Never waits.
    pub fn ask(
        &mut self,
        pids: Vec<u32>,
        kind: MemoryKind,
        sockets: Vec<platform::QueueProbe>,
        now: Instant,
    ) -> Option<Slow> {
        match self.round.ask(now) {
            Ask::Now => {
                let request = Request {
                    pids,
                    kind,
                    sockets,
                };
                if self.requests.send(request).is_err() {
                    // The thread is gone: no round is out (and none will come back).
                    self.round = Round::default();
                }
                None
            }
            Ask::Waiting { warn: false, .. } => None,
            Ask::Waiting { waited, warn: true } => {
                let pid = self.reading.load(Ordering::Relaxed);
                Some(Slow {
                    waited,
                    pid: (pid != 0).then_some(pid),
                })
            }
        }
    }

    /// Waits for the round out to come back. Cancel-safe.
    pub async fn recv(&mut self) -> Option<Samples> {
        let mut samples = self.results.recv().await?;
        samples.late = self.round.answered(Instant::now());
        Some(samples)
    }
}

#[cfg(test)]
mod tests;
