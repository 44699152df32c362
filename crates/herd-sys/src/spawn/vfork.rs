//! Linux: starting the child with `clone(CLONE_VM | CLONE_VFORK | SIGCHLD)` on a stack of its
//! own, as glibc's `posix_spawn` does, instead of `fork`. The child shares herd's memory
//! instead of copying its page tables (fork's cost grows with herd's mappings: about a third
//! of a millisecond per worker at 4096 workers), and the calling thread sleeps in the kernel
//! until the child has called `execve` or exited. [`start_beside`] makes the same clone
//! without `CLONE_VFORK`, for [`super::batch`], which says what changes when the calling
//! thread runs on meanwhile.
//!
//! What sharing the memory changes, and why the child stays correct:
//!
//! - **Writes.** The child writes only into the buffers the parent prepared for it (the
//!   `LISTEN_PID=` slot, the `moved` fd array), errno and its own stack. Those buffers
//!   belong to the spawning thread's frame, which is suspended, and nothing else refers to
//!   them; they are dropped only after the child has gone.
//! - **errno** is the spawning thread's (the child runs with its thread pointer): harmless,
//!   since that thread is suspended until the child has gone, and reads errno afresh after.
//! - **Other threads** of herd (the runtime's, the health endpoint, the sampler) keep running
//!   beside the child. The child takes no lock and allocates nothing, so no lock they hold
//!   matters to it, and it reads only memory they cannot reach.
//! - **glibc's thread state** is the spawning thread's, so the child makes directly the calls
//!   glibc builds on it (see [`super::direct`]): `setuid` and co., which glibc would broadcast
//!   to herd's threads; `getpid` and `raise`, which could name the parent.
//! - **Signals.** Without `CLONE_SIGHAND` the child has its own copy of the dispositions. It
//!   starts with every signal blocked (the spawning thread blocks all, glibc's reserved ones
//!   included, across the clone) and resets every disposition before unblocking, so none of
//!   herd's handlers ever runs on the child's stack. A fault there (a stack overflow into the
//!   guard page) is forced to its default action: the child dies, the parent sees EOF.
//! - **Per-process state** the child changes (fds, limits, umask, directory, process group,
//!   nice value, parent-death signal) is its own: no `CLONE_FILES`, `CLONE_FS` or
//!   `CLONE_THREAD`. `PR_SET_PDEATHSIG` still follows the spawning thread, as with `fork`.
//! - **The stack** is mapped before the clone (with a guard page below it) and unmapped once
//!   the child no longer runs on it: when the clone returns, or for [`start_beside`], after
//!   EOF on the child's status pipe.
//!
//! Where the kernel refuses the flags (`ENOSYS`, `EINVAL`: some sandboxes), [`start`] says so
//! and the caller forks instead.

use std::io;
use std::ptr;

use super::child::Child;

/// The child's stack, without the guard page: the child's code needs a few KiB (see the
/// test `the_child_stack_is_large_enough`); only the pages it touches are ever allocated.
const STACK_SIZE: usize = 64 * 1024;

/// Starts `child` in a clone that shares this process's memory; returns once it has called
/// `execve` or exited: its pid, or `None` if this kernel refuses such clones. `extra_flags`
/// is for tests, which make the kernel refuse.
///
/// Every signal must be blocked in the calling thread (see the module's docs).
pub(super) fn start(
    child: &Child<'_>,
    extra_flags: libc::c_int,
) -> io::Result<Option<libc::pid_t>> {
    // CLONE_VFORK suspends this thread until the child has exec'd or exited: the stack can
    // go when the clone returns.
    let started = clone(child, libc::CLONE_VFORK | extra_flags)?;
    Ok(started.map(|(pid, _stack)| pid))
}

/// Starts `child` in a clone that shares this process's memory, and returns at once, with
/// its stack: the caller keeps `child`, everything it points to and the stack until the
/// child has exec'd or exited (EOF on its status pipe). `None` if this kernel refuses such
/// clones. See [`super::batch`] for what this thread may do meanwhile.
///
/// Every signal must be blocked in the calling thread (see the module's docs).
pub(super) fn start_beside(
    child: &Child<'_>,
    extra_flags: libc::c_int,
) -> io::Result<Option<(libc::pid_t, ChildStack)>> {
    clone(child, extra_flags)
}

