//! Windows primitives for herd's supervisor, its control channel and its workers: each a safe
//! API over owned handles (`OwnedHandle`, `BorrowedHandle`, `AsHandle`).
//!
//! - [`job`]: a Job Object that kills every process in it when herd, its holder, goes away
//!   (what `PR_SET_PDEATHSIG` does on Linux).
//! - [`pipe`]: named-pipe servers that admit only herd's user, Administrators, LocalSystem and
//!   the accounts the caller names, and the process id at the other end of a pipe (with the
//!   `tokio` feature).
//! - [`console`]: Ctrl-C to a worker's process group, and the worker side that accepts it.
//! - [`process`]: a process by pid: terminate it, its exit code, CPU time and working set.
//! - [`handle`]: handing a handle to another process (`DuplicateHandle`) and taking ownership
//!   of one handed to this process.
//! - [`shm`]: unnamed shared memory (a pagefile-backed file mapping), and mapping it.

pub mod console;
pub mod handle;
pub mod job;
#[cfg(feature = "tokio")]
pub mod pipe;
pub mod process;
pub mod shm;

use std::io;

use windows_sys::Win32::Foundation::BOOL;

/// `Ok` when a Win32 call that returns a `BOOL` succeeded, else the thread's last error.
fn check(result: BOOL) -> io::Result<()> {
    if result == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
