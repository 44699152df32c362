//! Starting the child process: on Linux a clone that shares this process's memory (see
//! [`super::vfork`]), with `fork` where the kernel refuses it and on other systems.

use std::io;

use super::child::Child;
#[cfg(target_os = "linux")]
use super::vfork;

/// How to start the child: the clone where it works (the default), or as tests ask.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(target_os = "linux"), allow(dead_code))] // tests' choices, Linux's
pub(super) enum How {
    /// On Linux `clone(CLONE_VM | CLONE_VFORK)`, with `fork` where the kernel refuses it;
    /// `fork` elsewhere.
    CloneOrFork,
    /// Tests: `fork` even where the clone works.
    Fork,
    /// Tests: ask for the clone with flags the kernel refuses (`EINVAL`), as a kernel or
    /// sandbox that refuses the clone would, then `fork`.
    RefusedClone,
}

/// Starts the child: on Linux a clone sharing this process's memory (returning once it has
/// exec'd or exited), unless the kernel refuses it; else `fork`.
#[cfg(target_os = "linux")]
pub(super) fn start(child: &Child<'_>, how: How) -> io::Result<libc::pid_t> {
    if how != How::Fork {
        if let Some(pid) = vfork::start(child, refused_flags(how))? {
            return Ok(pid);
        }
    }
    fork(child)
}

#[cfg(not(target_os = "linux"))]
pub(super) fn start(child: &Child<'_>, _how: How) -> io::Result<libc::pid_t> {
    fork(child)
}

/// What a child started beside its parent runs on, held until it has exec'd or exited: on
/// Linux the stack of a clone sharing this process's memory (`None` after a `fork`).
#[cfg(target_os = "linux")]
pub(super) type Stack = Option<vfork::ChildStack>;
#[cfg(not(target_os = "linux"))]
pub(super) type Stack = ();

/// Starts the child and returns at once: on Linux a clone sharing this process's memory,
/// which runs on the returned stack until it has exec'd or exited (see [`super::batch`]),
/// unless the kernel refuses it; else `fork`.
#[cfg(target_os = "linux")]
pub(super) fn start_beside(child: &Child<'_>, how: How) -> io::Result<(libc::pid_t, Stack)> {
    if how != How::Fork {
        let refused = refused_flags(how);
        if let Some((pid, stack)) = vfork::start_beside(child, refused)? {
            return Ok((pid, Some(stack)));
        }
    }
    Ok((fork(child)?, None))
}

#[cfg(not(target_os = "linux"))]
pub(super) fn start_beside(child: &Child<'_>, _how: How) -> io::Result<(libc::pid_t, Stack)> {
    Ok((fork(child)?, ()))
}

/// Flags that make the kernel refuse the clone, as tests ask.
#[cfg(target_os = "linux")]
fn refused_flags(how: How) -> libc::c_int {
    // CLONE_THREAD without CLONE_SIGHAND: EINVAL, before anything is created.
    if how == How::RefusedClone {
        libc::CLONE_THREAD
    } else {
        0
    }
}

/// Forks; the child runs `child`'s steps and never returns.
fn fork(child: &Child<'_>) -> io::Result<libc::pid_t> {
    // SAFETY: fork has no preconditions; the child branch runs only async-signal-safe code
    // on memory prepared before and never returns.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: we are the child of a fork; `child` points at buffers that are still
        // alive in our copy of the address space.
        unsafe { child.exec() }
    }
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    #[cfg(test)]
    FORKS.with(|forks| forks.set(forks.get() + 1));
    Ok(pid)
}

#[cfg(test)]
thread_local! {
    /// Tests: how many children this thread started with `fork`.
    pub(super) static FORKS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}
