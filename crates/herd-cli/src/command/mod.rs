//! The worker command: compiled once from `-- COMMAND [ARGS...]`, turned into an exec plan for
//! each worker slot (program found in `PATH` anew each time, so a restart picks up new code).

mod resolve;
mod template;

use std::ffi::{OsStr, OsString};
use std::os::unix::io::BorrowedFd;
use std::path::PathBuf;

use herd_sys::process::Signal;
use herd_sys::spawn::{ExecPlan, Stage};

pub use resolve::resolve_program;
pub use template::ArgTemplate;

/// Variables of herd's own environment that must not reach workers: they describe herd's own
/// sockets and notify socket, not the worker's.
const PRIVATE_VARS: &[&str] = &[
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "LISTEN_PIDFDID",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "HERD_WORKER",
    "HERD_GENERATION",
];

/// How to start a worker in any slot.
#[derive(Debug)]
pub struct WorkerCommand {
    args: Vec<ArgTemplate>,
    env: Vec<(OsString, OsString)>,
    path_var: Option<OsString>,
    fd_names: String,
    options: WorkerOptions,
}

/// The process attributes workers get besides their command and environment.
#[derive(Clone, Debug, Default)]
pub struct WorkerOptions {
    /// uid, gid and supplementary groups to switch to.
    pub credentials: Option<(u32, u32, Vec<u32>)>,
    /// Working directory.
    pub chdir: Option<PathBuf>,
    /// umask.
    pub umask: Option<u32>,
    /// Resource limits: (resource, soft, hard).
    pub limits: Vec<(i32, u64, u64)>,
    /// Start from an empty environment (PATH kept).
    pub clear_env: bool,
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
    /// Compiles `argv` (program first) against the socket names, in fd order; `extra_env`
    /// (herd's `NOTIFY_SOCKET`, `HERD_CONTROL`, ...) is added to every worker's environment.
    /// Errors are usage errors: a bad template or an unknown socket name.
    pub fn new(
        argv: &[OsString],
        names: &[String],
        extra_env: Vec<(OsString, OsString)>,
        options: WorkerOptions,
    ) -> Result<WorkerCommand, String> {
        let args = argv
            .iter()
            .enumerate()
            .map(|(i, arg)| ArgTemplate::compile(arg, i, names))
            .collect::<Result<Vec<_>, _>>()?;
        if args.is_empty() {
            return Err("missing worker command after '--'".to_string());
        }
        let mut env: Vec<(OsString, OsString)> = std::env::vars_os()
            .filter(|(key, _)| !options.clear_env || key == "PATH")
            .filter(|(key, _)| !PRIVATE_VARS.iter().any(|p| OsStr::new(p) == key))
            .filter(|(key, _)| !extra_env.iter().any(|(k, _)| k == key))
            .collect();
        env.extend(extra_env);
        Ok(WorkerCommand {
            args,
            env,
            path_var: std::env::var_os("PATH"),
            fd_names: names.join(":"),
            options,
        })
    }

    /// Finds the program the worker in `slot` of `generation` would run.
    pub fn program(&self, slot: usize, generation: u64) -> Result<PathBuf, String> {
        resolve_program(
            &self.args[0].expand(slot, generation),
            self.path_var.as_deref(),
        )
    }

    /// Starts the worker for `slot` of `generation` with `fds` at 3, 4, ... and `stdin` at 0,
    /// in a process group of its own, killed if herd dies. Returns its pid once it has
    /// executed.
    pub fn spawn(
        &self,
        slot: usize,
        generation: u64,
        fds: &[BorrowedFd<'_>],
        stdin: BorrowedFd<'_>,
    ) -> Result<u32, StartError> {
        let fail = |cannot_execute, message| StartError {
            cannot_execute,
            message,
        };
        let program = self.program(slot, generation).map_err(|m| fail(true, m))?;
        let plan = self
            .plan(&program, slot, generation, fds.len())
            .map_err(|e| fail(true, e.to_string()))?;
        plan.spawn(fds, Some(stdin)).map_err(|e| {
            let exec = e.stage() == Stage::Exec;
            let message = if exec {
                format!("cannot execute '{}': {}", program.display(), e.io_error())
            } else {
                e.to_string()
            };
            fail(exec, message)
        })
    }

    fn plan(
        &self,
        program: &std::path::Path,
        slot: usize,
        generation: u64,
        fds: usize,
    ) -> std::io::Result<ExecPlan> {
        let mut plan = ExecPlan::new(program.as_os_str())?;
        for arg in &self.args {
            plan.arg(&arg.expand(slot, generation))?;
        }
        for (key, value) in &self.env {
            plan.env(key, value)?;
        }
        plan.env(OsStr::new("LISTEN_FDS"), OsStr::new(&fds.to_string()))?
            .env(OsStr::new("LISTEN_FDNAMES"), OsStr::new(&self.fd_names))?
            .env(OsStr::new("HERD_WORKER"), OsStr::new(&slot.to_string()))?
            .env(
                OsStr::new("HERD_GENERATION"),
                OsStr::new(&generation.to_string()),
            )?
            .listen_pid()
            .new_process_group(true)
            .parent_death_signal(Some(Signal::KILL));
        let o = &self.options;
        if let Some((uid, gid, groups)) = &o.credentials {
            plan.credentials(*uid, *gid, groups.clone());
        }
        if let Some(dir) = &o.chdir {
            plan.chdir(dir.as_os_str())?;
        }
        if let Some(mask) = o.umask {
            plan.umask(mask);
        }
        for &(resource, soft, hard) in &o.limits {
            plan.limit(resource, soft, hard);
        }
        Ok(plan)
    }
}
