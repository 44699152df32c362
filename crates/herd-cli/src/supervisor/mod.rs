//! The supervisor: a thin async driver around the [`pool::Pool`] state machine. It turns
//! signals, child exits, `sd_notify` datagrams, control requests and timers into pool events,
//! and the pool's actions into `fork`/`exec`, `kill` and replies.
//!
//! It runs on a current-thread runtime, on the process's main thread, so that every worker is
//! forked by a thread that lives as long as herd: `PR_SET_PDEATHSIG` fires when the forking
//! *thread* exits. Control connections are tasks on the same thread; none of them can block
//! the loop.

pub mod attached;
pub mod autoscale;
pub mod balance;
pub mod leftovers;
pub mod metrics;
pub mod notify;
pub mod pool;
mod process_stats;
pub mod reexec;
pub mod reexec_check;
mod relisten;
mod scale;
pub mod status;
pub mod systemd;

use std::collections::{HashMap, HashSet, VecDeque};
use std::os::unix::io::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use herd_sys::pidfd::PidFd;
use herd_sys::process::{self, Signal};
use tokio::io::Interest;
use tokio::net::{UnixDatagram, UnixListener};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot};

use crate::cli::MAX_WORKERS;
use crate::command::WorkerCommand;
use crate::control::protocol::{Command, ErrorCode, Response};
use crate::control::server::{self, AccessPolicy, ControlRequest, Peer, Reply};
use crate::spec::{Listener, SocketFile};
pub use attached::Attached;
use attached::AttachedSet;
use autoscale::{Autoscaler, Sample};
use notify::{NotifySocket, RateLimit};
use pool::{Action, NotifyMessage, Pool, PoolConfig, Reason, WorkerState};

