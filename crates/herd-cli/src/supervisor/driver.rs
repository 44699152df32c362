//! The driver: the [`Supervisor`] (what it holds) and its loop (startup, then one turn per
//! input until the stop is over), on every platform. Its handlers live in the files beside
//! this one; what differs between systems is [`platform`]'s.

use std::time::{Duration, Instant};

use anyhow::Context;

use super::*;
use crate::command::WorkerCommand;
use crate::logging::LogEvent;
use crate::spec::Listener;
use attached::AttachedSet;
use autoscale::Autoscaler;
use platform::Signal;
pub(crate) use platform::{Control, NotifySocket};
use pool::{Pool, PoolConfig};
use rate_limit::RateLimit;
use sources::{Sources, Wants};
use startup::Step;

/// A running herd: its sockets, its command, its pool and its endpoints.
pub struct Supervisor {
    pub(super) pool: Pool,
    /// What the supervisor acts with: sockets, the worker command, the service manager, the
    /// counters.
    pub(super) effects: effects::Effects,
    pub(super) name: String,
    pub(super) started: Instant,
    /// herd's own course: failure, takeover, what the service manager heard.
    pub(super) phase: phase::Phase<Takeover>,
    /// Control clients waiting for a stop, an upgrade or a re-exec.
    pub(super) waiters: waiters::Waiters<effects::Client>,
    /// Processes started with `herd attach`.
    pub(super) attached: AttachedSet,
    /// Autoscaling, when `--workers MIN..MAX` or `herd scale MIN..MAX` asked for it.
    pub(super) autoscaler: Option<Autoscaler>,
    /// The workers' CPU use, for the autoscaler.
    pub(super) cpu: busyness::CpuMeter,
    /// Recycling, and each worker's last memory and CPU figures.
    pub(super) recycling: recycling::Recycling,
    /// The listening sockets' backlogs and queues, as the sampler last read them.
    pub(super) backlogs: super::backlog::Backlogs,
    /// The `--metrics` and `--health` endpoints, until the loop serves them.
    pub(super) http_listeners: Vec<(std::net::TcpListener, http::Endpoint)>,
    /// `/healthz` and `/readyz`, and `--drain-delay`.
    pub(super) probes: probes::Probes,
    /// The last rendering of the metrics, which the next scrapes may reuse.
    pub(super) last_rendering: metrics::LastRendering,
    /// Reads the `--config` file again, for `herd upgrade --reload-config`.
    pub(super) reload: Option<reload::Reload>,
    /// A `herd upgrade --reload-config` whose file is being read (`reload` is away then).
    pub(super) reading: Option<reload::reading::Reading>,
    /// What an upgrade with a reloaded config changes once it has finished.
    pub(super) staged: Option<reload::Staged>,
    pub(super) notify_log: RateLimit,
    /// Worker starts the pool asked for, a few of them started per turn.
    pub(super) starts: starts::Starts,
    /// Holds the workers' samples back while starts are queued.
    pub(super) sampling_pause: super::sampling_pause::SamplingPause,
    /// What only this platform holds (Unix: the re-exec's bookkeeping, leftover process
    /// groups, ...).
    pub(super) platform: platform::State,
    /// `--starting-nice`, resolved: `None` keeps every worker at herd's priority.
    pub(super) warm_up: Option<warm_up::WarmUp>,
    /// The nice value herd's workers start at, which a worker herd lowered gets back.
    pub(super) workers_nice: i32,
    /// Workers warming up at `--starting-nice`, until they get herd's priority back anyway.
    pub(super) warming: warm_up::Warming,
    /// When the loop last turned, to tell herd's own stalls.
    pub(super) stalls: stall::Stalls,
}

impl Supervisor {
    /// A supervisor for `listeners` (already bound) and `command`.
    pub fn new(
        listeners: Vec<Listener>,
        command: WorkerCommand,
        config: PoolConfig,
        stop_signal: Signal,
        name: &str,
    ) -> anyhow::Result<Supervisor> {
        let config = platform::pool_config(config, &listeners);
        Ok(Supervisor {
            pool: Pool::new(config),
            effects: effects::Effects::new(listeners, command, stop_signal)?,
            name: name.to_string(),
            started: Instant::now(),
            phase: phase::Phase::new(None),
            waiters: waiters::Waiters::default(),
            attached: AttachedSet::default(),
            autoscaler: None,
            cpu: busyness::CpuMeter::default(),
            recycling: recycling::Recycling::default(),
            backlogs: super::backlog::Backlogs::default(),
            http_listeners: Vec::new(),
            probes: probes::Probes::default(),
            last_rendering: metrics::LastRendering::default(),
            reload: None,
            reading: None,
            staged: None,
            notify_log: RateLimit::new(5, Duration::from_secs(10)),
            starts: starts::Starts::default(),
            sampling_pause: Default::default(),
            platform: platform::State::new()?,
            warm_up: None,
            workers_nice: 0,
            warming: warm_up::Warming::default(),
            stalls: stall::Stalls::default(),
        })
    }

    /// Sets `--starting-nice`, resolved (see [`warm_up`]), and the nice value the workers
    /// start at (`workers_nice`), which those herd lowered get back. The workers a re-exec
    /// said herd lowered and that are still starting get a whole warm-up from now (one that
    /// trickled, until its longest from its start), raised as they were lowered (an older
    /// image's, which did not say how, as this one would lower them).
    pub fn set_warm_up(&mut self, (warm_up, workers_nice): (Option<warm_up::WarmUp>, i32)) {
        self.warm_up = warm_up;
        self.workers_nice = workers_nice;
        self.warming
            .set_sampling(self.effects.spawner().can_sample());
        let budget = self.warming.budget(self.pool.config().readiness);
        let pool = &self.pool;
        let started = |pid| {
            let worker = pool.worker(pid)?;
            (worker.state == pool::WorkerState::Starting).then_some(worker.started)
        };
        let assumed = warm_up.map(|w| w.starting);
        self.warming
            .resume(assumed, started, Instant::now(), budget);
    }

