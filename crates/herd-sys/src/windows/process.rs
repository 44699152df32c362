//! A process by its handle: open one by pid, resume one created suspended, terminate it, wait
//! for it, read its exit code, its CPU time, start time, memory, handle and thread counts.
//!
//! The functions take any `AsHandle` process handle: a [`Process`] opened by pid, or a
//! `std::process::Child`.

use std::io;
use std::mem;
use std::os::windows::io::{AsHandle, AsRawHandle, BorrowedHandle, FromRawHandle, OwnedHandle};
use std::time::{Duration, SystemTime};

use windows_sys::Win32::Foundation::{FILETIME, INVALID_HANDLE_VALUE};
use windows_sys::Win32::Storage::FileSystem::SYNCHRONIZE;
use windows_sys::Win32::System::Diagnostics::ToolHelp::{
    CreateToolhelp32Snapshot, Thread32First, Thread32Next, TH32CS_SNAPTHREAD, THREADENTRY32,
};
use windows_sys::Win32::System::ProcessStatus::{GetProcessMemoryInfo, PROCESS_MEMORY_COUNTERS};
use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, GetExitCodeProcess, GetProcessHandleCount, GetProcessTimes, OpenProcess,
    TerminateProcess, PROCESS_DUP_HANDLE, PROCESS_QUERY_LIMITED_INFORMATION, PROCESS_SET_QUOTA,
    PROCESS_TERMINATE, PROCESS_VM_READ,
};

use super::check;

/// A handle to another process, opened by its pid; closed on drop. Holding it keeps the pid
/// from being reused.
#[derive(Debug)]
pub struct Process {
    handle: OwnedHandle,
    pid: u32,
}

impl Process {
    /// Opens the process `pid` (`OpenProcess`) with the rights herd needs for a worker or an
    /// attached process: wait for it, terminate it, read its times, exit code and memory
    /// (`PROCESS_QUERY_LIMITED_INFORMATION`, `PROCESS_VM_READ`), place it in a job
    /// (`PROCESS_SET_QUOTA`) and hand it handles (`PROCESS_DUP_HANDLE`). The handle is not
    /// inheritable.
    pub fn open(pid: u32) -> io::Result<Process> {
        let rights = SYNCHRONIZE
            | PROCESS_TERMINATE
            | PROCESS_QUERY_LIMITED_INFORMATION
            | PROCESS_VM_READ
            | PROCESS_SET_QUOTA
            | PROCESS_DUP_HANDLE;
        // SAFETY: OpenProcess takes integers and returns a fresh handle or null.
        let raw = unsafe { OpenProcess(rights, 0, pid) };
        if raw.is_null() {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh handle that nothing else owns.
        let handle = unsafe { OwnedHandle::from_raw_handle(raw) };
        Ok(Process { handle, pid })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Another handle to the same process, with the same rights (`DuplicateHandle`).
    pub fn try_clone(&self) -> io::Result<Process> {
        Ok(Process {
            handle: self.handle.try_clone()?,
            pid: self.pid,
        })
    }
}

impl AsHandle for Process {
    fn as_handle(&self) -> BorrowedHandle<'_> {
        self.handle.as_handle()
    }
}

/// This process, as a handle (`GetCurrentProcess`: a pseudo-handle, never closed).
pub fn current() -> BorrowedHandle<'static> {
    // SAFETY: GetCurrentProcess returns a constant pseudo-handle that is valid for the whole
    // life of the process and needs no closing, so borrowing it for 'static is sound.
    unsafe { BorrowedHandle::borrow_raw(GetCurrentProcess()) }
}

/// The process creation flag (`CREATE_SUSPENDED`) that starts a process whose first thread
/// runs nothing until [`resume`].
pub const CREATE_SUSPENDED: u32 = windows_sys::Win32::System::Threading::CREATE_SUSPENDED;

/// Resumes `process` (`NtResumeProcess`: each of its threads' suspend counts is decremented
/// once): what starts a process created with [`CREATE_SUSPENDED`], whose thread handle
/// `std::process::Child` does not keep. The handle needs `PROCESS_SUSPEND_RESUME`, which a
/// `Child`'s has.
pub fn resume(process: &impl AsHandle) -> io::Result<()> {
    // SAFETY: the handle is live for the call; the function takes nothing else.
    let status = unsafe { NtResumeProcess(raw(process)) };
    if status < 0 {
        return Err(io::Error::other(format!(
            "NtResumeProcess failed with NTSTATUS {status:#010x}"
        )));
    }
    Ok(())
}

