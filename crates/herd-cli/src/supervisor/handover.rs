//! `herd reexec`: handing this process's state to the binary on disk, and resuming from it.

use std::os::unix::io::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Instant;

use crate::control::protocol::{ErrorCode, Response};
use crate::control::results::ReexecResult;
use crate::logging::LogEvent;
use crate::spec::{Listener, SocketFile};

use super::attached::Attached;
use super::effects::{Client, Effect};
use super::notify::NotifySocket;
use super::phase::Phase;
use super::pool::{self, Epoch, PoolState};
use super::waiters::{Check, ReexecRefused};
use super::{leftovers, reexec, reexec_check};
use super::{platform, Supervisor};

/// The endpoints a re-exec hands over besides the listening sockets.
pub(super) struct Endpoints<'a> {
    pub(super) control: &'a OwnedFd,
    pub(super) control_file: &'a SocketFile,
    /// The directory the control socket was bound in, if known.
    pub(super) control_dir: Option<super::socket_files::DirIdentity>,
    pub(super) notify: &'a NotifySocket,
    /// What reads the notify socket.
    pub(super) notify_receiver: &'a herd_sys::notify::Receiver,
    pub(super) metrics: Option<&'a OwnedFd>,
    pub(super) health: Option<&'a OwnedFd>,
}

impl Supervisor {
    /// Continues from the cores' state a previous image of this process handed over, with
    /// the attached processes' pidfds and the connection of the client that asked. Autoscaling
    /// is restored too when the state records it; else it is left to the caller. Every field
    /// is named, so that one added to the state later does not compile until it is restored.
    pub fn resume(
        &mut self,
        cores: reexec::Cores,
        attached: Vec<Option<OwnedFd>>,
        reply: Option<OwnedFd>,
    ) {
        let reexec::Cores {
            uptime_ms,
            pool,
            attached: saved_attached,
            service_ready,
            autoscale,
            leftovers,
            counters,
            warming,
            warming_lowered,
            recycling,
            warming_trickling,
        } = cores;
        let epoch = Epoch::at(Instant::now());
        self.pool = pool::import(self.pool.config().clone(), pool, epoch);
        self.started = epoch.past(uptime_ms);
        for (saved, pidfd) in saved_attached.into_iter().zip(attached) {
            self.attached
                .restore(Attached::restore(saved, pidfd, epoch));
        }
        self.phase = Phase::resumed(service_ready);
        self.platform.leftovers = leftovers::Leftovers::import(leftovers, epoch);
        self.platform.orphans.after_reexec();
        if let Some(saved) = autoscale {
            self.autoscaler = saved.restore(epoch);
        }
        self.effects.restore_counters(&counters);
        // At the pool's epoch: a request names its worker by pid and start.
        self.recycling.restore(recycling, epoch);
        self.platform.reexec_reply = reply;
        // Timed anew by `set_warm_up`.
        let handed = super::warm_up::handed(warming, warming_lowered);
        self.warming.handed_over(handed, warming_trickling);
    }

    /// Tells the client whose `herd reexec` made this image, the service manager and the log
    /// that herd runs on from the new binary.
    pub(super) fn announce_reexec(&mut self) {
        if let Some(connection) = self.platform.reexec_reply.take() {
            let response = Response::ok(ReexecResult {
                pid: std::process::id(),
                version: env!("CARGO_PKG_VERSION").to_string(),
            });
            let answer = platform::Effect::AnswerOn {
                connection,
                response,
            };
            self.effects.execute([Effect::Platform(answer)]);
        }
        if let Some(report) = self.phase.resumed_report() {
            self.effects.execute([Effect::Report(report)]);
        }
        let file = std::env::current_exe().unwrap_or_default();
        tracing::info!(
            event = LogEvent::Reexecuted.as_str(),
            exe = %self.platform.exe.display(),
            file = %file.display(),
            "re-executed: herd {} runs on from {}",
            env!("CARGO_PKG_VERSION"),
            file.display()
        );
    }

