//! `herd run` on Windows: the one supervisor ([`Supervisor`]), as on Unix, with what Windows
//! has: TCP and UDP sockets bound once and duplicated for each worker
//! (`WSADuplicateSocketW`, through the worker library's [`herd::windows`]), workers in a Job
//! Object, a control pipe (`\\.\pipe\herd\SID\NAME`) in place of the Unix socket, Ctrl-C and
//! a `stop` line on standard input in place of signals.
//!
//! The command line is the Unix one ([`herd_cli::cli`]); what Windows cannot do yet was refused
//! before ([`herd_cli::cli::unavailable`]). `--takeover` is `takeover.rs`.

mod takeover;

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use herd_cli::cli::config::Reloader;
use herd_cli::cli::{RunArgs, Workers};
use herd_cli::command::WorkerCommand;
use herd_cli::control::pipe_name;
use herd_cli::control::pipe_server::PipeServer;
use herd_cli::exit::Failure;
use herd_cli::logging::LogEvent;
use herd_cli::output;
use herd_cli::spec;
use herd_cli::supervisor::pool;
use herd_cli::supervisor::reload::{FileReload, Reload};
use herd_cli::supervisor::warm_up::{PriorityClass, WarmUp};
use herd_cli::supervisor::Supervisor;
use herd_cli::supervisor::{Control, NotifyPipe, SharedMemories, Signal};
use herd_cli::worker_env::worker_env;
use herd_sys::windows::pipe::SecurePipe;
use herd_sys::windows::priority;
use herd_sys::windows::sid::Sid;

/// Runs `herd run` with `args`, which ask only for what Windows can do, until told to stop;
/// `control` and `name` select the control pipe; `config_text`: the `--config` file's
/// contents `args` were read from, the baseline of `herd upgrade --reload-config`.
pub fn run(
    args: RunArgs,
    control: Option<&Path>,
    name: &str,
    config_text: Option<&str>,
) -> Result<(), Failure> {
    let workers = match args.workers {
        Some(Workers::Fixed(n)) => n,
        Some(Workers::Auto(min, _)) => min,
        None => herd_cli::cli::cpus(),
    };
    // The same names the client commands accept: a herd no client could reach is refused.
    herd_cli::control::name::check_name(name).map_err(Failure::Usage)?;
    spec::check_names(&args.binds, &args.shm).map_err(Failure::Usage)?;
    herd_cli::worker_env::check_env(&args).map_err(Failure::Usage)?;
    check_chdir(&args)?;
    let warm_up = warm_up(&args)?;
    herd_cli::endpoints::ready_min(&args, herd_cli::cli::cpus())?;
    herd_cli::endpoints::check_addresses(&args)?;
    // Ctrl-C is herd's graceful stop, also when it was started in a process group of its own
    // (as a service wrapper does, to send it Ctrl-C), which Windows starts with Ctrl-C
    // ignored. Without a console there is no Ctrl-C to take: nothing to do then.
    let _ = herd_sys::windows::console::restore_ctrl_c();
    let (pipe, bind_at, old) = pipes(&args, control, name)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the event loop")?;
    // The pipes first, as on Unix the socket: a second herd of the same name stops here,
    // before it binds anything.
    let allowed = allowed_users(&args.control_allow_user)?;
    let (server, notify) = {
        let _inside = runtime.enter();
        let server = bind_pipe(&bind_at, name, &allowed)?;
        let notify = pipe_name::notify_pipe(&pipe, std::process::id()).map_err(Failure::Usage)?;
        let bound = NotifyPipe::bind(&notify)
            .with_context(|| format!("cannot create the notify pipe {notify}"))?;
        (server, Arc::new(bound))
    };
    let (inherited, takeover, moves_to) = match &old {
        Some(old) => {
            let prepared = takeover::prepare(old, allowed.clone())?;
            let takeover = Some(prepared.takeover);
            (prepared.inherited, takeover, Some(prepared.moves_to))
        }
        None => (Vec::new(), None, None),
    };
    let listeners = spec::bind_all(&args.binds, inherited).map_err(Failure::Runtime)?;
    let memories = SharedMemories::create(&args.shm)?;
    let command = worker_command(&args, &pipe, notify.name())?;
    tracing::info!(
        event = LogEvent::Starting.as_str(),
        workers,
        max_starting = args.max_starting,
        control = %pipe,
        "herd {} starting (pid {})",
        env!("CARGO_PKG_VERSION"),
        std::process::id()
    );
    let config = pool::config(&args, workers);
    let mut supervisor = Supervisor::new(listeners, command, config, Signal::Stop, name)?;
    if args.config.is_some() {
        supervisor.set_reload(config_reload(
            config_text,
            pipe.clone(),
            notify.name().to_string(),
        )?);
    }
    supervisor.share_memory(memories);
    herd_cli::endpoints::serve(&args, &mut supervisor, herd_cli::cli::cpus(), (None, None))?;
    supervisor.set_autoscale(match args.workers {
        Some(Workers::Auto(min, max)) => Some((min, max)),
        _ => None,
    });
    supervisor.set_recycling(herd_cli::supervisor::recycling_policy(&args));
    supervisor.set_warm_up(warm_up);
    let control = Control { server, moves_to };
    let ran = runtime.block_on(supervisor.run(control, notify, takeover));
    output::finish();
    Ok(ran?)
}

