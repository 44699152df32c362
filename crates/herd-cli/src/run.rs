//! `herd run`: check the arguments, bind every socket, then supervise the workers.

use std::ffi::OsString;
use std::os::unix::io::OwnedFd;
use std::path::Path;

use anyhow::Context;

use crate::cli::{Balance, RunArgs, Workers};
use crate::command::WorkerCommand;
use crate::control::server::AccessPolicy;
use crate::exit::Failure;
use crate::logging::LogEvent;
use crate::output;
use crate::spec::{self, Listener, SocketFile, SocketKind};
use crate::supervisor::einhorn::EinhornSocket;
use crate::supervisor::notify::NotifySocket;
use crate::supervisor::notify_dir::WorkerUser;
use crate::supervisor::pool;
use crate::supervisor::reexec;
use crate::supervisor::{Control, Supervisor};
use crate::worker_env::{worker_env, Compat, Passed};

mod checks;
mod control_paths;
mod exec_size;
mod reload;
mod resume;
mod takeover;

pub use checks::check;
use checks::{check_before_binding, check_nofile, warm_up, worker_options};
use control_paths::{bind_control, close_shared_dir, in_default_dir, BoundControl, ControlPaths};
use reload::config_reload;
use takeover::OldHerd;

/// The state a re-exec's previous image handed over (`HERD_REEXEC_STATE`), with the fds it
/// names claimed; `None` when herd was not re-executed.
pub fn restored_state() -> Result<Option<reexec::Restored>, Failure> {
    Ok(reexec::take()?)
}

/// With `--config`: the file's contents the previous image's workers run, which the new
/// image's command line is read with.
pub fn config_in_force(restored: &reexec::Restored) -> Option<&str> {
    restored.state.config.as_deref()
}

/// How this herd came to run: started afresh, or resumed after a re-exec.
pub struct Started {
    /// The state a re-exec handed over ([`restored_state`]), whose `args` were read with its
    /// config file ([`config_in_force`]).
    pub restored: Option<reexec::Restored>,
    /// The `--config` file's contents `args` were read from: what the first workers run, so
    /// the baseline `herd upgrade --reload-config` compares the file with (read again after
    /// binding, an edit meanwhile went unseen: a changed bind not refused, a changed key the
    /// command line gives not named).
    pub config_text: Option<String>,
}