    /// The pool's state at `epoch` to hand to the new program, or why herd cannot re-execute
    /// now.
    pub(super) fn reexec_export(&self, epoch: Epoch) -> Result<PoolState, (ErrorCode, String)> {
        let pool = self.pool.export(epoch);
        if self.probes.draining() {
            let why = "cannot re-execute while herd is draining before it stops (--drain-delay)"
                .to_string();
            return Err((ErrorCode::Stopping, why));
        }
        // Draining reuseport slots is pool state now, handed over with the pool.
        if let Some((code, why)) = self.phase.reexec_refusal(self.pool_view(), pool.is_some()) {
            return Err((code, why.to_string()));
        }
        // The file's contents go to the new image, and its reader is away.
        if let Some(reading) = &self.reading {
            return Err((ErrorCode::Busy, reading.busy()));
        }
        // A fork server's reply to a start no longer wanted (an aborted upgrade's) would go to
        // a socket the exec closes, and the worker it names would be no one's: it is killed
        // once its reply is read, within the reply's deadline.
        if self.effects.awaits_fork_replies() {
            let why = "a fork server has not answered a start yet (it is killed within 5s if it \
                       does not); try again"
                .to_string();
            return Err((ErrorCode::Busy, why));
        }
        pool.ok_or((
            ErrorCode::Busy,
            "the pool cannot be handed over".to_string(),
        ))
    }

    /// Replaces this process's program with the binary on disk (see [`reexec`]), which passed
    /// its [check](reexec_check). Returns only if that was not possible, after saying why.
    pub(super) fn reexec(&mut self, endpoints: &Endpoints<'_>, passed: reexec_check::Passed) {
        let Check {
            mut client,
            file,
            version: reads,
            ..
        } = passed;
        let connection = client.as_mut().and_then(Client::take_connection);
        let refuse = |client, code, why: String| {
            [Effect::RefuseReexec(ReexecRefused::new(client, code, why))]
        };
        // Before the epoch: this waits up to a second, which the deadlines exported must not
        // lose.
        if let Some(why) = releases_under_way(endpoints.notify_receiver) {
            return self.effects.execute(refuse(client, ErrorCode::Busy, why));
        }
        // The one moment every time in the state is relative to.
        let epoch = Epoch::at(Instant::now());
        let pool = match self.reexec_export(epoch) {
            Ok(pool) => pool,
            Err((code, why)) => return self.effects.execute(refuse(client, code, why)),
        };
        let Some(listeners) = saved_listeners(self.effects.listeners()) else {
            let why = "herd is stopping".to_string();
            return self
                .effects
                .execute(refuse(client, ErrorCode::Stopping, why));
        };
        let handed = Handed {
            endpoints,
            listeners,
            pool,
            reply_fd: connection.as_ref().map(AsRawFd::as_raw_fd),
        };
        let mut state = self.state(handed, epoch);
        if state.version > reads {
            let why = "a worker began draining its reuseport slot while the new binary was \
                       checked, and that binary reads only older re-exec state; try again once \
                       it has stopped";
            return self
                .effects
                .execute(refuse(client, ErrorCode::Busy, why.to_string()));
        }
        self.platform.orphans.before_reexec();
        tracing::info!(event = LogEvent::ReexecStarted.as_str(), exe = %self.platform.exe.display(), file = %file.display(), "re-executing herd");
        if let Some(report) = self.phase.reexecuting() {
            self.effects.execute([Effect::Report(report)]);
        }
        // The queued log lines would die with this image.
        crate::logging::flush();
        let mut keep: Vec<BorrowedFd<'_>> =
            vec![endpoints.control.as_fd(), endpoints.notify.socket.as_fd()];
        for l in self.effects.listeners() {
            keep.extend(l.fd());
            keep.extend(l.group().into_iter().flat_map(|g| g.sockets().skip(1)));
        }
        keep.extend(connection.as_ref().map(AsFd::as_fd));
        keep.extend(endpoints.metrics.map(AsFd::as_fd));
        keep.extend(endpoints.health.map(AsFd::as_fd));
        keep.extend(
            endpoints
                .notify
                .einhorn
                .as_ref()
                .map(|e| e.listener.as_fd()),
        );
        keep.extend(self.attached.as_slice().iter().filter_map(Attached::pidfd));
        // The readers stop before they read more: what workers write now waits in the pipes.
        let output = crate::output::current();
        let outputs = output.map_or_else(Vec::new, |o| o.hand_over(crate::logging::FLUSH_TIMEOUT));
        state.outputs = outputs.iter().map(reexec::SavedOutput::of).collect();
        // Every line the readers read: what a follower was not sent yet, it asks of the next
        // image.
        state.lines = output.map(|o| o.save_lines());
        keep.extend(outputs.iter().map(|p| p.file.as_fd()));
        // What was logged since the flush above (the readers' last reports as they stopped).
        crate::logging::flush();
        let error = reexec::exec(&file, &state, &keep);
        if let Some(output) = output {
            output.resume(outputs);
        }
        if let Some(report) = self.phase.reexec_failed() {
            self.effects.execute([Effect::Report(report)]);
        }
        let why = format!("{error:#}");
        self.effects
            .execute(refuse(client, ErrorCode::Internal, why));
    }
}

