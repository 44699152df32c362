//! The walk that raises a worker's tree back to herd's priority (out of `SCHED_IDLE`, or
//! from the starting nice value), over [`Tasks`]: `/proc` and the scheduler in herd, a fake in
//! the tests, so that its ordering is tested without processes.
//!
//! A thread or process inherits its creator's class and nice value at creation, so one created
//! by a thread still lowered while a pass runs (after the pass listed its process's threads,
//! before it raised its creator) is born lowered, unseen. The walk therefore makes another
//! pass as long as the last one raised a thread (every creator seen idle has been raised by
//! then), at most [`MAX_PASSES`].

use std::io;

use super::{Raised, MAX_PROCESSES};

/// The most passes one raise makes: a tree that keeps creating threads from idle ones does
/// not hold herd.
pub(crate) const MAX_PASSES: usize = 4;

/// What a walk reads and changes.
pub(crate) trait Tasks {
    /// The threads of process `pid`; none if it is gone.
    fn threads(&self, pid: u32) -> Vec<u32>;
    /// The processes thread `tid` of `pid` started; none if it is gone.
    fn children(&self, pid: u32, tid: u32) -> Vec<u32>;
    /// The other processes of process group `pgid`.
    fn group_members(&self, pgid: u32) -> Vec<u32>;
    /// Whether thread `tid` runs at the priority herd lowered it to (`ESRCH`: it is gone).
    fn is_lowered(&self, tid: u32) -> io::Result<bool>;
    /// Gives thread `tid` herd's priority back.
    fn raise(&mut self, tid: u32) -> io::Result<()>;
}

/// Raises every thread of `pid` and of the processes it started (from the lists of children
/// if `listed`, else from its process group) that is still lowered: passes until one raises
/// nothing. `ESRCH` when `pid` is gone; otherwise the first other error met.
pub(crate) fn raise_with(tasks: &mut impl Tasks, pid: u32, listed: bool) -> io::Result<Raised> {
    let mut walk = Walk {
        tasks,
        raised: Raised::default(),
        error: None,
    };
    for _ in 0..MAX_PASSES {
        let before = walk.raised.threads;
        walk.pass(pid, listed)?;
        if walk.raised.threads == before {
            break;
        }
    }
    match walk.error {
        Some(e) => Err(e),
        None => Ok(walk.raised),
    }
}

struct Walk<'t, T> {
    tasks: &'t mut T,
    raised: Raised,
    error: Option<io::Error>,
}

impl<T: Tasks> Walk<'_, T> {
    /// One pass over the tree; `processes` counts this pass's.
    fn pass(&mut self, pid: u32, listed: bool) -> io::Result<()> {
        self.raised.processes = 0;
        // The main thread first: a thread it starts from now on is born raised.
        self.raise(pid)?;
        let mut pending = vec![pid];
        while let Some(process) = pending.pop() {
            self.raised.processes += 1;
            for tid in self.tasks.threads(process) {
                // The worker's main thread is raised already.
                if tid != pid {
                    let _ = self.raise(tid);
                }
                if listed {
                    pending.extend(self.tasks.children(process, tid));
                }
            }
            if self.raised.processes + pending.len() >= MAX_PROCESSES {
                break;
            }
        }
        if !listed {
            self.raise_group(pid);
        }
        Ok(())
    }

    /// Raises thread `tid` if it is still lowered. `Err` only when it is gone.
    fn raise(&mut self, tid: u32) -> io::Result<()> {
        if !self.tasks.is_lowered(tid)? {
            return Ok(());
        }
        match self.tasks.raise(tid) {
            Ok(()) => {
                self.raised.threads += 1;
                Ok(())
            }
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Err(e),
            Err(e) => {
                self.error.get_or_insert(e);
                Ok(())
            }
        }
    }

    /// Where the kernel does not list children: every other process of `pgid`'s group,
    /// each thread.
    fn raise_group(&mut self, pgid: u32) {
        let members = self.tasks.group_members(pgid);
        for member in members.into_iter().take(MAX_PROCESSES) {
            self.raised.processes += 1;
            for tid in self.tasks.threads(member) {
                let _ = self.raise(tid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    const IDLE: i32 = 5;

    /// Threads by process, each thread's policy; raising `creator` first creates `created`
    /// (in `SCHED_IDLE`, as a thread it started just before would be), as if it happened after
    /// the pass listed the threads.
    #[derive(Default)]
    struct Fake {
        threads: BTreeMap<u32, Vec<u32>>,
        policy: BTreeMap<u32, i32>,
        creates: Option<(u32, u32, u32)>,
    }

    impl Tasks for Fake {
        fn threads(&self, pid: u32) -> Vec<u32> {
            self.threads.get(&pid).cloned().unwrap_or_default()
        }
        fn children(&self, _pid: u32, _tid: u32) -> Vec<u32> {
            Vec::new()
        }
        fn group_members(&self, _pgid: u32) -> Vec<u32> {
            Vec::new()
        }
        fn is_lowered(&self, tid: u32) -> io::Result<bool> {
            let policy = self.policy.get(&tid).copied();
            policy
                .map(|p| p == IDLE)
                .ok_or_else(|| io::Error::from_raw_os_error(libc::ESRCH))
        }
        fn raise(&mut self, tid: u32) -> io::Result<()> {
            if let Some((creator, pid, created)) = self.creates {
                if creator == tid {
                    self.creates = None;
                    self.threads.entry(pid).or_default().push(created);
                    self.policy.insert(created, IDLE);
                }
            }
            self.policy.insert(tid, 0);
            Ok(())
        }
    }

    #[test]
    fn a_thread_an_idle_thread_creates_during_a_pass_is_raised_by_the_next() {
        let mut fake = Fake::default();
        fake.threads.insert(10, vec![10, 11]);
        fake.policy.extend([(10, IDLE), (11, IDLE)]);
        // Thread 11, still idle while the pass lists the threads, starts thread 12.
        fake.creates = Some((11, 10, 12));
        let raised = raise_with(&mut fake, 10, true).unwrap();
        assert_eq!(
            fake.policy[&12], 0,
            "the thread created during the first pass"
        );
        assert_eq!((raised.threads, raised.processes), (3, 1));
        // Nothing left: one pass, nothing raised.
        assert_eq!(raise_with(&mut fake, 10, true).unwrap().threads, 0);
    }

    #[test]
    fn a_worker_gone_is_esrch() {
        let e = raise_with(&mut Fake::default(), 10, true).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ESRCH));
    }
}
