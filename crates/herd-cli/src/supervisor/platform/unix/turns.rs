//! What the loop asks of the platform, on Unix: the inputs only Unix has, the re-exec, what
//! every turn does for reuseport slots and leftover process groups, and what an exit or a
//! stop means for them and for orphans. The loop itself ([`driver`](crate::supervisor::driver) and the files
//! beside it) calls these by the same names on every platform.

use std::collections::HashSet;
use std::os::unix::io::AsFd;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Instant;

use herd_core::WorkerState;
use herd_sys::notify::Receiver;
use herd_sys::pidfd::PidFd;
use tokio::io::Interest;
use tokio::net::UnixDatagram;

use super::inputs::{Input, Wants};
use super::{ControlFile, NotifySocket, OwnFamily};
use crate::control::request::Connection;
use crate::logging::LogEvent;
use crate::supervisor::attached::Attached;
use crate::supervisor::effects::{Client, Count, Effect};
use crate::supervisor::pool::NotifyMessage;
use crate::supervisor::socket_files::Kind;
use crate::supervisor::sources::Sources;
use crate::supervisor::{balance, handover, leftovers, notify, reap, relisten, Supervisor};
use herd_sys::process::Signal;

impl Supervisor {
    /// What the loop waits for on this turn, of what only Unix has.
    pub(in crate::supervisor) fn platform_wants(&self) -> Wants {
        Wants {
            attached: self.attached.any_unwatchable(),
            drains: self.pool.is_draining(),
            leftovers: !self.platform.leftovers.is_empty(),
            orphans: self.platform.orphans.waited_for(),
            fork_replies: self.effects.fork_replies_awaited(),
        }
    }

    /// Handles an input only Unix has.
    pub(in crate::supervisor) fn handle_platform(
        &mut self,
        input: Input,
        sources: &mut Sources,
        control_file: &mut ControlFile,
        notify: &mut NotifySocket,
    ) {
        match input {
            // The new binary passed its check: the exec follows.
            Input::ReexecChecked(done) => {
                if let Some(passed) = self.reexec_checked(done) {
                    let endpoints = handover::Endpoints {
                        control: &sources.platform.control_fd,
                        control_file,
                        control_dir: (self.platform.socket_files)
                            .control_dir(control_file.parts().0),
                        notify,
                        notify_receiver: sources.platform.notify().1,
                        metrics: sources.platform.metrics_fd.as_ref(),
                        health: sources.platform.health_fd.as_ref(),
                    };
                    self.reexec(&endpoints, passed);
                }
            }
            // Read as the turn began (`turn_begins`), as on every turn: this input only woke
            // the loop.
            Input::Notify => {}
            Input::EinhornAck(sender) => {
                let worker = notify::attribute(sender, |p| self.pool.worker(p).is_some());
                self.notified(Some((sender, worker)), b"READY=1", false);
            }
            Input::CheckSockets => {
                // Threads that could not start (the pids limit reached) for files to release.
                herd_sys::fd::retry_closing_threads();
                self.check_sockets();
                self.check_socket_files(sources, control_file, notify);
            }
            Input::Leftovers => {
                let mut groups = self.process_groups();
                self.platform.leftovers.check(&mut groups, Instant::now());
            }
            Input::Orphans => self.look_at_orphans(),
            // The start ends after the turn, with those a timeout or an exit ended.
            Input::ForkReply(server, read) => self.effects.spawner().fork_replied(server, read),
        }
    }

    /// `herd reexec` or its signal (`client` is `None`): the new binary is checked first; the
    /// exec follows if it passes.
    pub(in crate::supervisor) fn reexec_requested(
        &mut self,
        client: Option<Client>,
        sources: &Sources,
    ) {
        self.check_reexec(client, &sources.platform.checked_tx);
    }

    /// What every turn does on Unix only: watching new attached processes' pidfds, what
    /// exited attached processes left in their groups, reuseport steering and drains.
    pub(in crate::supervisor) fn platform_after_turn(&mut self, sources: &Sources) {
        for pidfd in self.attached.take_to_watch() {
            sources.platform.watch_exit(pidfd);
        }
        self.attached_leftovers();
        self.effects.steer(&self.pool);
        let now = Instant::now();
        let listeners = self.effects.listeners();
        let drained = self
            .pool
            .release_drained(now, |slot| balance::queued(listeners, slot));
        self.apply(drained, false);
    }

