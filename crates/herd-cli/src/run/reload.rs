//! `herd upgrade --reload-config` on Unix: the config file read again with herd's command
//! line, and after a re-exec, the contents the workers run.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;

use crate::cli::config::Reloader;
use crate::cli::RunArgs;
use crate::exit::Failure;
use crate::output::Output;
use crate::supervisor::reload::{FileReload, Reload};
use crate::worker_env::Passed;

use super::worker_command;

/// `herd upgrade --reload-config`: reads the config file again with herd's command line
/// (`in_force`: its contents the workers run, after a re-exec), and makes the new
/// generation's command as `prepare` made the first, for the same sockets (names, and kinds
/// and addresses), its output read by `output`.
pub(super) fn config_reload(
    in_force: Option<&str>,
    (names, passed): (Vec<String>, Passed),
    notify: OsString,
    control: PathBuf,
    output: Option<Arc<Output>>,
) -> Result<Reload, Failure> {
    let argv = std::env::args_os().collect();
    let reloader = Reloader::new(argv, in_force).map_err(Failure::Usage)?;
    let file = reloader.file();
    if let Some((file, why)) =
        file.and_then(|f| Some((f, crate::cli::config::others_could_write(f)?)))
    {
        tracing::warn!(
            event = crate::logging::LogEvent::SetupNote.as_str(),
            "herd upgrade --reload-config will refuse to read {} again: {why}",
            file.display()
        );
    }
    let command = move |args: &RunArgs| {
        super::exec_size::check(args)?;
        let command = worker_command(args, &names, &passed, &notify, &control);
        let mut command = command.map_err(|e| e.to_string())?;
        // The same readers of the workers' output as the first generation's.
        if let Some(output) = &output {
            command.capture_output(output.clone());
        }
        command.probe()?;
        Ok(command)
    };
    Ok(Box::new(FileReload {
        reloader,
        command,
        stop_signal: |args| args.stop_signal,
    }))
}
