//! # herd-core: the supervisor's pure heart
//!
//! Every herd supervisor (`herd run` on Unix and on Windows, and the worker library's
//! in-process prefork) drives the same [`Pool`]: a state machine that is told what happened
//! (a worker started, exited, sent a notification, time passed, a command arrived) and answers
//! with what to do ([`Action`]: start a worker, stop one, announce one ready, report an
//! upgrade's end). It owns no process and reads no clock: the caller passes `now`, so every
//! behaviour is unit-tested in microseconds, and each platform keeps only its effects.
//!
//! ```text
//!   events (spawned, exited, notified, scale, upgrade, stop, drained, now)
//!                   |
//!               [ Pool ]  <- slots, generations, readiness, backoff, drains, upgrades
//!                   |
//!   actions (Spawn, Stop { Graceful | Kill }, Ready, DrainTimedOut, UpgradeEnded)
//!                   |
//!      fork/exec + kill (Unix)   CreateProcess + TerminateProcess (Windows)
//! ```
//!
//! ## What is platform-neutral
//!
//! Actions name no signal: a stop is [`StopMode::Graceful`] (the platform's configured stop
//! signal, or whatever its graceful stop is) or [`StopMode::Kill`]. Exits arrive as a
//! [`WorkerExit`], which says what the pool needs (success, a forced kill, a description for
//! messages) and keeps the platform's raw status for a re-exec.
//!
//! Beside the pool: the recycling policy ([`Recycler`]: `--max-memory`, `--max-lifetime`),
//! which asks the pool to replace workers one step of a rolling upgrade at a time; the restart
//! [`Backoff`], the `sd_notify` message fields the pool acts on
//! ([`NotifyMessage`]), and the socket-activation environment's rules ([`parse_listen_env`],
//! [`validate_name`]).
//!
//! A serving pool's state can be saved as plain data ([`PoolState`]) and a pool continued
//! from it in another process image (herd's re-exec), and so can the recycler's
//! ([`SavedRecycler`]): their times are kept relative to one
//! [`Epoch`] ([`Ago`], [`Ahead`]). The optional `serde` feature makes those types serde's.
//!
//! This crate has no dependencies but the optional serde, and builds with Rust 1.63, like the
//! worker library.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod backoff;
mod duration;
mod listen_env;
mod notify;
mod pool;
mod recycle;
mod relative;

pub use backoff::{Backoff, BackoffPolicy};
pub use duration::format_duration;
pub use listen_env::{
    parse_listen_env, passed_to_another, validate_name, LISTEN_FDS_START, MAX_LISTEN_FDS,
};
pub use notify::NotifyMessage;
pub use pool::{
    Action, DrainPolicy, Exit, MaxSurge, Pool, PoolConfig, PoolError, PoolState, Readiness, Reason,
    RecycleCause, RecycleRefused, SavedSlot, SavedSurge, SavedWorker, Slot, StopMode, Upgrade,
    Worker, WorkerExit, WorkerState,
};
pub use recycle::{
    format_bytes, HoldKind, MemoryKind, RecycleEvent, RecycleHold, RecyclePolicy, Recycler,
    SavedAsk, SavedRecycler, SavedSlotHold, SavedUnder,
};
pub use relative::{Ago, Ahead, Epoch};
