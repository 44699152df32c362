//! What stands for a signal on Windows, which has none: a worker is asked to stop (its stop
//! event is set, and Ctrl-C goes to its process group) or killed (`TerminateProcess`).

use std::fmt;

use crate::cli::unavailable::windows_signal;

/// What herd can send a Windows worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Signal {
    /// Ask it to stop: its stop event, and Ctrl-C to its process group.
    Stop,
    /// End it at once: `TerminateProcess`.
    Kill,
}

impl Signal {
    /// `TerminateProcess`, which no program can catch.
    pub const KILL: Signal = Signal::Kill;

    /// What Unix users type, as [`windows_signal`] reads it (the client's own check): `stop`,
    /// `TERM`, `INT`, `15` or `2` asks to stop, `KILL` or `9` kills; names with or without
    /// `SIG`, in any case.
    pub fn from_name(text: &str) -> Option<Signal> {
        match windows_signal(text).ok()? {
            "KILL" => Some(Signal::Kill),
            _ => Some(Signal::Stop),
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Signal::Stop => "a stop request",
            Signal::Kill => "TerminateProcess",
        })
    }
}

/// Why `text` names nothing herd can send on Windows, and what does.
pub fn signal_error(text: &str) -> String {
    windows_signal(text).err().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_names_and_numbers_map_to_what_windows_can_do() {
        for name in ["stop", "TERM", "sigterm", "15", "INT", "SIGINT", "2"] {
            assert_eq!(Signal::from_name(name), Some(Signal::Stop), "{name}");
        }
        for name in ["KILL", "kill", "SIGKILL", "9"] {
            assert_eq!(Signal::from_name(name), Some(Signal::Kill), "{name}");
        }
        for name in ["HUP", "1", "10", "QUIT"] {
            assert_eq!(Signal::from_name(name), None, "{name}");
        }
        assert!(signal_error("HUP").contains("signal 'HUP' has no meaning on Windows"));
        assert!(signal_error("10").contains("KILL (9)"));
    }
}
