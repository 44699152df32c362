//! The values `herd run`'s and the global options take: readiness, worker output, logging,
//! the number of workers.

use std::time::Duration;

use clap::ValueEnum;

/// When a worker counts as ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadyMode {
    /// After it stayed alive this long (or sent READY=1 sooner).
    Delay(Duration),
    /// When it sends READY=1.
    Notify,
}

/// What becomes of the workers' stdout and stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum WorkerOutput {
    /// They write to herd's own stdout and stderr.
    Inherit,
    /// herd passes each line on, prefixed with who wrote it.
    Prefix,
    /// herd passes each line on as one JSON object.
    Json,
}

/// Log verbosity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Errors and warnings (crashes, restarts).
    Warn,
    /// Also worker starts, exits and signals.
    Info,
    /// Also internal details.
    Debug,
    /// Everything.
    Trace,
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per event.
    Json,
}

/// A fixed number of workers, or autoscaling bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workers {
    /// Exactly this many.
    Fixed(usize),
    /// Between these, as the load requires.
    Auto(usize, usize),
}