#[link(name = "ntdll")]
extern "system" {
    /// ntdll's (undocumented but stable since Windows XP, and implemented by Wine): resumes
    /// every thread of a process; returns an NTSTATUS (negative: failure).
    fn NtResumeProcess(process: windows_sys::Win32::Foundation::HANDLE) -> i32;
}

/// How many threads process `pid` has (a Toolhelp32 thread snapshot); 0 for no such process.
pub fn thread_count(pid: u32) -> io::Result<usize> {
    Ok(threads_of(pid)?.len())
}

/// The ids of process `pid`'s threads, from a Toolhelp32 thread snapshot.
fn threads_of(pid: u32) -> io::Result<Vec<u32>> {
    // SAFETY: takes integers; returns a fresh handle or INVALID_HANDLE_VALUE.
    let raw = unsafe { CreateToolhelp32Snapshot(TH32CS_SNAPTHREAD, 0) };
    if raw == INVALID_HANDLE_VALUE {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh handle that nothing else owns.
    let snapshot = unsafe { OwnedHandle::from_raw_handle(raw) };
    // SAFETY: the structure is plain integers, for which all-zero is a valid value.
    let mut entry: THREADENTRY32 = unsafe { mem::zeroed() };
    entry.dwSize = mem::size_of::<THREADENTRY32>() as u32;
    let mut threads = Vec::new();
    // SAFETY: the snapshot is live; `entry` is ours to fill, its size set.
    let mut listed = unsafe { Thread32First(snapshot.as_raw_handle(), &mut entry) } != 0;
    while listed {
        if entry.th32OwnerProcessID == pid {
            threads.push(entry.th32ThreadID);
        }
        // SAFETY: as for Thread32First.
        listed = unsafe { Thread32Next(snapshot.as_raw_handle(), &mut entry) } != 0;
    }
    Ok(threads)
}

/// Ends `process` at once with `exit_code` (`TerminateProcess`). Ending a process that has
/// already exited fails with `ERROR_ACCESS_DENIED`.
pub fn terminate(process: &impl AsHandle, exit_code: u32) -> io::Result<()> {
    // SAFETY: the handle is live for the call.
    check(unsafe { TerminateProcess(raw(process), exit_code) })
}

/// Waits up to `timeout` (`None`: for ever) for `process` to exit (`WaitForSingleObject`);
/// whether it has.
pub fn wait(process: &impl AsHandle, timeout: Option<Duration>) -> io::Result<bool> {
    super::wait_for(process.as_handle(), timeout)
}

/// The exit code of `process` once it has exited, `None` while it runs
/// (`WaitForSingleObject` with no wait, then `GetExitCodeProcess`: a process that exits with
/// 259, `STILL_ACTIVE`, is not mistaken for a running one).
pub fn exit_code(process: &impl AsHandle) -> io::Result<Option<u32>> {
    if !wait(process, Some(Duration::ZERO))? {
        return Ok(None);
    }
    let mut code = 0u32;
    // SAFETY: the handle is live; `code` is ours to fill.
    check(unsafe { GetExitCodeProcess(raw(process), &mut code) })?;
    Ok(Some(code))
}

/// The CPU time `process` has used so far, user and kernel together (`GetProcessTimes`).
pub fn cpu_time(process: &impl AsHandle) -> io::Result<Duration> {
    let times = times(process)?;
    Ok(from_filetime(times.kernel) + from_filetime(times.user))
}

/// When `process` was created (`GetProcessTimes`).
pub fn start_time(process: &impl AsHandle) -> io::Result<SystemTime> {
    since_1601(from_filetime(times(process)?.created))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "creation time before 1970"))
}

/// The working set of `process` in bytes: the memory it has resident now
/// (`GetProcessMemoryInfo`).
pub fn working_set(process: &impl AsHandle) -> io::Result<u64> {
    Ok(memory_counters(process)?.WorkingSetSize as u64)
}