/// A takeover in progress: once this herd's workers are available (ready for `--min-ready`),
/// its control socket replaces the old herd's at `old`, and the old herd is asked to stop.
pub struct Takeover {
    /// The old herd's control socket, where this herd's ends.
    pub old: PathBuf,
    /// That socket file's device and inode when the takeover began: a different file there at
    /// the end (another herd's) is never replaced.
    pub old_socket: (u64, u64),
}

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
                        tracing::warn!("{reason} ignored: {why}");
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
        tracing::info!("all workers have exited; herd stops");
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

    /// What remains in the groups of attached processes that have exited is stopped and
    /// waited for like a worker's leftovers.
    fn attached_leftovers(&mut self) {
        let leaders = self.attached.take_exited_leaders();
        if leaders.is_empty() {
            return;
        }
        let (stop_signal, grace) = (self.pool.config().stop_signal, self.pool.config().grace);
        let stopping = self.attached.kill_at();
        for leader in leaders {
            self.leftovers.attached_exited(
                &mut leftovers::System::default(),
                leader,
                stopping,
                stop_signal,
                grace,
                Instant::now(),
            );
        }
    }

    fn stop(&mut self, reason: &str, graceful: bool, grace: Option<Duration>) {
        if graceful && self.pool.is_stopping() {
            tracing::info!(
                signal = reason,
                "already stopping; send SIGQUIT to stop at once"
            );
            return;
        }
        let grace = grace.unwrap_or(self.pool.config().grace);
        if graceful {
            tracing::info!(
                signal = reason,
                "stopping gracefully: workers get {} and {} to finish",
                self.pool.config().stop_signal,
                humantime::format_duration(grace)
            );
        } else {
            tracing::info!(signal = reason, "stopping at once: killing every worker");
        }
        self.drains.release_all(&self.pool);
        self.reexec_children.stop();
        self.reexec_file = None;
        // herd's own copies of the sockets close now: once the workers have closed theirs,
        // new clients are refused at once instead of waiting in a queue nobody serves.
        for listener in &mut self.listeners {
            listener.close();
        }
        self.service.stopping();
        let signal = if graceful {
            self.pool.config().stop_signal
        } else {
            Signal::KILL
        };
        let now = Instant::now();
        self.attached
            .stop(&mut attached::System, signal, grace, now);
        let actions = self.pool.stop(graceful, Some(grace), now);
        self.apply(actions, false);
        let deadline = match graceful {
            true => now.checked_add(grace).unwrap_or(now),
            false => now,
        };
        self.leftovers.stop(deadline);
        self.leftovers.check(&mut leftovers::System::default(), now);
    }

    fn upgrade(
        &mut self,
        reason: &str,
        timeout: Option<Duration>,
        waiter: Option<oneshot::Sender<Reply>>,
    ) {
        let timeout = timeout.unwrap_or(DEFAULT_UPGRADE_TIMEOUT);
        if let Some(why) = self.pool.upgrade_too_short(timeout) {
            tracing::warn!("{reason}: cannot upgrade: {why}");
            if let Some(waiter) = waiter {
                let _ = waiter.send(Response::error(ErrorCode::InvalidArgument, why).into());
            }
            return;
        }
        match self.pool.upgrade(timeout, Instant::now()) {
            Ok((generation, actions)) => {
                tracing::info!(
                    generation,
                    trigger = reason,
                    "rolling upgrade to generation {generation} started"
                );
                self.service
                    .reloading(&format!("upgrading to generation {generation}"));
                self.upgrade_waiters.extend(waiter);
                self.apply(actions, false);
            }
            Err(why) => {
                tracing::warn!("{reason}: cannot upgrade: {why}");
                if let Some(waiter) = waiter {
                    let code = if self.pool.is_stopping() {
                        ErrorCode::Stopping
                    } else {
                        ErrorCode::Busy
                    };
                    let _ = waiter.send(Response::error(code, why).into());
                }
            }
        }
    }

    fn scale(&mut self, target: usize, reason: &str) -> Result<usize, String> {
        let previous = self.pool.desired();
        let actions = self.pool.scale(target, Instant::now())?;
        tracing::info!(
            trigger = reason,
            "scaling from {previous} to {target} workers"
        );
        self.apply(actions, false);
        Ok(previous)
    }

    fn control(&mut self, request: ControlRequest) {
        let ControlRequest {
            command,
            peer,
            reply,
            written,
            connection,
        } = request;
        let response = match command {
            Command::Reexec => {
                self.pending_reexec = Some((reply, connection));
                return;
            }
            Command::Sockets { only, attach } => {
                let _ = reply.send(self.sockets_request(only, attach, peer, connection));
                return;
            }
            Command::Status => {
                let mut status = status::snapshot(
                    &self.pool,
                    &self.listeners,
                    self.attached.as_slice(),
                    &self.name,
                    self.started,
                );
                status.leftovers = self.leftovers.status(Instant::now());
                match serde_json::to_value(status) {
                    Ok(mut value) => {
                        value["autoscale"] = self.autoscale_status().unwrap_or_default();
                        Response::ok(value)
                    }
                    Err(e) => Response::error(ErrorCode::Internal, e.to_string()),
                }
            }
            Command::Scale {
                workers,
                delta,
                min,
                max,
            } => self.scale_request(workers, delta, min, max),
            Command::Upgrade { timeout_ms } => {
                self.upgrade(
                    "herd upgrade",
                    timeout_ms.map(Duration::from_millis),
                    Some(reply),
                );
                return;
            }
            Command::Stop {
                grace_ms,
                fast,
                takeover,
            } => {
                if takeover {
                    tracing::info!("taken over: the socket files are the new herd's now");
                    self.listeners.iter_mut().for_each(Listener::release_file);
                }
                self.stop_waiters.push((reply, written));
                self.stop("herd stop", !fast, grace_ms.map(Duration::from_millis));
                return;
            }
            Command::Signal { signal, slot } => match Signal::from_name(&signal) {
                None => Response::error(
                    ErrorCode::InvalidArgument,
                    crate::cli::signal_error(&signal),
                ),
                Some(sig) => match self.pool.signal(sig, slot) {
                    Ok(actions) => {
                        let count = actions.len();
                        tracing::info!(signal = %sig, ?slot, "sending {sig} to {count} worker(s)");
                        self.apply(actions, false);
                        Response::ok(serde_json::json!({ "signalled": count }))
                    }
                    Err(why) => Response::error(ErrorCode::InvalidArgument, why),
                },
            },
        };
        let _ = reply.send(response.into());
    }

    /// The `sockets` command: metadata and duplicates of the listening sockets, and with
    /// `attach`, the peer registered as an attached worker.
    fn sockets_request(
        &mut self,
        only: Option<Vec<String>>,
        attach: bool,
        peer: Peer,
        connection: Option<OwnedFd>,
    ) -> Reply {
        let refuse = |code, why: String| Reply::from(Response::error(code, why));
        if self.pool.is_stopping() {
            return refuse(ErrorCode::Stopping, "herd is stopping".to_string());
        }
        if let Some(unknown) = only
            .iter()
            .flatten()
            .find(|n| !self.listeners.iter().any(|l| &l.name == *n))
        {
            let names: Vec<&str> = self.listeners.iter().map(|l| l.name.as_str()).collect();
            return refuse(
                ErrorCode::InvalidArgument,
                format!(
                    "no socket is named {unknown:?} (sockets: {})",
                    names.join(", ")
                ),
            );
        }
        let mut sockets = Vec::new();
        let mut fds = Vec::new();
        for l in &self.listeners {
            if only.as_ref().is_some_and(|o| !o.contains(&l.name)) {
                continue;
            }
            let Some(fd) = l.fd() else {
                return refuse(ErrorCode::Stopping, "herd is stopping".to_string());
            };
            match fd.try_clone_to_owned() {
                Ok(dup) => fds.push(dup),
                Err(e) => {
                    return refuse(
                        ErrorCode::Internal,
                        format!("cannot duplicate {}: {e}", l.name),
                    )
                }
            }
            let info = herd_sys::socket::inspect(fd).ok().flatten();
            sockets.push(serde_json::json!({
                "name": l.name,
                "kind": l.kind,
                "family": info.map(|i| format!("{:?}", i.family).to_lowercase()),
                "type": info.map(|i| format!("{:?}", i.sock_type).to_lowercase()),
                "address": l.address,
            }));
        }
        if attach {
            let Some(pid) = peer.pid else {
                return refuse(
                    ErrorCode::Internal,
                    "cannot identify the attaching process".to_string(),
                );
            };
            let names: Vec<String> = sockets
                .iter()
                .filter_map(|s| s["name"].as_str().map(str::to_string))
                .collect();
            let shown = names.join(",");
            let now = Instant::now();
            // The process that connected, held since it connected (SO_PEERPIDFD, Linux 6.5+);
            // before that, the pid it connected with, checked against its start time read now
            // (see Attached::new).
            let attached = match connection.as_ref().map(|c| PidFd::of_peer(c.as_fd())) {
                Some(Ok(Some(pidfd))) => Attached::with_pidfd(pid, pidfd, names, now),
                Some(Err(_)) => None,
                _ => process::start_time(pid)
                    .and_then(|start_time| Attached::new(pid, start_time, names, now)),
            };
            match attached {
                Some(attached) => {
                    self.attached.add(attached);
                    tracing::info!(pid, uid = peer.uid, sockets = %shown, "worker attached");
                }
                None => {
                    return refuse(
                        ErrorCode::Internal,
                        "the attaching process has exited".to_string(),
                    )
                }
            }
        }
        Reply {
            response: Response::ok(serde_json::json!({ "sockets": sockets })),
            fds,
        }
    }

    fn scale_request(
        &mut self,
        workers: Option<usize>,
        delta: Option<i64>,
        min: Option<usize>,
        max: Option<usize>,
    ) -> Response {
        let current = self.pool.desired();
        match (workers, delta, min, max) {
            (None, None, Some(min), Some(max)) => {
                if min == 0 || min > max || max > MAX_WORKERS {
                    return Response::error(
                        ErrorCode::InvalidArgument,
                        format!("bounds {min}..{max}: need 1 <= min <= max <= {MAX_WORKERS}"),
                    );
                }
                if self.pool.is_stopping() {
                    return Response::error(ErrorCode::Stopping, "herd is stopping");
                }
                self.set_autoscale(Some((min, max)));
                return Response::ok(serde_json::json!({
                    "previous": current,
                    "workers": current,
                    "min": min,
                    "max": max,
                }));
            }
            (_, _, None, None) => {}
            _ => {
                return Response::error(
                    ErrorCode::InvalidArgument,
                    "give \"workers\", \"delta\", or both \"min\" and \"max\"",
                )
            }
        }
        let target = scale::target(current, workers, delta);
        if target.is_ok() && workers.is_some() && self.autoscaler.take().is_some() {
            tracing::info!("autoscaling off: a fixed number of workers was asked for");
        }
        match target {
            Err(why) => Response::error(ErrorCode::InvalidArgument, why),
            Ok(target) => match self.scale(target, "herd scale") {
                Ok(previous) => Response::ok(serde_json::json!({
                    "previous": previous,
                    "workers": target,
                })),
                Err(why) => Response::error(ErrorCode::Stopping, why),
            },
        }
    }

    fn apply(&mut self, actions: Vec<Action>, first_generation: bool) {
        let mut queue: VecDeque<Action> = actions.into();
        while let Some(action) = queue.pop_front() {
            match action {
                // A stop decided while this batch ran (the first generation failed) cancels
                // the spawns still in it.
                Action::Spawn { .. } if self.pool.is_stopping() => {}
                Action::Spawn { slot, generation } => {
                    queue.extend(self.spawn(slot, generation, first_generation));
                }
                Action::Signal {
                    pid,
                    signal,
                    group,
                    reason,
                } => {
                    // Signals only ever go to the pool's own workers.
                    let slot = self.pool.worker(pid).map_or(0, |w| w.slot);
                    if reason == Reason::ScaleDown && balance::per_slot(&self.listeners) {
                        let grace = self.pool.config().grace;
                        self.drains.hold(pid, slot, signal, group, grace);
                        continue;
                    }
                    match reason {
                        Reason::GraceExpired | Reason::NotReady | Reason::Watchdog => {
                            tracing::warn!(slot, pid, "killing worker: {}", reason.describe());
                        }
                        _ => tracing::debug!(slot, pid, "sending {signal}: {}", reason.describe()),
                    }
                    // A stop signal is followed by SIGCONT; `herd signal` sends only what
                    // was asked.
                    let sent = match reason {
                        Reason::Requested => balance::deliver(pid, signal, group),
                        _ => balance::deliver_stop(pid, signal, group),
                    };
                    if let Err(e) = sent {
                        tracing::warn!(slot, pid, "cannot send {signal}: {e}");
                    }
                }
                Action::UpgradeEnded(result) => {
                    let outcome = if result.is_ok() { "ok" } else { "failed" };
                    metrics::bump(&self.counters.upgrades, outcome);
                    let response = match &result {
                        Ok(generation) => {
                            tracing::info!(
                                generation,
                                "rolling upgrade to generation {generation} finished"
                            );
                            Response::ok(serde_json::json!({ "generation": generation }))
                        }
                        // A stop abandons the upgrade: nobody keeps serving.
                        Err(_) if self.pool.is_stopping() => {
                            tracing::info!("rolling upgrade abandoned: herd is stopping");
                            Response::error(
                                ErrorCode::Stopping,
                                "herd is stopping: the upgrade was abandoned and every worker \
                                 stops",
                            )
                        }
                        Err(why) => {
                            tracing::error!(
                                "rolling upgrade aborted; the old workers keep serving: {why}"
                            );
                            Response::error(ErrorCode::UpgradeFailed, why.clone())
                        }
                    };
                    for waiter in self.upgrade_waiters.drain(..) {
                        let _ = waiter.send(response.clone().into());
                    }
                    let status = match &result {
                        Ok(g) => format!("generation {g}, {} workers", self.pool.desired()),
                        Err(_) => "upgrade aborted; the old workers serve".to_string(),
                    };
                    if self.service.ready_sent() {
                        self.service.ready(&status);
                    } else {
                        self.service.status(&status);
                    }
                }
            }
        }
    }

    fn spawn(&mut self, slot: usize, generation: u64, first_generation: bool) -> Vec<Action> {
        let now = Instant::now();
        let bound = self
            .listeners
            .iter_mut()
            .try_for_each(|l| l.prepare_slot(slot));
        let fds: Option<Vec<BorrowedFd<'_>>> =
            self.listeners.iter().map(|l| l.fd_for_slot(slot)).collect();
        let result = match (bound, fds) {
            (Ok(()), Some(fds)) => self
                .command
                .spawn(slot, generation, &fds, self.stdin.as_fd()),
            (Err(e), _) => Err(crate::command::StartError {
                cannot_execute: false,
                message: format!("{e:#}"),
            }),
            (Ok(()), None) => Err(crate::command::StartError {
                cannot_execute: false,
                message: "the sockets are closed".to_string(),
            }),
        };
        match result {
            Ok(pid) => {
                tracing::info!(slot, pid, generation, "worker started");
                if !self.pool.spawned(slot, generation, pid, now) {
                    // Unreachable by construction; never leave a process unsupervised.
                    tracing::error!(
                        slot,
                        pid,
                        "worker started in a slot that was not free; killing it"
                    );
                    let _ = process::signal_group(pid, Signal::KILL);
                    self.leftovers.abandon(pid, slot, now);
                }
                Vec::new()
            }
            Err(e) if first_generation && e.cannot_execute => {
                let (_, mut actions) = self.pool.spawn_failed(slot, &e.message, now);
                if self.failure.is_none() {
                    self.failure = Some(anyhow!(e.message));
                    actions.extend(self.pool.stop(false, None, now));
                }
                actions
            }
            Err(e) => {
                let (delay, actions) = self.pool.spawn_failed(slot, &e.message, now);
                tracing::error!(
                    slot,
                    retry_in = %humantime::format_duration(delay),
                    "cannot start worker: {}",
                    e.message
                );
                actions
            }
        }
    }

    /// Collects exited children. Workers are looked at one by one, without reaping them: one
    /// whose process group still has processes stays a zombie, holding the group's id, until
    /// they are gone (see [`leftovers`]); the groups of all the workers found exited are looked
    /// at in one pass. Other children (re-exec checks, in herd's own process group) are reaped.
    ///
    /// Finding the exited workers costs one `waitid(WNOWAIT)` per worker per wake-up (SIGCHLDs
    /// that arrive together wake herd once): `waitid(P_ALL)` cannot skip the zombies herd
    /// holds on purpose.
    fn reap(&mut self) {
        let pids: Vec<u32> = self.pool.workers().iter().map(|w| w.pid).collect();
        let mut exits = Vec::new();
        for pid in pids {
            // (status, whether herd still holds it as an unreaped child)
            let (status, held) = match process::peek_exit(pid) {
                Ok(Some(status)) => (status, true),
                Ok(None) => continue,
                Err(e) if e.raw_os_error() == Some(libc::ECHILD) => {
                    tracing::error!(pid, "worker {pid} is no longer herd's child; forgetting it");
                    (ExitStatus::from_raw(0), false)
                }
                Err(e) => {
                    tracing::error!(pid, "cannot wait for worker {pid}: {e}");
                    continue;
                }
            };
            let Some((slot, state)) = self.pool.worker(pid).map(|w| (w.slot, w.state)) else {
                continue;
            };
            self.worker_exited(pid, status);
            // One that is not held: its pid, and so its group's id, may already name another
            // process: hands off.
            if held {
                exits.push((pid, slot, Some(state)));
            }
        }
        // Re-exec check children lead their own groups: held unreaped, like workers, while
        // their groups have members.
        for pid in self.reexec_children.pids() {
            match process::peek_exit(pid) {
                Ok(Some(status)) => {
                    self.reexec_children.exited(pid, status);
                    self.leftovers.check_exited(pid, Instant::now());
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(pid, "cannot wait for the re-exec check {pid}: {e}");
                    self.reexec_children.lost(pid);
                }
            }
        }
        let (stop_signal, grace) = (self.pool.config().stop_signal, self.pool.config().grace);
        self.leftovers.exited(
            &mut leftovers::System::default(),
            &exits,
            stop_signal,
            grace,
            Instant::now(),
        );
        loop {
            match process::reap_own_group() {
                Ok(Some((pid, _))) => {
                    tracing::debug!(pid, "reaped a process that was not a worker");
                }
                Ok(None) => return,
                Err(e) => {
                    tracing::error!("waitpid failed: {e}");
                    return;
                }
            }
        }
    }

    /// Worker `pid` exited with `status`: the pool learns it, the log and the metrics say it.
    fn worker_exited(&mut self, pid: u32, status: ExitStatus) {
        self.announced_ready.remove(&pid);
        // A worker that shut the shared socket down on its way out: repair it before the
        // others fail on it, and before this exit is judged (it may be one of theirs).
        self.check_sockets();
        let Some((exit, actions)) = self.pool.exited(pid, status, Instant::now()) else {
            return;
        };
        let clean = status.success() || exit.stopped_for.is_some();
        self.relisten
            .worker_exited(exit.slot, pid, clean, Instant::now());
        let cause = if exit.stopped_for.is_some() {
            "stopped"
        } else if status.code().is_some() {
            "exit"
        } else {
            "signal"
        };
        metrics::bump(&self.counters.exits, cause);
        if exit.restart_in.is_some() {
            self.counters.restarts.inc();
        }
        let mut how = describe_exit(status);
        if let Some(hint) = self.limit_hint(exit.slot, status, exit.stopped_for.is_some()) {
            how.push_str(&hint);
        }
        if self.takeover.is_some()
            && !exit.was_available
            && exit.stopped_for != Some(Reason::Shutdown)
        {
            let when = if exit.was_ready {
                "within --min-ready of becoming ready"
            } else {
                "before it was ready"
            };
            let why = format!("worker {} (pid {pid}) exited {when}: {how}", exit.slot);
            self.takeover_failure.get_or_insert(why);
        }
        let uptime = format!("{:.3}s", exit.uptime.as_secs_f64());
        let (slot, generation) = (exit.slot, exit.generation);
        match (exit.stopped_for, exit.restart_in) {
            (Some(reason), None) => tracing::info!(
                slot,
                pid,
                generation,
                %uptime,
                "worker exited: {how} (stopped: {})",
                reason.describe()
            ),
            (None, None) => {
                tracing::warn!(slot, pid, generation, %uptime, "worker exited: {how}")
            }
            (_, Some(delay)) if delay.is_zero() => tracing::warn!(
                slot,
                pid,
                generation,
                %uptime,
                "worker exited: {how}; restarting it"
            ),
            (_, Some(delay)) => tracing::warn!(
                slot,
                pid,
                generation,
                %uptime,
                failures = self.pool.failures(slot),
                "worker exited: {how}; restarting it in {} (crash-loop backoff)",
                humantime::format_duration(delay)
            ),
        }
        self.apply(actions, false);
    }

    /// `; likely cause: --rlimit cpu=1 (...)` when a worker that herd did not stop was killed
    /// by a signal that a resource limit set by option sends: once per slot while it keeps
    /// failing that way, again after an exit of another kind.
    fn limit_hint(&mut self, slot: usize, status: ExitStatus, stopped: bool) -> Option<String> {
        let suspects = match status.signal() {
            Some(signal) if !stopped => self.command.options().limits_behind(signal),
            _ => Vec::new(),
        };
        if suspects.is_empty() {
            self.limit_hinted.remove(&slot);
            return None;
        }
        if !self.limit_hinted.insert(slot) {
            return None;
        }
        Some(format!(
            "; likely cause: {} (a worker past its resource limit gets this signal)",
            suspects.join(" or ")
        ))
    }

    /// Makes the listeners that a worker shut down listen again; counts them.
    fn check_sockets(&mut self) {
        let now = Instant::now();
        let holders: Vec<(usize, u32)> = self
            .pool
            .workers()
            .iter()
            .map(|w| (w.slot, w.pid))
            .collect();
        let restored = self.relisten.check(&self.listeners, &holders, now);
        if restored > 0 {
            self.counters.sockets_restored.inc_by(restored);
            self.pool.excuse_exits_until(now + relisten::EXCUSE);
        }
    }

    fn read_notifications(&mut self, socket: &UnixDatagram) {
        let mut buf = [0u8; notify::MAX_DATAGRAM];
        // Bounded per wake-up, so a flood cannot starve the rest of the loop.
        for _ in 0..256 {
            let received = socket.try_io(Interest::READABLE, || {
                notify::recv(socket.as_fd(), &mut buf)
            });
            let datagram = match received {
                Ok(d) => d,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::warn!("notify socket: {e}");
                    return;
                }
            };
            let now = Instant::now();
            let dropped = |why: String, limit: &mut RateLimit| {
                let (log, suppressed) = limit.allow(now);
                if suppressed > 0 {
                    tracing::warn!("notify socket: {suppressed} more messages were dropped");
                }
                if log {
                    tracing::warn!("notify socket: dropped a message: {why}");
                }
            };
            if datagram.truncated {
                dropped(
                    format!("longer than {} bytes", notify::MAX_DATAGRAM),
                    &mut self.notify_log,
                );
                continue;
            }
            let Some(sender) = datagram.sender_pid else {
                dropped(
                    "the sender's pid is unknown".to_string(),
                    &mut self.notify_log,
                );
                continue;
            };
            let Some(pid) = notify::attribute(sender, |p| self.pool.worker(p).is_some()) else {
                dropped(
                    format!("pid {sender} is not a worker nor a descendant of one"),
                    &mut self.notify_log,
                );
                continue;
            };
            let Some(message) = NotifyMessage::parse(&buf[..datagram.len]) else {
                dropped(
                    format!("malformed message from pid {sender}"),
                    &mut self.notify_log,
                );
                continue;
            };
            if message.stopping {
                tracing::debug!(pid, "worker says it is stopping");
            }
            self.pool.notified(pid, &message, now);
        }
    }

    /// Whether every wanted slot has a ready worker.
    fn all_ready(&self) -> bool {
        self.pool.all_ready()
    }

    /// Logs each worker once, when it becomes ready.
    fn announce_ready(&mut self) {
        for w in self.pool.workers() {
            if w.state == WorkerState::Ready && self.announced_ready.insert(w.pid) {
                tracing::info!(
                    slot = w.slot,
                    pid = w.pid,
                    generation = w.generation,
                    "worker ready"
                );
            }
        }
    }
}

