//! Control requests: each command's answer.
use std::time::{Duration, Instant};

use crate::control::protocol::{Command, ErrorCode, Response};
use crate::control::reply::{Handed, Reply};
use crate::control::request::{Connection, ControlRequest, Peer};
use crate::control::results::{ScaleResult, SignalResult, SocketInfo, SocketsResult};
use crate::logging::LogEvent;

use super::drain_delay::StopRequest;
use super::effects::{Client, Effect};
use super::platform::Signal;
use super::pool;
use super::sources::Sources;
use super::status::AttachedStatus;
use super::waiters::Answer;
use super::Supervisor;
use super::{platform, scale, status};

/// Why an attach from a process herd has no pid for is refused.
const UNSEEN_PEER: &str = "herd cannot attach a process outside its PID namespace (it has no pid \
     for it there, so it could not stop it): run herd attach in herd's namespace (in its \
     container: docker exec, kubectl exec), or fetch the sockets without attaching";

impl Supervisor {
    /// Answers a control request, now or once what it asks for is done (`reexec`: the new
    /// binary's check reports to `sources`).
    pub(super) fn control(&mut self, request: ControlRequest, sources: &Sources) {
        let ControlRequest {
            command,
            peer,
            reply,
            written,
            connection,
        } = request;
        let client = Client::new(reply, written, connection);
        let response = match command {
            Command::Reexec => return self.reexec_requested(Some(client), sources),
            Command::Sockets { only, attach } => {
                let reply = self.sockets_request(only, attach, peer, client.connection());
                return self
                    .effects
                    .execute([Effect::Answer(Answer { client, reply })]);
            }
            Command::Status => self.status_request(),
            Command::Scale {
                workers,
                delta,
                min,
                max,
            } => self.scale_request(workers, delta, min, max),
            Command::Upgrade {
                timeout_ms,
                reload_config,
            } => {
                let timeout = timeout_ms.map(Duration::from_millis);
                if reload_config {
                    return self.reload_and_upgrade(timeout, client, &sources.read_again_tx);
                }
                return self.upgrade("herd upgrade", timeout, Some(client));
            }
            Command::Stop {
                grace_ms,
                fast,
                takeover,
            } => {
                let grace = grace_ms.map(Duration::from_millis);
                return self.stop_request(client, peer, !fast, grace, takeover);
            }
            Command::Signal { signal, slot } => self.signal_request(&signal, slot),
            // The control server answers it, off the loop (control::logs).
            Command::Logs { .. } => Response::error(
                ErrorCode::Internal,
                "logs is answered by the control server, not the supervisor",
            ),
        };
        let answer = Answer::new(client, response);
        self.effects.execute([Effect::Answer(answer)]);
    }

    /// The `stop` command, `graceful` or not, with `grace` (else `--grace`); `takeover`: the
    /// stop that ends a takeover (by `peer`), carried out only for the first herd to take this
    /// one over ([`phase::Phase::taken_over`](super::phase::Phase::taken_over)), and without
    /// `--drain-delay`: the new herd serves the sockets already.
    fn stop_request(
        &mut self,
        client: Client,
        peer: Peer,
        graceful: bool,
        grace: Option<Duration>,
        takeover: bool,
    ) {
        if takeover {
            let stopping = self.pool.is_stopping() || self.drain_left(Instant::now()).is_some();
            let taken = self
                .phase
                .taken_over(peer.pid, stopping, platform::process_runs);
            if let Err((code, why)) = taken {
                tracing::warn!(
                    event = LogEvent::TakeoverRefused.as_str(),
                    by = peer.pid,
                    "a second takeover's stop refused: {why}"
                );
                let answer = Answer::new(client, Response::error(code, why));
                return self.effects.execute([Effect::Answer(answer)]);
            }
            tracing::info!(
                event = LogEvent::TakenOver.as_str(),
                "taken over: the socket files are the new herd's now"
            );
            self.effects.execute([Effect::ReleaseSocketFiles]);
            self.waiters.stop_asked(client);
            return self.stop("herd stop", graceful, grace);
        }
        self.waiters.stop_asked(client);
        self.request_stop(StopRequest {
            reason: "herd stop".to_string(),
            graceful,
            grace,
        });
    }

