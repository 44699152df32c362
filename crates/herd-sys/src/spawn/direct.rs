//! The system calls around a spawn that glibc wraps with state of its own, made directly on
//! Linux, so that they are safe in a child that shares herd's memory (see [`super::vfork`]):
//!
//! - `getpid`, `getppid`, `kill`: the child's own answers, never a pid cached in the
//!   parent thread's descriptor (glibc's `raise` signals the thread that descriptor names);
//! - `setgroups`, `setgid`, `setuid`: glibc broadcasts them to every thread of the process
//!   (nptl's "setxid"), which from a child sharing the parent's memory would signal, and
//!   wait for, the parent's threads, and change their credentials;
//! - `rt_sigprocmask`: glibc's `sigprocmask` and `pthread_sigmask` leave its two reserved
//!   signals (32 and 33) unblocked; blocking *every* signal in the spawning thread, as
//!   `posix_spawn` does, keeps glibc's own handlers out of the child too.
//!
//! Elsewhere these are the libc functions of the same names.

pub(super) use imp::*;

#[cfg(target_os = "linux")]
mod imp {
    use std::io;
    use std::mem;
    use std::ptr;

    /// The kernel's signal set size (`_NSIG / 8`).
    #[cfg(any(target_arch = "mips", target_arch = "mips64"))]
    const KERNEL_SIGSET_SIZE: libc::size_t = 16;
    #[cfg(not(any(target_arch = "mips", target_arch = "mips64")))]
    const KERNEL_SIGSET_SIZE: libc::size_t = 8;

    /// Sets the calling thread's signal mask to `set`, returning the previous one.
    /// Async-signal-safe.
    unsafe fn set_mask(set: &libc::sigset_t, previous: *mut libc::sigset_t) -> libc::c_long {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            set as *const libc::sigset_t,
            previous,
            KERNEL_SIGSET_SIZE,
        )
    }

    /// Blocks every signal in the calling thread, glibc's reserved ones included; returns the
    /// previous mask for [`restore_mask`].
    pub(in crate::spawn) fn block_all() -> io::Result<libc::sigset_t> {
        // SAFETY: sigset_t is plain bits: all ones is every signal, zeroed is valid output
        // space; the kernel reads and writes KERNEL_SIGSET_SIZE bytes of them, which glibc's
        // larger sigset_t begins with.
        unsafe {
            let mut all: libc::sigset_t = mem::zeroed();
            ptr::write_bytes(
                &mut all as *mut libc::sigset_t as *mut u8,
                0xff,
                mem::size_of::<libc::sigset_t>(),
            );
            let mut previous: libc::sigset_t = mem::zeroed();
            if set_mask(&all, &mut previous) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(previous)
        }
    }

    /// Restores a mask [`block_all`] returned.
    pub(in crate::spawn) fn restore_mask(previous: &libc::sigset_t) {
        // SAFETY: `previous` is a mask the kernel wrote; no output.
        unsafe { set_mask(previous, ptr::null_mut()) };
    }

    /// Sets the mask to `mask` in the child. Async-signal-safe.
    pub(in crate::spawn) unsafe fn set_child_mask(mask: &libc::sigset_t) -> bool {
        set_mask(mask, ptr::null_mut()) == 0
    }

    /// The calling process's pid, from the kernel. Async-signal-safe.
    pub(in crate::spawn) unsafe fn own_pid() -> libc::pid_t {
        libc::syscall(libc::SYS_getpid) as libc::pid_t
    }

    /// The calling process's parent's pid, from the kernel. Async-signal-safe.
    pub(in crate::spawn) unsafe fn parent_pid() -> libc::pid_t {
        libc::syscall(libc::SYS_getppid) as libc::pid_t
    }

    /// Sends `sig` to the calling process. Async-signal-safe.
    pub(in crate::spawn) unsafe fn signal_self(sig: libc::c_int) {
        libc::syscall(libc::SYS_kill, own_pid(), sig);
    }

    /// `setgroups`, `setgid` then `setuid` for this process alone: whether all succeeded
    /// (errno says why not). Async-signal-safe.
    pub(in crate::spawn) unsafe fn set_ids(
        uid: libc::uid_t,
        gid: libc::gid_t,
        groups: &[libc::gid_t],
    ) -> bool {
        let (setgroups, setgid, setuid) = ids::CALLS;
        libc::syscall(setgroups, groups.len() as libc::c_long, groups.as_ptr()) == 0
            && libc::syscall(setgid, gid as libc::c_long) == 0
            && libc::syscall(setuid, uid as libc::c_long) == 0
    }

    /// The 32-bit id calls: their own numbers where the first ones took 16-bit ids.
    #[cfg(any(target_arch = "x86", target_arch = "arm"))]
    mod ids {
        pub(super) const CALLS: (libc::c_long, libc::c_long, libc::c_long) = (
            libc::SYS_setgroups32,
            libc::SYS_setgid32,
            libc::SYS_setuid32,
        );
    }
    #[cfg(not(any(target_arch = "x86", target_arch = "arm")))]
    mod ids {
        pub(super) const CALLS: (libc::c_long, libc::c_long, libc::c_long) =
            (libc::SYS_setgroups, libc::SYS_setgid, libc::SYS_setuid);
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use std::io;
    use std::mem;
    use std::ptr;

    /// Blocks every signal in the calling thread; returns the previous mask.
    pub(in crate::spawn) fn block_all() -> io::Result<libc::sigset_t> {
        // SAFETY: zeroed sigset_t values are valid inputs to sigfillset and pthread_sigmask,
        // which write into them.
        unsafe {
            let mut all: libc::sigset_t = mem::zeroed();
            libc::sigfillset(&mut all);
            let mut previous: libc::sigset_t = mem::zeroed();
            let rc = libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut previous);
            if rc != 0 {
                return Err(io::Error::from_raw_os_error(rc));
            }
            Ok(previous)
        }
    }

    /// Restores a mask [`block_all`] returned.
    pub(in crate::spawn) fn restore_mask(previous: &libc::sigset_t) {
        // SAFETY: restores the mask pthread_sigmask returned for this thread.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, previous, ptr::null_mut()) };
    }

    pub(in crate::spawn) unsafe fn set_child_mask(mask: &libc::sigset_t) -> bool {
        libc::sigprocmask(libc::SIG_SETMASK, mask, ptr::null_mut()) == 0
    }

    pub(in crate::spawn) unsafe fn own_pid() -> libc::pid_t {
        libc::getpid()
    }

    #[cfg(target_os = "android")] // for the parent-death signal
    pub(in crate::spawn) unsafe fn parent_pid() -> libc::pid_t {
        libc::getppid()
    }

    pub(in crate::spawn) unsafe fn signal_self(sig: libc::c_int) {
        libc::kill(libc::getpid(), sig);
    }

    pub(in crate::spawn) unsafe fn set_ids(
        uid: libc::uid_t,
        gid: libc::gid_t,
        groups: &[libc::gid_t],
    ) -> bool {
        libc::setgroups(groups.len() as _, groups.as_ptr()) == 0
            && libc::setgid(gid) == 0
            && libc::setuid(uid) == 0
    }
}