/// The commit charge of `process` in bytes: the private memory committed for it
/// (`GetProcessMemoryInfo`'s `PagefileUsage`, which Windows documents as the commit charge and
/// which Wine also reports): the nearest Windows figure to a Unix virtual size.
pub fn commit_charge(process: &impl AsHandle) -> io::Result<u64> {
    Ok(memory_counters(process)?.PagefileUsage as u64)
}

/// How many handles `process` has open (`GetProcessHandleCount`): files, sockets, pipes,
/// events, threads and the rest.
pub fn handle_count(process: &impl AsHandle) -> io::Result<u32> {
    let mut count = 0u32;
    // SAFETY: the handle is live; `count` is ours to fill.
    check(unsafe { GetProcessHandleCount(raw(process), &mut count) })?;
    Ok(count)
}

/// The most handles one process can hold: a fixed limit of Windows' (2^24), with no
/// per-process setting like Unix's `RLIMIT_NOFILE`.
pub const MAX_HANDLES: u64 = 1 << 24;

/// What `GetProcessTimes` reports.
struct Times {
    created: FILETIME,
    kernel: FILETIME,
    user: FILETIME,
}

fn times(process: &impl AsHandle) -> io::Result<Times> {
    let zero = FILETIME {
        dwLowDateTime: 0,
        dwHighDateTime: 0,
    };
    let (mut created, mut exited, mut kernel, mut user) = (zero, zero, zero, zero);
    // SAFETY: the handle is live; the four FILETIMEs are ours to fill.
    check(unsafe {
        GetProcessTimes(
            raw(process),
            &mut created,
            &mut exited,
            &mut kernel,
            &mut user,
        )
    })?;
    Ok(Times {
        created,
        kernel,
        user,
    })
}

fn memory_counters(process: &impl AsHandle) -> io::Result<PROCESS_MEMORY_COUNTERS> {
    // SAFETY: the structure is plain integers, for which all-zero is a valid value.
    let mut counters: PROCESS_MEMORY_COUNTERS = unsafe { mem::zeroed() };
    let size = mem::size_of::<PROCESS_MEMORY_COUNTERS>() as u32;
    counters.cb = size;
    // SAFETY: the handle is live; the buffer and its size describe `counters`.
    check(unsafe { GetProcessMemoryInfo(raw(process), &mut counters, size) })?;
    Ok(counters)
}

/// From 1601-01-01 (where FILETIME dates count from) to the Unix epoch.
const FROM_1601_TO_1970: Duration = Duration::from_secs(11_644_473_600);

/// A FILETIME date, as the time since 1601 it counts, as a SystemTime; `None` before 1970.
fn since_1601(since: Duration) -> Option<SystemTime> {
    let since_1970 = since.checked_sub(FROM_1601_TO_1970)?;
    SystemTime::UNIX_EPOCH.checked_add(since_1970)
}

/// A FILETIME interval (100 ns units) as a Duration.
fn from_filetime(time: FILETIME) -> Duration {
    let ticks = (u64::from(time.dwHighDateTime) << 32) | u64::from(time.dwLowDateTime);
    Duration::from_nanos(ticks.saturating_mul(100))
}

fn raw(process: &impl AsHandle) -> windows_sys::Win32::Foundation::HANDLE {
    process.as_handle().as_raw_handle()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filetime_counts_hundreds_of_nanoseconds() {
        let time = |high, low| FILETIME {
            dwLowDateTime: low,
            dwHighDateTime: high,
        };
        assert_eq!(from_filetime(time(0, 15)), Duration::from_nanos(1500));
        assert_eq!(
            from_filetime(time(1, 0)),
            Duration::from_nanos((1u64 << 32) * 100)
        );
    }

    #[test]
    fn filetime_dates_count_from_1601() {
        let epoch = since_1601(FROM_1601_TO_1970).unwrap();
        assert_eq!(epoch, SystemTime::UNIX_EPOCH);
        let later = since_1601(FROM_1601_TO_1970 + Duration::from_secs(5)).unwrap();
        assert_eq!(
            later
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
            5
        );
        assert_eq!(since_1601(Duration::from_secs(1)), None);
    }
}
