//! Stand-ins for the values only Unix has (signals, `setrlimit` limits): on Windows the options
//! that take them parse into the text as given, so that `herd --help` and the parse are the
//! same as on Unix, and [`crate::cli::unavailable`] refuses them with the reason.

/// A signal's name as given (Windows has no signals).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signal(pub String);

/// A resource limit as given (Windows has no `setrlimit`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rlimit(pub String);

impl Rlimit {
    /// The resource's name as given (`nofile` of `nofile=65536`).
    pub fn name(&self) -> &str {
        self.0.split('=').next().unwrap_or_default()
    }

    /// The option's value as given (`nofile=65536`).
    pub fn given(&self) -> &str {
        &self.0
    }
}

pub(in crate::cli) fn parse_signal(text: &str) -> Result<Signal, String> {
    Ok(Signal(text.to_string()))
}

pub(in crate::cli) fn parse_stop_signal(text: &str) -> Result<Signal, String> {
    parse_signal(text)
}

pub(in crate::cli) fn parse_rlimit(text: &str) -> Result<Rlimit, String> {
    Ok(Rlimit(text.to_string()))
}
