//! Scheduling classes (Linux): a worker moved to `SCHED_IDLE` ([`lower_to_idle`]) raised
//! back to `SCHED_OTHER`, every thread of it and of the processes it started.
//!
//! Only a thread still in `SCHED_IDLE` is raised: the worker and everything it starts inherit
//! the class, so a thread in another one chose it itself and keeps it. Raising keeps each
//! thread's nice value (herd's, which the worker inherited, unless it changed its own).
//! Leaving `SCHED_IDLE` needs `CAP_SYS_NICE`, or the same user and an `RLIMIT_NICE` of the
//! thread's own that allows its nice value (`sched_setscheduler(2)`; the kernel treats
//! `SCHED_IDLE` as nice 20).
//!
//! The processes it started: from `/proc/PID/task/TID/children` (recursively), or where the
//! kernel has no such file (no `CONFIG_PROC_CHILDREN`, checked once), the worker's process
//! group, from a scan of `/proc`: one per raise, another only after a pass raised a thread
//! that could have started a process unseen (`walk.rs`). A thread or process created
//! meanwhile by a thread still idle is found by another pass, made while the last one raised
//! a thread (`walk.rs`).

use std::io;

/// What [`raise_idle_tree`] raised.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Raised {
    /// Threads moved from `SCHED_IDLE` to `SCHED_OTHER` (or from one nice value to another;
    /// where nice values are a process's, not Linux, a process group moved counts as one).
    pub threads: usize,
    /// Processes looked at: the worker and those it started.
    pub processes: usize,
}

/// The most processes one walk looks at: a worker that forks without end does not hold herd.
#[cfg(any(target_os = "linux", target_os = "android"))]
const MAX_PROCESSES: usize = 4096;

/// **Linux and Android only; nothing elsewhere.** Moves every thread of process `pid`, and of
/// the processes it started, that is still in `SCHED_IDLE` to `SCHED_OTHER`. `ESRCH` when
/// `pid` is gone; otherwise the first other error met (`EPERM`), once every thread has been
/// tried.
pub fn raise_idle_tree(pid: u32) -> io::Result<Raised> {
    imp::raise_idle_tree(pid)
}

/// **Linux and Android only; nothing elsewhere.** Moves thread `tid` (a process's pid: its
/// main thread, its only one right after `execve`) to `SCHED_IDLE`; the threads and
/// processes it creates from then on inherit the class. Needs no privilege for a process of
/// one's own user (`CAP_SYS_NICE` for another's). `ESRCH` when it is gone.
pub fn lower_to_idle(tid: u32) -> io::Result<()> {
    imp::lower_to_idle(tid)
}

/// **Linux and Android only; 0 (`SCHED_OTHER`) elsewhere.** The scheduling policy of thread
/// `tid`, or of the calling thread for 0 (`sched_getscheduler`), `SCHED_RESET_ON_FORK`
/// included.
pub fn scheduling_policy(tid: u32) -> io::Result<i32> {
    imp::scheduling_policy(tid)
}

/// Moves every thread of process `pid`, and of the processes it started, that still runs at
/// nice value `from` to nice value `to`; a thread at another value chose it and keeps it.
/// **Linux and Android** walk the tree thread by thread, as [`raise_idle_tree`] does (a nice
/// value is a thread's own there); elsewhere the process group gets `to`
/// ([`set_group_nice`](super::set_group_nice)) if `pid` is still at `from`. `ESRCH` when
/// `pid` is gone.
pub fn raise_nice_tree(pid: u32, from: i32, to: i32) -> io::Result<Raised> {
    imp::raise_nice_tree(pid, from, to)
}

/// The nice values the threads of process `pid`, and of the processes it started, run at
/// (each once, in no order), found as [`raise_nice_tree`] finds them: **Linux and Android**
/// thread by thread, elsewhere `pid`'s own. `ESRCH` when `pid` is gone.
pub fn nice_values_of_tree(pid: u32) -> io::Result<Vec<i32>> {
    imp::nice_values_of_tree(pid)
}

/// Whether scheduling policy `policy` (as `sched_getscheduler` or field 41 of
/// `/proc/PID/stat` gives it, `SCHED_RESET_ON_FORK` or not) is `SCHED_IDLE` (5).
pub fn is_idle_policy(policy: i32) -> bool {
    const SCHED_IDLE: i32 = 5;
    const SCHED_RESET_ON_FORK: i32 = 0x4000_0000;
    policy & !SCHED_RESET_ON_FORK == SCHED_IDLE
}

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
pub(crate) use imp::raise_tree;

#[cfg(any(target_os = "linux", target_os = "android"))]
mod walk;

#[cfg(any(target_os = "linux", target_os = "android"))]
mod imp {
    use std::io;

    use super::walk::Tasks;
    use super::Raised;

