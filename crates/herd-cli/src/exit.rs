//! How `herd` fails: one line on stderr and a documented exit status.

use std::fmt;
use std::process::ExitCode;

/// Exit status: stopped as asked.
pub const OK: u8 = 0;
/// Exit status: a runtime failure (a socket or a worker could not be set up).
pub const FAILURE: u8 = 1;
/// Exit status: invalid arguments.
pub const USAGE: u8 = 2;

/// A failure of a herd command.
#[derive(Debug)]
pub enum Failure {
    /// What the user asked for is invalid; nothing was started.
    Usage(String),
    /// Something failed while running.
    Runtime(anyhow::Error),
}

impl Failure {
    /// The exit status for this failure.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            Failure::Usage(_) => USAGE,
            Failure::Runtime(_) => FAILURE,
        })
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Usage(message) => f.write_str(message),
            // The whole context chain on one line: "--bind ':80': permission denied ...".
            Failure::Runtime(err) => write!(f, "{err:#}"),
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(err: anyhow::Error) -> Failure {
        Failure::Runtime(err)
    }
}

/// Folds one of clap's multi-line errors into a single line.
pub fn one_line(rendered: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for line in rendered.lines() {
        let line = line.trim();
        if line.starts_with("Usage:") || line.starts_with("For more information") {
            break;
        }
        if !line.is_empty() {
            parts.push(line.strip_prefix("error: ").unwrap_or(line));
        }
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_clap_errors() {
        let text = "error: the following required arguments were not provided:\n  --bind <SPEC>\n\nUsage: herd run\n\nFor more information, try '--help'.\n";
        assert_eq!(
            one_line(text),
            "the following required arguments were not provided: --bind <SPEC>"
        );
    }
}
