//! The supervisor's hands: the one place where it acts on the workers and the world around
//! them. Starting a worker (its slot's sockets prepared, then fork/exec), stopping and
//! signalling workers, steering the reuseport sockets, answering control clients and metrics
//! scrapes, telling the service manager, counting for `--metrics`. What to do is decided
//! elsewhere (the pool, the [phase](super::phase), the [waiters](super::waiters), the
//! policies), and handed over one way: as [`Effect`]s, carried out in order by
//! [`Effects::execute`]. The only other ways in are operations whose result the caller needs
//! (a spawned worker's pid, a check child, the socket files lost at a takeover's end), steering
//! (it reads the pool), herd's last answers (awaited as it exits) and queries. The policies
//! over attached processes, leftovers and exits act through the System traits that Effects
//! hands them. A port to another platform implements this anew.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::oneshot;

use super::attached;
use super::metrics;
use super::phase::Report;
use super::platform::{self, Signal};
use super::pool::{Reason, StopMode};
use super::reload::Commands;
use super::waiters::{Answer, ReexecRefused};
use crate::command::{StartError, WorkerCommand};
use crate::control::reply::Reply;
use crate::control::request::Connection;
use crate::logging::LogEvent;
use crate::spec::Listener;

mod count;
pub use count::{Count, ExitCause};

/// What the supervisor acts with.
pub struct Effects {
    /// The listening sockets.
    listeners: Vec<Listener>,
    /// What starts workers with the command.
    spawner: platform::Spawner,
    /// What asks a worker to stop ([`StopMode::Graceful`]).
    stop_signal: Signal,
    /// herd's own service manager, if any (Windows has none herd speaks to).
    service: platform::ServiceManager,
    /// Counters for `--metrics`.
    counters: metrics::Counters,
    /// Attached processes, as the system sees them.
    attached: attached::System,
    /// herd's children, as the system reports their exits.
    children: platform::OwnChildren,
    /// herd was taken over ([`Effect::ReleaseSocketFiles`]): its control socket's path is the
    /// new herd's, never to be bound again by this one.
    taken_over: bool,
    /// The socket files of the sockets this herd did not take over, removed when it completes.
    untaken: Vec<crate::spec::UntakenFile>,
}

/// One thing to do, as a core or a handler decided it: what [`Effects::execute`] carries out.
#[derive(Debug)]
pub enum Effect {
    /// Stop the pool's worker `pid` in `slot` and its process group, for `reason`.
    StopWorker {
        slot: usize,
        pid: u32,
        mode: StopMode,
        reason: Reason,
    },
    /// Send `signal`, and only that, to the pool's worker `pid` in `slot` (`herd signal`).
    SignalWorker {
        slot: usize,
        pid: u32,
        signal: Signal,
    },
    /// Answer a control client.
    Answer(Answer<Client>),
    /// Answer metrics scrapes, each with the same rendering ([`Effects::render`]).
    AnswerScrapes {
        scrapes: Vec<super::http::Scrape>,
        rendered: metrics::Rendered,
    },
    /// Refuse a re-exec: say why in the log, and to its client if it has one.
    RefuseReexec(ReexecRefused<Client>),
    /// Tell the service manager.
    Report(Report),
    /// Count for `--metrics`.
    Count(Count),
    /// Kill `pid`, not reaped yet, with its process group: a process that is not the pool's
    /// (a re-exec check child, a worker started where no slot was free).
    KillGroup { pid: u32 },
    /// Close herd's own copies of the listening sockets (a stop): once the workers have closed
    /// theirs, new clients are refused at once instead of waiting in a queue nobody serves.
    CloseSockets,
    /// herd was taken over: leave the socket files in place, the new herd's now.
    ReleaseSocketFiles,
    /// What only the platform does (Unix: answer a re-exec's client from the new image).
    Platform(platform::Effect),
}

/// A control client waiting for its answer.
#[derive(Debug)]
pub struct Client {
    reply: oneshot::Sender<Reply>,
    /// Resolves once the answer is written (or could not be).
    written: oneshot::Receiver<()>,
    /// The client's connection, for `reexec` (answered from the new image) and `sockets`.
    connection: Option<Connection>,
}

impl Client {
    /// The client of `request`'s parts: answered on `reply`, `written` once answered.
    pub fn new(
        reply: oneshot::Sender<Reply>,
        written: oneshot::Receiver<()>,
        connection: Option<Connection>,
    ) -> Client {
        Client {
            reply,
            written,
            connection,
        }
    }

    /// The client's connection, if the request came with it.
    pub fn connection(&self) -> Option<&Connection> {
        self.connection.as_ref()
    }

    /// Takes the client's connection, to answer on it from a new image after a re-exec.
    pub fn take_connection(&mut self) -> Option<Connection> {
        self.connection.take()
    }
}