fn clone(child: &Child<'_>, flags: libc::c_int) -> io::Result<Option<(libc::pid_t, ChildStack)>> {
    let stack = ChildStack::map()?;
    let arg = child as *const Child<'_> as *mut libc::c_void;
    // SAFETY: `enter` runs `child` on the mapped stack, whose top is page-aligned (more than
    // any ABI's alignment), in a process that shares our memory: see the module's docs for
    // what it may touch. Our callers keep `child`, everything it points to, and the stack
    // until the child has exec'd or exited (CLONE_VFORK waits for that; without it, the
    // caller waits for EOF on the status pipe before dropping them).
    let pid = unsafe {
        libc::clone(
            enter,
            stack.top(),
            libc::CLONE_VM | libc::SIGCHLD | flags,
            arg,
        )
    };
    if pid < 0 {
        let error = io::Error::last_os_error();
        return match error.raw_os_error() {
            Some(libc::ENOSYS) | Some(libc::EINVAL) => Ok(None),
            _ => Err(error),
        };
    }
    Ok(Some((pid, stack)))
}

/// The clone's entry point: runs the child's steps, never returns.
extern "C" fn enter(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `Child` that `start` passed, alive while the parent is suspended;
    // this is the child of a clone(CLONE_VM | CLONE_VFORK), for which its steps are made.
    unsafe { (*(arg as *const Child<'_>)).exec() }
}

/// An anonymous mapping for the child's stack: a guard page, then [`STACK_SIZE`] bytes.
/// Dropped (unmapped) once the child no longer runs on it.
pub(super) struct ChildStack {
    base: *mut libc::c_void,
    len: usize,
    #[cfg_attr(not(test), allow(dead_code))]
    guard: usize,
}

impl ChildStack {
    fn map() -> io::Result<ChildStack> {
        // SAFETY: sysconf has no preconditions.
        let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
            n if n > 0 => n as usize,
            _ => 4096,
        };
        let len = STACK_SIZE + page;
        // SAFETY: a fresh private anonymous mapping, owned by the returned value.
        let base = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let stack = ChildStack {
            base,
            len,
            guard: page,
        };
        // Stacks grow down on every Linux target Rust supports: the guard is the lowest page.
        // SAFETY: the first page of the mapping we own.
        if unsafe { libc::mprotect(base, page, libc::PROT_NONE) } < 0 {
            return Err(io::Error::last_os_error());
        }
        stack.fill_for_measure();
        Ok(stack)
    }

    /// The highest address: where the child's stack pointer starts.
    fn top(&self) -> *mut libc::c_void {
        // SAFETY: one past the end of the mapping, which is what a stack pointer starts at.
        unsafe { self.base.cast::<u8>().add(self.len).cast() }
    }

    /// Tests: fills the stack with a pattern, so that [`record_use`](Self::record_use) can
    /// tell how deep the child went.
    #[cfg(test)]
    fn fill_for_measure(&self) {
        // SAFETY: the writable part of the mapping we own.
        unsafe {
            ptr::write_bytes(
                self.base.cast::<u8>().add(self.guard),
                STACK_PATTERN,
                self.len - self.guard,
            )
        };
    }

    #[cfg(not(test))]
    fn fill_for_measure(&self) {}

    /// Tests: records in [`MAX_STACK_USED`] how many bytes of the stack the child touched.
    #[cfg(test)]
    fn record_use(&self) {
        // SAFETY: the writable part of the mapping we own; the child has gone.
        let writable = unsafe {
            std::slice::from_raw_parts(
                self.base.cast::<u8>().add(self.guard),
                self.len - self.guard,
            )
        };
        let untouched = writable.iter().take_while(|&&b| b == STACK_PATTERN).count();
        let used = writable.len() - untouched;
        MAX_STACK_USED.fetch_max(used, std::sync::atomic::Ordering::Relaxed);
    }

    #[cfg(not(test))]
    fn record_use(&self) {}
}

impl Drop for ChildStack {
    fn drop(&mut self) {
        self.record_use();
        // SAFETY: the mapping we own; the child no longer runs on it (it has exec'd, which
        // replaced its memory, or exited).
        unsafe { libc::munmap(self.base, self.len) };
    }
}

#[cfg(test)]
const STACK_PATTERN: u8 = 0xa5;

/// Tests: the most stack any child of this process used, in bytes.
#[cfg(test)]
pub(super) static MAX_STACK_USED: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);

/// The child's stack size, for tests.
#[cfg(test)]
pub(super) const STACK_BYTES: usize = STACK_SIZE;
