//! What stands for a signal on Windows, which has none: a worker is asked to stop (its stop
//! event is set, and Ctrl-C goes to its process group) or killed (`TerminateProcess`).

use std::fmt;

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

    /// `stop` (also `TERM` and `INT`, so that scripts written for Unix keep working) or
    /// `kill` (also `KILL`), any case, with or without `SIG`.
    pub fn from_name(text: &str) -> Option<Signal> {
        let upper = text.to_ascii_uppercase();
        match upper.strip_prefix("SIG").unwrap_or(&upper) {
            "STOP" | "TERM" | "INT" => Some(Signal::Stop),
            "KILL" => Some(Signal::Kill),
            _ => None,
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
    format!(
        "'{text}' means nothing on Windows, which has no signals; write stop (a stop request \
         and Ctrl-C; TERM and INT mean the same) or kill (TerminateProcess)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_names_map_to_what_windows_can_do() {
        for name in ["stop", "TERM", "sigterm", "INT", "SIGINT"] {
            assert_eq!(Signal::from_name(name), Some(Signal::Stop), "{name}");
        }
        assert_eq!(Signal::from_name("KILL"), Some(Signal::Kill));
        assert_eq!(Signal::from_name("kill"), Some(Signal::Kill));
        assert_eq!(Signal::from_name("HUP"), None);
        assert_eq!(Signal::from_name("9"), None);
        assert!(signal_error("HUP").contains("'HUP' means nothing on Windows"));
    }
}