    /// The `status` command: the pool, the sockets, attached processes, leftovers and
    /// autoscaling as they are now.
    fn status_request(&self) -> Response {
        let now = Instant::now();
        let sockets = self.effects.listeners().iter().enumerate();
        let attached = self.attached.as_slice().iter().map(|a| AttachedStatus {
            pid: a.pid,
            uptime_ms: status::ms(now.saturating_duration_since(a.since)),
            sockets: a.sockets.clone(),
        });
        let mut status = status::snapshot(
            &self.pool,
            sockets
                .map(|(i, l)| platform::socket_status(i, l))
                .collect(),
            attached.collect(),
            &self.name,
            self.started,
        );
        self.platform.add_status(&mut status, now);
        status.fork_servers = self.effects.fork_server_statuses();
        status.forking = self.starts.forking();
        status.autoscale = self.autoscale_status();
        status.draining_ms = self.drain_left(now).map(status::ms);
        self.recycling_status(&mut status);
        Response::ok(status)
    }

    /// The `signal` command: `signal`, and only that, to the workers of `slot` (all without
    /// it).
    fn signal_request(&mut self, signal: &str, slot: Option<usize>) -> Response {
        let Some(sig) = Signal::from_name(signal) else {
            let why = platform::signal_error(signal);
            return Response::error(ErrorCode::InvalidArgument, why);
        };
        let targets = self.pool.signal_targets(slot);
        // Stopping, the workers are not live: none is signalled. Said so, not "sent to 0
        // workers" (exit 0) or "no worker runs in slot N", to one who would hurry a stop.
        if self.pool.is_stopping() && targets.as_ref().map_or(true, Vec::is_empty) {
            return Response::error(
                ErrorCode::Stopping,
                "herd is stopping: its workers are stopping and get no other signal; \
                 'herd stop --fast' ends them at once",
            );
        }
        let pids = match targets {
            Ok(pids) => pids,
            Err(why) => return Response::error(pool::error_code(&why), why.to_string()),
        };
        let count = pids.len();
        tracing::info!(
            event = LogEvent::WorkersSignalled.as_str(),
            signal = %sig,
            slot,
            "sending {sig} to {}",
            match count {
                1 => "1 worker".to_string(),
                n => format!("{n} workers"),
            }
        );
        let signals = pids.iter().map(|&pid| Effect::SignalWorker {
            slot: self.pool.worker(pid).map_or(0, |w| w.slot),
            pid,
            signal: sig,
        });
        let signals: Vec<Effect> = signals.collect();
        self.effects.execute(signals);
        Response::ok(SignalResult { signalled: count })
    }

    /// The `sockets` command: metadata and duplicates of the listening sockets, and with
    /// `attach`, the peer registered as an attached worker.
    pub(super) fn sockets_request(
        &mut self,
        only: Option<Vec<String>>,
        attach: bool,
        peer: Peer,
        connection: Option<&Connection>,
    ) -> Reply {
        let refuse = |(code, why): (ErrorCode, String)| Reply::from(Response::error(code, why));
        if self.pool.is_stopping() {
            return refuse((ErrorCode::Stopping, "herd is stopping".to_string()));
        }
        let (sockets, fds) = match self.socket_copies(only.as_deref()) {
            Ok(copies) => copies,
            Err(refusal) => return refuse(refusal),
        };
        let (mut stop_event, mut stop_signal) = (None, None);
        if attach {
            let names = sockets.iter().map(|s| s.name.clone()).collect();
            match self.attach(peer, connection, names) {
                Ok(event) => stop_event = event,
                Err(refusal) => return refuse(refusal),
            }
            stop_signal = platform::attached_stop_signal(self.effects.stop_signal());
        }
        Reply {
            response: Response::ok(SocketsResult {
                sockets,
                stop_event,
                stop_signal,
            }),
            fds,
        }
    }

    /// The listening sockets named in `only` (all without it): what each is, and a duplicate.
    fn socket_copies(
        &self,
        only: Option<&[String]>,
    ) -> Result<(Vec<SocketInfo>, Vec<Handed>), (ErrorCode, String)> {
        if let Some(unknown) = only
            .into_iter()
            .flatten()
            .find(|n| !self.effects.listeners().iter().any(|l| &l.name == *n))
        {
            let listeners = self.effects.listeners();
            let names: Vec<&str> = listeners.iter().map(|l| l.name.as_str()).collect();
            let why = format!(
                "no socket is named {unknown:?} (sockets: {})",
                names.join(", ")
            );
            return Err((ErrorCode::InvalidArgument, why));
        }
        let mut sockets = Vec::new();
        let mut fds = Vec::new();
        for l in self.effects.listeners() {
            if only.is_some_and(|o| !o.contains(&l.name)) {
                continue;
            }
            let copy = platform::copy_socket(l)
                .ok_or((ErrorCode::Stopping, "herd is stopping".to_string()))?
                .map_err(|e| {
                    let why = format!("cannot duplicate {}: {e}", l.name);
                    (ErrorCode::Internal, why)
                })?;
            fds.push(copy.socket);
            sockets.push(SocketInfo {
                name: l.name.clone(),
                kind: Some(l.kind),
                family: copy.family,
                sock_type: copy.sock_type,
                address: l.address.clone(),
            });
        }
        Ok((sockets, fds))
    }

