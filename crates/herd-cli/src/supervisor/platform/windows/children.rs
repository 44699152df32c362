//! herd's workers on Windows, each held by its process handle: placed in a Job Object of its
//! own before it runs (so that it, and what it starts, ends with herd, however herd ends, and
//! what it started ends with it, as its process group's processes do on Unix), asked to stop
//! or killed, and their exits announced to the loop (each worker's handle is waited for on
//! a small thread of its own, which wakes [`exited`]'s waiters: the loop then collects every
//! exit at once).

use std::cell::Cell;
use std::collections::HashMap;
use std::io;
use std::os::windows::io::{AsHandle, OwnedHandle};
use std::process::{Child, ExitStatus};

use herd_sys::job::Job;
use herd_sys::windows::event::Event;
use tokio::sync::Notify;

use super::Signal;
use crate::supervisor::reap::{Children, Peek};

/// Woken when a worker exits.
static EXITED: Notify = Notify::const_new();

/// Resolves when a worker has exited since the last call (exits that come together wake once).
pub async fn exited() {
    EXITED.notified().await
}

/// The stack of a thread that only waits for a process.
const WAITER_STACK: usize = 64 * 1024;

/// A worker: its process, the event that asks it to stop, and its Job Object.
struct Worker {
    process: Child,
    stop: Event,
    /// Holds the worker and what it starts: dropped (once the worker has exited, or with
    /// herd), it ends what the worker left running. `None` if the system refused one.
    _job: Option<Job>,
}

/// herd's workers, by pid.
pub struct OwnChildren {
    children: HashMap<u32, Worker>,
    /// Whether the last worker's Job Object was refused (said once until one is placed).
    job_refused: Cell<bool>,
}

impl OwnChildren {
    /// No workers yet.
    pub fn new() -> OwnChildren {
        OwnChildren {
            children: HashMap::new(),
            job_refused: Cell::new(false),
        }
    }

    /// Places `child`, a worker created suspended, in a kill-on-close Job Object of its own
    /// before it runs, so that what it starts is in the job too, and returns the job for
    /// [`adopt`](Self::adopt): what the worker started then ends when the worker has exited
    /// (herd drops the job as it collects the exit: Windows has no process groups to stop,
    /// and a `cmd /c` or `py.exe` launcher's program would outlive a launcher herd killed),
    /// or when herd ends, however it ends. herd itself stays out of the jobs: under Wine 8 a
    /// process that exits inside its own kill-on-close job crashes wineserver. A failure is
    /// logged: the worker still runs, as it would without a job.
    pub fn enter_job(&self, child: &Child) -> Option<Job> {
        let pid = child.id();
        let placed =
            Job::kill_on_close().and_then(|job| job.assign(child.as_handle()).map(|()| job));
        // Said once while the system refuses jobs, not for each of thousands of workers.
        if self.job_refused.replace(placed.is_err()) || placed.is_ok() {
            return placed.ok();
        }
        if let Err(e) = &placed {
            tracing::warn!(
                event = crate::logging::LogEvent::SetupNote.as_str(),
                pid,
                "worker {pid} is not in a Job Object: it may outlive herd, and what it starts \
                 may outlive it (said once for the workers after it too, until one is): {e}"
            );
        }
        None
    }

    /// Holds `child`, the `job` [`enter_job`](Self::enter_job) placed it in, and its `stop`
    /// event, and watches for its exit; its pid.
    pub fn adopt(&mut self, child: Child, stop: Event, job: Option<Job>) -> io::Result<u32> {
        let pid = child.id();
        // A worker whose exit could not be watched is not kept: it would run unsupervised.
        let watched = child
            .as_handle()
            .try_clone_to_owned()
            .and_then(|handle| watch(pid, handle));
        if let Err(e) = watched {
            let _ = herd_sys::windows::process::terminate(&child, 1);
            return Err(e);
        }
        let process = child;
        let worker = Worker {
            process,
            stop,
            _job: job,
        };
        self.children.insert(pid, worker);
        Ok(pid)
    }

    /// Sends `signal` to worker `pid`: a stop request sets its stop event (`HERD_STOP_EVENT`,
    /// which the worker library's `stop_requested` waits on) and sends Ctrl-C to its process
    /// group (a program may ignore both: `--grace` ends with TerminateProcess); a kill
    /// terminates it.
    pub fn signal(&mut self, pid: u32, signal: Signal) -> io::Result<()> {
        let worker = self
            .children
            .get(&pid)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no worker {pid}")))?;
        match signal {
            Signal::Stop => {
                worker.stop.set()?;
                // A worker without a console, or one that left it, cannot get Ctrl-C: its
                // stop event was set, and --grace still ends it.
                let _ = herd_sys::windows::console::send_ctrl_c(pid);
                Ok(())
            }
            Signal::Kill => herd_sys::windows::process::terminate(&worker.process, 1),
        }
    }

    /// Asks worker `pid` to stop with `signal` (a stop request or a kill).
    pub fn stop(&mut self, pid: u32, signal: Signal) -> io::Result<()> {
        self.signal(pid, signal)
    }

    /// Kills `pid` (a worker started where no slot was free): Windows has no process groups,
    /// its Job Object ends what it started once its exit is collected.
    pub fn kill_group(&mut self, pid: u32) -> io::Result<()> {
        self.signal(pid, Signal::Kill)
    }
}

/// Waits for `handle`'s process (a worker's or an attached process's) on a thread of its
/// own and wakes the loop when it exits.
pub(super) fn watch(pid: u32, handle: OwnedHandle) -> io::Result<()> {
    std::thread::Builder::new()
        .name(format!("herd-wait-{pid}"))
        .stack_size(WAITER_STACK)
        .spawn(move || {
            let _ = herd_sys::windows::process::wait(&handle, None);
            EXITED.notify_one();
        })
        .map(drop)
}

impl Children for OwnChildren {
    fn peek_exit(&mut self, pid: u32) -> io::Result<Peek> {
        let Some(worker) = self.children.get_mut(&pid) else {
            return Ok(Peek::NotOurs);
        };
        match worker.process.try_wait()? {
            Some(status) => {
                self.children.remove(&pid);
                Ok(Peek::Exited(status))
            }
            None => Ok(Peek::Running),
        }
    }

    /// Windows has no process groups to collect from: every child is a worker, held above.
    fn reap_own_group(&mut self) -> io::Result<Option<(u32, ExitStatus)>> {
        Ok(None)
    }
}
