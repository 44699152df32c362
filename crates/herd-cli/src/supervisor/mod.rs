//! The supervisor: the async loop around the [`pool::Pool`] state machine. It turns signals,
//! child exits, `sd_notify` datagrams, control requests and timers into pool events, and the
//! pool's actions into `fork`/`exec`, `kill` and replies (see the files beside this one).
//!
//! It runs on a current-thread runtime, on the process's main thread, so that every worker is
//! forked by a thread that lives as long as herd: `PR_SET_PDEATHSIG` fires when the forking
//! *thread* exits. Control connections are tasks on the same thread; none of them can block
//! the loop.

pub mod attached;
pub mod autoscale;
pub mod balance;
mod handover;
pub mod leftovers;
mod lifecycle;
pub mod metrics;
mod notifications;
pub mod notify;
pub mod pool;
mod process_stats;
pub mod reexec;
pub mod reexec_check;
mod relisten;
mod requests;
mod sampling;
mod scale;
pub mod status;
pub mod systemd;
mod takeover;
mod workers;

use std::collections::{HashMap, HashSet};
use std::os::unix::io::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use tokio::net::{UnixDatagram, UnixListener};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot};

use crate::command::WorkerCommand;
use crate::control::protocol::Response;
use crate::control::server::{self, AccessPolicy, ControlRequest, Reply};
use crate::logging::LogEvent;
use crate::spec::{Listener, SocketFile};
pub use attached::Attached;
use attached::AttachedSet;
use autoscale::Autoscaler;
use handover::{answer_reexec, Endpoints};
use notify::{NotifySocket, RateLimit};
use pool::{Pool, PoolConfig};
use takeover::{after_abort, complete_takeover, StopAnswer};

pub use takeover::Takeover;
pub use workers::describe_exit;

/// The control endpoint a supervisor serves.
pub struct Control {
    /// The socket's file (moved into place at the end of a takeover).
    pub file: SocketFile,
    /// The bound control socket.
    pub listener: std::os::unix::net::UnixListener,
    /// Who may use it.
    pub policy: AccessPolicy,
}

/// A running herd: its sockets, its command, its pool and its endpoints.
pub struct Supervisor {
    pool: Pool,
    listeners: Vec<Listener>,
    command: WorkerCommand,
    stdin: OwnedFd,
    name: String,
    started: Instant,
    /// Set when the first generation cannot be started: herd stops and reports it.
    failure: Option<anyhow::Error>,
    upgrade_waiters: Vec<oneshot::Sender<Reply>>,
    stop_waiters: Vec<(oneshot::Sender<Reply>, oneshot::Receiver<()>)>,
    /// Processes started with `herd attach`.
    attached: AttachedSet,
    /// herd's own service manager, if any.
    service: systemd::ServiceNotifier,
    /// A takeover waiting for this herd's workers to be ready.
    takeover: Option<Takeover>,
    /// Autoscaling, when `--workers MIN..MAX` or `herd scale MIN..MAX` asked for it.
    autoscaler: Option<Autoscaler>,
    /// Each worker's CPU ticks at the last sample, for its busyness.
    cpu_seen: HashMap<u32, (u64, Instant)>,
    /// The workers' busyness at the last regular sample, reused by early samples.
    last_busy: f64,
    /// Counters for `--metrics`.
    counters: metrics::Counters,
    /// The `--metrics` endpoint, until the loop serves it.
    metrics_listener: Option<std::net::TcpListener>,
    /// The path herd was started by ([`reexec::invoked`], symlinks kept), which `herd reexec`
    /// follows anew each time.
    exe: PathBuf,
    /// The file the current re-exec checked ([`reexec::resolve`] of `exe`), which it runs.
    reexec_file: Option<PathBuf>,
    /// A `herd reexec` request waiting to be carried out.
    pending_reexec: Option<(oneshot::Sender<Reply>, Option<OwnedFd>)>,
    /// The connection of the client whose `herd reexec` made this image: answered at start.
    reexec_reply: Option<OwnedFd>,
    /// Whether this image continues from a re-exec.
    resumed: bool,
    /// Children checking a new binary before a re-exec.
    reexec_children: reexec_check::Children,
    /// Why the takeover in progress must be abandoned (a new worker failed before it was
    /// ready).
    takeover_failure: Option<String>,
    /// Workers already logged as ready.
    announced_ready: HashSet<u32>,
    /// Slots whose exit was already blamed on a resource limit, while they crash-loop.
    limit_hinted: HashSet<usize>,
    notify_log: RateLimit,
    /// Stop signals held back while reuseport slots drain.
    drains: balance::Drains,
    /// Makes shared sockets that a worker shut down listen again.
    relisten: relisten::Guard,
    /// Process groups of exited workers that still have processes in them.
    leftovers: leftovers::Leftovers,
}

