//! What the supervisor holds on Unix only: the re-exec's bookkeeping, the hints about
//! resource limits, the guard that relistens shut-down sockets, the process groups exited
//! workers left, and the orphans re-parented to herd.

use std::collections::HashSet;
use std::os::unix::io::OwnedFd;
use std::path::PathBuf;
use std::time::Instant;

use crate::supervisor::pool::PoolConfig;
use crate::supervisor::status::Status;
use crate::supervisor::{
    balance, blocking_mode, leftovers, linger, orphans, reexec, reexec_check, relisten,
    socket_files,
};

/// What only the Unix supervisor holds.
pub struct State {
    /// The path herd was started by ([`reexec::invoked`], symlinks kept), which `herd reexec`
    /// follows anew each time.
    pub exe: PathBuf,
    /// The connection of the client whose `herd reexec` made this image: answered at start.
    pub reexec_reply: Option<OwnedFd>,
    /// Children checking a new binary before a re-exec.
    pub reexec_children: reexec_check::Children,
    /// Slots whose exit was already blamed on a resource limit, while they crash-loop.
    pub limit_hinted: LimitHints,
    /// Makes shared sockets that a worker shut down listen again.
    pub relisten: relisten::Guard,
    /// Says which socket files were removed.
    pub socket_files: socket_files::Watch,
    /// Says which sockets' blocking mode a worker changed.
    pub blocking_mode: blocking_mode::Watch,
    /// Says which shared sockets a worker turned `SO_LINGER` on for.
    pub linger: linger::Watch,
    /// Process groups of exited workers that still have processes in them.
    pub leftovers: leftovers::Leftovers,
    /// Processes workers left behind, re-parented to herd.
    pub orphans: orphans::Orphans,
    /// Whether herd is a child subreaper, so that what workers leave behind is re-parented to
    /// it rather than to init.
    pub subreaper: bool,
}

impl State {
    /// Nothing held yet; the path herd was started by.
    /// herd becomes a child subreaper (again, after a re-exec), so that what workers leave
    /// behind is re-parented to it.
    pub fn new() -> anyhow::Result<State> {
        let subreaper = herd_sys::process::become_subreaper();
        if let Err(e) = &subreaper {
            tracing::warn!(
                event = crate::logging::LogEvent::SystemError.as_str(),
                "cannot become a child subreaper ({e}): processes workers leave behind go to init"
            );
        }
        Ok(State {
            exe: reexec::invoked()?,
            reexec_reply: None,
            reexec_children: reexec_check::Children::default(),
            limit_hinted: LimitHints::default(),
            relisten: relisten::Guard::default(),
            socket_files: socket_files::Watch::default(),
            blocking_mode: blocking_mode::Watch::default(),
            linger: linger::Watch::default(),
            leftovers: leftovers::Leftovers::default(),
            orphans: orphans::Orphans::default(),
            subreaper: matches!(subreaper, Ok(true)),
        })
    }

    /// Whether nothing of Unix's keeps herd from exiting once its workers are gone: no
    /// process is left in an exited worker's group, no re-exec check child runs, and no
    /// orphan is left.
    pub fn finished(&self) -> bool {
        self.leftovers.is_empty() && self.reexec_children.is_empty() && self.orphans.finished()
    }

    /// What of this state a re-exec hands over: the leftover groups. Every field is named, so
    /// that one added later does not compile until it is handed over or said to need no
    /// handing over.
    pub fn saved_by_reexec(&self) -> &leftovers::Leftovers {
        let State {
            // The new image reads the same command line.
            exe: _,
            // This re-exec's own bookkeeping: its client's connection is `handed.reply_fd`.
            reexec_reply: _,
            // The check that passed has exited; another one still running is abandoned, and
            // the new image reaps it like any child of its own group.
            reexec_children: _,
            // Hints, which start afresh.
            limit_hinted: _,
            // Suspicions about workers that shut a socket down: a culprit caught again after
            // the re-exec is suspected anew.
            relisten: _,
            // Files found removed are looked at, and said, anew.
            socket_files: _,
            blocking_mode: _,
            linger: _,
            leftovers,
            // The new image finds the orphans again among its children.
            orphans: _,
            // The new image becomes a subreaper again (`State::new`).
            subreaper: _,
        } = self;
        leftovers
    }

    /// The pids of the re-exec check children, which herd looks at with its workers.
    pub fn check_pids(&self) -> Vec<u32> {
        self.reexec_children.pids()
    }

    /// Worker `pid` of `slot` was killed as it started where no slot was free: its group is
    /// waited for like an exited worker's.
    pub fn abandoned(&mut self, pid: u32, slot: usize, now: Instant) {
        self.leftovers.abandon(pid, slot, now);
    }

    /// What `herd status` shows of Unix only: the leftover process groups and the orphans.
    pub fn add_status(&self, status: &mut Status, now: Instant) {
        status.leftovers = self.leftovers.status(now);
        status.orphans = self.orphans.status(now);
    }
}

/// The pool's settings for `listeners`: slots drain their own queue where each has one
/// (`--balance reuseport`).
pub fn pool_config(config: PoolConfig, listeners: &[crate::spec::Listener]) -> PoolConfig {
    PoolConfig {
        drain: balance::drain_policy(listeners, config.grace),
        ..config
    }
}

/// Which slots' exits were already blamed on a resource limit, so that a crash-looping slot
/// gets the hint once.
#[derive(Debug, Default)]
pub struct LimitHints {
    hinted: HashSet<usize>,
}

impl LimitHints {
    /// The hint for an exit of `slot` by a signal that the resource limits `suspects` send
    /// (none when no limit does, or herd stopped the worker): once per slot while it keeps
    /// failing that way, again after an exit of another kind.
    pub fn hint(&mut self, slot: usize, suspects: &[&str]) -> Option<String> {
        if suspects.is_empty() {
            self.hinted.remove(&slot);
            return None;
        }
        if !self.hinted.insert(slot) {
            return None;
        }
        Some(format!(
            "; likely cause: {} (a worker past its resource limit gets this signal)",
            suspects.join(" or ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_is_blamed_once_per_slot_while_it_keeps_failing_that_way() {
        let mut hints = LimitHints::default();
        let cpu = ["--rlimit cpu=1:5"];
        assert_eq!(
            hints.hint(0, &cpu).as_deref(),
            Some("; likely cause: --rlimit cpu=1:5 (a worker past its resource limit gets this signal)")
        );
        assert_eq!(hints.hint(0, &cpu), None);
        // Another slot gets its own hint.
        assert!(hints.hint(1, &cpu).is_some());
        // An exit of another kind, then the limit again: hinted again.
        assert_eq!(hints.hint(0, &[]), None);
        let both = ["--rlimit cpu=1", "--rlimit fsize=1"];
        assert_eq!(
            hints.hint(0, &both).as_deref(),
            Some("; likely cause: --rlimit cpu=1 or --rlimit fsize=1 (a worker past its resource limit gets this signal)")
        );
    }
}