/// Why herd cannot re-execute while files others passed it are being released, after waiting
/// up to a second for them: notify datagrams read and not yet off the socket's queue, which
/// the next image would read again, or a closing thread with a job queued, under way or left
/// to a release that waits for good (a hung filesystem's), with which the exec would wait (the
/// kernel ends every other thread first). The closing threads are looked at last, under the
/// lock their watcher gives up under: one given up on while the datagrams settled is seen.
fn releases_under_way(notify: &herd_sys::notify::Receiver) -> Option<String> {
    let deadline = Instant::now() + std::time::Duration::from_secs(1);
    if !notify.settle(deadline.saturating_duration_since(Instant::now())) {
        return Some(
            "notify datagrams herd read are not all off the socket's queue yet; try again"
                .to_string(),
        );
    }
    let busy = herd_sys::fd::wait_closing_idle(deadline.saturating_duration_since(Instant::now()));
    match busy {
        Ok(()) => None,
        Err(busy) if busy.left_waiting > 0 => Some(format!(
            "{} of herd's closing threads wait for a file another process passed herd to be \
             released (a hung filesystem, such as a FUSE daemon that does not answer), and a \
             re-exec would wait with them; try again once it answers or is aborted",
            busy.left_waiting
        )),
        Err(busy) => Some(format!(
            "herd's closing threads are still releasing files other processes passed herd ({} \
             queued, {} under way); try again",
            busy.queued,
            busy.under_way + busy.detached
        )),
    }
}

/// The listening sockets as a re-exec hands them over; `None` once they are closed (herd is
/// stopping).
fn saved_listeners(listeners: &[Listener]) -> Option<Vec<reexec::SavedListener>> {
    let mut saved = Vec::new();
    for l in listeners {
        let fd = l.fd()?;
        let group = l.group().map(|g| reexec::SavedGroup {
            address: g.address(),
            options: g.options(),
            fds: g.sockets().skip(1).map(|fd| fd.as_raw_fd()).collect(),
        });
        saved.push(reexec::SavedListener {
            name: l.name.clone(),
            kind: l.kind,
            address: l.address.clone(),
            fd: fd.as_raw_fd(),
            file: l.file().map(reexec::file_parts),
            group,
            stdin: l.stdin,
            backlog_set: l.backlog_set,
            nonblocking_set: l.nonblocking_set,
        });
    }
    Some(saved)
}

/// What a re-exec hands over that the supervisor's fields do not hold: fds and their metadata,
/// and the pool's exported state.
struct Handed<'a> {
    endpoints: &'a Endpoints<'a>,
    listeners: Vec<reexec::SavedListener>,
    pool: PoolState,
    reply_fd: Option<std::os::unix::io::RawFd>,
}

