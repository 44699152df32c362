//! The two ends of a named pipe: which process serves it, which one connected, and how much
//! the other end has written that is not read yet. Blocking, on any handle to a pipe (std's
//! `File` as tokio's pipes), so that clients without tokio use it too.

use std::io;
use std::os::windows::io::{AsHandle, AsRawHandle};
use std::ptr;

use windows_sys::Win32::Foundation::{ERROR_BROKEN_PIPE, ERROR_PIPE_NOT_CONNECTED};
use windows_sys::Win32::System::Pipes::{
    GetNamedPipeClientProcessId, GetNamedPipeServerProcessId, PeekNamedPipe,
};

use super::check;

/// The process id of the client connected to a server instance
/// (`GetNamedPipeClientProcessId`).
pub fn client_process_id(pipe: &impl AsHandle) -> io::Result<u32> {
    let mut pid = 0u32;
    // SAFETY: the pipe handle is live for the call; `pid` is ours to fill.
    check(unsafe { GetNamedPipeClientProcessId(pipe.as_handle().as_raw_handle(), &mut pid) })?;
    Ok(pid)
}

/// The process id of the server at the other end of a client's pipe
/// (`GetNamedPipeServerProcessId`).
pub fn server_process_id(pipe: &impl AsHandle) -> io::Result<u32> {
    let mut pid = 0u32;
    // SAFETY: the pipe handle is live for the call; `pid` is ours to fill.
    check(unsafe { GetNamedPipeServerProcessId(pipe.as_handle().as_raw_handle(), &mut pid) })?;
    Ok(pid)
}

/// How many bytes wait to be read from `pipe` (`PeekNamedPipe`, which does not block);
/// `None` once the other end has closed and nothing is left.
pub fn bytes_waiting(pipe: &impl AsHandle) -> io::Result<Option<usize>> {
    let mut available = 0u32;
    // SAFETY: the pipe handle is live for the call; `available` is ours to fill; the buffer
    // and the other counts are null, which the call allows.
    let peeked = check(unsafe {
        PeekNamedPipe(
            pipe.as_handle().as_raw_handle(),
            ptr::null_mut(),
            0,
            ptr::null_mut(),
            &mut available,
            ptr::null_mut(),
        )
    });
    match peeked {
        Ok(()) => Ok(Some(available as usize)),
        Err(e) if closed(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether `e` says that the other end of the pipe has gone.
fn closed(e: &io::Error) -> bool {
    let code = e.raw_os_error();
    code == Some(ERROR_BROKEN_PIPE as i32) || code == Some(ERROR_PIPE_NOT_CONNECTED as i32)
}
