//! The supervisor on Windows: exit codes (Windows has no signals; `TerminateProcess` sets an
//! exit code like any other), the events that carry an intent ([`Intents`]), the workers held
//! by their process handles ([`OwnChildren`]), what stands for a signal ([`Signal`]) and the
//! control pipe ([`Control`]), and the processes started with `herd attach` ([`attached`]).

use std::process::ExitStatus;

use herd_core::WorkerExit;

pub mod attached;
mod children;
mod control;
mod inputs;
mod intents;
mod notify_pipe;
mod process_stats;
mod shm;
mod signal;
mod spawner;
mod turns;
pub use children::OwnChildren;
pub use control::{Control, ControlFile, MoveTo};
pub(in crate::supervisor) use inputs::{pool_config, ControlServer, Input, Inputs, State, Wants};
pub use intents::Intents;
pub use notify_pipe::NotifyPipe;
pub(crate) use process_stats::process_stats;
pub use shm::SharedMemories;
pub use signal::{signal_error, Signal};
pub(in crate::supervisor) use spawner::Spawner;

/// A listening socket's accept queue to read off the loop: none, Windows cannot read one.
pub enum QueueProbe {}

impl QueueProbe {
    /// Never called: there is no probe.
    pub fn read(&self) -> Option<crate::supervisor::sampler::ListenQueue> {
        match *self {}
    }
}

/// No probes: Windows has no way to read a listening socket's accept queue.
pub fn queue_probes(_listeners: &[crate::spec::Listener]) -> Vec<QueueProbe> {
    Vec::new()
}

/// No slot holds sockets of its own: `--balance reuseport` needs Linux.
pub fn per_slot_sockets(_listeners: &[crate::spec::Listener]) -> usize {
    0
}

/// Nothing to say: herd's Job Object ends whatever its workers started, and Windows does not
/// tell who holds a socket.
pub fn say_still_held(_listeners: &[crate::spec::Listener]) {}

/// An effect only Windows has: none.
#[derive(Debug)]
pub enum Effect {}

impl Effect {
    /// Carries it out.
    pub fn execute(self) {
        match self {}
    }
}

/// herd's service manager: Windows has none herd speaks to.
#[derive(Debug)]
pub struct ServiceManager;

impl ServiceManager {
    /// None.
    pub fn from_env() -> ServiceManager {
        ServiceManager
    }

    /// Tells nobody.
    pub fn report(&self, _report: crate::supervisor::phase::Report) {}

    /// Never: nobody watches herd.
    pub fn watchdog_due(&self) -> Option<std::time::Instant> {
        None
    }

    /// Tells nobody.
    pub fn keep_alive(&self, _now: std::time::Instant) {}
}

/// Whether the process `pid` still runs: one that cannot be opened for another reason than
/// not existing (`ERROR_INVALID_PARAMETER`: another user's, say) is taken to run.
pub fn process_runs(pid: u32) -> bool {
    use herd_sys::windows::process::{self, Process};
    const ERROR_INVALID_PARAMETER: i32 = 87;
    match Process::open(pid) {
        Ok(p) => !process::wait(&p, Some(std::time::Duration::ZERO)).unwrap_or(false),
        Err(e) => e.raw_os_error() != Some(ERROR_INVALID_PARAMETER),
    }
}

/// Nothing is held back on Windows: herd never re-executes there.
pub fn release_held_signals() -> std::io::Result<()> {
    Ok(())
}

use crate::spec::Listener;
use crate::supervisor::status::SocketStatus;

/// Where workers send readiness and status (`NOTIFY_SOCKET`): the notify pipe, shared by the
/// loop's inputs and what sets up workers.
pub type NotifySocket = std::sync::Arc<NotifyPipe>;

use crate::supervisor::signals::Intent;

/// Why a message from a process that is no worker is dropped. Windows keeps no parent chain
/// herd can trust (a parent's pid may be reused), so only a worker's own process is heard.
pub const NOT_A_WORKER: &str =
    "is not a worker (on Windows only a worker's own process is heard, not what it starts)";

/// How to stop at once while a graceful stop runs, as the log advises.
/// What `herd status` calls the resident memory it shows (`memory_kind`).
pub const RESIDENT_MEMORY: &str = "working_set";

pub const STOP_AT_ONCE: &str = "press Ctrl-C again or run `herd stop --fast` to stop at once";

/// What the pool needs of a Windows exit status. Windows cannot tell a killed process from one
/// that exited with the same code: `killed` is always false.
pub fn worker_exit(status: ExitStatus) -> WorkerExit {
    WorkerExit {
        success: status.success(),
        killed: false,
        description: describe_exit(status),
        raw: status.code().unwrap_or(-1),
    }
}

/// A slot's last exit read back from the exit code a saved state holds.
pub fn exit_from_raw(raw: i32) -> WorkerExit {
    use std::os::windows::process::ExitStatusExt;
    worker_exit(ExitStatus::from_raw(raw as u32))
}

/// `exit code 3` (as a signed number: `exit code -1073741819` for an access violation).
pub fn describe_exit(status: ExitStatus) -> String {
    match status.code() {
        Some(code) => format!("exit code {code}"),
        None => format!("{status}"),
    }
}

/// A duplicate of a listener's socket for a `sockets` answer, and what it is.
pub struct SocketCopy {
    /// The duplicate, duplicated again for the client's process as the answer is sent.
    pub socket: crate::control::reply::Handed,
    /// `inet` or `inet6`.
    pub family: Option<String>,
    /// `stream` or `dgram`.
    pub sock_type: Option<String>,
}