    /// A `sched_param` of priority 0, the only one `SCHED_IDLE` and `SCHED_OTHER` take (musl's
    /// has more fields than glibc's, all zero here).
    fn priority_zero() -> libc::sched_param {
        // SAFETY: sched_param is plain integers (and, on musl, timespecs): all zeros is valid.
        unsafe { std::mem::zeroed() }
    }

    /// Moves thread `who` to scheduling policy `policy` at priority 0: the raw
    /// `sched_setscheduler` system call, which acts on one thread. musl's function of that
    /// name only fails with `ENOSYS` (POSIX means a process, Linux's call takes a thread), so
    /// herd built with musl makes the call itself, as glibc's wrapper does.
    fn set_policy(who: libc::pid_t, policy: libc::c_int) -> io::Result<()> {
        let param = priority_zero();
        // SAFETY: sched_setscheduler(pid_t, int, const struct sched_param *) reads the
        // sched_param we own during the call (the kernel copies only its priority field).
        let rc = unsafe {
            libc::syscall(
                libc::SYS_sched_setscheduler,
                who,
                policy,
                &param as *const libc::sched_param,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    pub(super) fn raise_idle_tree(pid: u32) -> io::Result<Raised> {
        raise_tree(pid, children_listed())
    }

    pub(super) fn raise_nice_tree(pid: u32, from: i32, to: i32) -> io::Result<Raised> {
        let nice = Some((from, to));
        super::walk::raise_with(&mut Proc { nice }, pid, children_listed())
    }

    pub(super) fn lower_to_idle(tid: u32) -> io::Result<()> {
        set_policy(crate::process::to_pid(tid)?, libc::SCHED_IDLE)
    }

    pub(super) fn nice_values_of_tree(pid: u32) -> io::Result<Vec<i32>> {
        let mut survey = Survey::default();
        super::walk::raise_with(&mut survey, pid, children_listed())?;
        Ok(survey.seen.into_inner())
    }

    /// A walk that raises nothing: it notes each thread's nice value.
    #[derive(Default)]
    struct Survey {
        seen: std::cell::RefCell<Vec<i32>>,
    }

    impl Tasks for Survey {
        fn threads(&self, pid: u32) -> Vec<u32> {
            threads(pid)
        }

        fn children(&self, pid: u32, tid: u32) -> Vec<u32> {
            children(pid, tid)
        }

        fn group_members(&self, pgid: u32) -> Vec<u32> {
            crate::process::group_members(pgid)
        }

        fn is_lowered(&self, tid: u32) -> io::Result<bool> {
            let nice = crate::process::nice_of(tid)?;
            let mut seen = self.seen.borrow_mut();
            if !seen.contains(&nice) {
                seen.push(nice);
            }
            Ok(false)
        }

        fn raise(&mut self, _tid: u32) -> io::Result<()> {
            Ok(())
        }
    }

    pub(super) fn scheduling_policy(tid: u32) -> io::Result<i32> {
        let who = if tid == 0 {
            0
        } else {
            crate::process::to_pid(tid)?
        };
        // SAFETY: sched_getscheduler(pid_t) takes a plain integer. The raw system call, as in
        // `set_policy`: musl's function only fails with ENOSYS.
        let policy = unsafe { libc::syscall(libc::SYS_sched_getscheduler, who) };
        if policy < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(policy as i32)
    }

    /// [`raise_idle_tree`], finding the processes `pid` started from the lists of children
    /// if `listed`, else from its process group.
    pub(crate) fn raise_tree(pid: u32, listed: bool) -> io::Result<Raised> {
        super::walk::raise_with(&mut Proc { nice: None }, pid, listed)
    }

    /// `/proc` and the scheduler: threads in `SCHED_IDLE` raised to `SCHED_OTHER`, or with
    /// `nice`, threads at its first nice value raised to its second.
    struct Proc {
        nice: Option<(i32, i32)>,
    }

    impl Tasks for Proc {
        fn threads(&self, pid: u32) -> Vec<u32> {
            threads(pid)
        }

        fn children(&self, pid: u32, tid: u32) -> Vec<u32> {
            children(pid, tid)
        }

        fn group_members(&self, pgid: u32) -> Vec<u32> {
            crate::process::group_members(pgid)
        }

        fn is_lowered(&self, tid: u32) -> io::Result<bool> {
            match self.nice {
                Some((from, _)) => crate::process::nice_of(tid).map(|nice| nice == from),
                None => scheduling_policy(tid).map(super::is_idle_policy),
            }
        }

        fn raise(&mut self, tid: u32) -> io::Result<()> {
            let who = crate::process::to_pid(tid)?;
            if let Some((_, to)) = self.nice {
                // SAFETY: setpriority takes plain integers; on Linux PRIO_PROCESS with a
                // thread id sets that thread's nice value.
                if unsafe { libc::setpriority(libc::PRIO_PROCESS, who as libc::id_t, to) } < 0 {
                    return Err(io::Error::last_os_error());
                }
                return Ok(());
            }
            set_policy(who, libc::SCHED_OTHER)
        }
    }

    /// The threads of `pid` (`/proc/PID/task`); none if it is gone.
    fn threads(pid: u32) -> Vec<u32> {
        match std::fs::read_dir(format!("/proc/{pid}/task")) {
            Ok(dir) => dir
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// The children thread `tid` of `pid` started (`/proc/PID/task/TID/children`); none if
    /// it is gone.
    fn children(pid: u32, tid: u32) -> Vec<u32> {
        std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/children"))
            .map(|list| {
                list.split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether this kernel lists a thread's children (`CONFIG_PROC_CHILDREN`): this thread's
    /// own file tells, once (0: not looked yet, 1: yes, 2: no).
    fn children_listed() -> bool {
        use std::sync::atomic::{AtomicU8, Ordering};
        static LISTED: AtomicU8 = AtomicU8::new(0);
        match LISTED.load(Ordering::Relaxed) {
            1 => true,
            2 => false,
            _ => {
                let listed = std::path::Path::new("/proc/thread-self/children").exists();
                LISTED.store(if listed { 1 } else { 2 }, Ordering::Relaxed);
                listed
            }
        }
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod imp {
    use super::Raised;

    pub(super) fn raise_idle_tree(_pid: u32) -> std::io::Result<Raised> {
        Ok(Raised::default())
    }

    pub(super) fn raise_nice_tree(pid: u32, from: i32, to: i32) -> std::io::Result<Raised> {
        if crate::process::nice_of(pid)? != from {
            return Ok(Raised::default());
        }
        crate::process::set_group_nice(pid, to)?;
        // The group (or `pid` alone, if it leads none) counts as one thread raised.
        Ok(Raised {
            threads: 1,
            processes: 1,
        })
    }

    pub(super) fn lower_to_idle(_tid: u32) -> std::io::Result<()> {
        Ok(())
    }

    pub(super) fn nice_values_of_tree(pid: u32) -> std::io::Result<Vec<i32>> {
        Ok(vec![crate::process::nice_of(pid)?])
    }

    pub(super) fn scheduling_policy(_tid: u32) -> std::io::Result<i32> {
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_is_policy_5_with_or_without_reset_on_fork() {
        assert!(is_idle_policy(5));
        assert!(is_idle_policy(5 | 0x4000_0000));
        assert!(!is_idle_policy(0));
        assert!(!is_idle_policy(3));
        assert!(!is_idle_policy(0x4000_0000));
    }

    #[test]
    fn this_thread_s_policy_is_readable() {
        let policy = scheduling_policy(0).unwrap();
        assert!((0..=6).contains(&(policy & !0x4000_0000)), "{policy}");
    }

    /// Lowered to `SCHED_IDLE`, a process reads as idle and is raised back to `SCHED_OTHER`
    /// (built with musl too, whose `sched_setscheduler` and `sched_getscheduler` only fail
    /// with `ENOSYS`: scripts/check-musl.sh runs these tests for it).
    #[test]
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn a_process_lowered_to_idle_reads_as_idle_and_is_raised_back() {
        let mut sleep = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = sleep.id();
        let before = scheduling_policy(pid).unwrap();
        assert!(!is_idle_policy(before), "{before}");
        lower_to_idle(pid).unwrap();
        let lowered = scheduling_policy(pid).unwrap();
        let raised = raise_idle_tree(pid);
        let after = scheduling_policy(pid).unwrap();
        sleep.kill().unwrap();
        sleep.wait().unwrap();
        assert!(is_idle_policy(lowered), "{lowered}");
        // Leaving SCHED_IDLE needs CAP_SYS_NICE or an RLIMIT_NICE that allows it: without
        // them the kernel refuses, as it does herd (which then says so).
        let raised = match raised {
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                assert!(crate::process::effective_uid() != 0, "{e}");
                return;
            }
            raised => raised.unwrap(),
        };
        assert_eq!((raised.threads, raised.processes), (1, 1));
        assert_eq!(after, 0);
    }

    /// The nice values of a process and of the one it started, each once.
    #[test]
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn the_nice_values_of_a_tree_are_its_threads_and_its_childrens() {
        let own = crate::process::nice_of(0).unwrap();
        let chosen = (own + 3).min(19);
        // A shell that starts a child at its own nice value, then one at `chosen`.
        let script = format!("sleep 30 & nice -n {} sleep 30 & wait", chosen - own);
        let mut sh = std::process::Command::new("sh")
            .args(["-c", &script])
            .spawn()
            .unwrap();
        let pid = sh.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut values = Vec::new();
        while std::time::Instant::now() < deadline {
            values = nice_values_of_tree(pid).unwrap();
            values.sort_unstable();
            if values.len() == 2 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = std::process::Command::new("pkill")
            .args(["-P", &pid.to_string()])
            .status();
        sh.kill().unwrap();
        sh.wait().unwrap();
        assert_eq!(values, [own, chosen]);
        assert_eq!(
            nice_values_of_tree(pid).unwrap_err().raw_os_error(),
            Some(libc::ESRCH)
        );
    }
}
