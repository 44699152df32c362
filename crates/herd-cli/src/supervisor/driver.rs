//! The driver: the [`Supervisor`] (what it holds) and its loop (startup, then one turn per
//! input until the stop is over), on every platform. Its handlers live in the files beside
//! this one; what differs between systems is [`platform`]'s.

#[cfg(unix)]
use std::os::unix::io::OwnedFd;
#[cfg(unix)]
use std::path::PathBuf;
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
    /// The `--metrics` endpoint, until the loop serves it.
    pub(super) metrics_listener: Option<std::net::TcpListener>,
    /// The path herd was started by ([`reexec::invoked`], symlinks kept), which `herd reexec`
    /// follows anew each time.
    #[cfg(unix)]
    pub(super) exe: PathBuf,
    /// The connection of the client whose `herd reexec` made this image: answered at start.
    #[cfg(unix)]
    pub(super) reexec_reply: Option<OwnedFd>,
    /// Children checking a new binary before a re-exec.
    #[cfg(unix)]
    pub(super) reexec_children: reexec_check::Children,
    /// Slots whose exit was already blamed on a resource limit, while they crash-loop.
    #[cfg(unix)]
    pub(super) limit_hinted: workers::LimitHints,
    pub(super) notify_log: RateLimit,
    /// Makes shared sockets that a worker shut down listen again.
    #[cfg(unix)]
    pub(super) relisten: relisten::Guard,
    /// Process groups of exited workers that still have processes in them.
    #[cfg(unix)]
    pub(super) leftovers: leftovers::Leftovers,
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
        #[cfg(unix)]
        let config = PoolConfig {
            drain: balance::drain_policy(&listeners, config.grace),
            ..config
        };
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
            metrics_listener: None,
            #[cfg(unix)]
            exe: reexec::invoked()?,
            #[cfg(unix)]
            reexec_reply: None,
            #[cfg(unix)]
            reexec_children: reexec_check::Children::default(),
            #[cfg(unix)]
            limit_hinted: workers::LimitHints::default(),
            notify_log: RateLimit::new(5, Duration::from_secs(10)),
            #[cfg(unix)]
            relisten: relisten::Guard::default(),
            #[cfg(unix)]
            leftovers: leftovers::Leftovers::default(),
        })
    }

    /// Shares `memories` (`--shm`) with every worker.
    #[cfg(windows)]
    pub fn share_memory(&mut self, memories: platform::SharedMemories) {
        self.effects.share_memory(memories);
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
        notify: NotifySocket,
        takeover: Option<Takeover>,
    ) -> anyhow::Result<()> {
        if takeover.is_some() {
            self.phase = phase::Phase::new(takeover);
        }
        let (mut control_file, control) = control.split();
        let mut opened = None;
        let mut control = Some(control);
        for step in startup::steps(self.phase.reexecuted()) {
            match step {
                Step::Listen => {
                    if let Some(control) = control.take() {
                        let metrics = self.metrics_listener.take();
                        opened = Some(Sources::open(control, &notify, metrics)?);
                    }
                }
                #[cfg(unix)]
                Step::ReleaseHeldSignals => {
                    herd_sys::process::unblock_signals(&platform::signals::held())?
                }
                // Nothing is held back on Windows: herd never re-executes there.
                #[cfg(windows)]
                Step::ReleaseHeldSignals => {}
                Step::CollectExits => self.reap(),
                #[cfg(unix)]
                Step::AnnounceReexec => self.announce_reexec(),
                #[cfg(windows)]
                Step::AnnounceReexec => {}
                Step::StartWorkers => {
                    let first = self.pool.due(Instant::now());
                    self.apply(first, true);
                }
            }
        }
        let mut sources = opened.context("the supervisor's inputs were never opened")?;
        while !self.finished() {
            let input = sources.next(&self.wants()).await;
            self.handle(input, &mut sources, &mut control_file, &notify);
            self.after_turn(&sources, &mut control_file);
        }
        self.finish(sources, notify).await
    }

    /// Whether the stop is over: every worker, what each left in its process group, every
    /// attached process and every re-exec check child is gone.
    #[cfg(unix)]
    fn finished(&self) -> bool {
        self.pool.is_stopped()
            && self.leftovers.is_empty()
            && self.attached.is_empty()
            && self.reexec_children.is_empty()
    }

    /// Whether the stop is over: every worker and every attached process is gone.
    #[cfg(windows)]
    fn finished(&self) -> bool {
        self.pool.is_stopped() && self.attached.is_empty()
    }

    /// What the loop waits for on this turn.
    #[cfg(unix)]
    fn wants(&self) -> Wants {
        let now = Instant::now();
        let deadline = match (self.pool.next_deadline(), self.attached.deadline(now)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Wants {
            deadline,
            autoscale: self.autoscaler.is_some() && !self.pool.is_stopping(),
            attached: self.attached.any_unwatchable(),
            drains: self.pool.is_draining(),
            leftovers: !self.leftovers.is_empty(),
        }
    }

    /// What the loop waits for on this turn.
    #[cfg(windows)]
    fn wants(&self) -> Wants {
        let deadline = match (
            self.pool.next_deadline(),
            self.attached.deadline(Instant::now()),
        ) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Wants {
            deadline,
            autoscale: self.autoscaler.is_some() && !self.pool.is_stopping(),
        }
    }

    /// Answers `herd stop` clients, gives their connections a moment to write it, and says
    /// how herd ends.
    async fn finish(mut self, sources: Sources, notify: NotifySocket) -> anyhow::Result<()> {
        tracing::info!(
            event = LogEvent::Stopped.as_str(),
            "all workers have exited; herd stops"
        );
        let answers = self.waiters.stopped();
        let timeout = Duration::from_secs(1);
        self.effects.answer_last(answers, timeout).await;
        sources.close();
        // The notify socket's file goes now (on Windows the placeholder has none).
        #[allow(clippy::drop_non_drop)]
        drop(notify);
        self.phase.outcome().map_err(anyhow::Error::msg)
    }
}