/// Runs `herd run` to completion; `control` and `name` select the control socket, and `owner`
/// is the uid a `--takeover`'s old herd may run as besides root and herd's own user.
pub fn run(
    args: RunArgs,
    control: Option<&Path>,
    name: &str,
    owner: Option<u32>,
    started: Started,
) -> Result<(), Failure> {
    let Started {
        restored,
        config_text,
    } = started;
    // Enough fds for supervision whatever connects; after a re-exec, the first image's limit.
    crate::fdlimit::raise(restored.as_ref().and_then(|r| r.state.nofile));
    if let Some(restored) = restored {
        return resume(args, control, name, restored);
    }
    check_before_binding(&args, name)?;
    let mut store = crate::fdstore::Store::from_env(args.fdstore).map_err(Failure::Usage)?;
    let (workers, bounds) = match args
        .workers
        .unwrap_or_else(|| Workers::Fixed(crate::cli::cpus()))
    {
        Workers::Fixed(n) => (n, None),
        Workers::Auto(min, max) => (min, Some((min, max))),
    };
    let uid = herd_sys::process::effective_uid();
    let policy = policy(&args, uid)?;
    let paths = ControlPaths::new(&args, control, name, uid)?;
    let pid = std::process::id();
    let BoundControl {
        socket: control_socket,
        file: control_file,
        dir: control_dir,
        old_herd,
        inherited,
    } = bind_control(&args, &paths, uid, owner)?;
    let ControlPaths {
        control: control_path,
        private_dir,
        ..
    } = paths;
    let notify_path = control_path.with_extension(format!("{pid}.notify"));
    // Workers running as another user cannot reach herd's private directory: their notify
    // socket is theirs, in a directory of its own that they can reach.
    let mut notify = match workers_of_another_user(&args, uid)? {
        Some((workers_uid, gids)) => NotifySocket::bind_for(WorkerUser {
            uid: workers_uid,
            gids: &gids,
        })?,
        None => NotifySocket::bind(&notify_path, uid)?,
    };
    einhorn_socket(&args, &control_path, None, &mut notify)?;
    let (listeners, untaken) = bind_listeners(&args, inherited, store.as_mut())?;
    let takeover = args.takeover.clone().zip(old_herd).map(OldHerd::takeover);
    let control = Control {
        file: control_file,
        listener: std::os::unix::net::UnixListener::from(OwnedFd::from(control_socket)),
        policy,
        dir: control_dir,
    };
    let mut supervisor = prepare(
        &args,
        name,
        workers,
        listeners,
        &notify,
        &control_path,
        config_text.as_deref(),
    )?;
    supervisor.set_autoscale(bounds);
    supervisor.remove_once_taken_over(untaken);
    supervisor.set_recycling(crate::supervisor::recycling_policy(&args));
    supervisor.set_warm_up(warm_up(&args)?);
    crate::endpoints::serve(&args, &mut supervisor, crate::cli::cpus(), (None, None))?;
    log_listeners(supervisor.listeners());
    tracing::info!(event = LogEvent::ControlReady.as_str(), path = %control.file.parts().0.display(), "control socket ready");
    tracing::info!(
        event = LogEvent::Starting.as_str(),
        workers,
        grace = %humantime::format_duration(args.grace),
        max_starting = args.max_starting,
        "herd {} starting (pid {pid})",
        env!("CARGO_PKG_VERSION"),
    );
    let ran = runtime()?.block_on(supervisor.run(control, notify, takeover));
    output::finish();
    close_shared_dir(&args, &control_path, private_dir);
    ran?;
    Ok(())
}

/// Binds `args`' sockets and creates its shared memory, taking `inherited` ones (a takeover's)
/// and those systemd's fd store gave back instead where they match; then hands them to the
/// store. With the socket files of the inherited sockets left untaken.
fn bind_listeners(
    args: &RunArgs,
    mut inherited: Vec<spec::Inherited>,
    mut store: Option<&mut crate::fdstore::Store>,
) -> Result<(Vec<Listener>, Vec<spec::UntakenFile>), Failure> {
    if let Some(store) = store.as_mut() {
        inherited.extend(store.restore()?);
    }
    let reuseport = args.balance == Balance::Reuseport;
    let (mut listeners, untaken) = spec::bind_all(&args.binds, &args.shm, inherited, reuseport)
        .map_err(|e| match e.downcast_ref::<spec::GivenTwice>() {
            Some(twice) => Failure::Usage(twice.to_string()),
            None => Failure::Runtime(e),
        })?;
    if let Some(store) = store {
        store.sync(&mut listeners);
    }
    Ok((listeners, untaken))
}