impl Effects {
    /// The effects for `listeners` (already bound) and `command`.
    pub fn new(
        listeners: Vec<Listener>,
        command: WorkerCommand,
        stop_signal: Signal,
    ) -> anyhow::Result<Effects> {
        Ok(Effects {
            listeners,
            spawner: platform::Spawner::new(command)?,
            stop_signal,
            service: platform::ServiceManager::from_env(),
            counters: metrics::Counters::default(),
            attached: attached::System,
            children: platform::OwnChildren::new(),
            taken_over: false,
            untaken: Vec::new(),
        })
    }

    /// Whether herd was taken over: the paths of its socket files are the new herd's.
    pub fn taken_over(&self) -> bool {
        self.taken_over
    }

    /// Carries out `effects`, in order.
    pub fn execute(&mut self, effects: impl IntoIterator<Item = Effect>) {
        for effect in effects {
            match effect {
                Effect::StopWorker {
                    slot,
                    pid,
                    mode,
                    reason,
                } => self.stop_worker(slot, pid, mode, reason),
                Effect::SignalWorker { slot, pid, signal } => {
                    let reason = Reason::Requested.describe();
                    tracing::debug!(slot, pid, "sending {signal}: {reason}");
                    if let Err(e) = self.children.signal(pid, signal) {
                        signal_failed(slot, pid, signal, &e);
                    }
                }
                Effect::Answer(answer) => answer_client(answer),
                Effect::AnswerScrapes { scrapes, rendered } => {
                    for scrape in scrapes {
                        let _ = scrape.send(rendered.clone());
                    }
                }
                Effect::RefuseReexec(refused) => self.refuse_reexec(refused),
                Effect::Report(report) => self.service.report(report),
                Effect::Count(count) => count.add_to(&self.counters),
                Effect::KillGroup { pid } => {
                    if let Err(e) = self.children.kill_group(pid) {
                        tracing::warn!(
                            event = LogEvent::SignalFailed.as_str(),
                            pid,
                            "cannot kill process group {pid}: {e}"
                        );
                    }
                }
                Effect::CloseSockets => self.listeners.iter_mut().for_each(Listener::close),
                Effect::ReleaseSocketFiles => {
                    self.taken_over = true;
                    self.listeners.iter_mut().for_each(Listener::release_file)
                }
                Effect::Platform(effect) => effect.execute(),
            }
        }
    }

    /// Stops worker `pid` and its process group: the stop signal (then `SIGCONT`, so that a
    /// paused worker can act on it), or `SIGKILL`.
    fn stop_worker(&mut self, slot: usize, pid: u32, mode: StopMode, reason: Reason) {
        match reason {
            Reason::GraceExpired | Reason::NotReady | Reason::Watchdog => {
                tracing::warn!(
                    event = LogEvent::WorkerKilled.as_str(),
                    slot,
                    pid,
                    "killing worker: {}",
                    reason.describe()
                );
            }
            _ => tracing::debug!(slot, pid, ?mode, "stopping worker: {}", reason.describe()),
        }
        let signal = match mode {
            StopMode::Graceful => self.stop_signal,
            StopMode::Kill => Signal::KILL,
        };
        if let Err(e) = self.children.stop(pid, signal) {
            signal_failed(slot, pid, signal, &e);
        }
    }

    /// Logs why a re-exec does not happen, and answers its client, if any.
    fn refuse_reexec(&self, refused: ReexecRefused<Client>) {
        tracing::warn!(event = LogEvent::ReexecRefused.as_str(), "{}", refused.why);
        if let Some(answer) = refused.answer() {
            answer_client(answer);
        }
    }

    /// The system under the processes started with `herd attach`: their exits and signals.
    pub fn attached(&mut self) -> &mut attached::System {
        &mut self.attached
    }

    /// The system under what exited workers leave behind: process groups as they are now,
    /// signals to them, reaping their leaders (only Unix has process groups); `workers`, the
    /// live ones, lead their own groups.
    #[cfg(unix)]
    pub fn process_groups(
        &self,
        workers: std::collections::HashSet<u32>,
    ) -> super::leftovers::System {
        super::leftovers::System::new(workers)
    }

    /// The system under herd's children: their exits.
    pub fn children(&mut self) -> &mut platform::OwnChildren {
        &mut self.children
    }

    /// The listening sockets.
    pub fn listeners(&self) -> &[Listener] {
        &self.listeners
    }

    /// The socket files of the sockets a takeover did not take, to remove once it completes.
    #[cfg(unix)]
    pub fn remove_once_taken_over(&mut self, untaken: Vec<crate::spec::UntakenFile>) {
        self.untaken = untaken;
    }

    /// The takeover completed: the socket files of the sockets taken over are this herd's, to
    /// remove when it stops, and those of the sockets not taken are removed (nothing serves
    /// them now). The paths of those it could not take (gone, or another file).
    pub fn adopt_socket_files(&mut self) -> Vec<PathBuf> {
        self.untaken
            .drain(..)
            .for_each(crate::spec::UntakenFile::remove);
        self.listeners
            .iter_mut()
            .filter_map(Listener::adopt_file)
            .collect()
    }

