//! One turn of the loop: an input is dispatched to what handles it, then the work every turn
//! does (the pool's due actions, attached processes, what the platform does on each turn
//! (Unix: reuseport steering and drains), and the [`Phase`](super::phase::Phase)'s steps).

use std::time::Instant;

use super::drain_delay::StopRequest;
use super::effects::Effect;
use super::phase::{PoolView, Step};
use super::platform::{ControlFile, NotifySocket};
use super::signals::{Intent, Order};
use super::sources::{Input, Sources, Tick};
use super::takeover::{complete_takeover, old_herd_now, Abort, OldHerdNow, Takeover};
use super::{autoscale, scale, Supervisor};
use crate::logging::LogEvent;

impl Supervisor {
    /// Dispatches one input.
    pub(super) fn handle(
        &mut self,
        input: Input,
        sources: &mut Sources,
        control_file: &mut ControlFile,
        notify: &mut NotifySocket,
    ) {
        match input {
            Input::Signal(intent) => self.obey(intent, sources),
            Input::Control(request) => self.control(request, sources),
            Input::Scrape(scrape) => self.answer_scrapes(scrape, sources),
            Input::TakeoverAnswered(answer) => self.takeover_answered(answer),
            Input::ConfigRead(read) => self.config_read(read),
            Input::Platform(input) => self.handle_platform(input, sources, control_file, notify),
            Input::Tick(Tick::Autoscale) => self.autoscale_tick(false),
            // A burst need not wait for the next sample: a queue long enough to scale up on is
            // acted on at once (the policy's cooldown still applies).
            Input::Tick(Tick::QueueCheck) => {
                if self.queued() >= autoscale::QUEUE_PER_WORKER {
                    self.autoscale_tick(true);
                }
            }
            Input::Tick(Tick::Sample) => self.ask_for_samples(&mut sources.sampler),
            Input::Sampled(samples) => self.sampled(samples),
            Input::Tick(Tick::Turn | Tick::Heartbeat) => {}
        }
    }

    /// Carries out what a signal asks for.
    fn obey(&mut self, intent: Intent, sources: &Sources) {
        let trigger = intent.signal_name();
        // A drain is a stop under way: a second Ctrl-C during it stops at once, as it does
        // once the workers are asked to stop.
        let stopping = self.pool.is_stopping() || self.drain_left(Instant::now()).is_some();
        match intent.order(stopping) {
            Order::Reap => {
                // A worker's last words (STOPPING=1 as it exits) are taken while it is still
                // one: after the reap its pid names no worker, and the message would be dropped.
                self.read_waiting_notifications(sources);
                self.reap_and_restart();
            }
            Order::Stop { graceful } => self.request_stop(StopRequest {
                reason: trigger,
                graceful,
                grace: None,
            }),
            Order::Upgrade => self.upgrade(&trigger, None, None),
            Order::Reexec => self.reexec_requested(None, sources),
            Order::ScaleBy(delta) => {
                let bounds = self.autoscaler.as_ref().map(|a| (a.min, a.max));
                let target = scale::by_signal(self.pool.desired(), delta, bounds);
                // SIGTTIN one at a time past what the open-file limit leaves room for, too.
                let target = target.and_then(|t| self.no_fds_for(t).map_or(Ok(t), Err));
                let why = match target {
                    Ok(target) => match self.scale(target, &trigger) {
                        Ok(_) => {
                            self.scaled_by_hand(&trigger);
                            None
                        }
                        Err(e) => Some(e.to_string()),
                    },
                    Err(why) => Some(why),
                };
                if let Some(why) = why {
                    tracing::warn!(
                        event = LogEvent::ScaleRefused.as_str(),
                        "{trigger} ignored: {why}"
                    );
                }
            }
            Order::Ignore => tracing::warn!(
                event = LogEvent::SignalIgnored.as_str(),
                signal = %trigger,
                "{trigger} ignored: it means nothing to herd, which logs to stderr and has no \
                 file to reopen; to pass it to the workers, run 'herd signal {}'",
                trigger.trim_start_matches("SIG")
            ),
        }
    }

