//! The supervisor: a loop that waits for the next input ([`sources`]: a signal's intent, a
//! control request, a child's exit, a notify datagram, a timer), hands it to the pure state
//! machines ([`pool::Pool`] for the workers, [`phase::Phase`] for herd's own course, the
//! autoscaler, [`signals`] for what each signal means) and carries out what they decide
//! (`fork`/`exec`, `kill`, replies, service-manager reports): see [`turn`] and the files beside
//! this one.
//!
//! It runs on a current-thread runtime, on the process's main thread, so that every worker is
//! forked by a thread that lives as long as herd: `PR_SET_PDEATHSIG` fires when the forking
//! *thread* exits. Control connections are tasks on the same thread; none of them can block
//! the loop.
//!
//! The cores are platform-neutral and build everywhere; what they need of the system is
//! [`platform`]'s. The loop and its hands run on Unix and Windows alike.

// The cores: pure, platform-neutral, built and unit-tested on every platform.
pub(crate) mod autoscale;
mod backlog;
mod busyness;
mod drain_delay;
pub(crate) mod fork_server;
pub(crate) mod health;
pub(crate) mod http;
pub(crate) mod metrics;
mod phase;
pub(crate) mod platform;
pub mod pool;
mod process_stats;
mod rate_limit;
mod reap;
mod scale;
mod signals;
mod startup;
pub mod status;
mod waiters;
pub mod warm_up;

// The driver and its hands, on every platform; what they need of the system is `platform`'s.
mod driver;
mod effects;
mod fork_starts;
mod grace;
mod lifecycle;
mod notifications;
mod pauses;
mod probes;
mod recycling;
pub mod reload;
mod requests;
mod sampler;
mod sampling;
mod sampling_pause;
mod sources;
mod stall;
mod starts;
mod turn;
mod warming_workers;
mod workers;

// What only Unix has: attached processes by pidfd (Windows' are platform::attached),
// process-group leftovers, orphans re-parented to herd, the re-exec, `--balance reuseport`, relistening shut-down sockets,
// systemd; and the notify socket.
#[cfg(unix)]
pub(crate) mod attached;
#[cfg(windows)]
pub(crate) use platform::attached;
#[cfg(unix)]
pub(crate) mod balance;
#[cfg(unix)]
mod blocking_mode;
#[cfg(unix)]
pub(crate) mod einhorn;
#[cfg(unix)]
mod handover;
#[cfg(unix)]
pub(crate) mod leftovers;
#[cfg(unix)]
mod linger;
#[cfg(unix)]
pub(crate) mod notify;
#[cfg(unix)]
pub(crate) mod notify_dir;
#[cfg(unix)]
mod orphans;
#[cfg(unix)]
pub(crate) mod reexec;
#[cfg(unix)]
pub mod reexec_check;
#[cfg(unix)]
mod relisten;
#[cfg(unix)]
mod said_once;
#[cfg(unix)]
pub(crate) mod socket_files;
#[cfg(unix)]
pub(crate) mod systemd;
mod takeover;

use std::time::Duration;

#[cfg(unix)]
pub(crate) use driver::Control;
pub use driver::Supervisor;
#[cfg(windows)]
pub use platform::{Control, MoveTo, NotifyPipe, NotifySocket, SharedMemories, Signal};
pub use recycling::policy as recycling_policy;
pub use takeover::Takeover;

/// The signals `herd run` handles, held back from herd's first instruction (before it reads
/// its config file or parses its command line) until its handlers are in place (the start
/// lets them through), so that one sent that early waits for them instead of ending or
/// stopping herd, or being lost (as PID 1, the kernel drops a signal that has no handler yet,
/// unless it is blocked); [`HeldEarly::release`] gives a command other than `run` its
/// inherited mask back (`herd attach` passes it on to what it executes).
#[cfg(unix)]
#[must_use = "release() it unless the command is `run`"]
pub struct HeldEarly {
    /// The held signals that were not blocked already.
    added: Vec<herd_sys::process::Signal>,
}

/// Holds back the signals `herd run` handles (see [`HeldEarly`]).
#[cfg(unix)]
pub fn hold_signals_early() -> std::io::Result<HeldEarly> {
    let held = platform::signals::held();
    let inherited = herd_sys::process::blocked_signals(&held)?;
    herd_sys::process::block_signals(&held)?;
    let added = held
        .into_iter()
        .filter(|s| !inherited.contains(s))
        .collect();
    Ok(HeldEarly { added })
}

#[cfg(unix)]
impl HeldEarly {
    /// Unblocks what [`hold_signals_early`] blocked, and only that: pending ones are
    /// delivered now.
    pub fn release(self) -> std::io::Result<()> {
        herd_sys::process::unblock_signals(&self.added)
    }
}

/// How long `herd upgrade` (or SIGHUP) may take unless told otherwise.
pub const DEFAULT_UPGRADE_TIMEOUT: Duration = Duration::from_secs(600);
