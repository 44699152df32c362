//! herd's course as a pure state machine, beside the pool's: whether it failed (and so exits
//! 1), where a takeover stands, when a re-exec is refused, and what the service manager is
//! told. The supervisor feeds it what happened and carries out the [`Step`]s it returns; no
//! processes, no clocks, so every rule is a unit test.

use std::time::{Duration, Instant};

use super::pool::{Exit, Readiness, Reason};
use crate::control::protocol::ErrorCode;

/// What the pool looks like at the end of a loop turn.
#[derive(Clone, Copy, Debug, Default)]
pub struct PoolView {
    /// A stop is under way.
    pub stopping: bool,
    /// Every wanted slot has a worker that is ready and stayed ready for `--min-ready`.
    pub all_available: bool,
    /// Every wanted slot has a ready worker.
    pub all_ready: bool,
    /// How many workers are wanted.
    pub desired: usize,
}

/// What the supervisor must do now.
#[derive(Debug, PartialEq, Eq)]
pub enum Step<T> {
    /// Every new worker is available: move the control socket and stop the old herd.
    CompleteTakeover(T),
    /// The takeover failed, why: stop gracefully (the old herd, if it is still there, serves).
    AbortTakeover(T, String),
    /// Tell the service manager this (that herd is ready).
    Report(Report),
}

/// What herd tells its service manager (see [`systemd`](super::systemd)).
#[derive(Debug, PartialEq, Eq)]
pub enum Report {
    /// `READY=1` with this status.
    Ready(String),
    /// `RELOADING=1` with this status: an upgrade or a re-exec begins.
    Reloading(String),
    /// `STOPPING=1`.
    Stopping,
    /// Only this status (after an upgrade, when herd never was ready).
    Status(String),
}

/// Where a takeover stands.
#[derive(Debug)]
enum Takeover<T> {
    /// None was asked for, or it is over.
    None,
    /// Waiting for this herd's workers to be available; a new worker that failed meanwhile
    /// dooms it.
    Waiting { takeover: T, failed: Option<String> },
}

/// How a stop goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StopPlan {
    /// Whether workers get the stop signal and the grace period, or are killed at once.
    pub graceful: bool,
    /// How long they get.
    pub grace: Duration,
    /// When whatever is left (leftover process groups) is killed.
    pub deadline: Instant,
}

/// How a stop asked for now goes, `graceful` or not, with `grace` (the request's or
/// `--grace`): `None` for a graceful stop while one is under way (only a fast stop overrides a
/// stop in progress, so a second SIGTERM changes nothing but a second SIGINT does).
pub fn stop_plan(
    graceful: bool,
    stopping: bool,
    grace: Duration,
    now: Instant,
) -> Option<StopPlan> {
    if graceful && stopping {
        return None;
    }
    let deadline = match graceful {
        true => now.checked_add(grace).unwrap_or(now),
        false => now,
    };
    Some(StopPlan {
        graceful,
        grace,
        deadline,
    })
}

/// herd's course; `T` is what the supervisor needs to complete a takeover.
#[derive(Debug)]
pub struct Phase<T> {
    failure: Option<String>,
    takeover: Takeover<T>,
    ready_reported: bool,
    /// Whether the service manager heard `STOPPING=1`: it hears it once, and no `READY=1`
    /// after it.
    stopping_reported: bool,
    /// Whether this image continues from a re-exec.
    reexecuted: bool,
    /// Whether another herd took this one over (its stop reached this herd), and that herd's
    /// pid if the system said.
    taken_over_by: Option<Option<u32>>,
    /// Whether this herd's takeover was aborted: the old herd serves on with the sockets.
    takeover_aborted: bool,
}

impl<T> Phase<T> {
    /// A herd starting, taking over from another herd if `takeover` is given.
    pub fn new(takeover: Option<T>) -> Phase<T> {
        let takeover = match takeover {
            Some(takeover) => Takeover::Waiting {
                takeover,
                failed: None,
            },
            None => Takeover::None,
        };
        Phase {
            failure: None,
            takeover,
            ready_reported: false,
            stopping_reported: false,
            reexecuted: false,
            taken_over_by: None,
            takeover_aborted: false,
        }
    }

    /// Continues after a re-exec; `ready_reported` is whether the service manager had heard
    /// READY=1 from the image before.
    pub fn resumed(ready_reported: bool) -> Phase<T> {
        Phase {
            failure: None,
            takeover: Takeover::None,
            ready_reported,
            stopping_reported: false,
            reexecuted: true,
            taken_over_by: None,
            takeover_aborted: false,
        }
    }