    /// The work every turn does after its input.
    pub(super) fn after_turn(&mut self, sources: &Sources, control_file: &mut ControlFile) {
        self.drain_due();
        let actions = self.pool.due(Instant::now());
        self.apply(actions, false);
        self.fork_servers_after_turn(Instant::now());
        self.start_some();
        self.recycle_due();
        self.warm_up_due();
        self.attached_after_turn();
        self.platform_after_turn(sources);
        for step in self.phase.after_turn(self.pool_view()) {
            match step {
                Step::CompleteTakeover(takeover) => {
                    self.end_takeover(takeover, sources, control_file)
                }
                Step::AbortTakeover(takeover, why) => {
                    let (old, old_pid) = (&takeover.old, takeover.old_pid);
                    match old_herd_now(old, takeover.old_process.as_ref(), old_pid) {
                        // Aborting would leave nothing serving: this herd, which holds the
                        // sockets, serves on (its workers restarted as any herd's) and takes
                        // the old one's place.
                        OldHerdNow::Gone => {
                            tracing::warn!(
                                event = LogEvent::OldHerdGone.as_str(),
                                reason = %why,
                                "the takeover failed ({why}), but the old herd is gone: this \
                                 herd serves on rather than leave nothing serving"
                            );
                            self.end_takeover(takeover, sources, control_file);
                        }
                        now => {
                            let after = now.describe(old, old_pid);
                            self.abort_takeover(Abort { why, after });
                        }
                    }
                }
                Step::Report(report) => self.effects.execute([Effect::Report(report)]),
            }
        }
    }

    /// Completes the takeover, now or at a later turn, or aborts it.
    fn end_takeover(
        &mut self,
        takeover: Takeover,
        sources: &Sources,
        control_file: &mut ControlFile,
    ) {
        let answered = sources.answered_tx.clone();
        match complete_takeover(takeover, control_file, answered) {
            Ok(Some(later)) => self.phase.complete_later(later),
            Ok(None) => {}
            Err(abort) => self.abort_takeover(abort),
        }
    }

    /// Attached processes: they stop with the pool, however it came to stop; those that
    /// exited are forgotten, and those left past their grace period killed.
    fn attached_after_turn(&mut self) {
        if self.pool.is_stopping() {
            let (signal, grace) = (self.effects.stop_signal(), self.pool.config().grace);
            self.attached
                .stop(self.effects.attached(), signal, grace, Instant::now());
        }
        // A pidfd's poll (a handle's wait on Windows) is cheap: an exit is seen at the next
        // turn of the loop.
        self.attached.remove_exited(self.effects.attached());
        self.attached.due(self.effects.attached(), Instant::now());
    }

    /// The takeover failed: herd stops and exits 1, saying what still serves. Its workers
    /// are stopped gracefully (the stop signal, then `--grace`), as an aborted upgrade's are:
    /// those that were ready already accept from the sockets they share with the old herd's,
    /// and the connections they took are answered, not reset.
    pub(super) fn abort_takeover(&mut self, Abort { why, after }: Abort) {
        tracing::error!(
            event = LogEvent::TakeoverAborted.as_str(),
            reason = %why,
            "takeover aborted, {after}"
        );
        self.phase
            .takeover_aborted(format!("takeover aborted, {after}: {why}"));
        self.stop("takeover failed", true, None);
    }

    /// What the pool looks like now, for the [`Phase`](super::phase::Phase).
    pub(super) fn pool_view(&self) -> PoolView {
        PoolView {
            stopping: self.pool.is_stopping(),
            all_available: self.pool.all_available(),
            all_ready: self.pool.all_ready(),
            desired: self.pool.desired(),
        }
    }
}