/// `--chdir` must be a directory that exists: no worker could start anywhere else.
fn check_chdir(args: &RunArgs) -> Result<(), Failure> {
    let Some(dir) = &args.chdir else {
        return Ok(());
    };
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(format!("--chdir {}: not a directory", dir.display())),
        Err(e) => Err(format!(
            "--chdir {}: {e}; give a directory that exists",
            dir.display()
        )),
    }
    .map_err(Failure::Usage)
}

/// The control pipe this herd ends at, the one it creates first, and with `--takeover`, the
/// old herd's (where this one ends: it serves a pipe of its own until the old herd is gone).
fn pipes(
    args: &RunArgs,
    control: Option<&Path>,
    name: &str,
) -> Result<(String, String, Option<String>), Failure> {
    let user = Sid::current_user().context("cannot read herd's own user")?;
    let Some(given) = &args.takeover else {
        let pipe = pipe_path(control, name, &user)?;
        return Ok((pipe.clone(), pipe, None));
    };
    let old = takeover::old_pipe(given, control, user.as_str())?;
    let meanwhile =
        pipe_name::takeover_meanwhile(&old, std::process::id()).map_err(Failure::Usage)?;
    Ok((old.clone(), meanwhile, Some(old)))
}

/// `herd upgrade --reload-config`: reads the config file again with herd's command
/// line, compared with `text` (what herd read at start: read again here, an edit since would
/// go unseen), and makes the new generation's command as `herd run` made the first.
fn config_reload(text: Option<&str>, pipe: String, notify: String) -> Result<Reload, Failure> {
    let argv = std::env::args_os().collect();
    let reloader = Reloader::new(argv, text).map_err(Failure::Usage)?;
    let command =
        move |args: &RunArgs| worker_command(args, &pipe, &notify).map_err(|e| e.to_string());
    Ok(Box::new(FileReload {
        reloader,
        command,
        stop_signal: |_| Signal::Stop,
    }))
}

/// `--starting-nice`, resolved for herd's own priority class (`warm_up::PriorityClass`): an
/// explicit value that would not lower the workers is a usage error. With it, the class
/// herd's workers start in (its value), which a worker herd lowered gets back.
fn warm_up(args: &RunArgs) -> Result<(Option<WarmUp>, i32), Failure> {
    let own = priority::class_of(&herd_sys::windows::process::current())
        .context("cannot read herd's priority class")?;
    let own = PriorityClass::from_raw(own).unwrap_or(PriorityClass::Normal);
    let resolved = args
        .starting_nice
        .resolve_on_windows(own)
        .map_err(Failure::Usage)?;
    Ok((resolved, own.of_children().raw() as i32))
}

/// The control pipe's path for `--control` or `$HERD_CONTROL`, else for `--name`.
fn pipe_path(control: Option<&Path>, name: &str, user: &Sid) -> Result<String, Failure> {
    let control = control.map(|c| c.to_string_lossy().into_owned());
    let env = std::env::var("HERD_CONTROL").ok();
    pipe_name::resolve(control.as_deref(), env.as_deref(), name, user.as_str())
        .map_err(Failure::Usage)
}

/// The accounts `--control-allow-user` names: a SID (`S-1-5-...`) or an account name.
fn allowed_users(users: &[String]) -> Result<Vec<Sid>, Failure> {
    users
        .iter()
        .map(|user| {
            let sid = match user.starts_with("S-") {
                true => Sid::parse(user),
                false => Sid::of_account(user),
            };
            sid.map_err(|e| {
                Failure::Usage(format!(
                    "--control-allow-user {user}: no such account ({e}); give an account name \
                     (DOMAIN\\NAME) or a SID (S-1-5-...)"
                ))
            })
        })
        .collect()
}

/// Creates the control pipe's first instance: only herd's user, Administrators, LocalSystem
/// and the `allowed` accounts may open it. Fails if the name is taken: another herd runs under
/// it (or something squats it).
fn bind_pipe(pipe: &str, name: &str, allowed: &[Sid]) -> Result<PipeServer, Failure> {
    let secure = SecurePipe::new(pipe, allowed).context("cannot describe the control pipe")?;
    PipeServer::bind(secure).map_err(|e| {
        Failure::Runtime(anyhow::anyhow!(
            "cannot create the control pipe {pipe}: {e}; is another herd named '{name}' \
             running? Give this one another --name"
        ))
    })
}

/// The workers' command: `--env` added to herd's environment, `NOTIFY_SOCKET` (the notify
/// pipe), `WATCHDOG_USEC` with `--watchdog`, and `HERD_CONTROL`, so that `herd` commands run
/// by a worker reach this herd.
fn worker_command(args: &RunArgs, pipe: &str, notify: &str) -> Result<WorkerCommand, Failure> {
    // `--compat` is refused on Windows: no socket is described to its conventions.
    let env = worker_env(args, notify.into(), pipe.into(), &Default::default());
    let mut command = WorkerCommand::new(
        args.command.clone(),
        env,
        args.clear_env,
        args.chdir.clone(),
    )
    .map_err(Failure::Usage)?;
    if let Some(output) = output::start_for(args.worker_output)? {
        command.capture_output(output);
    }
    Ok(command)
}
