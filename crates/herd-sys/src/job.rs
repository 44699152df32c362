//! Windows: a Job Object that ends its processes when herd ends (`JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE`),
//! as `PR_SET_PDEATHSIG` does on Linux. The job's only handle is herd's, not inheritable; when
//! herd exits or is killed, Windows closes it and terminates every process in the job, and
//! their children, which join their parent's job.

use std::io;
use std::mem;
use std::os::windows::io::{AsRawHandle, BorrowedHandle, FromRawHandle, OwnedHandle};

use windows_sys::Win32::System::JobObjects::{
    AssignProcessToJobObject, CreateJobObjectW, JobObjectExtendedLimitInformation,
    SetInformationJobObject, JOBOBJECT_EXTENDED_LIMIT_INFORMATION,
    JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
};

/// A Job Object whose processes die with its last handle.
#[derive(Debug)]
pub struct Job(OwnedHandle);

impl Job {
    /// A new anonymous job with kill-on-close (`CreateJobObjectW`, `SetInformationJobObject`).
    pub fn kill_on_close() -> io::Result<Job> {
        // SAFETY: no security attributes (the handle is not inheritable) and no name.
        let raw = unsafe { CreateJobObjectW(std::ptr::null(), std::ptr::null()) };
        if raw.is_null() {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh handle that nothing else owns.
        let job = Job(unsafe { OwnedHandle::from_raw_handle(raw) });
        // SAFETY: the structure is plain data, for which all zeroes is a valid value.
        let mut limits: JOBOBJECT_EXTENDED_LIMIT_INFORMATION = unsafe { mem::zeroed() };
        limits.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE;
        // SAFETY: the job handle is live; the pointer and length describe `limits`, which the
        // call only reads.
        let ok = unsafe {
            SetInformationJobObject(
                job.0.as_raw_handle(),
                JobObjectExtendedLimitInformation,
                (&limits as *const JOBOBJECT_EXTENDED_LIMIT_INFORMATION).cast(),
                mem::size_of::<JOBOBJECT_EXTENDED_LIMIT_INFORMATION>() as u32,
            )
        };
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(job)
    }

    /// Puts the process of `process` (a process handle, e.g. a `std::process::Child`'s) into
    /// the job (`AssignProcessToJobObject`).
    pub fn assign(&self, process: BorrowedHandle<'_>) -> io::Result<()> {
        // SAFETY: both handles are live for the call.
        if unsafe { AssignProcessToJobObject(self.0.as_raw_handle(), process.as_raw_handle()) } == 0
        {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}