enum Event {
    Scrape(metrics::Scrape),
    Autoscale,
    /// A quick look at the accept queue between two autoscaling samples.
    QueueCheck,
    Reexec(reexec_check::Client),
    ReexecChecked(reexec_check::Checked),
    Child,
    CheckSockets,
    Stop(&'static str, bool),
    Upgrade,
    ScaleBy(i64, &'static str),
    Control(ControlRequest),
    Notify,
    Timer,
    /// Time to look at the process groups exited workers left.
    Leftovers,
    /// The old herd answered the stop that ends a takeover.
    TakeoverAnswered(StopAnswer),
}

impl Supervisor {
    /// A supervisor for `listeners` (already bound) and `command`.
    pub fn new(
        listeners: Vec<Listener>,
        command: WorkerCommand,
        config: PoolConfig,
        name: &str,
    ) -> anyhow::Result<Supervisor> {
        Ok(Supervisor {
            pool: Pool::new(config),
            listeners,
            command,
            stdin: herd_sys::fd::open_dev_null().context("cannot open /dev/null")?,
            name: name.to_string(),
            started: Instant::now(),
            failure: None,
            upgrade_waiters: Vec::new(),
            stop_waiters: Vec::new(),
            attached: AttachedSet::default(),
            service: systemd::ServiceNotifier::from_env(),
            takeover: None,
            takeover_failure: None,
            autoscaler: None,
            cpu_seen: HashMap::new(),
            last_busy: 0.0,
            counters: metrics::Counters::default(),
            metrics_listener: None,
            exe: reexec::invoked()?,
            reexec_file: None,
            pending_reexec: None,
            reexec_reply: None,
            resumed: false,
            reexec_children: reexec_check::Children::default(),
            announced_ready: HashSet::new(),
            limit_hinted: HashSet::new(),
            notify_log: RateLimit::new(5, Duration::from_secs(10)),
            drains: balance::Drains::default(),
            relisten: relisten::Guard::default(),
            leftovers: leftovers::Leftovers::default(),
        })
    }

    /// The listening sockets.
    pub fn listeners(&self) -> &[Listener] {
        &self.listeners
    }

    /// Runs until a stop has been handled and every worker is gone. Returns an error when the
    /// workers could not be started at all.
    pub async fn run(
        mut self,
        control: Control,
        notify: NotifySocket,
        takeover: Option<Takeover>,
    ) -> anyhow::Result<()> {
        self.takeover = takeover;
        let mut control_file = control.file;
        // A copy of the control socket's fd, handed to the next image on re-exec.
        let control_fd = control.listener.as_fd().try_clone_to_owned()?;
        // Register every handler before the first fork, so that no exit or signal is missed.
        let mut sigchld = signal(SignalKind::child())?;
        let mut sigusr2 = signal(SignalKind::user_defined2())?;
        let mut sigterm = signal(SignalKind::terminate())?;
        let mut sigint = signal(SignalKind::interrupt())?;
        let mut sigquit = signal(SignalKind::quit())?;
        let mut sighup = signal(SignalKind::hangup())?;
        let mut sigttin = signal(SignalKind::from_raw(libc::SIGTTIN))?;
        let mut sigttou = signal(SignalKind::from_raw(libc::SIGTTOU))?;
        let notify_socket = UnixDatagram::from_std(notify.socket.try_clone()?)?;

        control.listener.set_nonblocking(true)?;
        let listener = UnixListener::from_std(control.listener)?;
        let (requests_tx, mut requests) = mpsc::channel(64);
        let server = tokio::spawn(server::serve(listener, control.policy, requests_tx));
        let (scrapes_tx, mut scrapes) = mpsc::channel(16);
        let (checked_tx, mut checked) = mpsc::channel(1);
        let (answered_tx, mut answered) = mpsc::channel(2);
        // A copy of the metrics socket's fd, handed to the next image on re-exec.
        let metrics_fd = match &self.metrics_listener {
            Some(listener) => Some(listener.as_fd().try_clone_to_owned()?),
            None => None,
        };
        if let Some(listener) = self.metrics_listener.take() {
            listener.set_nonblocking(true)?;
            tokio::spawn(metrics::serve(
                tokio::net::TcpListener::from_std(listener)?,
                scrapes_tx,
            ));
        }
        // A re-exec held these back across execve; the handlers are in place now.
        herd_sys::process::unblock_signals(&reexec::HELD)?;
        if self.resumed {
            // A worker that exited while the previous image handed over signalled *that*
            // image, which execed before reaping it: collect it now, or it would stay a zombie
            // that herd waits for.
            self.reap();
            if let Some(connection) = self.reexec_reply.take() {
                answer_reexec(connection);
            }
            self.service.ready("re-executed");
            let file = std::env::current_exe().unwrap_or_default();
            tracing::info!(
                event = LogEvent::Reexecuted.as_str(),
                exe = %self.exe.display(),
                file = %file.display(),
                "re-executed: herd {} runs on from {}",
                env!("CARGO_PKG_VERSION"),
                file.display()
            );
        }

        // Periodic work on intervals that live across loop turns: a timer made anew on each
        // turn would never fire while other events keep the loop busy.
        let mut autoscale_sample = tokio::time::interval(autoscale::SAMPLE_EVERY);
        autoscale_sample.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut queue_check = tokio::time::interval(autoscale::QUEUE_CHECK_EVERY);
        queue_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut attached_check = tokio::time::interval(attached::CHECK_EVERY);
        attached_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut drain_check = tokio::time::interval(balance::DRAIN_CHECK);
        drain_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut socket_check = tokio::time::interval(relisten::CHECK_EVERY);
        socket_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut leftover_check = tokio::time::interval(leftovers::CHECK_EVERY);
        leftover_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

        let first = self.pool.due(Instant::now());
        self.apply(first, true);
        // A stop is over when every worker, what each left in its process group, every
        // attached process and every re-exec check child is gone.
        while !self.pool.is_stopped()
            || !self.leftovers.is_empty()
            || !self.attached.is_empty()
            || !self.reexec_children.is_empty()
        {
            let attached_deadline = self.attached.deadline(Instant::now());
            let deadline = match (self.pool.next_deadline(), attached_deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let sleep = tokio::time::sleep_until(
                deadline.map_or_else(far_future, tokio::time::Instant::from_std),
            );
            let event = tokio::select! {
                _ = sigchld.recv() => Event::Child,
                _ = sigterm.recv() => Event::Stop("SIGTERM", true),
                // A second Ctrl-C stops at once.
                _ = sigint.recv() => Event::Stop("SIGINT", !self.pool.is_stopping()),
                _ = sigquit.recv() => Event::Stop("SIGQUIT", false),
                _ = sighup.recv() => Event::Upgrade,
                _ = sigusr2.recv() => Event::Reexec(None),
                _ = sigttin.recv() => Event::ScaleBy(1, "SIGTTIN"),
                _ = sigttou.recv() => Event::ScaleBy(-1, "SIGTTOU"),
                Some(request) = requests.recv() => Event::Control(request),
                Some(scrape) = scrapes.recv() => Event::Scrape(scrape),
                Some(done) = checked.recv() => Event::ReexecChecked(done),
                Some(answer) = answered.recv() => Event::TakeoverAnswered(answer),
                _ = notify_socket.readable() => Event::Notify,
                _ = sleep, if deadline.is_some() => Event::Timer,
                _ = autoscale_sample.tick(),
                    if self.autoscaler.is_some() && !self.pool.is_stopping() => Event::Autoscale,
                _ = queue_check.tick(),
                    if self.autoscaler.is_some() && !self.pool.is_stopping() => Event::QueueCheck,
                // Wakes the loop, whose every turn looks at the attached processes' pidfds.
                _ = attached_check.tick(), if !self.attached.is_empty() => Event::Timer,
                _ = drain_check.tick(), if !self.drains.is_empty() => Event::Timer,
                _ = socket_check.tick() => Event::CheckSockets,
                _ = leftover_check.tick(), if !self.leftovers.is_empty() => Event::Leftovers,
            };
            match event {
                Event::Child => self.reap(),
                Event::CheckSockets => self.check_sockets(),
                Event::Leftovers => self
                    .leftovers
                    .check(&mut leftovers::System::default(), Instant::now()),
                Event::Autoscale => self.autoscale_tick(false),
                // A burst need not wait for the next sample: a queue long enough to scale up
                // on is acted on at once (the policy's cooldown still applies).
                Event::QueueCheck if self.queued() >= autoscale::QUEUE_PER_WORKER => {
                    self.autoscale_tick(true)
                }
                Event::QueueCheck => {}
                Event::Scrape(reply) => {
                    let _ = reply.send(metrics::render(&self.counters, &self.metrics_snapshot()));
                }
                Event::Stop(reason, graceful) => self.stop(reason, graceful, None),
                Event::Upgrade => self.upgrade("SIGHUP", None, None),
                // The new binary is checked first; the exec follows if it passes.
                Event::Reexec(client) => self.check_reexec(client, &checked_tx),
                Event::ReexecChecked(done) => {
                    if let Some(client) = self.reexec_checked(done) {
                        let endpoints = Endpoints {
                            control: &control_fd,
                            control_file: &control_file,
                            notify: &notify,
                            metrics: metrics_fd.as_ref(),
                        };
                        self.reexec(&endpoints, client);
                    }
                }
                Event::ScaleBy(delta, reason) => {
                    // A signal never scales below one worker; `herd scale 0` can.
                    let target = self
                        .pool
                        .desired()
                        .saturating_add_signed(delta as isize)
                        .max(1);
                    if let Err(why) = self.scale(target, reason) {
                        tracing::warn!(
                            event = LogEvent::ScaleRefused.as_str(),
                            "{reason} ignored: {why}"
                        );
                    }
                }
                Event::Control(request) => {
                    self.control(request);
                    if let Some(client) = self.pending_reexec.take() {
                        self.check_reexec(Some(client), &checked_tx);
                    }
                }
                Event::Notify => self.read_notifications(&notify_socket),
                Event::TakeoverAnswered(answer) => self.takeover_answered(answer),
                Event::Timer => {}
            }
            let actions = self.pool.due(Instant::now());
            self.apply(actions, false);
            // Attached processes stop with the pool, however it came to stop.
            if self.pool.is_stopping() {
                let config = self.pool.config();
                let (signal, grace) = (config.stop_signal, config.grace);
                self.attached
                    .stop(&mut attached::System, signal, grace, Instant::now());
            }
            // A pidfd's poll is cheap: an exit is seen at the next turn of the loop.
            self.attached.remove_exited(&mut attached::System);
            self.attached.due(&mut attached::System, Instant::now());
            self.attached_leftovers();
            balance::steer(&mut self.listeners, &self.pool);
            self.drains.release(&self.listeners, &self.pool);
            self.announce_ready();
            if self.takeover.is_some() && self.failure.is_none() && !self.pool.is_stopping() {
                if let Some(why) = self.takeover_failure.take() {
                    let old = self.takeover.as_ref().map(|t| t.old.as_path());
                    self.failure = Some(anyhow!("takeover aborted, {}: {why}", after_abort(old)));
                    self.stop("takeover failed", false, None);
                } else if self.pool.all_available() {
                    if let Some(t) = self.takeover.take() {
                        let old = t.old.clone();
                        if let Err(why) =
                            complete_takeover(t, &mut control_file, answered_tx.clone())
                        {
                            let after = after_abort(Some(&old));
                            self.failure = Some(anyhow!("takeover aborted, {after}: {why}"));
                            self.stop("takeover failed", false, None);
                        }
                    }
                }
            }
            if !self.service.ready_sent() && !self.pool.is_stopping() && self.all_ready() {
                let status = format!("{} workers ready", self.pool.desired());
                self.service.ready(&status);
            }
        }
        tracing::info!(
            event = LogEvent::Stopped.as_str(),
            "all workers have exited; herd stops"
        );
        // Answer `herd stop` clients, and give their connections a moment to write it.
        let mut written = Vec::new();
        for (reply, done) in self.stop_waiters.drain(..) {
            let _ = reply.send(Response::ok(serde_json::json!({ "stopped": true })).into());
            written.push(done);
        }
        let flushed = async {
            for done in written {
                let _ = done.await;
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), flushed).await;
        server.abort();
        drop(notify);
        match self.failure.take() {
            Some(failure) => Err(failure),
            None => Ok(()),
        }
    }
}

/// How long `herd upgrade` (or SIGHUP) may take unless told otherwise.
pub const DEFAULT_UPGRADE_TIMEOUT: Duration = Duration::from_secs(600);

fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86400 * 365)
}