/// How long `herd upgrade` (or SIGHUP) may take unless told otherwise.
pub const DEFAULT_UPGRADE_TIMEOUT: Duration = Duration::from_secs(600);

/// `exit code 3`, `killed by SIGKILL`, `killed by SIGSEGV (core dumped)`.
pub fn describe_exit(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exit code {code}");
    }
    match status.signal() {
        Some(n) => {
            let name =
                Signal::from_number(n).map_or_else(|| format!("signal {n}"), |s| s.to_string());
            let core = if status.core_dumped() {
                " (core dumped)"
            } else {
                ""
            };
            format!("killed by {name}{core}")
        }
        None => format!("{status}"),
    }
}

fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86400 * 365)
}

/// What the old herd said to the stop that ends a takeover.
#[derive(Debug, PartialEq, Eq)]
enum StopAnswer {
    /// It accepted the takeover and has stopped, leaving its socket files in place.
    Stopped,
    /// It predates takeovers (`invalid_argument`): it gets a plain stop, and removes its
    /// socket files as it exits.
    Unsupported,
    /// It refused (or answered nothing this herd understands), why.
    Refused(String),
    /// It was gone when the takeover completed (stopped or killed meanwhile), why this herd
    /// thinks so: this herd serves on, and takes what the old herd left.
    Gone(String),
}