    /// A takeover's stop from the herd `by` (its pid, if the system says): the first is
    /// carried out; a later one, from a herd that lost a race of takeovers, is refused
    /// (`taken_over`), naming the herd that took over first, so that it gives up rather than
    /// serve beside that herd. Not while that herd no longer `runs`, nor from that herd again:
    /// then it is carried out as the first was (a stop while stopping changes nothing). A
    /// herd already `stopping` (asked to stop, or draining first) is not taken over: the new
    /// herd would serve on after the stop someone asked for (`stopping`).
    pub fn taken_over(
        &mut self,
        by: Option<u32>,
        stopping: bool,
        runs: impl Fn(u32) -> bool,
    ) -> Result<(), (ErrorCode, String)> {
        // Taken over halfway through its own takeover, it would stop and leave the herd it was
        // replacing serving beside the one taking it over, which nothing would stop.
        if self.taking_over() {
            return Err((
                ErrorCode::Busy,
                "it is still taking over another herd: take it over again once that takeover \
                 has completed"
                    .to_string(),
            ));
        }
        match self.taken_over_by {
            Some(Some(first)) if by != Some(first) && runs(first) => Err((
                ErrorCode::TakenOver,
                format!("herd {first} has taken this herd over already"),
            )),
            Some(None) => Err((
                ErrorCode::TakenOver,
                "another herd has taken this herd over already".to_string(),
            )),
            None if stopping => Err((
                ErrorCode::Stopping,
                "it is stopping, as it was asked to, so it is not taken over: start the new herd \
                 without --takeover once it has stopped"
                    .to_string(),
            )),
            _ => {
                self.taken_over_by = Some(by);
                Ok(())
            }
        }
    }

    /// Whether this image continues from a re-exec ([`Phase::resumed`]).
    pub fn reexecuted(&self) -> bool {
        self.reexecuted
    }

    /// Whether the service manager has been told READY=1.
    pub fn ready_reported(&self) -> bool {
        self.ready_reported
    }

    /// A worker of the first generation could not be executed at all (`why`): herd fails.
    /// Returns whether to stop now (the first such failure only).
    pub fn first_generation_failed(&mut self, why: String) -> bool {
        if self.failure.is_some() {
            return false;
        }
        self.failure = Some(why);
        true
    }

    /// Worker `pid` exited (`exit`, as the pool judged it; `how`, described; `readiness`, how
    /// it was to become ready): a takeover in progress fails when a new worker exited before it
    /// was available, unless herd shut it down.
    pub fn worker_exited(&mut self, exit: &Exit, pid: u32, how: &str, readiness: Readiness) {
        if !self.taking_over() || exit.was_available || exit.stopped_for == Some(Reason::Shutdown) {
            return;
        }
        let slot = exit.slot;
        let why = match (exit.stopped_for, readiness, exit.was_ready) {
            // Killed by herd: how it died (SIGKILL) is not why.
            (Some(Reason::NotReady), Readiness::Notify { timeout }, _) => format!(
                "worker {slot} (pid {pid}) was not ready within --ready-timeout ({}): herd \
                 killed it",
                humantime::format_duration(timeout)
            ),
            (Some(Reason::Watchdog), _, _) => format!(
                "worker {slot} (pid {pid}) sent no WATCHDOG=1 within --watchdog: herd killed it"
            ),
            (_, _, true) => {
                format!(
                    "worker {slot} (pid {pid}) exited within --min-ready of becoming ready: {how}"
                )
            }
            (_, _, false) => format!("worker {slot} (pid {pid}) exited before it was ready: {how}"),
        };
        self.worker_lost(why);
    }

    /// A new worker exited before it was available (`why`): a takeover in progress fails.
    fn worker_lost(&mut self, why: String) {
        if let Takeover::Waiting { failed, .. } = &mut self.takeover {
            failed.get_or_insert(why);
        }
    }

    /// Whether a takeover waits for the workers.
    pub fn taking_over(&self) -> bool {
        matches!(self.takeover, Takeover::Waiting { .. })
    }

    /// The takeover could not be completed yet (`CompleteTakeover` gave it back): it is tried
    /// again at a later turn.
    pub fn complete_later(&mut self, takeover: T) {
        self.takeover = Takeover::Waiting {
            takeover,
            failed: None,
        };
    }

    /// herd fails with `why` (a takeover could not be completed): it exits 1 once stopped.
    pub fn fail(&mut self, why: String) {
        self.failure.get_or_insert(why);
    }

    /// This herd's takeover is aborted (it fails with `why`): the old herd serves on with the
    /// sockets both hold.
    pub fn takeover_aborted(&mut self, why: String) {
        self.takeover_aborted = true;
        self.fail(why);
    }

    /// Whether the old herd holds this herd's sockets as it should: its takeover was aborted.
    pub fn old_herd_serves_on(&self) -> bool {
        self.takeover_aborted
    }

