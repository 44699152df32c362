//! Windows primitives for herd's supervisor, its control channel and its workers: each a safe
//! API over owned handles (`OwnedHandle`, `BorrowedHandle`, `AsHandle`).
//!
//! - [`job`]: a Job Object that kills every process in it when herd, its holder, goes away
//!   (what `PR_SET_PDEATHSIG` does on Linux).
//! - [`pipe`]: named-pipe servers that admit only herd's user, Administrators, LocalSystem and
//!   the accounts the caller names, and their instances, never reconnected once a client is
//!   gone (with the `tokio` feature).
//! - [`peer`]: the process at the other end of a named pipe, and what waits to be read there.
//! - [`sid`]: the user a process runs as, and an account's security identifier.
//! - [`console`]: Ctrl-C to a worker's process group, and the worker side that accepts it.
//! - [`priority`]: a process's priority class, and the processes it started.
//! - [`process`]: a process by pid: terminate it, its exit code, CPU time and working set.
//! - [`handle`]: handing a handle to another process (`DuplicateHandle`) and taking ownership
//!   of one handed to this process.
//! - [`shm`]: unnamed shared memory (a pagefile-backed file mapping), and mapping it.
//! - [`event`]: a manual-reset event: herd's stop request to a worker.

pub mod console;
pub mod event;
pub mod handle;
pub mod job;
pub mod peer;
#[cfg(feature = "tokio")]
pub mod pipe;
pub mod priority;
pub mod process;
pub mod shm;
pub mod sid;

use std::io;
use std::os::windows::io::{AsRawHandle, BorrowedHandle};
use std::time::Duration;

use windows_sys::Win32::Foundation::{BOOL, WAIT_FAILED, WAIT_OBJECT_0, WAIT_TIMEOUT};
use windows_sys::Win32::System::Threading::{WaitForSingleObject, INFINITE};

/// `Ok` when a Win32 call that returns a `BOOL` succeeded, else the thread's last error.
fn check(result: BOOL) -> io::Result<()> {
    if result == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Waits up to `timeout` (`None`: for ever) for `object` to be signalled
/// (`WaitForSingleObject`); whether it was.
fn wait_for(object: BorrowedHandle<'_>, timeout: Option<Duration>) -> io::Result<bool> {
    let millis = match timeout {
        // INFINITE is u32::MAX: a finite wait stops one millisecond short of it.
        Some(t) => u32::try_from(t.as_millis()).unwrap_or(INFINITE - 1),
        None => INFINITE,
    };
    // SAFETY: the handle is live for the call.
    match unsafe { WaitForSingleObject(object.as_raw_handle(), millis) } {
        WAIT_OBJECT_0 => Ok(true),
        WAIT_TIMEOUT => Ok(false),
        WAIT_FAILED => Err(io::Error::last_os_error()),
        other => Err(io::Error::new(
            io::ErrorKind::Other,
            format!("unexpected wait result {other:#x}"),
        )),
    }
}