/// Reads the old herd's answer line as a control [`Response`]: its error code decides, never
/// the text of a message.
fn judge_stop_answer(line: &[u8]) -> StopAnswer {
    let text = String::from_utf8_lossy(line);
    match serde_json::from_str::<Response>(text.trim()) {
        Ok(Response { ok: true, .. }) => StopAnswer::Stopped,
        Ok(Response {
            error: Some(error), ..
        }) if error.code == ErrorCode::InvalidArgument => StopAnswer::Unsupported,
        Ok(Response {
            error: Some(error), ..
        }) => {
            let code = serde_json::to_value(error.code)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            StopAnswer::Refused(format!("{} ({code})", crate::text::escape(&error.message)))
        }
        Ok(_) => StopAnswer::Refused("it refused without saying why".to_string()),
        Err(_) if text.trim().is_empty() => {
            StopAnswer::Refused("it closed the connection without an answer".to_string())
        }
        Err(_) => StopAnswer::Refused(format!(
            "unexpected answer: {}",
            crate::text::escape(text.trim())
        )),
    }
}

/// Ends a takeover whose workers are all available: connect to the old herd (before its control
/// socket's path is taken), move this herd's control socket to its place (in place of the old
/// one's there, and only if it still is the old one's: see [`SocketFile::replace`]), and ask the
/// old herd to stop, leaving its socket files in place. Its answer arrives on `answered`: the
/// listeners' socket files become this herd's only once it accepted
/// ([`Supervisor::takeover_answered`]).
fn complete_takeover(
    takeover: Takeover,
    control_file: &mut SocketFile,
    answered: mpsc::Sender<StopAnswer>,
) -> Result<(), String> {
    let Takeover { old, old_socket } = takeover;
    let connection = std::os::unix::net::UnixStream::connect(&old);
    if let Err(e) = &connection {
        if let Some(why) = gone(e) {
            take_vacant_control(&old, old_socket, control_file);
            tokio::spawn(async move {
                let _ = answered.send(StopAnswer::Gone(why)).await;
            });
            return Ok(());
        }
    }
    let connection = connection
        .and_then(|s| s.set_nonblocking(true).map(|()| s))
        .and_then(tokio::net::UnixStream::from_std);
    if let Err(e) = control_file.replace(&old, old_socket) {
        return Err(format!(
            "cannot move the control socket to {}: {e}",
            old.display()
        ));
    }
    tracing::info!(old = %old.display(), "takeover complete: every worker is ready; asking the old herd to stop");
    tokio::spawn(async move {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        let mut stream = match connection {
            Ok(stream) => tokio::io::BufReader::new(stream),
            Err(e) => {
                let why = format!("cannot ask it to stop: {e}");
                let _ = answered.send(StopAnswer::Refused(why)).await;
                return;
            }
        };
        async fn ask(
            stream: &mut tokio::io::BufReader<tokio::net::UnixStream>,
            request: &[u8],
        ) -> std::io::Result<StopAnswer> {
            let mut answer = Vec::new();
            stream.get_mut().write_all(request).await?;
            stream.read_until(b'\n', &mut answer).await?;
            Ok(judge_stop_answer(&answer))
        }
        let first = ask(
            &mut stream,
            b"{\"version\":1,\"command\":\"stop\",\"takeover\":true}\n",
        )
        .await;
        let first = first.unwrap_or_else(|e| StopAnswer::Refused(format!("no answer: {e}")));
        let unsupported = first == StopAnswer::Unsupported;
        let _ = answered.send(first).await;
        if unsupported {
            let plain = ask(&mut stream, b"{\"version\":1,\"command\":\"stop\"}\n").await;
            match plain {
                Ok(StopAnswer::Stopped) => {
                    tracing::info!(old = %old.display(), "the old herd has stopped")
                }
                Ok(StopAnswer::Refused(why) | StopAnswer::Gone(why)) => {
                    tracing::warn!(old = %old.display(), "the old herd did not stop: {why}")
                }
                Ok(StopAnswer::Unsupported) => {
                    tracing::warn!(old = %old.display(), "the old herd refused to stop")
                }
                Err(e) => {
                    tracing::warn!(old = %old.display(), "cannot ask the old herd to stop: {e}")
                }
            }
        }
    });
    Ok(())
}

