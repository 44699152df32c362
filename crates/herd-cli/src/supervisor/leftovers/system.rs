//! The real [`Groups`]: `/proc`, `kill(-pgid)`, `waitpid`.

use std::collections::{HashMap, HashSet};

use herd_sys::process::{self, Signal};

use super::{Groups, Stat};
use crate::logging::LogEvent;

/// The real system: `/proc`, `kill(-pgid)`, `waitpid`.
#[derive(Default)]
pub struct System {
    /// Every process group's live processes, as [`Groups::refresh`] read them all at once.
    snapshot: HashMap<u32, Vec<u32>>,
    /// Processes not read: herd's live workers, each the leader of a group of its own (herd
    /// made it so), so none is what another process left. A worker that moved itself into
    /// another's group is not taken for that group's leftover.
    workers: HashSet<u32>,
    /// Whether `/proc` is read at all: not when herd knows that no process lives below the
    /// exited leaders ([`super::may_have_members`]), which saves reading every process on a
    /// machine running thousands of workers at each exit.
    scan: bool,
}

impl System {
    /// The system, where `workers` (herd's live workers) are known to lead their own groups.
    pub fn new(workers: HashSet<u32>) -> System {
        System {
            snapshot: HashMap::new(),
            workers,
            scan: true,
        }
    }

    /// The system when no process can be in the exited leaders' groups but the leaders
    /// themselves: every group is empty, and nothing is read.
    pub fn empty() -> System {
        System {
            scan: false,
            ..System::default()
        }
    }
}

impl Groups for System {
    fn refresh(&mut self) {
        if self.scan {
            self.snapshot = process::process_groups_except(&self.workers);
        }
    }

    fn members(&mut self, pgid: u32) -> Vec<u32> {
        let mut pids = self.snapshot.get(&pgid).cloned().unwrap_or_default();
        pids.retain(|&p| p != pgid);
        pids
    }

    fn signal(&mut self, pgid: u32, signal: Signal) {
        // The group alone, never a process that got its leader's pid (an attached leader is
        // not held by herd). A stop signal is followed by SIGCONT, so that a paused process can
        // act on it.
        let sent = process::send_stop(signal, |signal| process::signal_group_only(pgid, signal));
        // An empty group (ESRCH) has nothing left to stop: the next look forgets it.
        if let Err(e) = sent.or_else(|e| match e.raw_os_error() {
            Some(libc::ESRCH) => Ok(()),
            _ => Err(e),
        }) {
            tracing::warn!(
                event = LogEvent::SignalFailed.as_str(),
                pgid,
                "cannot send {signal} to what process {pgid} left: {e}"
            );
        }
    }

    fn stat(&mut self, pid: u32) -> Option<Stat> {
        let (session, start_time) = process::session_and_start_time(pid)?;
        Some(Stat {
            session,
            start_time,
        })
    }

    fn now_ticks(&mut self) -> u64 {
        crate::supervisor::attached::boot_ticks()
    }

    fn reap(&mut self, pgid: u32) -> bool {
        match process::reap(pgid) {
            Ok(reaped) => reaped.is_some(),
            // Not (or no longer) our child: nothing to hold.
            Err(_) => true,
        }
    }
}
