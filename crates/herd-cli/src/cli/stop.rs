//! The arguments of `herd stop` and `herd signal`.

use std::time::Duration;

use clap::Args;

use super::parse::{parse_duration, parse_signal, parse_slot, Signal};

/// `herd stop`.
#[derive(Debug, Args)]
pub struct StopArgs {
    /// How long workers may take to finish [default: the herd's --grace].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_negative_numbers = true)]
    pub grace: Option<Duration>,

    /// Kill the workers at once.
    #[arg(long, conflicts_with = "grace")]
    pub fast: bool,
}

/// `herd signal`.
#[derive(Debug, Args)]
pub struct SignalArgs {
    /// The signal: HUP, USR1, SIGUSR2, 10, RTMIN+1, ... (not 32 or 33, which the C library
    /// keeps for itself).
    #[arg(value_name = "SIGNAL", value_parser = parse_signal)]
    pub signal: Signal,

    /// Only the worker in this slot.
    #[arg(long, value_name = "SLOT", value_parser = parse_slot, allow_negative_numbers = true)]
    pub worker: Option<usize>,
}