/// Why a failed connection to the old herd's control socket means the old herd is gone:
/// nothing at the path (it removed its socket as it stopped) or nobody listening (killed).
fn gone(e: &std::io::Error) -> Option<String> {
    match e.kind() {
        std::io::ErrorKind::NotFound => Some("its control socket is gone".to_string()),
        std::io::ErrorKind::ConnectionRefused => {
            Some("nobody listens on its control socket".to_string())
        }
        _ => None,
    }
}

/// What an aborted takeover leaves serving, said truthfully: the old herd, if it still answers
/// at `old`.
fn after_abort(old: Option<&std::path::Path>) -> &'static str {
    match old.map(std::os::unix::net::UnixStream::connect) {
        Some(Ok(_)) => "the old herd keeps serving",
        _ => "and the old herd is gone too: nothing serves",
    }
}

/// The old herd is gone: its control path becomes this herd's if it is free, or still holds
/// the old herd's own socket file (left by a herd that was killed). Anything else there is
/// left alone, and this herd's control socket stays where it is (logged).
fn take_vacant_control(
    old: &std::path::Path,
    old_socket: (u64, u64),
    control_file: &mut SocketFile,
) {
    use std::os::unix::fs::MetadataExt;
    let there = std::fs::symlink_metadata(old)
        .ok()
        .map(|m| (m.dev(), m.ino()));
    let moved = match there {
        None => control_file.move_to_vacant(old),
        Some(identity) if identity == old_socket => control_file.replace(old, old_socket),
        Some(_) => Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "another file is there now",
        )),
    };
    match moved {
        Ok(()) => {
            tracing::info!(path = %old.display(), "control socket moved to the old herd's path")
        }
        Err(e) => tracing::warn!(
            path = %control_file.parts().0.display(),
            "the control socket stays at its takeover path: cannot take {}: {e}",
            old.display()
        ),
    }
}