impl Supervisor {
    /// The state the new image continues from. Every field of the supervisor is named here,
    /// so that a field added later does not compile until it is handed over or said to need
    /// no handing over (hence its length: a line or two per field).
    fn state(&self, handed: Handed<'_>, epoch: Epoch) -> reexec::State {
        let Supervisor {
            // Exported into `handed.pool` (a re-exec waits while it cannot be).
            pool: _,
            // The sockets are handed over as fds, described in `handed.listeners`; the new
            // image reads the same command line and environment for the rest; the counters
            // are handed over below.
            effects,
            // The new image reads the same command line, --starting-nice included; the workers
            // herd lowered are handed over below, and those still starting get a whole
            // warm-up there (`set_warm_up`).
            name: _,
            warm_up: _,
            // The new image, the same process, reads its nice value and policy at start.
            workers_nice: _,
            warming,
            started,
            // What the service manager heard; a re-exec waits out takeovers and failures.
            phase,
            // Empty: a re-exec waits while an upgrade or a stop is under way; its own client's
            // connection is `handed.reply_fd`.
            waiters: _,
            attached,
            autoscaler,
            // The busyness baseline: the new image's first sample starts anew.
            cpu: _,
            // The new image reads the same --max-memory and --max-lifetime, and samples anew
            // (a recycle under way is in the pool's state); the workers' requests, the slots'
            // holds and the jitter's seed are handed over below; the list of recent recycles
            // starts afresh.
            recycling,
            // Read anew; the backlogs herd set are in `handed.listeners`.
            backlogs: _,
            // Their fds are in `handed.endpoints`.
            http_listeners: _,
            // The new image reads the same --ready-min and --drain-delay, and publishes anew;
            // a re-exec is refused while a drain waits.
            probes: _,
            // The new image renders anew for its first scrape.
            last_rendering: _,
            // The new image reads the same command line; of the config file, the contents the
            // workers run are handed over.
            reload,
            // None: a re-exec is refused while the config file is read again.
            reading: _,
            // None: a re-exec waits while an upgrade is under way.
            staged: _,
            // Log rate limits, which start afresh.
            notify_log: _,
            // Empty: a re-exec waits while a slot is spawning (its start queued included).
            starts: _,
            // Nothing held back: no start is queued (above).
            sampling_pause: _,
            // The new image's first turn follows no stall: the exec takes well under
            // `STALL_AFTER`, and what the workers sent meanwhile waits in the notify socket,
            // which is handed over, to be read before any deadline is judged.
            stalls: _,
            platform,
        } = self;
        let Handed {
            endpoints,
            listeners,
            pool,
            reply_fd,
        } = handed;
        let lowered = warming.lowered();
        // The oldest version that carries it: 2 if a worker drains its slot.
        let draining = pool.workers.iter().any(|w| w.draining.is_some());
        let cores = reexec::Cores {
            uptime_ms: epoch.ago(*started),
            pool,
            attached: attached.save(epoch),
            service_ready: phase.ready_reported(),
            autoscale: Some(reexec::SavedAutoscale::save(autoscaler.as_ref(), epoch)),
            leftovers: platform.saved_by_reexec().export(epoch),
            counters: effects.save_counters(),
            warming: lowered.iter().map(|&(pid, _)| pid).collect(),
            warming_lowered: lowered.into_iter().map(|(_, how)| how).collect(),
            recycling: recycling.save(epoch),
            warming_trickling: warming.trickling(),
        };
        let config = reload.as_ref().map(|r| r.in_force().to_string());
        with_fds(endpoints, listeners, reply_fd, draining, config, cores)
    }
}

/// The state of a re-exec from its fds (`endpoints`, `listeners`, the client's `reply_fd`),
/// whether a worker drains its slot, the config file's contents in force, and `cores`.
fn with_fds(
    endpoints: &Endpoints<'_>,
    listeners: Vec<reexec::SavedListener>,
    reply_fd: Option<std::os::unix::io::RawFd>,
    draining: bool,
    config: Option<String>,
    cores: reexec::Cores,
) -> reexec::State {
    reexec::State {
        version: reexec::version_needed(draining),
        control: reexec::SavedSocket {
            dir: endpoints.control_dir,
            ..saved(endpoints.control.as_raw_fd(), endpoints.control_file)
        },
        notify: reexec::SavedSocket {
            dir: endpoints.notify.dir(),
            owner: endpoints.notify.workers_uid(),
            ..saved(endpoints.notify.socket.as_raw_fd(), endpoints.notify.file())
        },
        listeners,
        reply_fd,
        metrics_fd: endpoints.metrics.map(AsRawFd::as_raw_fd),
        health_fd: endpoints.health.map(AsRawFd::as_raw_fd),
        einhorn: endpoints
            .notify
            .einhorn
            .as_ref()
            .map(|e| saved(e.listener.as_raw_fd(), e.file())),
        nofile: crate::fdlimit::started_with(),
        // Filled in by the re-exec once the readers have stopped.
        outputs: Vec::new(),
        lines: None,
        config,
        cores,
    }
}

/// A socket at `fd` whose file is `file`, as the state says it.
fn saved(fd: std::os::unix::io::RawFd, file: &SocketFile) -> reexec::SavedSocket {
    reexec::SavedSocket {
        fd,
        file: reexec::file_parts(file),
        dir: None,
        owner: None,
    }
}
