//! The walk that raises a worker's tree back to herd's priority (out of `SCHED_IDLE`, or
//! from the starting nice value), over [`Tasks`]: `/proc` and the scheduler in herd, a fake in
//! the tests, so that its ordering is tested without processes.
//!
//! A thread or process inherits its creator's class and nice value at creation, so one created
//! by a thread still lowered while a pass runs (after the pass listed its process's threads,
//! before it raised its creator) is born lowered, unseen. The walk therefore makes another
//! pass as long as the last one raised a thread (every creator seen idle has been raised by
//! then), at most [`MAX_PASSES`].
//!
//! Where the kernel does not list children, the worker's process group stands in for them,
//! found by a scan of all of `/proc` (one read per process on the machine). A pass scans only
//! when a process of the group could have been created unseen since the last scan: in the
//! first pass, and in a later one only if a thread was raised since (in this pass before its
//! scan, or in the group after the last scan); a worker that started no process costs one
//! scan per raise, not one per pass.

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
        group: None,
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
    /// The other processes of the worker's group as last scanned, and whether a thread of
    /// theirs has been raised since (where the kernel does not list children).
    group: Option<(Vec<u32>, bool)>,
}

impl<T: Tasks> Walk<'_, T> {
    /// One pass over the tree; `processes` counts this pass's.
    fn pass(&mut self, pid: u32, listed: bool) -> io::Result<()> {
        self.raised.processes = 0;
        let before = self.raised.threads;
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
            self.raise_group(pid, self.raised.threads > before);
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

    /// Where the kernel does not list children: every other process of `pgid`'s group, each
    /// thread; the group is scanned again only if a process may have joined it unseen:
    /// `raised_before`, a thread was raised in this pass before, or one of the group's was
    /// since the last scan.
    fn raise_group(&mut self, pgid: u32, raised_before: bool) {
        let members = match self.group.take() {
            Some((members, false)) if !raised_before => members,
            _ => {
                let mut members = self.tasks.group_members(pgid);
                members.truncate(MAX_PROCESSES);
                members
            }
        };
        let before = self.raised.threads;
        for &member in &members {
            self.raised.processes += 1;
            for tid in self.tasks.threads(member) {
                let _ = self.raise(tid);
            }
        }
        let raised = self.raised.threads > before;
        self.group = Some((members, raised));
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
        /// The other processes of the worker's group, and how often they were scanned for.
        group: Vec<u32>,
        scans: std::cell::Cell<usize>,
    }

    impl Tasks for Fake {
        fn threads(&self, pid: u32) -> Vec<u32> {
            self.threads.get(&pid).cloned().unwrap_or_default()
        }
        fn children(&self, _pid: u32, _tid: u32) -> Vec<u32> {
            Vec::new()
        }
        fn group_members(&self, _pgid: u32) -> Vec<u32> {
            self.scans.set(self.scans.get() + 1);
            self.group.clone()
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
                    if !self.threads.contains_key(&pid) {
                        self.group.push(pid);
                    }
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

    #[test]
    fn without_lists_of_children_a_worker_that_started_no_process_costs_one_scan() {
        let mut fake = Fake::default();
        fake.threads.insert(10, vec![10, 11]);
        fake.policy.extend([(10, IDLE), (11, IDLE)]);
        let raised = raise_with(&mut fake, 10, false).unwrap();
        assert_eq!(raised.threads, 2);
        // The second pass, which raises nothing, does not scan /proc again.
        assert_eq!(fake.scans.get(), 1);
    }

    #[test]
    fn without_lists_of_children_the_group_is_scanned_again_after_a_member_was_raised() {
        let mut fake = Fake::default();
        fake.threads.insert(10, vec![10]);
        fake.threads.insert(20, vec![20]);
        fake.policy.extend([(10, IDLE), (20, IDLE)]);
        fake.group = vec![20];
        // Member 20, still idle after the scan listed the group, starts process 30, born
        // idle in the group.
        fake.creates = Some((20, 30, 30));
        let raised = raise_with(&mut fake, 10, false).unwrap();
        assert_eq!(fake.policy[&30], 0, "found by the next pass's scan");
        assert_eq!(raised.threads, 3);
        assert_eq!(
            fake.scans.get(),
            3,
            "each pass after one that raised in the group"
        );
    }
}