    /// What remains in the groups of attached processes that have exited is stopped and
    /// waited for like a worker's leftovers.
    fn attached_leftovers(&mut self) {
        let leaders = self.attached.take_exited_leaders();
        if leaders.is_empty() {
            return;
        }
        let (stop_signal, grace) = (self.effects.stop_signal(), self.pool.config().grace);
        let stopping = self.attached.kill_at();
        for leader in leaders {
            let mut groups = self.process_groups();
            self.platform.leftovers.attached_exited(
                &mut groups,
                leader,
                stopping,
                stop_signal,
                grace,
                Instant::now(),
            );
        }
    }

    /// After a look at the children: re-exec checks are accounted, the exited workers'
    /// groups (`exits`: pid, slot, state, of those still held unreaped) looked at in one pass,
    /// orphans reaped or adopted, and other children of herd's group reaped.
    pub(in crate::supervisor) fn reaped(
        &mut self,
        checks: Vec<(u32, ExitStatus)>,
        lost_checks: Vec<u32>,
        exits: Vec<(u32, usize, Option<WorkerState>)>,
    ) {
        // Re-exec check children lead their own groups: held unreaped, like workers, while
        // their groups have members.
        for (pid, status) in checks {
            self.platform.reexec_children.exited(pid, status);
            self.platform.leftovers.check_exited(pid, Instant::now());
        }
        for pid in lost_checks {
            self.platform.reexec_children.lost(pid);
        }
        let (stop_signal, grace) = (self.effects.stop_signal(), self.pool.config().grace);
        // One list of herd's children tells whether the exited workers' groups can hold
        // anything (else `/proc` is not read) and is the orphans' first look.
        let children = herd_sys::process::own_children();
        let exited: HashSet<u32> = exits.iter().map(|&(pid, ..)| pid).collect();
        let known = self.not_orphans(&exited);
        let below = leftovers::may_have_members(
            &children,
            |pid| known.contains(&pid),
            self.platform.subreaper,
        );
        let mut groups = match below {
            true => self.process_groups(),
            false => leftovers::System::empty(),
        };
        self.platform
            .leftovers
            .exited(&mut groups, &exits, stop_signal, grace, Instant::now());
        // The exited workers stay out of the orphans' look though some were reaped since.
        let not_orphans = self.not_orphans(&exited);
        self.hold_orphan_adoptions();
        let lowered = self.warming.spans(Instant::now());
        self.platform.orphans.look(
            &mut OwnFamily::listed(children)
                .with_sockets(self.effects.listeners())
                .with_warm_up(self.orphans_warm_up()),
            &not_orphans,
            &lowered,
            Instant::now(),
        );
        for (pid, status) in reap::reap_own_group(self.effects.children()) {
            self.fork_server_exited(pid, status);
        }
    }

    /// herd's children that are no orphans: live workers, re-exec checks, held leaders, and
    /// `also`.
    fn not_orphans(&self, also: &HashSet<u32>) -> HashSet<u32> {
        let mut known: HashSet<u32> = self.pool.workers().iter().map(|w| w.pid).collect();
        known.extend(self.platform.check_pids());
        known.extend(self.platform.leftovers.leaders());
        known.extend(self.effects.fork_server_pids());
        known.extend(also);
        known
    }

    /// The system under exited workers' groups, where the live workers lead their own.
    fn process_groups(&self) -> crate::supervisor::leftovers::System {
        let workers = self.pool.workers().iter().map(|w| w.pid).collect();
        self.effects.process_groups(workers)
    }

    /// `--fork-server`: while a start awaits its fork server's reply, the worker it forked may
    /// be herd's child already, its pid not known yet: no new orphan is adopted meanwhile. (The
    /// child of `herd upgrade --reload-config`'s probe stays in herd's process group, which is
    /// never adopted: see `herd_sys::spawn::ExecPlan::probe`.)
    fn hold_orphan_adoptions(&mut self) {
        let held = self.effects.awaits_fork_replies();
        self.platform.orphans.hold_adoptions(held);
    }