impl Supervisor {
    /// The old herd answered the stop that ends a takeover: once it accepted, the socket files
    /// of the sockets taken over are this herd's (it left them in place). A herd that predates
    /// takeovers removes them as it exits, and a socket file cannot be given back to a socket
    /// that is still listening: say which paths clients can no longer reach.
    fn takeover_answered(&mut self, answer: StopAnswer) {
        match answer {
            StopAnswer::Stopped => {
                tracing::info!("the old herd has stopped");
                for listener in &mut self.listeners {
                    listener.adopt_file();
                }
            }
            StopAnswer::Unsupported => {
                let lost: Vec<String> = self
                    .listeners
                    .iter_mut()
                    .filter_map(Listener::forget_takeover_file)
                    .map(|p| p.display().to_string())
                    .collect();
                if lost.is_empty() {
                    tracing::info!("the old herd predates takeovers: asking it for a plain stop");
                } else {
                    tracing::warn!(
                        "the old herd predates takeovers: asking it for a plain stop, after which \
                         it removes the socket files {}; the sockets keep serving the clients \
                         that are connected and those that reach them otherwise, but nobody \
                         can connect by those paths until this herd is restarted on them",
                        crate::text::escape(&lost.join(", "))
                    );
                }
            }
            StopAnswer::Refused(why) => {
                for listener in &mut self.listeners {
                    listener.forget_takeover_file();
                }
                tracing::warn!("the old herd did not accept the takeover's stop: {why}");
            }
            StopAnswer::Gone(why) => {
                tracing::warn!(
                    "the old herd stopped while this herd was taking over ({why}); this herd \
                     serves on with the sockets it took"
                );
                // A herd that was killed left its socket files: this herd's now. One that
                // stopped removed them, and a listening socket cannot be given a file again.
                let lost: Vec<String> = self
                    .listeners
                    .iter_mut()
                    .filter_map(Listener::adopt_file)
                    .map(|p| p.display().to_string())
                    .collect();
                if !lost.is_empty() {
                    tracing::warn!(
                        "the old herd removed the socket files {} as it stopped; the sockets \
                         keep serving the clients that are connected and those that reach them \
                         otherwise, but nobody can connect by those paths until this herd is \
                         restarted on them",
                        crate::text::escape(&lost.join(", "))
                    );
                }
            }
        }
    }
}

impl Supervisor {
    /// Serves `--metrics` on `listener` once running.
    pub fn set_metrics(&mut self, listener: std::net::TcpListener) {
        self.metrics_listener = Some(listener);
    }