    /// Registers the peer as an attached process holding the sockets `names`, as the platform
    /// holds one ([`hold_attached`](Supervisor::hold_attached): Unix by pidfd on `connection`,
    /// Windows by the process handle it carries); the value of its stop event in it, where
    /// the platform gives one.
    fn attach(
        &mut self,
        peer: Peer,
        connection: Option<&Connection>,
        names: Vec<String>,
    ) -> Result<Option<u64>, (ErrorCode, String)> {
        let internal = |why: String| (ErrorCode::Internal, why);
        let pid = match peer.pid {
            None => {
                return Err(internal(
                    "cannot identify the attaching process".to_string(),
                ))
            }
            // What SO_PEERCRED says of a process outside herd's PID namespace (herd as a
            // container's PID 1, attached to from the host): herd can neither watch nor
            // signal it.
            Some(0) => return Err((ErrorCode::Unavailable, UNSEEN_PEER.to_string())),
            Some(pid) => pid,
        };
        if let Some(why) = platform::unstoppable(pid, peer.uid) {
            return Err((ErrorCode::Unavailable, why));
        }
        let shown = names.join(",");
        let stop_event = self
            .hold_attached(pid, connection, names, Instant::now())
            .map_err(internal)?;
        tracing::info!(
            event = LogEvent::WorkerAttached.as_str(),
            pid,
            uid = peer.uid,
            sockets = %shown,
            "worker attached"
        );
        Ok(stop_event)
    }

    /// Why the pool cannot grow to `workers`, if it cannot: the files herd holds for each
    /// (`--balance reuseport`'s sockets, `--worker-output`'s pipes) would not leave herd the
    /// fds it needs (see [`crate::fdlimit::most_workers`]). A pool that does not grow is never refused.
    pub(super) fn no_fds_for(&self, workers: usize) -> Option<String> {
        if workers <= self.pool.desired() {
            return None;
        }
        let sockets = super::platform::per_slot_sockets(self.effects.listeners());
        let bound = self.effects.listeners().len();
        let per_worker =
            crate::fdlimit::PerWorker::new(sockets, crate::output::current().is_some())
                .with_bound(bound);
        let max_surge = self.pool.config().max_surge;
        let surge = |workers| max_surge.limit(workers);
        crate::fdlimit::too_many_for_fds(workers, per_worker, surge, crate::fdlimit::handle_limit())
    }

    pub(super) fn scale_request(
        &mut self,
        workers: Option<usize>,
        delta: Option<i64>,
        min: Option<usize>,
        max: Option<usize>,
    ) -> Response {
        let current = self.pool.desired();
        let stopping = self.pool.is_stopping();
        let autoscaling = self.autoscaler.as_ref().map(|a| (a.min, a.max));
        let order = scale::order(current, workers, delta, (min, max), autoscaling, stopping);
        // More workers than their reuseport sockets leave fds for: refused, as at start.
        let growth = match &order {
            Ok(scale::Order::Autoscale { max, .. }) => Some(*max),
            Ok(scale::Order::Workers { target, .. }) => Some(*target),
            Err(_) => None,
        };
        if let Some(why) = growth.and_then(|n| self.no_fds_for(n)) {
            return Response::error(ErrorCode::InvalidArgument, why);
        }
        match order {
            Err((code, why)) => Response::error(code, why),
            Ok(scale::Order::Autoscale { min, max }) => {
                self.scaled_by_hand("herd scale");
                self.set_autoscale(Some((min, max)));
                Response::ok(ScaleResult {
                    previous: current,
                    workers: current,
                    min: Some(min),
                    max: Some(max),
                })
            }
            Ok(scale::Order::Workers { target, fixed }) => {
                if fixed && self.autoscaler.take().is_some() {
                    tracing::info!(
                        event = LogEvent::AutoscaleOff.as_str(),
                        "autoscaling off: a fixed number of workers was asked for"
                    );
                }
                match self.scale(target, "herd scale") {
                    Ok(previous) => {
                        self.scaled_by_hand("herd scale");
                        Response::ok(ScaleResult {
                            previous,
                            workers: target,
                            min: None,
                            max: None,
                        })
                    }
                    Err(why) => Response::error(pool::error_code(&why), why.to_string()),
                }
            }
        }
    }
}
