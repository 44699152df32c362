//! Finding exited children, behind a small trait ([`Children`]) as tokio's reaper is, so that
//! its rules are unit tests without processes.
//!
//! Workers and re-exec checks are looked at one by one, without reaping them: one whose
//! process group still has processes stays a zombie, holding the group's id, until they are
//! gone (see [`leftovers`](super::leftovers)). That costs one `waitid(WNOWAIT)` per worker per
//! wake-up (SIGCHLDs that arrive together wake herd once): `waitid(P_ALL)` cannot skip the
//! zombies herd holds on purpose. So that a killed worker's successor need not wait for that
//! scan (4 ms with 4096 workers), the child the platform names first (Linux:
//! `waitid(P_ALL, WNOWAIT)`) is handled before it when it is a worker ([`first_exit`]). Other
//! children, in herd's own process group, are reaped.

use std::io;
use std::process::ExitStatus;

use crate::logging::LogEvent;

/// How herd learns about its children; the real ones are the platform's (`OwnChildren`).
pub trait Children {
    /// What became of `pid`, leaving it unreaped if it exited.
    fn peek_exit(&mut self, pid: u32) -> io::Result<Peek>;
    /// Reaps one exited child in herd's own process group, if there is one.
    fn reap_own_group(&mut self) -> io::Result<Option<(u32, ExitStatus)>>;
    /// One exited child, named without a look at each, leaving it unreaped; `None` where the
    /// platform cannot name one (the scan finds every exit anyway).
    fn first_exited(&mut self) -> Option<(u32, ExitStatus)> {
        None
    }
}

/// What one look at a child found.
#[derive(Debug, PartialEq, Eq)]
pub enum Peek {
    /// It still runs.
    Running,
    /// It exited, so.
    Exited(ExitStatus),
    /// It is not herd's child (any more): someone else reaped it (`ECHILD` on Unix).
    NotOurs,
}

/// A worker found exited.
#[derive(Debug, PartialEq, Eq)]
pub struct WorkerExit {
    /// Its pid.
    pub pid: u32,
    /// How it ended.
    pub status: ExitStatus,
    /// Whether herd still holds it as an unreaped child. One that is not (someone else reaped
    /// it) is forgotten: its pid, and so its group's id, may already name another process.
    pub held: bool,
}

/// What one look at the children found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Found {
    /// Workers that exited.
    pub workers: Vec<WorkerExit>,
    /// Re-exec checks that exited, with their status.
    pub checks: Vec<(u32, ExitStatus)>,
    /// Re-exec checks that cannot be waited for.
    pub lost_checks: Vec<u32>,
}

/// The exited child the platform names first, if it is one of the workers (`is_worker`): its
/// successor can start before [`look`] scans the rest. A child that is not (a zombie held on
/// purpose, a re-exec check, a helper) is left to that scan.
pub fn first_exit(
    children: &mut impl Children,
    is_worker: impl Fn(u32) -> bool,
) -> Option<WorkerExit> {
    let (pid, status) = children.first_exited()?;
    is_worker(pid).then_some(WorkerExit {
        pid,
        status,
        held: true,
    })
}

/// Whether some child has exited and is unreaped still, after [`first_exit`] named one (only a
/// platform that names exits is asked).
pub fn more_exited(children: &mut impl Children) -> bool {
    children.first_exited().is_some()
}

/// Looks at each of the `workers` and re-exec `checks`.
pub fn look(
    children: &mut impl Children,
    workers: impl IntoIterator<Item = u32>,
    checks: impl IntoIterator<Item = u32>,
) -> Found {
    let mut found = Found::default();
    for pid in workers {
        match children.peek_exit(pid) {
            Ok(Peek::Exited(status)) => found.workers.push(WorkerExit {
                pid,
                status,
                held: true,
            }),
            Ok(Peek::Running) => {}
            Ok(Peek::NotOurs) => {
                tracing::error!(
                    event = LogEvent::SystemError.as_str(),
                    pid,
                    "worker {pid} is no longer herd's child; forgetting it"
                );
                found.workers.push(WorkerExit {
                    pid,
                    status: ExitStatus::default(),
                    held: false,
                });
            }
            Err(e) => tracing::error!(
                event = LogEvent::SystemError.as_str(),
                pid,
                "cannot wait for worker {pid}: {e}"
            ),
        }
    }
    for pid in checks {
        let why = match children.peek_exit(pid) {
            Ok(Peek::Exited(status)) => {
                found.checks.push((pid, status));
                continue;
            }
            Ok(Peek::Running) => continue,
            Ok(Peek::NotOurs) => "it is not herd's child".to_string(),
            Err(e) => e.to_string(),
        };
        tracing::error!(
            event = LogEvent::SystemError.as_str(),
            pid,
            "cannot wait for the re-exec check {pid}: {why}"
        );
        found.lost_checks.push(pid);
    }
    found
}

/// Reaps every exited child in herd's own process group (herd's helpers: fork servers,
/// processes re-parented to herd); returns them with their statuses.
pub fn reap_own_group(children: &mut impl Children) -> Vec<(u32, ExitStatus)> {
    let mut reaped = Vec::new();
    loop {
        match children.reap_own_group() {
            Ok(Some((pid, status))) => {
                tracing::debug!(pid, "reaped a process that was not a worker");
                reaped.push((pid, status));
            }
            Ok(None) => return reaped,
            Err(e) => {
                tracing::error!(
                    event = LogEvent::SystemError.as_str(),
                    "waitpid failed: {e}"
                );
                return reaped;
            }
        }
    }
}

#[cfg(test)]
mod tests;