    /// Looks at herd's children for orphans: those that exited are reaped, new ones adopted.
    fn look_at_orphans(&mut self) {
        self.hold_orphan_adoptions();
        let not_orphans = self.not_orphans(&HashSet::new());
        let lowered = self.warming.spans(Instant::now());
        self.platform.orphans.look(
            &mut OwnFamily::default()
                .with_sockets(self.effects.listeners())
                .with_warm_up(self.orphans_warm_up()),
            &not_orphans,
            &lowered,
            Instant::now(),
        );
    }

    /// `--starting-nice`: how starting workers are lowered and the nice value ready ones get,
    /// for the orphans a lowered worker left.
    fn orphans_warm_up(&self) -> Option<(crate::supervisor::warm_up::Lowered, i32)> {
        self.warm_up.map(|w| (w.starting, self.workers_nice))
    }

    /// Process `sender` and its ancestors, nearest first ([`notify::lineage`]).
    pub(in crate::supervisor) fn lineage(&self, sender: u32) -> Vec<u32> {
        notify::lineage(sender)
    }

    /// Before a worker's exit is judged: a worker that shut the shared socket down on its way
    /// out is repaired before the others fail on it (the exit may be one of theirs).
    pub(in crate::supervisor) fn worker_exiting(&mut self) {
        self.check_sockets();
    }

    /// Worker `pid` of `slot` exited with `status` (`stopped`: herd stopped it): the relisten
    /// guard hears of it; what the log adds to the exit's description (a resource limit).
    pub(in crate::supervisor) fn worker_gone(
        &mut self,
        slot: usize,
        pid: u32,
        status: ExitStatus,
        stopped: bool,
    ) -> Option<String> {
        let clean = status.success() || stopped;
        let now = Instant::now();
        self.platform.relisten.worker_exited(slot, pid, clean, now);
        let suspects = match status.signal() {
            Some(signal) if !stopped => self.effects.spawner().limits_behind(signal),
            _ => Vec::new(),
        };
        self.platform.limit_hinted.hint(slot, &suspects)
    }

    /// Makes the listeners that a worker shut down listen again; counts them.
    pub(in crate::supervisor) fn check_sockets(&mut self) {
        let now = Instant::now();
        let holders: Vec<(usize, u32)> = self
            .pool
            .workers()
            .iter()
            .map(|w| (w.slot, w.pid))
            .collect();
        let restored = self
            .platform
            .relisten
            .check(self.effects.listeners(), &holders, now);
        if restored > 0 {
            self.effects
                .execute([Effect::Count(Count::SocketsRestored(restored))]);
            self.pool.excuse_exits_until(now + relisten::EXCUSE);
        }
    }

    /// Says which socket files herd created were removed (the listeners' it holds; the
    /// notify, einhorn's and control sockets' when they cannot be bound again), which sockets'
    /// blocking mode a worker changed, and which shared TCP sockets it turned `SO_LINGER` on for.
    fn check_socket_files(
        &mut self,
        sources: &mut Sources,
        control_file: &mut ControlFile,
        notify: &mut NotifySocket,
    ) {
        self.say_rebinds_held_back();
        let unbound = self.bind_notify_again_if_removed(sources, notify);
        let control_unbound = self.bind_control_again_if_removed(sources, control_file);
        let einhorn_unbound = self.bind_einhorn_again_if_removed(sources, notify);
        let listeners = self.effects.listeners().iter().filter_map(|l| {
            let open = l.fd().is_some() || l.group().is_some();
            Some((Kind::Listener(&l.name), l.file().filter(|_| open)?, true))
        });
        // Said only when it could not be bound again: one removed since is bound at the next look.
        let einhorn = (notify.einhorn.as_ref()).map(|e| (Kind::Einhorn, e.file(), einhorn_unbound));
        let notify = Some((Kind::Notify, notify.file(), unbound));
        let control = Some((Kind::Control, &*control_file, control_unbound));
        self.platform
            .socket_files
            .check(listeners.chain(notify).chain(control).chain(einhorn));
        self.platform.blocking_mode.check(self.effects.listeners());
        self.platform.linger.check(self.effects.listeners());
    }