    /// The values `--metrics` reports.
    fn metrics_snapshot(&self) -> metrics::Snapshot {
        let mut ready: HashMap<u64, i64> = HashMap::new();
        for w in self
            .pool
            .workers()
            .iter()
            .filter(|w| w.state == WorkerState::Ready)
        {
            *ready.entry(w.generation).or_default() += 1;
        }
        let per_second = herd_sys::process::ticks_per_second() as f64;
        // One read of /proc for herd's own figures; its resident memory also feeds the older
        // herd_supervisor_resident_memory metric.
        let process = process_stats::ProcessStats::read();
        let rss = process.as_ref().map_or(0, |p| p.resident_bytes as i64);
        metrics::Snapshot {
            desired: self.pool.desired() as i64,
            running: self.pool.workers().len() as i64,
            ready: ready.into_iter().collect(),
            attached: self.attached.as_slice().len() as i64,
            queues: self
                .listeners
                .iter()
                .filter_map(|l| {
                    let (waiting, max) = l.accept_queue()?;
                    Some((l.name.clone(), i64::from(waiting), i64::from(max)))
                })
                .collect(),
            cpu: self
                .pool
                .workers()
                .iter()
                .filter_map(|w| {
                    Some((
                        w.slot,
                        herd_sys::process::cpu_ticks(w.pid)? as f64 / per_second,
                    ))
                })
                .collect(),
            rss,
            process,
        }
    }

    /// Turns autoscaling on between `bounds`, or off.
    pub fn set_autoscale(&mut self, bounds: Option<(usize, usize)>) {
        self.autoscaler = bounds.map(|(min, max)| {
            tracing::info!(min, max, "autoscaling between {min} and {max} workers");
            Autoscaler::new(min, max)
        });
    }

    /// Samples the load and applies the autoscaler's decision, if any.
    /// Samples the load and applies the autoscaler's decision. An `early` sample, taken because
    /// the queue grew between two regular ones, reuses the last busyness: CPU ticks over a few
    /// milliseconds would say nothing.
    fn autoscale_tick(&mut self, early: bool) {
        let now = Instant::now();
        if !early {
            self.last_busy = self.busyness(now);
        }
        let sample = Sample {
            queued: self.queued(),
            busy: self.last_busy,
            settled: self.all_ready(),
        };
        let current = self.pool.desired();
        let Some(decision) = self
            .autoscaler
            .as_mut()
            .and_then(|a| a.sample(current, sample, now))
        else {
            return;
        };
        tracing::info!(
            from = current,
            to = decision.workers,
            reason = %decision.reason,
            "autoscale: {current} -> {} workers: {}",
            decision.workers,
            decision.reason
        );
        let direction = if decision.workers > current {
            "up"
        } else {
            "down"
        };
        metrics::bump(&self.counters.autoscale, direction);
        if let Err(why) = self.scale(decision.workers, "autoscale") {
            tracing::warn!("autoscale: {why}");
        }
    }

    /// Connections waiting in the TCP accept queues.
    fn queued(&self) -> u32 {
        self.listeners
            .iter()
            .filter_map(Listener::accept_queue)
            .map(|(waiting, _)| waiting)
            .sum()
    }

    /// The workers' average CPU use since the last sample, 0.0 to 1.0.
    fn busyness(&mut self, now: Instant) -> f64 {
        let per_second = herd_sys::process::ticks_per_second() as f64;
        let mut seen = HashMap::new();
        let (mut total, mut count) = (0.0, 0);
        for w in self
            .pool
            .workers()
            .iter()
            .filter(|w| w.state == WorkerState::Ready)
        {
            let Some(ticks) = herd_sys::process::cpu_ticks(w.pid) else {
                continue;
            };
            if let Some(&(before, at)) = self.cpu_seen.get(&w.pid) {
                let seconds = now.saturating_duration_since(at).as_secs_f64();
                if seconds > 0.0 {
                    total += (ticks.saturating_sub(before) as f64 / per_second / seconds).min(1.0);
                    count += 1;
                }
            }
            seen.insert(w.pid, (ticks, now));
        }
        self.cpu_seen = seen;
        if count == 0 {
            0.0
        } else {
            total / count as f64
        }
    }

    /// Autoscaling's state, for `herd status`.
    pub fn autoscale_status(&self) -> Option<serde_json::Value> {
        let a = self.autoscaler.as_ref()?;
        let last = a.last.as_ref().map(|(at, d)| {
            serde_json::json!({
                "workers": d.workers,
                "reason": d.reason,
                "ago_ms": at.elapsed().as_millis() as u64,
            })
        });
        Some(serde_json::json!({ "min": a.min, "max": a.max, "last_decision": last }))
    }
}

/// The endpoints a re-exec hands over besides the listening sockets.
struct Endpoints<'a> {
    control: &'a OwnedFd,
    control_file: &'a SocketFile,
    notify: &'a NotifySocket,
    metrics: Option<&'a OwnedFd>,
}

impl Supervisor {
    /// Continues from the state a previous image of this process handed over. Autoscaling is
    /// restored too when the state records it; else it is left to the caller.
    pub fn resume(
        &mut self,
        state: reexec::State,
        attached: Vec<Option<OwnedFd>>,
        reply: Option<OwnedFd>,
    ) {
        let now = Instant::now();
        self.pool = Pool::import(self.pool.config().clone(), state.pool, now);
        self.started = now
            .checked_sub(Duration::from_millis(state.uptime_ms))
            .unwrap_or(now);
        for (saved, pidfd) in state.attached.into_iter().zip(attached) {
            self.attached.restore(Attached::restore(saved, pidfd, now));
        }
        self.announced_ready = self.pool.workers().iter().map(|w| w.pid).collect();
        self.service.set_ready_sent(state.service_ready);
        self.leftovers = leftovers::Leftovers::import(state.leftovers, now);
        if let Some(saved) = state.autoscale {
            self.autoscaler = saved.restore(now);
        }
        self.counters.restore(&state.counters);
        self.reexec_reply = reply;
        self.resumed = true;
    }

