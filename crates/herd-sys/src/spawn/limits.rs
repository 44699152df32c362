//! How much `execve` lets a new program be given: the limits a worker's command line and
//! environment must fit, so that herd can refuse a command that could never start (`E2BIG`)
//! before it starts anything.

/// What `execve` takes at most, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecLimits {
    /// One argument, or one `NAME=value` of the environment, with its terminating NUL: Linux's
    /// `MAX_ARG_STRLEN` (32 pages: 128 KiB with 4 KiB pages); `None` where only the total is
    /// bounded.
    pub per_string: Option<usize>,
    /// Every argument and variable with its NUL, the program's path, and a pointer to each
    /// argument and variable: Linux's bound is a quarter of the stack limit, at least 128 KiB
    /// and at most 6 MiB (`sysconf(_SC_ARG_MAX)` says as much); elsewhere `sysconf(_SC_ARG_MAX)`.
    pub total: usize,
}

/// Linux's least bound on the total, whatever the stack limit (the kernel's `ARG_MAX`).
#[cfg(any(target_os = "linux", target_os = "android"))]
const LEAST_TOTAL: u64 = 128 * 1024;
/// Linux's greatest bound on the total: three quarters of the kernel's default stack limit
/// (`_STK_LIM`, 8 MiB).
#[cfg(any(target_os = "linux", target_os = "android"))]
const MOST_TOTAL: u64 = 6 * 1024 * 1024;

/// The limits for a program started with a soft stack limit of `stack` bytes (a worker's
/// `--rlimit stack`), or with this process's (`None`).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn exec_limits(stack: Option<u64>) -> ExecLimits {
    let total = match stack {
        // The kernel's own reckoning (`bprm_stack_limits` in fs/exec.c).
        Some(stack) => (stack / 4).clamp(LEAST_TOTAL, MOST_TOTAL),
        // An older glibc says a quarter of any stack limit; the kernel caps it at 6 MiB.
        None => sysconf(libc::_SC_ARG_MAX)
            .unwrap_or(LEAST_TOTAL)
            .clamp(LEAST_TOTAL, MOST_TOTAL),
    };
    ExecLimits {
        per_string: Some(to_usize(32 * crate::process::page_size())),
        total: to_usize(total),
    }
}

/// The limits for a program started with a soft stack limit of `stack` bytes, which does
/// not change them here, or with this process's (`None`).
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub fn exec_limits(_stack: Option<u64>) -> ExecLimits {
    // POSIX's least ARG_MAX where the system does not say.
    let total = sysconf(libc::_SC_ARG_MAX).unwrap_or(4096);
    ExecLimits {
        per_string: None,
        total: to_usize(total),
    }
}

/// `sysconf(name)`, where the system says (neither -1 nor 0).
fn sysconf(name: libc::c_int) -> Option<u64> {
    // SAFETY: sysconf takes an integer and returns one; it touches no memory of ours.
    let n = unsafe { libc::sysconf(name) };
    u64::try_from(n).ok().filter(|&n| n > 0)
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn linux_bounds_the_total_by_the_stack_and_each_string_by_32_pages() {
        let page = crate::process::page_size() as usize;
        let limits = exec_limits(Some(8 * 1024 * 1024));
        assert_eq!(limits.per_string, Some(32 * page));
        assert_eq!(limits.total, 2 * 1024 * 1024, "a quarter of the stack");
        assert_eq!(exec_limits(Some(64 * 1024)).total, 128 * 1024, "at least");
        assert_eq!(
            exec_limits(Some(u64::MAX)).total,
            6 * 1024 * 1024,
            "at most"
        );
        let own = exec_limits(None).total;
        assert!((128 * 1024..=6 * 1024 * 1024).contains(&own), "{own}");
    }

    #[test]
    fn the_total_is_what_sysconf_says_or_a_bound_of_it() {
        let limits = exec_limits(None);
        let said = sysconf(libc::_SC_ARG_MAX).unwrap() as usize;
        assert!(limits.total <= said.max(128 * 1024), "{limits:?} {said}");
    }
}
