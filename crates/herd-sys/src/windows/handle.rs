//! Handing a handle to another process, and taking ownership of one handed to this process.
//!
//! Windows handle values are per process: [`duplicate_into`] makes a copy of a handle inside
//! a target process (`DuplicateHandle`) and returns its value there, which the parent then
//! tells the child (in its environment or its hand-off); the child takes it with [`claim`].
//! A handle can also be inherited, at the same value, by a child spawned while it is
//! inheritable ([`set_inheritable`]).

use std::io;
use std::os::windows::io::{AsHandle, AsRawHandle, BorrowedHandle, FromRawHandle, OwnedHandle};
use std::ptr;
use std::sync::Mutex;

use windows_sys::Win32::Foundation::{
    DuplicateHandle, GetHandleInformation, SetHandleInformation, DUPLICATE_SAME_ACCESS, ERROR_BUSY,
    ERROR_INVALID_HANDLE, HANDLE, HANDLE_FLAG_INHERIT,
};
use windows_sys::Win32::System::Console::{
    GetStdHandle, STD_ERROR_HANDLE, STD_INPUT_HANDLE, STD_OUTPUT_HANDLE,
};

use super::{check, process};

/// Copies `handle` into `target` (a process handle with `PROCESS_DUP_HANDLE`, which a
/// `std::process::Child` and a [`Process`](super::process::Process) have), with the same
/// access and not inheritable, and returns its value in `target`. The copy belongs to the
/// target, which should [`claim`] it; it is closed when the target exits.
pub fn duplicate_into(handle: BorrowedHandle<'_>, target: &impl AsHandle) -> io::Result<u64> {
    let mut copy: HANDLE = ptr::null_mut();
    // SAFETY: all three handles are live for the call; `copy` is ours to fill, and names a
    // handle in the target, which this process never uses as its own.
    check(unsafe {
        DuplicateHandle(
            process::current().as_raw_handle(),
            handle.as_raw_handle(),
            target.as_handle().as_raw_handle(),
            &mut copy,
            0,
            0,
            DUPLICATE_SAME_ACCESS,
        )
    })?;
    Ok(copy as usize as u64)
}

/// Makes `handle` inheritable or not (`SetHandleInformation(HANDLE_FLAG_INHERIT)`). Every
/// process this one spawns while a handle is inheritable inherits it (std's `Command` passes
/// `bInheritHandles`), at the same value: make it inheritable only around the one spawn that
/// should have it, with no other spawn in between.
pub fn set_inheritable(handle: BorrowedHandle<'_>, inheritable: bool) -> io::Result<()> {
    let flags = if inheritable { HANDLE_FLAG_INHERIT } else { 0 };
    // SAFETY: the handle is live for the call; only its inherit flag changes.
    check(unsafe { SetHandleInformation(handle.as_raw_handle(), HANDLE_FLAG_INHERIT, flags) })
}

/// Whether `handle` is inheritable (`GetHandleInformation`).
pub fn is_inheritable(handle: BorrowedHandle<'_>) -> io::Result<bool> {
    let mut flags = 0u32;
    // SAFETY: GetHandleInformation only queries the handle table; `flags` is ours to fill.
    check(unsafe { GetHandleInformation(handle.as_raw_handle(), &mut flags) })?;
    Ok(flags & HANDLE_FLAG_INHERIT != 0)
}

/// The value of `handle` in this process, which a child that inherits it sees too.
pub fn value(handle: BorrowedHandle<'_>) -> u64 {
    handle.as_raw_handle() as usize as u64
}

/// The handle values [`claim`] has handed out in this process. A value stays here for the
/// life of the process, also after its `OwnedHandle` closed it: a later handle that reuses the
/// value is owned by whoever opened it, never by a second claim.
static CLAIMED: Mutex<Vec<u64>> = Mutex::new(Vec::new());

/// Takes ownership of the handle `value` that another process duplicated into this one
/// ([`duplicate_into`]), after checking that it is open (`GetHandleInformation`).
///
/// Each value can be claimed once per process: a second claim fails with `ERROR_BUSY` (even
/// after the first `OwnedHandle` was dropped), a value that is not an open handle with
/// `ERROR_INVALID_HANDLE`, as does a standard handle (std owns those). Claim only values
/// another process handed over: a handle this process opened itself already has an owner.
pub fn claim(value: u64) -> io::Result<OwnedHandle> {
    let raw = usize::try_from(value).map_err(|_| invalid())? as HANDLE;
    if raw.is_null() || is_standard(raw) {
        return Err(invalid());
    }
    // The lock is held until the handle is owned, so that two threads cannot both claim it.
    let mut claimed = CLAIMED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let at = match claimed.binary_search(&value) {
        Ok(_) => return Err(io::Error::from_raw_os_error(ERROR_BUSY as i32)),
        Err(at) => at,
    };
    let mut flags = 0u32;
    // SAFETY: GetHandleInformation only queries the handle table.
    if unsafe { GetHandleInformation(raw, &mut flags) } == 0 {
        return Err(invalid());
    }
    claimed.insert(at, value);
    drop(claimed);
    // SAFETY: `raw` is an open handle (checked above), not a standard one (std owns those),
    // and this is the only `OwnedHandle` that will ever be made of it here: CLAIMED, under its
    // lock, records every value this function handed out, for good. The values passed in are
    // the ones another process duplicated into this one, which nothing here owns yet; herd's
    // crates take them only through this function (they forbid `unsafe`).
    Ok(unsafe { OwnedHandle::from_raw_handle(raw) })
}

fn is_standard(raw: HANDLE) -> bool {
    [STD_INPUT_HANDLE, STD_OUTPUT_HANDLE, STD_ERROR_HANDLE]
        .into_iter()
        // SAFETY: GetStdHandle takes an integer and only reads the process parameters.
        .any(|which| unsafe { GetStdHandle(which) } == raw)
}

fn invalid() -> io::Error {
    io::Error::from_raw_os_error(ERROR_INVALID_HANDLE as i32)
}
