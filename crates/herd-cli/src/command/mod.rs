//! The worker command: compiled once from `-- COMMAND [ARGS...]`, turned into an exec plan for
//! each worker slot (program found in `PATH` anew each time, so a restart picks up new code).

mod fork_hint;
mod fork_server;
mod limit_hint;
mod options;
mod resolve;

use std::ffi::{OsStr, OsString};
use std::os::unix::io::{AsFd, BorrowedFd};
use std::path::PathBuf;
use std::sync::Arc;

use herd_sys::process::Signal;
use herd_sys::spawn::{ExecPlan, SpawnError, Stage, Stdio};

use crate::output::{Output, Pipe, Writer};
use crate::supervisor::warm_up::{Lowered, Lowering, Priority, Spawned};

pub use crate::template::ArgTemplate;
pub use options::{credentials, working_dir};
pub use resolve::{explain_exec_error, resolve_attached, resolve_program};

/// Variables of herd's own environment that must not reach workers: they describe herd's own
/// sockets, notify socket and fd store, not the worker's.
const PRIVATE_VARS: &[&str] = &[
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "LISTEN_PIDFDID",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "FDSTORE",
    "HERD_WORKER",
    "HERD_GENERATION",
];

/// Every worker's environment: herd's own (only its `PATH` with `clear_env`), without the
/// variables that describe herd's sockets and notify socket or that `extra_env` sets, then
/// `extra_env`.
pub fn worker_environment(
    extra_env: Vec<(OsString, OsString)>,
    clear_env: bool,
) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = std::env::vars_os()
        .filter(|(key, _)| !clear_env || key == "PATH")
        .filter(|(key, _)| !PRIVATE_VARS.iter().any(|p| OsStr::new(p) == key))
        .filter(|(key, _)| !extra_env.iter().any(|(k, _)| k == key))
        .collect();
    env.extend(extra_env);
    env
}

/// One worker's start, prepared ([`WorkerCommand::prepare`]): its plan, and the pipes for
/// its output when herd reads it (their write ends are dropped with this, once it started).
pub struct PreparedStart {
    slot: usize,
    generation: u64,
    program: PathBuf,
    plan: ExecPlan,
    output: Option<OutputPipes>,
    lowering: Option<Lowering>,
}

/// The worker's stdout and stderr pipes: (read end, write end) each.
type OutputPipes = (
    (std::io::PipeReader, std::io::PipeWriter),
    (std::io::PipeReader, std::io::PipeWriter),
);

impl PreparedStart {
    /// What to run.
    pub fn plan(&self) -> &ExecPlan {
        &self.plan
    }

    /// The worker's standard streams: `stdin`, and its output's pipes when herd reads it.
    pub fn stdio<'a>(&'a self, stdin: BorrowedFd<'a>) -> Stdio<'a> {
        let output = self.output.as_ref();
        Stdio {
            stdin: Some(stdin),
            stdout: output.map(|((_, out), _)| out.as_fd()),
            stderr: output.map(|(_, (_, err))| err.as_fd()),
        }
    }
}

/// How to start a worker in any slot.
#[derive(Debug)]
pub struct WorkerCommand {
    args: Vec<ArgTemplate>,
    env: Vec<(OsString, OsString)>,
    path_var: Option<OsString>,
    fd_names: String,
    options: WorkerOptions,
    /// Where the workers' stdout and stderr go, with `--worker-output prefix|json`.
    output: Option<Arc<Output>>,
}

/// The process attributes workers get besides their command and environment.
#[derive(Clone, Debug, Default)]
pub struct WorkerOptions {
    /// uid, gid and supplementary groups to switch to.
    pub credentials: Option<(u32, u32, Vec<u32>)>,
    /// `--user` as given, for messages.
    pub user: Option<String>,
    /// Working directory (absolute: relative commands are found in it).
    pub chdir: Option<PathBuf>,
    /// umask.
    pub umask: Option<u32>,
    /// Resource limits: (resource, soft, hard).
    pub limits: Vec<(i32, u64, u64)>,
    /// The option that set each of `limits`, for messages (`--nofile 1024`).
    pub limit_names: Vec<String>,
    /// Start from an empty environment (PATH kept).
    pub clear_env: bool,
    /// `--fork-server`: each generation's workers are forked by one process of it (see
    /// [`fork_server`](crate::supervisor::fork_server)).
    pub fork_server: bool,
}

