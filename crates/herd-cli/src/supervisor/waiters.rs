//! The control clients that wait for the outcome of something herd does, as a pure state
//! machine: `herd stop` clients until every worker is gone, `herd upgrade` clients until the
//! upgrade ends, and the client of the re-exec whose new binary is being checked. Each
//! transition returns the [`Answer`]s to send, which the [effects](super::effects) send; `C`
//! is whatever stands for a client (a channel in herd, a number in the tests).

use std::path::PathBuf;

use crate::control::protocol::{ErrorCode, Response};
use crate::control::reply::Reply;
use crate::control::results::{StopResult, UpgradeResult};

/// An answer to a waiting client.
#[derive(Debug)]
pub struct Answer<C> {
    /// Who waits.
    pub client: C,
    /// What it hears.
    pub reply: Reply,
}

impl<C> Answer<C> {
    /// `client` hears `response`.
    pub fn new(client: C, response: Response) -> Answer<C> {
        Answer {
            client,
            reply: response.into(),
        }
    }
}

/// How a rolling upgrade ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpgradeOutcome {
    /// Every worker runs this generation.
    Finished(u64),
    /// herd is stopping: nobody keeps serving.
    Abandoned,
    /// It failed (why); the old workers keep serving.
    Aborted(String),
}

impl UpgradeOutcome {
    /// The outcome of an upgrade the pool says ended with `result`, herd `stopping` or not.
    pub fn of(result: Result<u64, String>, stopping: bool) -> UpgradeOutcome {
        match result {
            Ok(generation) => UpgradeOutcome::Finished(generation),
            Err(_) if stopping => UpgradeOutcome::Abandoned,
            Err(why) => UpgradeOutcome::Aborted(why),
        }
    }

    /// What the upgrade's clients hear; `overridden`: the keys of a config file read again
    /// that herd's command line gives.
    pub fn response(&self, overridden: &[String]) -> Response {
        match self {
            UpgradeOutcome::Finished(generation) => Response::ok(UpgradeResult {
                generation: *generation,
                overridden: overridden.to_vec(),
            }),
            UpgradeOutcome::Abandoned => Response::error(
                ErrorCode::Stopping,
                "herd is stopping: the upgrade was abandoned and every worker stops",
            ),
            UpgradeOutcome::Aborted(why) => Response::error(ErrorCode::UpgradeFailed, why.clone()),
        }
    }
}

/// A re-exec whose new binary is being checked.
#[derive(Debug, PartialEq, Eq)]
pub struct Check<C> {
    /// The check child's pid.
    pub pid: u32,
    /// Who asked (nobody for SIGUSR2).
    pub client: Option<C>,
    /// The file checked, which the re-exec runs if it passes (a symlink switched since is not
    /// followed again).
    pub file: PathBuf,
    /// The re-exec state version the file was asked to read.
    pub version: u32,
}

/// The clients waiting for a stop, an upgrade or a re-exec.
#[derive(Debug)]
pub struct Waiters<C> {
    stop: Vec<C>,
    upgrade: Vec<C>,
    reexec: Option<Check<C>>,
}

impl<C> Default for Waiters<C> {
    fn default() -> Self {
        Waiters {
            stop: Vec::new(),
            upgrade: Vec::new(),
            reexec: None,
        }
    }
}

impl<C> Waiters<C> {
    /// `client` asked herd to stop: it is answered once herd has stopped.
    pub fn stop_asked(&mut self, client: C) {
        self.stop.push(client);
    }

    /// Every worker is gone: each stop client hears that herd stopped.
    pub fn stopped(&mut self) -> Vec<Answer<C>> {
        let stopped = || Response::ok(StopResult { stopped: true });
        self.stop
            .drain(..)
            .map(|client| Answer::new(client, stopped()))
            .collect()
    }

    /// An upgrade started for `client`, if any: it is answered when the upgrade ends.
    pub fn upgrade_started(&mut self, client: Option<C>) {
        self.upgrade.extend(client);
    }

    /// The upgrade ended: each of its clients hears how (see [`UpgradeOutcome::response`]).
    pub fn upgrade_ended(
        &mut self,
        outcome: &UpgradeOutcome,
        overridden: &[String],
    ) -> Vec<Answer<C>> {
        self.upgrade
            .drain(..)
            .map(|client| Answer::new(client, outcome.response(overridden)))
            .collect()
    }

    /// Whether a re-exec's binary is being checked.
    pub fn reexec_checking(&self) -> bool {
        self.reexec.is_some()
    }

    /// A check child checks the binary of a re-exec. Returns the check back if one is
    /// already under way.
    pub fn reexec_check_started(&mut self, check: Check<C>) -> Result<(), Check<C>> {
        if self.reexec.is_some() {
            return Err(check);
        }
        self.reexec = Some(check);
        Ok(())
    }

    /// Check child `pid` gave its verdict: the re-exec it checked, whatever the verdict
    /// (`None` when `pid` is not the check under way: its client was answered already).
    pub fn reexec_checked(&mut self, pid: u32) -> Option<Check<C>> {
        match &self.reexec {
            Some(check) if check.pid == pid => self.reexec.take(),
            _ => None,
        }
    }

    /// herd is stopping: the re-exec being checked, if any, is cancelled.
    pub fn reexec_cancelled(&mut self) -> Option<ReexecRefused<C>> {
        let check = self.reexec.take()?;
        let why = "herd is stopping; the re-exec is cancelled";
        Some(ReexecRefused::new(check.client, ErrorCode::Stopping, why))
    }
}

/// A re-exec that does not happen: herd logs why, and its client, if any, hears it.
#[derive(Debug)]
pub struct ReexecRefused<C> {
    /// Who asked (nobody for SIGUSR2).
    pub client: Option<C>,
    /// The error code the client hears.
    pub code: ErrorCode,
    /// Why not.
    pub why: String,
}

impl<C> ReexecRefused<C> {
    /// `client`'s re-exec is refused with `code`, because `why`.
    pub fn new(client: Option<C>, code: ErrorCode, why: impl Into<String>) -> ReexecRefused<C> {
        ReexecRefused {
            client,
            code,
            why: why.into(),
        }
    }

    /// What its client hears, if it has one.
    pub fn answer(self) -> Option<Answer<C>> {
        let response = Response::error(self.code, self.why);
        Some(Answer::new(self.client?, response))
    }
}

#[cfg(test)]
mod tests;