/// Continues as the new program of a re-exec: everything comes from the state the previous
/// image handed over; the command line is the same.
fn resume(
    args: RunArgs,
    control_option: Option<&Path>,
    name: &str,
    restored: reexec::Restored,
) -> Result<(), Failure> {
    let reexec::Restored {
        state,
        control,
        notify,
        listeners: fds,
        groups,
        reply,
        attached,
        metrics,
        health,
        einhorn,
        outputs,
    } = restored;
    let file = |(path, dev, ino)| SocketFile::from_parts(path, dev, ino);
    let listeners = resume::listeners(&state.listeners, fds, groups);
    let notify_file = file(state.notify.file.clone());
    let mut notify = NotifySocket::restore(notify, notify_file, state.notify.dir)?;
    notify.restore_for(state.notify.owner);
    let einhorn = einhorn.zip(state.einhorn.as_ref().map(|e| file(e.file.clone())));
    einhorn_socket(&args, &state.control.file.0, einhorn, &mut notify)?;
    let uid = herd_sys::process::effective_uid();
    let policy = policy(&args, uid)?;
    let control_file = file(state.control.file.clone());
    let control = Control {
        dir: state.control.dir.or_else(|| Control::dir_of(&control_file)),
        file: control_file,
        listener: std::os::unix::net::UnixListener::from(control),
        policy,
    };
    let control_path = state.control.file.0.clone();
    let in_force = state.config.as_deref();
    let mut supervisor = prepare(&args, name, 0, listeners, &notify, &control_path, in_force)?;
    // The workers' output, read on from where the previous image stopped, after the lines it
    // kept.
    if let Some(output) = output::current() {
        if let Some(lines) = state.lines {
            output.restore_lines(lines);
        }
        output.resume(outputs);
    }
    // Autoscaling as the runtime left it; a state without it (from an older herd) leaves it to
    // the command line.
    let recorded = state.cores.autoscale.is_some();
    // The policy first: resuming restores the recycler's requests and holds into it.
    supervisor.set_recycling(crate::supervisor::recycling_policy(&args));
    supervisor.resume(state.cores, attached, reply);
    supervisor.set_warm_up(warm_up(&args)?);
    // The same sockets: same address (even a port chosen by the system), no scrape refused.
    let handed = (
        metrics.map(std::net::TcpListener::from),
        health.map(std::net::TcpListener::from),
    );
    crate::endpoints::serve(&args, &mut supervisor, crate::cli::cpus(), handed)?;
    if let (false, Some(Workers::Auto(min, max))) = (recorded, args.workers) {
        supervisor.set_autoscale(Some((min, max)));
    }
    let ran = runtime()?.block_on(supervisor.run(control, notify, None));
    output::finish();
    let private_dir = in_default_dir(&args, control_option, name, &control_path);
    close_shared_dir(&args, &control_path, private_dir);
    ran?;
    Ok(())
}

/// The worker command and the supervisor, for fresh starts and re-execs alike (with
/// `--config`, `in_force`: the file's contents the workers run, as herd read them at start or
/// as a re-exec kept them).
fn prepare(
    args: &RunArgs,
    name: &str,
    workers: usize,
    listeners: Vec<Listener>,
    notify: &NotifySocket,
    control: &Path,
    in_force: Option<&str>,
) -> Result<Supervisor, Failure> {
    let names: Vec<String> = listeners.iter().map(|l| l.name.clone()).collect();
    let passed = Passed {
        sockets: listeners
            .iter()
            .map(|l| (l.kind, l.address.clone()))
            .collect(),
        einhorn_sock: notify.einhorn.as_ref().map(|e| e.path.clone()),
    };
    let notify_path: OsString = notify.path.clone().into();
    let mut command = worker_command(args, &names, &passed, &notify_path, control)?;
    command.program(0, 1).map_err(Failure::Usage)?;
    let output = output::start_for(args.worker_output)?;
    if let Some(output) = &output {
        command.capture_output(output.clone());
    }
    if workers > 0 {
        // A fresh start (a re-exec resumes running workers): meet now, once, whatever would
        // fail every worker (a limit, the user, the directory, the program as that user).
        command.probe().map_err(Failure::Usage)?;
    }
    let config = pool::config(args, workers);
    let mut supervisor = Supervisor::new(listeners, command, config, args.stop_signal, name)?;
    if args.config.is_some() {
        let control = control.to_path_buf();
        let sockets = (names, passed);
        let reload = config_reload(in_force, sockets, notify_path, control, output)?;
        supervisor.set_reload(reload);
    }
    Ok(supervisor)
}