/// The stop signal as an attached process learns it: none on Windows, where it gets a stop
/// event instead (on Unix, named as in `HERD_STOP_SIGNAL`).
pub fn attached_stop_signal(_signal: Signal) -> Option<String> {
    None
}

/// Why herd could not stop the attaching process: never on Windows, where it holds the
/// process's handle and sets its stop event (on Unix, another user's process).
pub fn unstoppable(_pid: u32, _uid: Option<u32>) -> Option<String> {
    None
}

/// A duplicate of `l`'s socket; `None` once herd closed its copy.
pub fn copy_socket(l: &Listener) -> Option<std::io::Result<SocketCopy>> {
    use std::os::windows::io::AsSocket;
    let shared = l.shared()?;
    let borrowed = match shared {
        herd::windows::Shared::Tcp(_, s) => s.as_socket(),
        herd::windows::Shared::Udp(_, s) => s.as_socket(),
    };
    let family = socket2::SockRef::from(&borrowed)
        .local_addr()
        .ok()
        .map(|a| if a.is_ipv6() { "inet6" } else { "inet" }.to_string());
    let sock_type = match l.kind {
        crate::spec::SocketKind::Udp => "dgram",
        _ => "stream",
    };
    Some(borrowed.try_clone_to_owned().map(|socket| SocketCopy {
        socket,
        family,
        sock_type: Some(sock_type.to_string()),
    }))
}

/// The status of listening socket `i` (the `i`th in the hand-off).
pub fn socket_status(i: usize, l: &Listener) -> SocketStatus {
    SocketStatus {
        name: l.name.clone(),
        address: l.address.clone(),
        kind: l.kind,
        fd: i as i32,
        queue: None,
        queue_limit: None,
        backlog_set: None,
        balance: l.balance(),
        slot_queues: Vec::new(),
        file: None,
    }
}

/// The unit of [`cpu_ticks`]: `GetProcessTimes` counts in 100 ns.
pub fn ticks_per_second() -> u64 {
    10_000_000
}

/// The CPU time `pid` has used, user and kernel, in [`ticks_per_second`] units
/// (`GetProcessTimes`); `None` if it cannot be opened. Opened by pid at each sample, as on
/// Unix (the workers' own handles are `OwnChildren`'s, which the sampler does not reach).
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let process = herd_sys::windows::process::Process::open(pid).ok()?;
    let used = herd_sys::windows::process::cpu_time(&process).ok()?;
    u64::try_from(used.as_nanos() / 100).ok()
}

/// Worker `pid`'s CPU time (as [`cpu_ticks`]) and memory in bytes, its working set (Windows
/// has no proportional set size, which `herd run` refuses), from one open of the process;
/// `None` where it cannot be opened.
pub fn usage(pid: u32, kind: herd_core::MemoryKind) -> crate::supervisor::sampler::Usage {
    use herd_sys::windows::process;
    let opened = process::Process::open(pid).ok();
    let used = opened.as_ref().and_then(|p| process::cpu_time(p).ok());
    crate::supervisor::sampler::Usage {
        memory: opened
            .as_ref()
            .filter(|_| kind == herd_core::MemoryKind::Rss)
            .and_then(|p| process::working_set(p).ok()),
        cpu_ticks: used.and_then(|d| u64::try_from(d.as_nanos() / 100).ok()),
        // Windows has no stopped state to read.
        stopped: false,
    }
}

/// The console event that carries `intent` (`CTRL_C`), or what else does.
pub fn signal_name(intent: Intent) -> String {
    match intent {
        Intent::Interrupt => "CTRL_C",
        Intent::Stop => "a stop line on standard input",
        _ => "a control request",
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_exits_say_what_the_pool_needs() {
        let code = exit_from_raw(3);
        assert!(!code.success && !code.killed);
        assert_eq!(code.description, "exit code 3");
        assert_eq!(code.raw, 3);
        assert!(exit_from_raw(0).success);
        let crashed = exit_from_raw(0xC000_0005_u32 as i32);
        assert_eq!(crashed.raw, 0xC000_0005_u32 as i32);
        assert_eq!(crashed.description, "exit code -1073741819");
    }

    #[test]
    fn a_processs_cpu_time_is_read_in_ticks() {
        assert!(cpu_ticks(std::process::id()).is_some());
        assert_eq!(cpu_ticks(u32::MAX - 3), None, "no such process");
    }

    #[test]
    fn a_processs_usage_is_read_from_one_open() {
        use herd_core::MemoryKind;
        let mine = usage(std::process::id(), MemoryKind::Rss);
        assert!(mine.cpu_ticks.is_some());
        assert!(mine.memory.is_some_and(|bytes| bytes > 0), "{mine:?}");
        let pss = usage(std::process::id(), MemoryKind::Pss);
        assert_eq!(pss.memory, None, "no proportional set size on Windows");
        assert!(pss.cpu_ticks.is_some());
        let gone = usage(u32::MAX - 3, MemoryKind::Rss);
        assert_eq!((gone.memory, gone.cpu_ticks), (None, None));
    }

    #[test]
    fn the_console_events_name_their_intents() {
        assert_eq!(Intent::Interrupt.signal_name(), "CTRL_C");
        assert_eq!(Intent::Stop.signal_name(), "a stop line on standard input");
        assert_eq!(Intent::Upgrade.signal_name(), "a control request");
    }
}