    /// The takeover ended without the socket files of the sockets taken over: gives up the
    /// claim to them (the old herd keeps them, or removes them as it exits). Their paths.
    pub fn give_up_socket_files(&mut self) -> Vec<PathBuf> {
        self.untaken.clear();
        self.listeners
            .iter_mut()
            .filter_map(Listener::forget_takeover_file)
            .collect()
    }

    /// Answers control clients, then waits at most `timeout` for the answers to be written:
    /// herd's last answers, as it exits.
    pub async fn answer_last(&self, answers: Vec<Answer<Client>>, timeout: Duration) {
        let mut written = Vec::new();
        for Answer { client, reply } in answers {
            let _ = client.reply.send(reply);
            written.push(client.written);
        }
        let flushed = async {
            for done in written {
                let _ = done.await;
            }
        };
        let _ = tokio::time::timeout(timeout, flushed).await;
    }

    /// The metrics: the counters and `snapshot`, the figures of the moment.
    pub fn render(&self, snapshot: &metrics::Snapshot) -> metrics::Rendered {
        metrics::render(&self.counters, snapshot)
    }

    /// Everything the counters counted, summed.
    pub fn counted(&self) -> u64 {
        self.counters.total()
    }

    /// The counters' values, for a re-exec.
    pub fn save_counters(&self) -> metrics::SavedCounters {
        self.counters.save()
    }

    /// Continues counting from the values a previous image saved.
    pub fn restore_counters(&self, saved: &metrics::SavedCounters) {
        self.counters.restore(saved);
    }

    /// The signal that asks a worker to stop.
    pub fn stop_signal(&self) -> Signal {
        self.stop_signal
    }

    /// The worker commands, for a reloaded config's (see [`Commands`]).
    pub fn commands(&mut self) -> &mut Commands<WorkerCommand> {
        self.spawner.commands()
    }

    /// Asks workers to stop with `signal` from now on (a reloaded config's).
    pub fn set_stop_signal(&mut self, signal: Signal) {
        self.stop_signal = signal;
    }

    /// Starts several workers at once (`starts`: slot, generation, how to lower it), as
    /// [`spawn`](Self::spawn) would each: their pids and how each was lowered, or why not,
    /// in order; `None` for one that awaits its fork server's reply (`--fork-server`).
    pub fn spawn_all(
        &mut self,
        starts: &[(usize, u64, Option<super::warm_up::Lowering>)],
    ) -> Vec<Option<Result<super::warm_up::Spawned, StartError>>> {
        let Effects {
            listeners,
            spawner,
            children,
            ..
        } = self;
        spawner.spawn_all(listeners, children, starts)
    }

    /// When a fork server still loading runs out of time (`--fork-server`).
    pub fn fork_server_deadline(&self) -> Option<std::time::Instant> {
        self.spawner.fork_server_deadline()
    }

    /// Whether a start awaits its fork server's reply (`--fork-server`).
    pub fn awaits_fork_replies(&self) -> bool {
        self.spawner.awaits_fork_replies()
    }

    /// The fork servers' pids (`--fork-server`).
    pub fn fork_server_pids(&self) -> Vec<u32> {
        self.spawner.fork_server_pids()
    }

    /// The fork servers, for `herd status`.
    pub fn fork_server_statuses(&self) -> Vec<super::status::ForkServerStatus> {
        self.spawner.fork_server_statuses()
    }

    /// herd's own service manager (its watchdog).
    pub fn service(&self) -> &platform::ServiceManager {
        &self.service
    }

    /// What starts workers (Unix: also re-exec checks; Windows: with the `--shm` mappings).
    pub fn spawner(&mut self) -> &mut platform::Spawner {
        &mut self.spawner
    }

    /// The sockets of the fork servers whose reply a start awaits, with their pids
    /// (`--fork-server`, only Unix has them).
    #[cfg(unix)]
    pub fn fork_replies_awaited(&self) -> Vec<(u32, platform::fork_servers::Handle)> {
        self.spawner.fork_replies_awaited()
    }

    /// Points the reuseport sockets at the slots that should get new connections (only Unix
    /// has them).
    #[cfg(unix)]
    pub fn steer(&mut self, pool: &super::pool::Pool) {
        super::balance::steer(&mut self.listeners, pool);
    }
}

/// Answers a control client.
fn answer_client(answer: Answer<Client>) {
    let Answer { client, reply } = answer;
    let _ = client.reply.send(reply);
}

fn signal_failed(slot: usize, pid: u32, signal: Signal, e: &std::io::Error) {
    tracing::warn!(
        event = LogEvent::SignalFailed.as_str(),
        slot,
        pid,
        "cannot send {signal}: {e}"
    );
}