    /// The listening sockets.
    pub fn listeners(&self) -> &[Listener] {
        self.effects.listeners()
    }

    /// Runs until a stop has been handled and every worker is gone. Returns an error when the
    /// workers could not be started at all, or a takeover failed.
    pub async fn run(
        mut self,
        control: Control,
        mut notify: NotifySocket,
        takeover: Option<Takeover>,
    ) -> anyhow::Result<()> {
        if takeover.is_some() {
            self.phase = phase::Phase::new(takeover);
        }
        self.control_bound(&control);
        let (mut control_file, control) = control.split();
        let mut opened = None;
        let mut control = Some(control);
        for step in startup::steps(self.phase.reexecuted()) {
            match step {
                Step::Listen => {
                    if let Some(control) = control.take() {
                        let endpoints = std::mem::take(&mut self.http_listeners);
                        let board = self.probes.board();
                        opened = Some(Sources::open(control, &notify, endpoints, board)?);
                    }
                }
                Step::ReleaseHeldSignals => platform::release_held_signals()?,
                Step::CollectExits => self.reap(),
                Step::AnnounceReexec => self.announce_reexec(),
                Step::StartWorkers => {
                    let first = self.pool.due(Instant::now());
                    self.apply(first, true);
                    self.start_some();
                }
            }
        }
        let mut sources = opened.context("the supervisor's inputs were never opened")?;
        let mut scraped = false;
        while !self.finished() {
            if self.starts.is_waiting() || scraped {
                // Control connections and the other tasks run before the next starts, and
                // between two scrapes: scrapes queued one after another would keep the loop
                // turning for them alone.
                tokio::task::yield_now().await;
            }
            let input = sources.next(&self.wants()).await;
            self.turn_begins(&sources);
            scraped = matches!(input, sources::Input::Scrape(_));
            self.handle(input, &mut sources, &mut control_file, &mut notify);
            self.after_turn(&sources, &mut control_file);
            self.publish_health();
            self.effects.service().keep_alive(Instant::now());
            self.stalls.turn_ended(Instant::now());
        }
        self.finish(sources, notify).await
    }

    /// Whether the stop is over: every worker and every attached process is gone, and what
    /// the platform holds (Unix: what workers left in their process groups, re-exec checks),
    /// and no start awaits its fork server's reply (a worker it forked is stopped as it comes).
    fn finished(&self) -> bool {
        self.pool.is_stopped()
            && self.attached.is_empty()
            && self.platform.finished()
            && !self.effects.awaits_fork_replies()
    }

    /// What the loop waits for on this turn.
    fn wants(&self) -> Wants {
        let now = Instant::now();
        let deadline = [
            self.pool.next_deadline(),
            self.attached.deadline(now),
            self.recycle_deadline(now),
            self.warming.next_deadline(),
            self.probes.drain_until(),
            self.effects.fork_server_deadline(),
            self.effects.service().watchdog_due(),
            // Starts wait: the loop turns again at once.
            self.starts.is_waiting().then_some(now),
        ]
        .into_iter()
        .flatten()
        .min();
        Wants {
            deadline,
            autoscale: self.autoscaler.is_some() && !self.pool.is_stopping(),
            heartbeat: self.probes.served(),
            platform: self.platform_wants(),
        }
    }

    /// Answers `herd stop` clients, gives their connections a moment to write it, and says
    /// how herd ends.
    async fn finish(mut self, sources: Sources, notify: NotifySocket) -> anyhow::Result<()> {
        tracing::info!(
            event = LogEvent::Stopped.as_str(),
            "all workers have exited; herd stops"
        );
        let timeout = Duration::from_secs(1);
        // Followers of the workers' output get the last lines the workers wrote, and the end;
        // taken over, they follow on with the herd that took over (which has the path).
        let ending = match self.effects.taken_over() {
            true => crate::output::Ending::TakenOver,
            false => crate::output::Ending::Stopped,
        };
        // Both at once: a process a worker left (in a session of its own) that holds an output
        // pipe keeps the readers, and so the followers' end, waiting up to `timeout`; the
        // stop's answer does not wait with them.
        let answers = self.waiters.stopped();
        // No new control client first, the connections accepted are answered on: a `herd run`
        // right after `herd stop` returns finds no herd listening on the control socket (it
        // found this one there for as long as the followers' end took).
        sources.close();
        tokio::join!(
            crate::control::logs::end_following(timeout, ending),
            self.effects.answer_last(answers, timeout),
        );
        // The notify socket's file goes now (on Windows the placeholder has none).
        #[allow(clippy::drop_non_drop)]
        drop(notify);
        // Once no control client is served (a `herd run` right after `herd stop` finds the
        // control socket free): it reads `/proc` whole. Taken over, the new herd holds the sockets, as it
        // should; a takeover that did not complete leaves them to the old herd.
        let old_herd_holds = self.phase.taking_over() || self.phase.old_herd_serves_on();
        if !self.effects.taken_over() && !old_herd_holds {
            super::platform::say_still_held(self.effects.listeners());
        }
        self.phase.outcome().map_err(anyhow::Error::msg)
    }
}