    /// As herd starts to stop: re-exec checks die with herd (their client hears it).
    pub(in crate::supervisor) fn platform_stop_effects(&mut self) -> Vec<Effect> {
        let checks = self.platform.reexec_children.log_kills_at_stop();
        checks
            .into_iter()
            .map(|pid| Effect::KillGroup { pid })
            .collect()
    }

    /// herd stops, every process to be gone by `deadline`: so are the leftover groups and the
    /// orphans (the stop signal, `SIGKILL` at `deadline`).
    pub(in crate::supervisor) fn platform_stopping(&mut self, deadline: Instant, now: Instant) {
        self.look_at_orphans();
        let grace = deadline.saturating_duration_since(now);
        let signal = match grace.is_zero() {
            true => Signal::KILL,
            false => self.effects.stop_signal(),
        };
        self.platform
            .orphans
            .stop(&mut OwnFamily::default(), signal, grace, now);
        self.platform.leftovers.stop(deadline);
        let mut groups = self.process_groups();
        self.platform.leftovers.check(&mut groups, now);
    }

    /// Holds process `pid`, the peer on `connection`, as an attached process holding the
    /// sockets `names`, attached at `now`; no stop event (Unix stops it with signals).
    pub(in crate::supervisor) fn hold_attached(
        &mut self,
        pid: u32,
        connection: Option<&Connection>,
        names: Vec<String>,
        now: Instant,
    ) -> Result<Option<u64>, String> {
        // The process that connected, held since it connected (SO_PEERPIDFD, Linux 6.5+);
        // before that, the pid it connected with, checked against its start time read now
        // (see Attached::new).
        let attached = match connection.map(|c| PidFd::of_peer(c.as_fd())) {
            Some(Ok(Some(pidfd))) => Attached::with_pidfd(pid, pidfd, names, now),
            Some(Err(_)) => None,
            _ => herd_sys::process::start_time(pid)
                .and_then(|start_time| Attached::new(pid, start_time, names, now)),
        };
        let attached = attached.ok_or("the attaching process has exited")?;
        self.attached.add(attached);
        Ok(None)
    }

    /// Takes the notifications already waiting (at most 256 datagrams, so that a flood cannot
    /// starve the rest of the loop): as each turn begins, before any deadline is judged, and
    /// before exited workers are reaped.
    pub(in crate::supervisor) fn read_waiting_notifications(&mut self, sources: &Sources) {
        self.read_notifications(sources.platform.notify());
    }

    /// Reads the datagrams waiting on the notify socket.
    fn read_notifications(&mut self, (socket, receiver): (&UnixDatagram, &Receiver)) {
        let mut buf = [0u8; notify::MAX_DATAGRAM];
        // Bounded per wake-up, so a flood cannot starve the rest of the loop.
        for _ in 0..256 {
            let received = socket.try_io(Interest::READABLE, || notify::recv(receiver, &mut buf));
            let datagram = match received {
                Ok(d) => d,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::warn!(event = LogEvent::SystemError.as_str(), "notify socket: {e}");
                    return;
                }
            };
            self.datagram_read(&buf, datagram);
        }
    }

    /// Reads what a notify socket replaced by a new one still holds (nothing more comes).
    pub(super) fn drain_notifications(&mut self, receiver: &Receiver) {
        let mut buf = [0u8; notify::MAX_DATAGRAM];
        for _ in 0..256 {
            match notify::recv(receiver, &mut buf) {
                Ok(datagram) => self.datagram_read(&buf, datagram),
                Err(_) => return,
            }
        }
    }

    /// One notify datagram read into `buf`.
    fn datagram_read(&mut self, buf: &[u8], datagram: herd_sys::notify::Datagram) {
        let is_worker = |p| self.pool.worker(p).is_some();
        // A barrier alone is answered already (its fd closed) and dropped unsaid: no walk of
        // `/proc` for its sender (`systemd-notify` sends one with every message).
        let message = &buf[..datagram.len];
        let barrier = NotifyMessage::parse(message).is_some_and(|m| m.only_barrier());
        // The sender may be a descendant of a worker (`systemd-notify` run by a script).
        let sender = datagram.sender_pid.map(|sender| match barrier {
            true => (sender, None),
            false => (sender, notify::attribute(sender, is_worker)),
        });
        self.notified(sender, message, datagram.truncated);
    }
}
