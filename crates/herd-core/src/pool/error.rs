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
        /// The slots a live worker runs in, in order.
        running: Vec<usize>,
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
        match self {
            PoolError::Stopping => f.write_str("herd is stopping"),
            PoolError::UpgradeInProgress { generation } => {
                write!(f, "an upgrade to generation {generation} is in progress")
            }
            PoolError::NoWorkerInSlot { slot, running } => match running.as_slice() {
                [] => write!(
                    f,
                    "no worker runs in slot {slot}; none is starting or ready in any slot"
                ),
                [one] => write!(f, "no worker runs in slot {slot}; one runs in slot {one}"),
                _ => write!(
                    f,
                    "no worker runs in slot {slot}; workers run in slots {}",
                    slot_ranges(running)
                ),
            },
            PoolError::ZeroUpgradeTimeout => f.write_str("an upgrade timeout must be positive"),
            PoolError::UpgradeTooShort { timeout, min_ready } => {
                write!(
                    f,
                    "an upgrade timeout of {} is too short: each new worker must stay ready for \
                     --min-ready {} before it replaces an old one",
                    format_duration(*timeout),
                    format_duration(*min_ready)
                )?;
                f.write_str("; give a longer --timeout, or run herd with a shorter --min-ready")
            }
        }
    }
}

impl std::error::Error for PoolError {}

/// `slots` (in order) as ranges: "0-3, 5, 7-8".
fn slot_ranges(slots: &[usize]) -> String {
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for &slot in slots {
        match ranges.last_mut() {
            Some((_, end)) if end.checked_add(1) == Some(slot) => *end = slot,
            _ => ranges.push((slot, slot)),
        }
    }
    let shown: Vec<String> = ranges
        .iter()
        .map(|&(start, end)| {
            if start == end {
                start.to_string()
            } else {
                format!("{start}-{end}")
            }
        })
        .collect();
    shown.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_without_a_worker_says_which_have_one() {
        let error =
            |running: Vec<usize>| PoolError::NoWorkerInSlot { slot: 9, running }.to_string();
        assert_eq!(
            error(vec![0, 1, 2, 3, 5, 7, 8]),
            "no worker runs in slot 9; workers run in slots 0-3, 5, 7-8"
        );
        assert_eq!(
            error(vec![4]),
            "no worker runs in slot 9; one runs in slot 4"
        );
        assert_eq!(
            error(vec![]),
            "no worker runs in slot 9; none is starting or ready in any slot"
        );
    }
}