impl WorkerOptions {
    /// The resource limits set here that can end a worker with `signal`, as they were given
    /// (`--rlimit cpu=1`): `cpu` (SIGXCPU at the soft limit, SIGKILL at the hard one), `fsize`
    /// (SIGXFSZ), `stack`, `as` and `data` (SIGSEGV, or SIGABRT from a failed allocation).
    pub fn limits_behind(&self, signal: i32) -> Vec<&str> {
        let (cpu, fsize) = (libc::RLIMIT_CPU as i32, libc::RLIMIT_FSIZE as i32);
        let (stack, space, data) = (
            libc::RLIMIT_STACK as i32,
            libc::RLIMIT_AS as i32,
            libc::RLIMIT_DATA as i32,
        );
        let suspects: &[i32] = match signal {
            libc::SIGXCPU | libc::SIGKILL => &[cpu],
            libc::SIGXFSZ => &[fsize],
            libc::SIGSEGV => &[stack, space, data],
            libc::SIGABRT => &[space, data],
            _ => &[],
        };
        self.limits
            .iter()
            .zip(&self.limit_names)
            .filter(|((resource, soft, _), _)| {
                *soft != herd_sys::process::RLIM_INFINITY && suspects.contains(resource)
            })
            .map(|(_, name)| name.as_str())
            .collect()
    }
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
    /// The process attributes workers get.
    pub fn options(&self) -> &WorkerOptions {
        &self.options
    }

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
        Ok(WorkerCommand {
            args,
            env: worker_environment(extra_env, options.clear_env),
            path_var: std::env::var_os("PATH"),
            fd_names: names.join(":"),
            options,
            output: None,
        })
    }

    /// Finds the program the worker in `slot` of `generation` would run: a relative path, or
    /// a relative `PATH` entry, is taken in the workers' directory (`--chdir`), where it runs.
    pub fn program(&self, slot: usize, generation: u64) -> Result<PathBuf, String> {
        resolve_program(
            &self.args[0].expand(slot, generation),
            self.path_var.as_deref(),
            self.options.chdir.as_deref(),
        )
    }

    /// Checks, before any worker starts, that slot 0's worker could: a child process takes
    /// every step a worker takes (limits, umask, user, directory) and checks that the program
    /// is executable there, without running it. The error names the setting that fails.
    pub fn probe(&self) -> Result<(), String> {
        let program = self.program(0, 1)?;
        let plan = self
            .plan(&program, 0, 1, 0)
            .map_err(|e| format!("cannot prepare the worker command: {e}"))?;
        plan.probe().map_err(|e| self.describe(&program, &e))
    }

    /// What went wrong starting `program`, naming the setting involved.
    fn describe(&self, program: &std::path::Path, e: &SpawnError) -> String {
        let o = &self.options;
        let as_user = match (&o.user, &o.credentials) {
            (Some(user), Some((uid, gid, _))) => {
                format!(" as --user {user} (uid {uid}, gid {gid})")
            }
            _ => String::new(),
        };
        let os = e.io_error();
        match e.stage() {
            Stage::Exec => explain_exec_error(program, os, &as_user),
            Stage::Chdir => format!(
                "cannot change to the workers' directory --chdir {}{as_user}: {os}",
                o.chdir.as_deref().unwrap_or(program).display()
            ),
            Stage::Credentials => format!(
                "cannot switch to{}: {os}",
                as_user.trim_start_matches(" as")
            ),
            Stage::Limits => {
                let index = e.limit_index();
                let setting = index
                    .and_then(|i| o.limit_names.get(i))
                    .map_or("a resource limit", String::as_str);
                let limit = index.and_then(|i| o.limits.get(i));
                let why = match limit {
                    Some(&(resource, _, hard)) if os.raw_os_error() == Some(libc::EPERM) => {
                        limit_hint::limit_hint(resource, hard)
                    }
                    _ => String::new(),
                };
                // An option first, so that a config file's error is placed at its key.
                match setting.starts_with("--") {
                    true => format!("{setting}: cannot set the workers' limit: {os}{why}"),
                    false => format!("cannot set the workers' limit {setting}: {os}{why}"),
                }
            }
            Stage::Fork => format!(
                "cannot fork: {os}{}",
                fork_hint::fork_hint(os.raw_os_error())
            ),
            _ => e.to_string(),
        }
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
        lowering: Option<Lowering>,
    ) -> Result<Spawned, StartError> {
        let start = self.prepare(slot, generation, fds.len(), lowering)?;
        let result = start.plan.spawn_with(fds, &start.stdio(stdin));
        self.started(start, result)
    }

    /// Prepares the start of the worker for `slot` of `generation` with `fds` fds, lowered
    /// as `lowering` says until it is ready: what [`spawn`](Self::spawn) does before the fork.
    /// Run it with [`PreparedStart::plan`] and [`PreparedStart::stdio`], then hand the result
    /// to [`started`](Self::started).
    pub fn prepare(
        &self,
        slot: usize,
        generation: u64,
        fds: usize,
        lowering: Option<Lowering>,
    ) -> Result<PreparedStart, StartError> {
        let fail = |cannot_execute, message| StartError {
            cannot_execute,
            message,
        };
        let program = self.program(slot, generation).map_err(|m| fail(true, m))?;
        let plan = self
            .plan(&program, slot, generation, fds)
            .map_err(|e| fail(true, e.to_string()))?;
        let output = match &self.output {
            Some(_) => {
                let pipes = || Ok::<_, std::io::Error>((std::io::pipe()?, std::io::pipe()?));
                Some(pipes().map_err(|e| {
                    fail(
                        false,
                        format!("cannot make the pipes for the worker's output: {e}"),
                    )
                })?)
            }
            None => None,
        };
        Ok(PreparedStart {
            slot,
            generation,
            program,
            plan,
            output,
            lowering,
        })
    }

    /// The start's outcome from what the fork returned: the pid and how herd lowered the
    /// worker, with its output read from now on when herd reads it, or what went wrong,
    /// naming the setting involved.
    pub fn started(
        &self,
        start: PreparedStart,
        result: Result<u32, SpawnError>,
    ) -> Result<Spawned, StartError> {
        let pid = result.map_err(|e| StartError {
            cannot_execute: e.stage() == Stage::Exec,
            message: self.describe(&start.program, &e),
        })?;
        Ok(self.running(start, pid))
    }

    /// [`started`](Self::started) for a worker its generation's fork server forked (`result`:
    /// its pid, or why not).
    pub fn forked(
        &self,
        start: PreparedStart,
        result: Result<u32, String>,
    ) -> Result<Spawned, StartError> {
        let pid = result.map_err(|message| StartError {
            cannot_execute: false,
            message,
        })?;
        Ok(self.running(start, pid))
    }

    /// `start`'s worker runs as `pid`: lowered as the start says, its output read from its
    /// pipes.
    fn running(&self, start: PreparedStart, pid: u32) -> Spawned {
        let PreparedStart {
            slot,
            generation,
            output: pipes,
            lowering,
            ..
        } = start;
        let lowered = lowering.and_then(|lowering| lower(pid, lowering));
        if let (Some(output), Some(((out_read, _), (err_read, _)))) = (&self.output, pipes) {
            let writer = Writer {
                slot,
                pid,
                generation,
            };
            output.capture_both(writer, Pipe::from(out_read), Pipe::from(err_read));
        }
        Spawned { pid, lowered }
    }

    /// Reads the workers' stdout and stderr through `output`, from the next worker on.
    pub fn capture_output(&mut self, output: Arc<Output>) {
        self.output = Some(output);
    }

    fn plan(
        &self,
        program: &std::path::Path,
        slot: usize,
        generation: u64,
        fds: usize,
    ) -> std::io::Result<ExecPlan> {
        let mut plan = self.base_plan(program, slot, generation)?;
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
        Ok(plan)
    }

    /// The command, environment and options of `slot`'s worker of `generation`, without
    /// its sockets.
    fn base_plan(
        &self,
        program: &std::path::Path,
        slot: usize,
        generation: u64,
    ) -> std::io::Result<ExecPlan> {
        self.plan_with(program, slot, generation, |_| true)
    }

    /// [`base_plan`](Self::base_plan) with only the variables `keep` keeps.
    fn plan_with(
        &self,
        program: &std::path::Path,
        slot: usize,
        generation: u64,
        keep: impl Fn(&OsStr) -> bool,
    ) -> std::io::Result<ExecPlan> {
        let mut plan = ExecPlan::new(program.as_os_str())?;
        for arg in &self.args {
            plan.arg(&arg.expand(slot, generation))?;
        }
        for (key, value) in self.env.iter().filter(|(key, _)| keep(key)) {
            plan.env(key, value)?;
        }
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

/// Gives worker `pid`, which has just exec'd, its starting priority (`--starting-nice`), if
/// it still runs at herd's class and nice value (`lowering.from`): a worker that set its own
/// first (`chrt -b 0 prog`, `nice -n 5 prog`) keeps it (between herd's look and its change,
/// a few microseconds, the worker's own change can still be overwritten). herd lowers it
/// from here rather than between fork and exec: a child that `execve`s in `SCHED_IDLE` (or
/// at nice 19) on a saturated machine waits for a CPU while herd waits for its `execve`, so
/// herd would stall for as long. The new program runs at herd's priority for the few
/// microseconds until then; a thread it made meanwhile keeps herd's. How it was lowered;
/// `None` if it was not (it chose its own priority, it is gone, herd was not allowed): it
/// runs as it would without the option, and herd will not raise it.
pub(crate) fn lower(pid: u32, lowering: Lowering) -> Option<Lowered> {
    let now = Priority {
        class: herd_sys::process::scheduling_policy(pid).ok()?,
        nice: herd_sys::process::nice_of(pid).ok()?,
    };
    if !lowering.applies_to(now) {
        return None;
    }
    let done = match lowering.to {
        Lowered::Idle => herd_sys::process::lower_to_idle(pid),
        Lowered::Nice(nice) => herd_sys::process::set_group_nice(pid, nice),
    };
    done.ok().map(|()| lowering.to)
}