/// The workers' command: `args`' program, environment and options, for sockets `names` (and
/// what `--compat` describes: `passed`).
pub(crate) fn worker_command(
    args: &RunArgs,
    names: &[String],
    passed: &Passed,
    notify: &OsString,
    control: &Path,
) -> Result<WorkerCommand, Failure> {
    let mut extra_env = worker_env(args, notify.clone(), control.into(), passed);
    crate::worker_env::stop_signal::name_in(&mut extra_env, args.stop_signal);
    let options = worker_options(args)?;
    check_nofile(&options, names.len())?;
    WorkerCommand::new(&args.command, names, extra_env, options).map_err(Failure::Usage)
}

/// With `--compat einhorn`, the socket of einhorn's acknowledgements, set on `notify`: the one
/// a re-exec handed over (`restored`), else a new one beside the notify socket of workers of
/// another user (`--user`), else beside the control socket at `control`.
fn einhorn_socket(
    args: &RunArgs,
    control: &Path,
    restored: Option<(OwnedFd, SocketFile)>,
    notify: &mut NotifySocket,
) -> Result<(), Failure> {
    if let Some((fd, file)) = restored {
        notify.einhorn = Some(EinhornSocket::restore(fd, file));
        return Ok(());
    }
    if !args.compat.contains(&Compat::Einhorn) || notify.bind_einhorn_for_workers()? {
        return Ok(());
    }
    let uid = herd_sys::process::effective_uid();
    if workers_of_another_user(args, uid)?.is_some() {
        tracing::warn!(
            event = LogEvent::SetupNote.as_str(),
            "--compat einhorn: workers running as --user cannot reach herd's private directory, \
             so they get no EINHORN_SOCK_PATH until herd is started anew (its notify socket \
             was handed over by an older herd); they can say READY=1 on NOTIFY_SOCKET instead"
        );
        return Ok(());
    }
    let path = control.with_extension(format!("{}.ack", std::process::id()));
    notify.einhorn = Some(EinhornSocket::bind(&path)?);
    Ok(())
}

/// With `--user` naming another user than herd's `uid`: the workers' uid and gids.
fn workers_of_another_user(args: &RunArgs, uid: u32) -> Result<Option<(u32, Vec<u32>)>, Failure> {
    let Some(user) = &args.user else {
        return Ok(None);
    };
    let credentials =
        crate::command::credentials(user, args.group.as_deref()).map_err(Failure::Usage)?;
    Ok(credentials
        .filter(|&(workers, ..)| workers != uid)
        .map(|(workers, _, gids)| (workers, gids)))
}

/// Who may use the control socket: herd's `uid`, root, and what `--control-allow-*` names
/// (a `--control-allow-user` that names no user is a usage error).
fn policy(args: &RunArgs, uid: u32) -> Result<AccessPolicy, Failure> {
    let mut uids = args.control_allow_uid.clone();
    for user in &args.control_allow_user {
        let found = herd_sys::process::lookup_user(user).map_err(|e| {
            Failure::Runtime(anyhow::anyhow!(
                "cannot look up --control-allow-user {user}: {e}"
            ))
        })?;
        let known = found.ok_or_else(|| {
            Failure::Usage(format!(
                "--control-allow-user: no user named '{user}'; give a user name or uid"
            ))
        })?;
        uids.push(known.uid);
    }
    Ok(AccessPolicy {
        own_uid: uid,
        uids,
        gids: args.control_allow_gid.clone(),
    })
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the event loop")?)
}

fn log_listeners(listeners: &[Listener]) {
    for (i, l) in listeners.iter().enumerate() {
        tracing::info!(
            event = LogEvent::Listening.as_str(),
            name = %l.name,
            address = %l.address,
            kind = %l.kind,
            balance = %l.balance(),
                        fd = herd::LISTEN_FDS_START + i as i32,
            "{} {}",
            if l.kind == SocketKind::Shm { "shared memory" } else { "listening on" },
            l.address
        );
    }
}
