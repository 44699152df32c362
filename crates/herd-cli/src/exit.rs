//! How `herd` fails: one line on stderr and a documented exit status.

use std::fmt;
use std::process::ExitCode;

/// Exit status: stopped as asked.
pub const OK: u8 = 0;
/// Exit status: a runtime failure (a socket or a worker could not be set up).
pub const FAILURE: u8 = 1;
/// Exit status: invalid arguments.
pub const USAGE: u8 = 2;
/// Exit status of `herd status`: fewer workers are ready than herd wants.
pub const DEGRADED: u8 = 3;

/// A failure of a herd command.
#[derive(Debug)]
pub enum Failure {
    /// What the user asked for is invalid; nothing was started.
    Usage(String),
    /// Something failed while running.
    Runtime(anyhow::Error),
    /// `herd status`: the pool is degraded; says how.
    Degraded(String),
}

impl Failure {
    /// The exit status for this failure.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            Failure::Usage(_) => USAGE,
            Failure::Runtime(_) => FAILURE,
            Failure::Degraded(_) => DEGRADED,
        })
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Usage(message) | Failure::Degraded(message) => f.write_str(message),
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

/// A command-line error as one line, ending with a pointer to the help of the subcommand
/// named in `args` (`herd scale --help`), or of herd itself when none is.
pub fn usage_error(err: &clap::Error, args: &[std::ffi::OsString]) -> String {
    let line = if err.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        "a command is required: 'herd run ... -- COMMAND' starts a herd; 'herd status', \
         'herd scale', 'herd stop' and others talk to a running one"
            .to_string()
    } else {
        one_line(&err.render().to_string())
    };
    let sub = subcommand(args);
    let line = match command_without_dashes(err, sub.as_deref()) {
        Some(word) if sub.as_deref() == Some("check") => {
            format!("{line}: the file goes after --config, as in 'herd check --config {word}'")
        }
        Some(word) => format!(
            "{line}: the worker's command goes after --, as in 'herd {} [OPTIONS] -- {word} ...'",
            sub.as_deref().unwrap_or("run")
        ),
        None => line,
    };
    match sub {
        Some(sub) => format!("{line}; try 'herd {sub} --help'"),
        None => format!("{line}; try 'herd --help'"),
    }
}

/// The word `herd run` or `herd attach` did not expect when it looks like the start of the
/// worker's command given without `--` (`herd run -b :8080 python3 app.py`), or `herd check`
/// like a config file given without `--config` (`herd check herd.toml`).
fn command_without_dashes(err: &clap::Error, sub: Option<&str>) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if err.kind() != ErrorKind::UnknownArgument || !matches!(sub, Some("run" | "attach" | "check"))
    {
        return None;
    }
    match err.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(word)) if !word.starts_with('-') => Some(word.clone()),
        _ => None,
    }
}

/// The subcommand in herd's arguments (without the program name): the first word that is not
/// a global option or its value, if it names one.
fn subcommand(args: &[std::ffi::OsString]) -> Option<String> {
    use clap::CommandFactory;
    let cli = crate::cli::Cli::command();
    let takes_value: Vec<String> = cli
        .get_arguments()
        .filter(|a| a.get_action().takes_values())
        .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
        .collect();
    let mut words = args.iter().map(|a| a.to_string_lossy());
    while let Some(word) = words.next() {
        if word == "--" {
            return None;
        }
        if takes_value.iter().any(|t| *t == word) {
            words.next();
        } else if !word.starts_with('-') {
            return cli
                .get_subcommands()
                .find(|c| c.get_name() == word)
                .map(|c| c.get_name().to_string());
        }
    }
    None
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

    /// The usage error herd says for `herd ARGS...`.
    fn usage_error_of(args: &[&str]) -> String {
        use clap::Parser;
        let mut argv = vec!["herd"];
        argv.extend_from_slice(args);
        let err = crate::cli::Cli::try_parse_from(argv).unwrap_err();
        let args: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
        usage_error(&err, &args)
    }

    #[test]
    fn usage_errors_point_to_the_subcommands_help() {
        let cases: [(&[&str], &str); 10] = [
            (&["status", "--bogus"], "herd status"),
            (&["scale", "x"], "herd scale"),
            (&["--name", "x", "stop", "--grace", "x"], "herd stop"),
            (&["attach"], "herd attach"),
            (&["run", "-b"], "herd run"),
            (&["signal", "HUP", "--worker", "x"], "herd signal"),
            (&["bogus"], "herd"),
            (
                &["--log-format", "json", "upgrade", "--timeout", "x"],
                "herd upgrade",
            ),
            (&["--log-level=bogus", "status"], "herd status"),
            (&[], "herd"),
        ];
        for (args, command) in cases {
            let message = usage_error_of(args);
            assert!(
                message.ends_with(&format!("; try '{command} --help'")),
                "{args:?}: {message}"
            );
            assert!(!message.contains('\n'), "{args:?}: {message}");
        }
        assert!(usage_error_of(&[]).starts_with("a command is required"));
    }

    #[test]
    fn a_command_without_dashes_is_told_where_it_goes() {
        assert_eq!(
            usage_error_of(&["run", "-b", ":8080", "python3", "app.py"]),
            "unexpected argument 'python3' found: the worker's command goes after --, as in \
             'herd run [OPTIONS] -- python3 ...'; try 'herd run --help'"
        );
        assert!(
            usage_error_of(&["attach", "sleep", "1"])
                .contains("'herd attach [OPTIONS] -- sleep ...'"),
            "{}",
            usage_error_of(&["attach", "sleep", "1"])
        );
        // An unknown option is no command.
        assert!(
            !usage_error_of(&["run", "--bogus", "-b", ":80", "--", "x"]).contains("goes after --")
        );
        assert!(!usage_error_of(&["status", "extra"]).contains("goes after --"));
        // `herd check FILE`, as one would write it: the file is --config's.
        assert_eq!(
            usage_error_of(&["check", "herd.toml"]),
            "unexpected argument 'herd.toml' found: the file goes after --config, as in \
             'herd check --config herd.toml'; try 'herd check --help'"
        );
    }

    #[test]
    fn folds_clap_errors() {
        let text = "error: the following required arguments were not provided:\n  --bind <SPEC>\n\nUsage: herd run\n\nFor more information, try '--help'.\n";
        assert_eq!(
            one_line(text),
            "the following required arguments were not provided: --bind <SPEC>"
        );
    }
}
