//! Why the pool refuses a command.

use std::fmt;
use std::time::Duration;

use crate::duration::format_duration;

/// Why the pool refused a command; `Display` is the message for the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PoolError {
    /// A stop was requested: the pool takes no more commands.
    Stopping,
    /// An upgrade is already in progress.
    UpgradeInProgress {
        /// The generation it rolls out.
        generation: u64,
    },
    /// No live worker runs in the slot a command named.
    NoWorkerInSlot {
        /// The slot.
        slot: usize,
    },
    /// An upgrade timeout of zero.
    ZeroUpgradeTimeout,
    /// An upgrade timeout no longer than `min_ready`, the shortest time an upgrade of a pool
    /// with workers takes (each new worker must stay ready that long; the waits overlap).
    UpgradeTooShort {
        /// The timeout given.
        timeout: Duration,
        /// How long each new worker of the upgrade must stay ready.
        min_ready: Duration,
    },
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            PoolError::Stopping => f.write_str("herd is stopping"),
            PoolError::UpgradeInProgress { generation } => {
                write!(f, "an upgrade to generation {generation} is in progress")
            }
            PoolError::NoWorkerInSlot { slot } => write!(f, "no worker runs in slot {slot}"),
            PoolError::ZeroUpgradeTimeout => f.write_str("an upgrade timeout must be positive"),
            PoolError::UpgradeTooShort { timeout, min_ready } => {
                write!(
                    f,
                    "an upgrade timeout of {} is too short: each new worker must stay ready for \
                     --min-ready {} before it replaces an old one",
                    format_duration(timeout),
                    format_duration(min_ready)
                )?;
                f.write_str("; give a longer --timeout, or run herd with a shorter --min-ready")
            }
        }
    }
}

impl std::error::Error for PoolError {}
