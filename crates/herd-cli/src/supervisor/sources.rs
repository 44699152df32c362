//! Where the supervisor's inputs come from: signals, control requests, metrics scrapes, the
//! old herd's answer during a takeover, timers, and what only the platform has
//! ([`platform::Inputs`]: on Unix the workers' `sd_notify` datagrams, finished re-exec checks,
//! attached processes' pidfds and the timers of Unix's checks; on Windows the notify pipe's
//! messages), and the workers' figures from the [`Sampler`]'s thread. [`Sources::next`] waits
//! for the next one, as an [`Input`].

use std::time::Duration;

use anyhow::Context;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{interval, Interval, MissedTickBehavior};

use super::health::{HealthBoard, HEARTBEAT_EVERY};
use super::http::{self, Endpoint, Scrape};
use super::platform::{self, Intents, NotifySocket};
use super::reload::reading::ReadAgain;
use super::sampler::{Sampler, Samples};
use super::signals::Intent;
use super::takeover::StopAnswer;
use super::{autoscale, recycling};
use crate::control::request::ControlRequest;

/// One input to the supervisor.
pub enum Input {
    /// A signal arrived.
    Signal(Intent),
    /// A control client asked something.
    Control(ControlRequest),
    /// `--metrics` was scraped.
    Scrape(Scrape),
    /// The old herd answered the stop that ends a takeover.
    TakeoverAnswered(StopAnswer),
    /// A timer fired.
    Tick(Tick),
    /// The workers' memory and CPU time came back from the sampler.
    Sampled(Samples),
    /// The config file was read again, off the loop, for `herd upgrade --reload-config`.
    ConfigRead(Box<ReadAgain>),
    /// An input only the platform has (Unix: a notify datagram, a re-exec check's end, a
    /// check's timer; Windows: a notify message).
    Platform(platform::Input),
}

/// Which timer fired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tick {
    /// A deadline of the pool or of the attached processes passed, or the loop just needed to
    /// turn (attached processes and drains are looked at on every turn).
    Turn,
    /// Time for an autoscaling sample.
    Autoscale,
    /// A quick look at the accept queue between two autoscaling samples.
    QueueCheck,
    /// Time to ask for the workers' memory and CPU time.
    Sample,
    /// The heartbeat: the loop turns at least this often while health is served.
    Heartbeat,
}

/// What the supervisor waits for on this turn.
pub struct Wants {
    /// The earliest deadline of the pool and of the attached processes.
    pub deadline: Option<std::time::Instant>,
    /// Autoscaling samples (autoscaling is on and herd is not stopping).
    pub autoscale: bool,
    /// Heartbeats, while `/healthz` is served.
    pub heartbeat: bool,
    /// What only the platform waits for.
    pub platform: platform::Wants,
}

/// The open input channels and timers.
pub struct Sources {
    signals: Intents,
    requests: mpsc::Receiver<ControlRequest>,
    scrapes: mpsc::Receiver<Scrape>,
    answered: mpsc::Receiver<StopAnswer>,
    /// Where the old herd's answer to a takeover's stop is reported.
    pub answered_tx: mpsc::Sender<StopAnswer>,
    read_again: mpsc::Receiver<Box<ReadAgain>>,
    /// Where the config file's reader comes back, with what it read.
    pub read_again_tx: mpsc::Sender<Box<ReadAgain>>,
    /// Periodic work, on intervals that live across loop turns: a timer made anew on each
    /// turn would never fire while other inputs keep the loop busy.
    autoscale: Interval,
    queue_check: Interval,
    samples: Interval,
    heartbeat: Interval,
    server: JoinHandle<()>,
    /// Reads the workers' memory and CPU time off the loop.
    pub sampler: Sampler,
    /// What only the platform has.
    pub platform: platform::Inputs,
}

/// A timer that ticks every `period`, late rather than in bursts.
pub fn every(period: Duration) -> Interval {
    let mut timer = interval(period);
    timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
    timer
}

impl Sources {
    /// Installs the signal handlers (on Windows: Ctrl-C, standard input and the workers'
    /// exits), before any worker starts so that no exit is missed, and starts serving the
    /// control endpoint and the HTTP endpoints (`--metrics`, `--health`), which answer probes
    /// from `health`.
    pub fn open(
        control: platform::ControlServer,
        notify: &NotifySocket,
        endpoints: Vec<(std::net::TcpListener, Endpoint)>,
        health: HealthBoard,
    ) -> anyhow::Result<Sources> {
        let signals = Intents::install()?;
        let (requests_tx, requests) = mpsc::channel(64);
        let (mut platform, server) = platform::Inputs::open(control, notify, requests_tx)?;
        let (scrapes_tx, scrapes) = mpsc::channel(16);
        for (listener, endpoint) in &endpoints {
            platform.keep_endpoint(listener, *endpoint)?;
        }
        if !endpoints.is_empty() {
            let answers = http::Answers {
                scrapes: scrapes_tx,
                health,
            };
            http::start(endpoints, answers)
                .context("cannot start the thread that serves --metrics and --health")?;
        }
        let (answered_tx, answered) = mpsc::channel(2);
        let (read_again_tx, read_again) = mpsc::channel(1);
        let sampler = Sampler::start().context("cannot start the thread that samples workers")?;
        Ok(Sources {
            signals,
            requests,
            scrapes,
            answered,
            answered_tx,
            read_again,
            read_again_tx,
            autoscale: every(autoscale::SAMPLE_EVERY),
            queue_check: every(autoscale::QUEUE_CHECK_EVERY),
            samples: every(recycling::SAMPLE_EVERY),
            heartbeat: every(HEARTBEAT_EVERY),
            server,
            sampler,
            platform,
        })
    }

    /// Waits for the next input.
    pub async fn next(&mut self, wants: &Wants) -> Input {
        let deadline = wants.deadline.map_or_else(
            || tokio::time::Instant::now() + Duration::from_secs(86400 * 365),
            tokio::time::Instant::from_std,
        );
        tokio::select! {
            intent = self.signals.recv() => Input::Signal(intent),
            Some(request) = self.requests.recv() => Input::Control(request),
            Some(scrape) = self.scrapes.recv() => Input::Scrape(scrape),
            Some(answer) = self.answered.recv() => Input::TakeoverAnswered(answer),
            Some(read) = self.read_again.recv() => Input::ConfigRead(read),
            input = self.platform.next(&wants.platform) => input,
            _ = tokio::time::sleep_until(deadline), if wants.deadline.is_some() => {
                Input::Tick(Tick::Turn)
            }
            _ = self.autoscale.tick(), if wants.autoscale => Input::Tick(Tick::Autoscale),
            _ = self.queue_check.tick(), if wants.autoscale => Input::Tick(Tick::QueueCheck),
            _ = self.samples.tick() => Input::Tick(Tick::Sample),
            _ = self.heartbeat.tick(), if wants.heartbeat => Input::Tick(Tick::Heartbeat),
            Some(samples) = self.sampler.recv() => Input::Sampled(samples),
        }
    }

    /// The scrapes waiting now, taken without waiting for more.
    pub fn waiting_scrapes(&mut self) -> impl Iterator<Item = Scrape> + '_ {
        std::iter::from_fn(|| self.scrapes.try_recv().ok())
    }

    /// Serves control clients with `server` (the control socket bound again) instead: the old
    /// server stops accepting; the connections it accepted are served on.
    #[cfg(unix)]
    pub fn replace_control_server(&mut self, server: JoinHandle<()>) {
        std::mem::replace(&mut self.server, server).abort();
    }

    /// Stops serving control clients.
    pub fn close(self) {
        self.server.abort();
    }
}
