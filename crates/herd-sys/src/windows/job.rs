//! A Job Object with `JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE`: when its last handle closes (herd
//! exits, however it exits), every process in the job is terminated.
//!
//! Processes started by a process in a job are in the job too (no breakaway is allowed).
//! herd assigns each worker while it is still suspended (created with `CREATE_SUSPENDED`) and
//! holds the job's only handle: its workers and everything they start then die with it, as
//! `PR_SET_PDEATHSIG` makes them do on Linux. (herd does not place itself in the job: under
//! Wine 8 a process that exits inside its own kill-on-close job crashes wineserver.) The handle
//! is not inheritable, so no worker keeps the job alive.

use std::io;
use std::mem;
use std::os::windows::io::{AsHandle, AsRawHandle, BorrowedHandle, FromRawHandle, OwnedHandle};
use std::ptr;

use windows_sys::Win32::System::JobObjects::{
    AssignProcessToJobObject, CreateJobObjectW, JobObjectExtendedLimitInformation,
    SetInformationJobObject, JOBOBJECT_EXTENDED_LIMIT_INFORMATION,
    JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
};

use super::check;

/// A Job Object whose processes are killed when it is dropped (its last handle closed).
#[derive(Debug)]
pub struct Job(OwnedHandle);

impl Job {
    /// Creates an unnamed, non-inheritable job (`CreateJobObjectW`) with
    /// `JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE` (`SetInformationJobObject`).
    pub fn kill_on_close() -> io::Result<Job> {
        // SAFETY: no security attributes (not inheritable) and no name; the result is a
        // fresh handle or null.
        let raw = unsafe { CreateJobObjectW(ptr::null(), ptr::null()) };
        if raw.is_null() {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh handle that nothing else owns.
        let job = Job(unsafe { OwnedHandle::from_raw_handle(raw) });
        // SAFETY: the structure is plain integers, for which all-zero is a valid value.
        let mut limits: JOBOBJECT_EXTENDED_LIMIT_INFORMATION = unsafe { mem::zeroed() };
        limits.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE;
        // SAFETY: the job handle is live; the buffer and its size describe `limits`.
        check(unsafe {
            SetInformationJobObject(
                job.0.as_raw_handle(),
                JobObjectExtendedLimitInformation,
                (&limits as *const JOBOBJECT_EXTENDED_LIMIT_INFORMATION).cast(),
                mem::size_of::<JOBOBJECT_EXTENDED_LIMIT_INFORMATION>() as u32,
            )
        })?;
        Ok(job)
    }

    /// Places `process` in the job (`AssignProcessToJobObject`); the processes it starts
    /// afterwards are in the job too. The handle needs `PROCESS_SET_QUOTA` and
    /// `PROCESS_TERMINATE` (a `std::process::Child` has them).
    pub fn assign(&self, process: BorrowedHandle<'_>) -> io::Result<()> {
        // SAFETY: both handles are live for the call.
        check(unsafe { AssignProcessToJobObject(self.0.as_raw_handle(), process.as_raw_handle()) })
    }

    /// Places the calling process in the job: everything it starts from now on dies when the
    /// job is dropped, and so does the calling process itself if another process holds the
    /// job's last handle.
    pub fn assign_current_process(&self) -> io::Result<()> {
        self.assign(super::process::current())
    }
}

impl AsHandle for Job {
    fn as_handle(&self) -> BorrowedHandle<'_> {
        self.0.as_handle()
    }
}
