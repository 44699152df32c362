//! What the supervisor needs of the operating system: one module per platform, each with the
//! same items, so that the cores (the pool, [`phase`](super::phase), the waiters, the signals'
//! intents, scaling, autoscaling, status) name no system type. Each platform provides:
//!
//! - `worker_exit(ExitStatus)`: what the pool needs of a child's exit status, and
//!   `exit_from_raw(i32)`, the same read back from the raw value a re-exec saved;
//! - `describe_exit(ExitStatus)`: an exit in words (`exit code 3`, `killed by SIGKILL`);
//! - `signal_name(Intent)`: what the platform calls the event that carries an intent, which
//!   the log gives as the trigger (`SIGHUP`);
//! - `OwnChildren`: herd's real children, for [`reap`](super::reap)'s `Children` trait, and
//!   how to stop, signal and kill them (Unix: process groups and signals; Windows: process
//!   handles in a Job Object, a stop event and Ctrl-C, `TerminateProcess`);
//! - `Intents`: the system's events that carry an intent (`install()`, then `recv()` one
//!   intent at a time): Unix signals; on Windows Ctrl-C and a `stop` line on standard input;
//! - `cpu_ticks(pid)` and `ticks_per_second()`: a worker's CPU time, for busyness; and
//!   `usage(pid, kind)`: its CPU time and memory at once, for the sampler;
//! - `process_stats()`: herd's own process figures for `--metrics`, `None` where they cannot
//!   be read;
//! - `State`: what only this platform holds in the [`Supervisor`](super::Supervisor) (Unix:
//!   the re-exec's bookkeeping, resource-limit hints, the relisten guard, leftover process
//!   groups; Windows: nothing), and `pool_config`, the pool's settings for the sockets;
//! - `Inputs`, `Input` and `Wants`: the inputs only this platform has, which
//!   [`Sources`](super::sources::Sources) waits for with its own (Unix: the notify socket,
//!   re-exec checks, attached processes' pidfds, the timers of Unix's checks; Windows: the
//!   notify pipe), and `ControlServer`, what serves the control endpoint;
//! - `Spawner`: starting a worker with its sockets; `ServiceManager`: herd's own service
//!   manager (systemd; none on Windows); `Effect`: what only this platform does;
//! - the loop's hooks, as `impl Supervisor` in `turns.rs`, by the same names on both:
//!   `platform_wants`, `handle_platform`, `reexec_requested`, `announce_reexec`,
//!   `platform_after_turn`, `reaped`, `lineage`, `worker_exiting`, `worker_gone`,
//!   `platform_stop_effects`, `platform_stopping` and `hold_attached`.
//!
//! The Unix module also holds the signal table, which a re-exec holds back across `execve`.
//! The loop itself (`driver`, `sources`, `turn`, `effects` and the handlers beside them) is
//! the same on both and names no platform; what only Unix has is `cfg(unix)` where it is
//! declared (docs/windows.md, "One supervisor").

#[cfg(unix)]
pub(crate) mod unix;
#[cfg(unix)]
pub(crate) use unix::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::*;