    /// The pool's state to hand to the new program, or why herd cannot re-execute now.
    fn reexec_export(&self) -> Result<pool::PoolState, (ErrorCode, String)> {
        // Stop signals held back while reuseport slots drain would not survive the exec.
        let busy = self.takeover.is_some() || self.failure.is_some() || !self.drains.is_empty();
        if let (false, Some(pool)) = (busy, self.pool.export(Instant::now())) {
            return Ok(pool);
        }
        let code = if self.pool.is_stopping() {
            ErrorCode::Stopping
        } else {
            ErrorCode::Busy
        };
        let why = "cannot re-execute while herd is stopping, upgrading, starting workers, draining a slot or taking over; try again".to_string();
        Err((code, why))
    }

    /// Replaces this process's program with the binary on disk (see [`reexec`]), which passed
    /// its [check](reexec_check). Returns only if that was not possible, after saying why.
    fn reexec(&mut self, endpoints: &Endpoints<'_>, client: reexec_check::Client) {
        let (reply, connection) = match client {
            Some((reply, connection)) => (Some(reply), connection),
            None => (None, None),
        };
        let refuse = |reply: Option<oneshot::Sender<Reply>>, code, why: String| {
            reexec_check::refuse(reply.map(|r| (r, None)), code, why)
        };
        let pool = match self.reexec_export() {
            Ok(pool) => pool,
            Err((code, why)) => return refuse(reply, code, why),
        };
        let mut keep: Vec<BorrowedFd<'_>> =
            vec![endpoints.control.as_fd(), endpoints.notify.socket.as_fd()];
        let mut listeners = Vec::new();
        for l in &self.listeners {
            let Some(fd) = l.fd() else {
                return refuse(reply, ErrorCode::Stopping, "herd is stopping".to_string());
            };
            keep.push(fd);
            let group = l.group().map(|g| {
                let rest: Vec<BorrowedFd<'_>> = g.sockets().skip(1).collect();
                keep.extend(&rest);
                reexec::SavedGroup {
                    address: g.address(),
                    options: g.options(),
                    fds: rest.iter().map(AsRawFd::as_raw_fd).collect(),
                }
            });
            listeners.push(reexec::SavedListener {
                name: l.name.clone(),
                kind: l.kind,
                address: l.address.clone(),
                fd: fd.as_raw_fd(),
                file: l.file().map(reexec::file_parts),
                group,
            });
        }
        keep.extend(connection.as_ref().map(AsFd::as_fd));
        keep.extend(endpoints.metrics.map(AsFd::as_fd));
        keep.extend(self.attached.as_slice().iter().filter_map(Attached::pidfd));
        let now = Instant::now();
        let state = reexec::State {
            uptime_ms: now.saturating_duration_since(self.started).as_millis() as u64,
            control: reexec::SavedSocket {
                fd: endpoints.control.as_raw_fd(),
                file: reexec::file_parts(endpoints.control_file),
            },
            notify: reexec::SavedSocket {
                fd: endpoints.notify.socket.as_raw_fd(),
                file: reexec::file_parts(endpoints.notify.file()),
            },
            listeners,
            pool,
            attached: self
                .attached
                .as_slice()
                .iter()
                .map(|a| a.save(now))
                .collect(),
            service_ready: self.service.ready_sent(),
            reply_fd: connection.as_ref().map(AsRawFd::as_raw_fd),
            autoscale: Some(reexec::SavedAutoscale::save(self.autoscaler.as_ref(), now)),
            counters: self.counters.save(),
            metrics_fd: endpoints.metrics.map(AsRawFd::as_raw_fd),
            leftovers: self.leftovers.export(now),
            nofile: crate::fdlimit::started_with(),
        };
        // The file that passed the check (a symlink switched since is not followed again).
        let file = self
            .reexec_file
            .take()
            .unwrap_or_else(|| reexec::resolve(&self.exe));
        tracing::info!(exe = %self.exe.display(), file = %file.display(), "re-executing herd");
        self.service.reloading("re-executing");
        // The queued log lines would die with this image.
        crate::logging::flush();
        let error = reexec::exec(&file, &state, &keep);
        if self.service.ready_sent() {
            self.service
                .ready("re-exec failed; the old program runs on");
        }
        refuse(reply, ErrorCode::Internal, format!("{error:#}"));
    }
}

/// Tells the client that asked for the re-exec that the new program runs.
fn answer_reexec(connection: OwnedFd) {
    let mut stream = std::os::unix::net::UnixStream::from(connection);
    let response = Response::ok(serde_json::json!({
        "pid": std::process::id(),
        "version": env!("CARGO_PKG_VERSION"),
    }));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let _ = std::io::Write::write_all(&mut stream, &response.to_line());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_old_herds_answer_is_judged_by_its_error_code() {
        let judge = |line: &str| judge_stop_answer(line.as_bytes());
        assert_eq!(
            judge("{\"version\":1,\"ok\":true,\"result\":{\"stopped\":true}}\n"),
            StopAnswer::Stopped
        );
        assert_eq!(
            judge("{\"version\":1,\"ok\":false,\"error\":{\"code\":\"invalid_argument\",\"message\":\"stop: unknown field `takeover`\"}}\n"),
            StopAnswer::Unsupported
        );
        // Another code whose message quotes "invalid_argument" is a refusal, not an old herd
        // (a byte search took it for one, and sent a plain stop).
        let quoted = judge(
            "{\"version\":1,\"ok\":false,\"error\":{\"code\":\"stopping\",\"message\":\"not \\\"invalid_argument\\\"\"}}\n",
        );
        assert!(
            matches!(&quoted, StopAnswer::Refused(why) if why.contains("(stopping)")),
            "{quoted:?}"
        );
        assert!(matches!(judge(""), StopAnswer::Refused(why) if why.contains("without an answer")));
        assert!(matches!(
            judge("garbage \"invalid_argument\""),
            StopAnswer::Refused(_)
        ));
        assert!(matches!(
            judge("{\"version\":1,\"ok\":false}"),
            StopAnswer::Refused(_)
        ));
    }
}
