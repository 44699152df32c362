//! Ctrl-C as a graceful stop request for console workers.
//!
//! herd starts each worker in a process group of its own (`CREATE_NEW_PROCESS_GROUP`), whose
//! id is the worker's pid, and stops it with [`send_ctrl_c`]. Windows starts such a group with
//! Ctrl-C ignored, handlers included, so an unmodified program never sees it: the worker
//! accepts it again with [`restore_ctrl_c`].
//! Ctrl-Break, which a group always receives, would need no such step, but Wine never
//! delivers it.
//!
//! The sender must be attached to the same console as the worker: a herd started without a
//! console (as a service, or with its output redirected under some hosts) first calls
//! [`own_console`].

use std::io;

use windows_sys::Win32::System::Console::{
    AllocConsole, FreeConsole, GenerateConsoleCtrlEvent, SetConsoleCtrlHandler, CTRL_C_EVENT,
};

use super::check;

/// Sends Ctrl-C to the process group `process_group_id` (`GenerateConsoleCtrlEvent`): the
/// group of a worker started with `CREATE_NEW_PROCESS_GROUP` has the worker's pid as its id.
/// Group 0, every process on the console (herd included), is refused with `InvalidInput`.
pub fn send_ctrl_c(process_group_id: u32) -> io::Result<()> {
    if process_group_id == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "Ctrl-C to group 0 would reach every process on the console",
        ));
    }
    // SAFETY: GenerateConsoleCtrlEvent takes two integers.
    check(unsafe { GenerateConsoleCtrlEvent(CTRL_C_EVENT, process_group_id) })
}

/// In a worker: accepts Ctrl-C again (`SetConsoleCtrlHandler(NULL, FALSE)`), which a process
/// started in a new process group ignores. Its handlers, or the default one that ends it, then
/// run on Ctrl-C.
pub fn restore_ctrl_c() -> io::Result<()> {
    // SAFETY: a null handler with FALSE only clears the process's ignore-Ctrl-C flag.
    check(unsafe { SetConsoleCtrlHandler(None, 0) })
}

/// Gives the calling process a console of its own (`FreeConsole`, then `AllocConsole`), so
/// that it can send Ctrl-C to the workers it starts afterwards, which share it. Redirected
/// standard handles stayed redirected under Wine.
pub fn own_console() -> io::Result<()> {
    // SAFETY: FreeConsole takes no arguments; it fails harmlessly when there is no console.
    unsafe { FreeConsole() };
    // SAFETY: AllocConsole takes no arguments.
    check(unsafe { AllocConsole() })
}