    /// What to do at the end of a loop turn.
    pub fn after_turn(&mut self, pool: PoolView) -> Vec<Step<T>> {
        let mut steps = Vec::new();
        if self.failure.is_none() && !pool.stopping {
            let failed = matches!(
                &self.takeover,
                Takeover::Waiting {
                    failed: Some(_),
                    ..
                }
            );
            if failed || (self.taking_over() && pool.all_available) {
                if let Takeover::Waiting { takeover, failed } =
                    std::mem::replace(&mut self.takeover, Takeover::None)
                {
                    steps.push(match failed {
                        Some(why) => Step::AbortTakeover(takeover, why),
                        None => Step::CompleteTakeover(takeover),
                    });
                }
            }
        }
        // A first generation ready during a drain is not news: STOPPING=1 was said.
        if !self.ready_reported && !self.stopping_reported && !pool.stopping && pool.all_ready {
            self.ready_reported = true;
            let status = format!("{} workers ready", pool.desired);
            steps.push(Step::Report(Report::Ready(status)));
        }
        steps
    }

    /// What to tell the service manager as an upgrade to `generation` starts: that herd
    /// reloads, once it has heard herd was ready (before, herd is still starting to it).
    pub fn upgrade_started(&self, generation: u64) -> Option<Report> {
        self.ready_reported
            .then(|| Report::Reloading(format!("upgrading to generation {generation}")))
    }

    /// What to tell the service manager when an upgrade asked for by a signal (`systemctl
    /// reload`) was refused (`why`): a reload that began and ended at once, so that systemd,
    /// which waits for `RELOADING=1` then `READY=1` after its SIGHUP, hears the outcome. Only
    /// a status while another upgrade runs (its end says `READY=1`) or herd stops, and nothing
    /// before herd was ready.
    pub fn upgrade_refused(&self, why: &str, upgrading: bool, stopping: bool) -> Vec<Report> {
        let status = format!("upgrade refused: {why}");
        match (self.ready_reported, upgrading || stopping) {
            (false, _) => Vec::new(),
            (true, true) => vec![Report::Status(status)],
            (true, false) => vec![
                Report::Reloading("upgrade requested".to_string()),
                Report::Ready(format!("{status}; the workers serve unchanged")),
            ],
        }
    }

    /// What to tell the service manager as herd begins to stop (a drain, then the stop
    /// itself): `STOPPING=1`, once.
    pub fn stopping(&mut self) -> Option<Report> {
        (!std::mem::replace(&mut self.stopping_reported, true)).then_some(Report::Stopping)
    }

    /// What to tell the service manager as herd re-executes: that herd reloads, once it has
    /// heard herd was ready. A herd still starting stays starting to it, so that a failed
    /// re-exec cannot leave it waiting for the end of a reload nobody reports.
    pub fn reexecuting(&self) -> Option<Report> {
        self.ready_reported
            .then(|| Report::Reloading("re-executing".to_string()))
    }

    /// What to tell the service manager when a re-exec failed after it was told of it: ready
    /// again, if it had heard herd was ready.
    pub fn reexec_failed(&self) -> Option<Report> {
        let status = "re-exec failed; the old program runs on";
        self.ready_reported
            .then(|| Report::Ready(status.to_string()))
    }

    /// What to tell the service manager as the new image of a re-exec starts: ready again, if
    /// it had heard herd was ready; else nothing yet (READY=1 comes when the workers are).
    pub fn resumed_report(&self) -> Option<Report> {
        self.ready_reported
            .then(|| Report::Ready("re-executed".to_string()))
    }

    /// What to tell the service manager when an upgrade ends.
    pub fn upgrade_ended(&self, generation: Result<u64, ()>, desired: usize) -> Report {
        let status = match generation {
            _ if self.stopping_reported => "upgrade abandoned: herd is stopping".to_string(),
            Ok(g) => format!("generation {g}, {desired} workers"),
            Err(()) => "upgrade aborted; the old workers serve".to_string(),
        };
        // After STOPPING=1, READY=1 would tell systemd that the service runs again.
        match self.ready_reported && !self.stopping_reported {
            true => Report::Ready(status),
            false => Report::Status(status),
        }
    }

    /// Why a re-exec must wait, if it must: `exportable` says whether the pool's state can be
    /// handed over now (no upgrade, no worker starting).
    pub fn reexec_refusal(
        &self,
        pool: PoolView,
        exportable: bool,
    ) -> Option<(ErrorCode, &'static str)> {
        let busy = self.taking_over() || self.failure.is_some() || !exportable;
        if !busy && !pool.stopping {
            return None;
        }
        let code = match pool.stopping {
            true => ErrorCode::Stopping,
            false => ErrorCode::Busy,
        };
        Some((
            code,
            "cannot re-execute while herd is stopping, upgrading, starting workers or taking \
             over; try again",
        ))
    }

    /// How herd ends: `Err(why)` if it failed.
    pub fn outcome(self) -> Result<(), String> {
        match self.failure {
            Some(why) => Err(why),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests;
