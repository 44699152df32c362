//! The worker command on Windows: the program, its arguments and environment, started by
//! [`herd::windows::spawn`], which hands each worker its sockets over its standard input.
//! Windows has none of the Unix process attributes (`--user`, `--rlimit`, `--umask`...): they
//! were refused with the command line ([`crate::cli::unavailable`]).

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::windows::io::OwnedHandle;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use herd::windows::{Inherited, Shared};

use crate::output::{Output, Pipe, Writer};

/// `CREATE_NEW_PROCESS_GROUP`: the worker leads a process group of its own, so that Ctrl-C
/// can be sent to it alone.
const CREATE_NEW_PROCESS_GROUP: u32 = 0x0000_0200;

/// What `--clear-env` keeps of herd's environment: PATH, as on Unix, and SystemRoot, without
/// which Windows programs cannot even start Winsock.
const KEPT_ENV: &[&str] = &["PATH", "SystemRoot"];

/// `program` taken in `chdir` when it is a relative path (it names a directory: `.\app.exe`,
/// `bin\app.exe`), as on Unix, where the worker changes to `--chdir` before it looks for
/// its program. Windows would take it in herd's own directory. A bare name is left to the
/// search `Command` makes (herd.exe's directory, the system's, `PATH`), as a bare name on
/// Unix is looked for in `PATH`.
fn in_dir(program: OsString, chdir: Option<&Path>) -> OsString {
    let path = Path::new(&program);
    let names_a_directory = path.components().nth(1).is_some();
    match chdir {
        Some(dir) if names_a_directory && path.is_relative() => dir.join(path).into_os_string(),
        _ => program,
    }
}

/// How to start a worker.
#[derive(Debug)]
pub struct WorkerCommand {
    program: OsString,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    clear_env: bool,
    chdir: Option<PathBuf>,
    /// Where the workers' stdout and stderr go, with `--worker-output prefix|json`.
    output: Option<Arc<Output>>,
}

/// Why a worker could not be started.
#[derive(Debug)]
pub struct StartError {
    /// The program cannot be executed (not found, not executable): retrying will not help
    /// until someone fixes it.
    pub cannot_execute: bool,
    /// What went wrong.
    pub message: String,
}

impl WorkerCommand {
    /// `argv` (program first) with `env` added to herd's environment (or to PATH and
    /// SystemRoot alone with `clear_env`), run in `chdir`.
    pub fn new(
        argv: Vec<OsString>,
        env: Vec<(OsString, OsString)>,
        clear_env: bool,
        chdir: Option<PathBuf>,
    ) -> Result<WorkerCommand, String> {
        let mut argv = argv.into_iter();
        let program = argv
            .next()
            .ok_or_else(|| "missing worker command after '--'".to_string())?;
        let program = in_dir(program, chdir.as_deref());
        Ok(WorkerCommand {
            program,
            args: argv.collect(),
            env,
            clear_env,
            chdir,
            output: None,
        })
    }

    /// Starts the worker for `slot` of `generation`, handed `sockets`, inheriting `inherit`
    /// (its stop event, the shared memory); `before_run` gets it before it runs anything (to
    /// place it in herd's Job Object).
    pub fn spawn(
        &self,
        slot: usize,
        generation: u64,
        sockets: &[Shared<'_>],
        inherit: &[Inherited<'_>],
        before_run: impl FnOnce(&Child) -> io::Result<()>,
    ) -> Result<Child, StartError> {
        let mut command = Command::new(&self.program);
        command.args(&self.args);
        if self.clear_env {
            command.env_clear();
            for name in KEPT_ENV {
                if let Some(value) = std::env::var_os(name) {
                    command.env(name, value);
                }
            }
        }
        command
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env(OsStr::new("HERD_WORKER"), slot.to_string())
            .env(OsStr::new("HERD_GENERATION"), generation.to_string());
        if let Some(dir) = &self.chdir {
            command.current_dir(dir);
        }
        if self.output.is_some() {
            command.stdout(Stdio::piped()).stderr(Stdio::piped());
        }
        let flags = CREATE_NEW_PROCESS_GROUP;
        let mut child =
            herd::windows::spawn_suspended(&mut command, flags, sockets, inherit, before_run)
                .map_err(|e| self.start_error(&e))?;
        if let (Some(output), Some(stdout), Some(stderr)) =
            (&self.output, child.stdout.take(), child.stderr.take())
        {
            let writer = Writer {
                slot,
                pid: child.id(),
                generation,
            };
            let pipe = |handle: OwnedHandle| Pipe::from(std::fs::File::from(handle));
            output.capture_both(writer, pipe(stdout.into()), pipe(stderr.into()));
        }
        Ok(child)
    }

    /// Reads the workers' stdout and stderr through `output`, from the next worker on.
    pub fn capture_output(&mut self, output: Arc<Output>) {
        self.output = Some(output);
    }

    /// What went wrong starting the program, and whether retrying can help.
    fn start_error(&self, e: &io::Error) -> StartError {
        let shown = self.program.to_string_lossy();
        let cannot_execute = matches!(
            e.kind(),
            io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied
        );
        let message = match e.kind() {
            io::ErrorKind::NotFound => format!(
                "cannot start '{shown}': {e}; give the program's full path, or put its \
                 directory in PATH"
            ),
            _ => format!("cannot start '{shown}': {e}"),
        };
        StartError {
            cannot_execute,
            message,
        }
    }
}
