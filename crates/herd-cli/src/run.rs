//! `herd run`: check the arguments, bind every socket, then supervise the workers.

use std::ffi::OsString;
use std::num::NonZeroUsize;
use std::os::unix::io::OwnedFd;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::cli::{Balance, ReadyMode, RunArgs, Workers};
use crate::command::{WorkerCommand, WorkerOptions};
use crate::control::path as control_path;
use crate::control::protocol::Command;
use crate::control::results::Status;
use crate::control::server::AccessPolicy;
use crate::exit::Failure;
use crate::logging::LogEvent;
use crate::spec::{self, Listener, SlotSockets, SocketFile, SocketKind};
use crate::supervisor::notify::NotifySocket;
use crate::supervisor::pool::{PoolConfig, Readiness};
use crate::supervisor::reexec;
use crate::supervisor::{Control, Supervisor, Takeover};
use herd_core::BackoffPolicy;

/// Runs `herd run` to completion; `control` and `name` select the control socket, and `owner`
/// is the uid a `--takeover`'s old herd may run as besides root and herd's own user.
pub fn run(
    args: RunArgs,
    control: Option<&Path>,
    name: &str,
    owner: Option<u32>,
) -> Result<(), Failure> {
    let restored = reexec::take()?;
    // Connections to herd's endpoints must never take the fds supervision needs. After a
    // re-exec, the workers still get the limit the first image was started with.
    crate::fdlimit::raise(restored.as_ref().and_then(|r| r.state.nofile));
    if let Some(restored) = restored {
        return resume(args, control, name, restored);
    }
    check_names(&args)?;
    check_balance(&args)?;
    control_path::check_name(name).map_err(Failure::Usage)?;
    let (workers, bounds) = match args
        .workers
        .unwrap_or_else(|| Workers::Fixed(default_workers()))
    {
        Workers::Fixed(n) => (n, None),
        Workers::Auto(min, max) => (min, Some((min, max))),
    };
    let uid = herd_sys::process::effective_uid();
    // A taking-over herd ends at the old herd's control socket, whatever its --name says.
    let (control, private_dir) = match &args.takeover {
        Some(old) => (takeover_control(old, control)?, false),
        None => control_path::resolve(control, name, uid),
    };
    // Absolute, against herd's directory now: workers get it in HERD_CONTROL (and the notify
    // socket beside it in NOTIFY_SOCKET) and may run elsewhere (--chdir, or a chdir of theirs).
    let control = control_path::absolute(&control);
    let pid = std::process::id();
    // A takeover binds its control socket beside the old herd's and moves it into place once
    // its workers are ready; the notify socket's name is per process, so two herds never meet.
    let bind_at = match &args.takeover {
        Some(_) => control.with_extension(format!("takeover.{pid}")),
        None => control.clone(),
    };
    let notify_path = control.with_extension(format!("{pid}.notify"));
    control_path::check_length(&control, args.takeover.is_some()).map_err(Failure::Usage)?;

    // Everything that can be checked without touching the system has been; bind now. Any error
    // from here on drops what was bound, which closes it and removes its socket files.
    // Users let in by --control-allow-uid/gid must be able to reach the socket; herd admits
    // them, and refuses everyone else, by their credentials.
    let shared = !args.control_allow_uid.is_empty() || !args.control_allow_gid.is_empty();
    let mut dir_lock = None;
    if private_dir {
        if let Some(dir) = control.parent() {
            control_path::ensure_private_dir(dir, uid, shared)?;
            // Again under the directory's lock, held until the socket is bound: a herd closing
            // the directory as it stops either sees our socket or runs before we open it.
            dir_lock = control_path::lock_dir(dir);
            control_path::ensure_private_dir(dir, uid, shared)?;
        }
    }
    // The old herd's control socket, as it is before anything is fetched from it: the one
    // socket file this herd may replace when the takeover completes.
    let old_socket = match &args.takeover {
        Some(old) => Some(socket_identity(old)?),
        None => None,
    };
    let inherited = match &args.takeover {
        Some(old) => fetch_inherited(old, owner)?,
        None => Vec::new(),
    };
    let (control_socket, control_file) =
        control_path::bind_private(&bind_at, uid, "control socket", shared)?;
    drop(dir_lock);
    if shared {
        control_path::warn_if_unreachable(&control);
    }
    // Workers running as another user cannot reach herd's private directory: their notify
    // socket lives in Linux's abstract namespace (senders are still checked by pid), under a
    // random name that no other user can occupy in advance.
    let notify = if args.user.is_some() && cfg!(target_os = "linux") {
        NotifySocket::bind_abstract_unique()?
    } else {
        NotifySocket::bind(&notify_path, uid)?
    };
    let reuseport = args.balance == Balance::Reuseport;
    let listeners = spec::bind_all(&args.binds, &args.shm, inherited, reuseport).map_err(|e| {
        match e.downcast_ref::<spec::GivenTwice>() {
            Some(twice) => Failure::Usage(twice.to_string()),
            None => Failure::Runtime(e),
        }
    })?;
    let control_path = control;
    let takeover = args
        .takeover
        .clone()
        .zip(old_socket)
        .map(|(old, old_socket)| Takeover { old, old_socket });
    let control = Control {
        file: control_file,
        listener: std::os::unix::net::UnixListener::from(OwnedFd::from(control_socket)),
        policy: policy(&args, uid),
    };
    let mut supervisor = prepare(&args, name, workers, listeners, &notify, &control_path)?;
    supervisor.set_autoscale(bounds);
    bind_metrics(&args, &mut supervisor)?;
    log_listeners(supervisor.listeners());
    tracing::info!(event = LogEvent::ControlReady.as_str(), path = %control.file.parts().0.display(), "control socket ready");
    tracing::info!(
        event = LogEvent::Starting.as_str(),
        workers,
        grace = %humantime::format_duration(args.grace),
        "herd {} starting (pid {pid})",
        env!("CARGO_PKG_VERSION"),
    );
    let ran = runtime()?.block_on(supervisor.run(control, notify, takeover));
    close_shared_dir(&args, &control_path, private_dir);
    ran?;
    Ok(())
}

/// Closes herd's default directory to others again as herd stops, if it was opened for
/// `--control-allow-uid`/`gid` (see [`control_path::close_shared_dir`]).
fn close_shared_dir(args: &RunArgs, control: &Path, private_dir: bool) {
    let shared = !args.control_allow_uid.is_empty() || !args.control_allow_gid.is_empty();
    if let (true, true, Some(dir)) = (private_dir, shared, control.parent()) {
        control_path::close_shared_dir(dir, herd_sys::process::effective_uid());
    }
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
    } = restored;
    let file = |(path, dev, ino)| SocketFile::from_parts(path, dev, ino);
    let listeners: Vec<Listener> = state
        .listeners
        .iter()
        .zip(fds.into_iter().zip(groups))
        .map(|(l, (fd, rest))| match &l.group {
            Some(g) => {
                let sockets = std::iter::once(fd).chain(rest).collect();
                let group = SlotSockets::restore(sockets, g.address, g.options);
                Listener::restore_group(l.name.clone(), l.address.clone(), group)
            }
            None => {
                let socket_file = l.file.clone().map(file);
                Listener::restore(l.name.clone(), l.kind, l.address.clone(), fd, socket_file)
            }
        })
        .collect();
    let notify = NotifySocket::restore(notify, file(state.notify.file.clone()))?;
    let uid = herd_sys::process::effective_uid();
    let control = Control {
        file: file(state.control.file.clone()),
        listener: std::os::unix::net::UnixListener::from(control),
        policy: policy(&args, uid),
    };
    let control_path = state.control.file.0.clone();
    let mut supervisor = prepare(&args, name, 0, listeners, &notify, &control_path)?;
    // Autoscaling as the runtime left it; a state without it (from an older herd) leaves it to
    // the command line.
    let recorded = state.autoscale.is_some();
    supervisor.resume(state, attached, reply);
    match metrics {
        // The same socket: same address (even a port chosen by the system), no scrape refused.
        Some(fd) => supervisor.set_metrics(std::net::TcpListener::from(fd)),
        None => bind_metrics(&args, &mut supervisor)?,
    }
    if let (false, Some(Workers::Auto(min, max))) = (recorded, args.workers) {
        supervisor.set_autoscale(Some((min, max)));
    }
    let ran = runtime()?.block_on(supervisor.run(control, notify, None));
    // The first image's default directory: the same command line and environment say so.
    let uid = herd_sys::process::effective_uid();
    let private_dir = args.takeover.is_none()
        && matches!(control_path::resolve(control_option, name, uid), (path, true) if control_path::absolute(&path) == control_path);
    close_shared_dir(&args, &control_path, private_dir);
    ran?;
    Ok(())
}

/// The worker command and the supervisor, for fresh starts and re-execs alike.
fn prepare(
    args: &RunArgs,
    name: &str,
    workers: usize,
    listeners: Vec<Listener>,
    notify: &NotifySocket,
    control: &Path,
) -> Result<Supervisor, Failure> {
    let names: Vec<String> = listeners.iter().map(|l| l.name.clone()).collect();
    let mut extra_env: Vec<(OsString, OsString)> = vec![
        ("NOTIFY_SOCKET".into(), notify.path.clone().into()),
        ("HERD_CONTROL".into(), control.into()),
    ];
    if let Some(watchdog) = args.watchdog {
        extra_env.push((
            "WATCHDOG_USEC".into(),
            watchdog.as_micros().to_string().into(),
        ));
    }
    for (key, value) in &args.env {
        extra_env.retain(|(k, _)| k != key);
        extra_env.push((key.clone(), value.clone()));
    }
    let options = worker_options(args)?;
    check_nofile(&options, names.len())?;
    let command =
        WorkerCommand::new(&args.command, &names, extra_env, options).map_err(Failure::Usage)?;
    command.program(0, 1).map_err(Failure::Usage)?;
    if workers > 0 {
        // A fresh start (a re-exec resumes running workers): meet now, once, whatever would
        // fail every worker (a limit, the user, the directory, the program as that user).
        command.probe().map_err(Failure::Usage)?;
    }
    let config = PoolConfig {
        workers,
        grace: args.grace,
        backoff: BackoffPolicy::default(),
        readiness: match args.ready {
            ReadyMode::Delay(d) => Readiness::Delay(d),
            ReadyMode::Notify => Readiness::Notify {
                timeout: args.ready_timeout,
            },
        },
        watchdog: args.watchdog,
        max_surge: args.max_surge as usize,
        min_ready: args.min_ready,
    };
    Ok(Supervisor::new(
        listeners,
        command,
        config,
        args.stop_signal,
        name,
    )?)
}

/// The workers' user, directory, umask and limits, checked now so that a mistake is a usage
/// error rather than a crash loop.
fn worker_options(args: &RunArgs) -> Result<WorkerOptions, Failure> {
    let credentials = match &args.user {
        None => None,
        Some(user) => {
            crate::command::credentials(user, args.group.as_deref()).map_err(Failure::Usage)?
        }
    };
    let chdir = match &args.chdir {
        None => None,
        Some(dir) => Some(crate::command::working_dir(dir).map_err(Failure::Usage)?),
    };
    let mut limits: Vec<(i32, u64, u64)> = Vec::new();
    let mut limit_names = Vec::new();
    for r in &args.rlimit {
        limits.push((r.resource, r.soft, r.hard));
        limit_names.push(format!("--rlimit {}", r.text));
    }
    if let Some(n) = args.nofile {
        limits.push((libc::RLIMIT_NOFILE as i32, n, n));
        limit_names.push(format!("--nofile {n}"));
    }
    // herd raised its own open-file limit; workers get the one it was started with.
    let nofile = libc::RLIMIT_NOFILE as i32;
    if let Some((soft, hard)) = crate::fdlimit::original() {
        if !limits.iter().any(|l| l.0 == nofile) {
            limits.push((nofile, soft, hard));
            limit_names.push(format!(
                "nofile={}:{} (the limit herd was started with)",
                crate::cli::show_rlimit(soft),
                crate::cli::show_rlimit(hard)
            ));
        }
    }
    Ok(WorkerOptions {
        credentials,
        user: args.user.clone(),
        chdir,
        umask: args.umask,
        limits,
        limit_names,
        clear_env: args.clear_env,
    })
}

/// A worker starts with stdin, stdout, stderr and `fds` inherited fds, and must be able to open
/// at least one more (its program's libraries, a connection): a `nofile` limit below that
/// fails every worker.
fn check_nofile(options: &WorkerOptions, fds: usize) -> Result<(), Failure> {
    let least = 3 + fds as u64 + 1;
    let nofile = libc::RLIMIT_NOFILE as i32;
    for ((resource, soft, _), name) in options.limits.iter().zip(&options.limit_names) {
        if *resource == nofile && *soft < least {
            return Err(Failure::Usage(format!(
                "{name} leaves a worker no file to open: it starts with {} open (stdin, \
                 stdout, stderr and {fds} socket(s)), so the limit must be at least {least} \
                 (e.g. 65536)",
                least - 1
            )));
        }
    }
    Ok(())
}

/// Binds `--metrics`, if asked.
fn bind_metrics(args: &RunArgs, supervisor: &mut Supervisor) -> Result<(), Failure> {
    let Some(spec) = &args.metrics else {
        return Ok(());
    };
    let listener = spec::bind_tcp(spec).map_err(|e| {
        Failure::Runtime(anyhow::anyhow!(
            "cannot serve metrics on {} (--metrics): {e:#}; choose another address",
            spec.text
        ))
    })?;
    let bound = listener
        .local_addr()
        .map_or_else(|_| spec.text.clone(), |a| a.to_string());
    tracing::info!(event = LogEvent::MetricsReady.as_str(), address = %bound, "metrics at http://{bound}/metrics");
    supervisor.set_metrics(listener);
    Ok(())
}

fn policy(args: &RunArgs, uid: u32) -> AccessPolicy {
    AccessPolicy {
        own_uid: uid,
        uids: args.control_allow_uid.clone(),
        gids: args.control_allow_gid.clone(),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the event loop")?)
}

/// Where a herd taking over from `old` ends: at `old` itself. A `--control` naming another
/// socket is a usage error, not a path to move to (it could be a live, unrelated herd's).
fn takeover_control(old: &Path, control: Option<&Path>) -> Result<std::path::PathBuf, Failure> {
    if let Some(asked) = control {
        let same = |p: &Path| std::fs::canonicalize(p).ok();
        if asked != old && (same(asked).is_none() || same(asked) != same(old)) {
            return Err(Failure::Usage(format!(
                "--takeover {} ends at the old herd's control socket, not at --control {}; \
                 drop --control (or pass the same path)",
                old.display(),
                asked.display()
            )));
        }
    }
    Ok(old.to_path_buf())
}

/// The device and inode of the socket file at `path` (the old herd's control socket).
fn socket_identity(path: &Path) -> Result<(u64, u64), Failure> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let shown = path.display();
    let meta = std::fs::symlink_metadata(path).map_err(|e| {
        Failure::Runtime(anyhow::anyhow!(
            "cannot take over from {shown}: {e}; pass the control socket of a running herd"
        ))
    })?;
    if !meta.file_type().is_socket() {
        return Err(Failure::Runtime(anyhow::anyhow!(
            "cannot take over from {shown}: it is not a socket; pass the control socket of a \
             running herd"
        )));
    }
    Ok((meta.dev(), meta.ino()))
}

/// Fetches the sockets of the herd whose control socket is `old`.
fn fetch_inherited(old: &Path, owner: Option<u32>) -> Result<Vec<spec::Inherited>, Failure> {
    // Per-slot sockets cannot be handed over (the `sockets` command gives slot 0's, for
    // `herd attach`): look before taking anything.
    let status: Status = crate::ctl::request(old, Command::Status, None, owner)?;
    // The socket files the old herd created, by socket name: where they are and which files
    // they are, so that the one adopted at the end is the same file (a herd that does not
    // say keeps its files).
    let files: Vec<(String, (PathBuf, u64, u64))> = status
        .sockets
        .iter()
        .filter_map(|s| {
            let file = s.file.as_ref()?;
            let path = PathBuf::from(&file.path);
            path.is_absolute()
                .then(|| (s.name.clone(), (path, file.dev, file.ino)))
        })
        .collect();
    if status
        .sockets
        .iter()
        .any(|s| s.balance == spec::Balance::Reuseport)
    {
        return Err(Failure::Runtime(anyhow::anyhow!(
            "cannot take over from {}: it runs with --balance reuseport, whose per-worker \
             sockets cannot be handed over; replace its binary with `herd reexec` instead",
            old.display()
        )));
    }
    let fetched = crate::ctl::fetch(old, Vec::new(), false, owner).map_err(|e| match e {
        Failure::Runtime(e) => {
            Failure::Runtime(e.context(format!("cannot take over from {}", old.display())))
        }
        usage => usage,
    })?;
    tracing::info!(event = LogEvent::TakeoverSocketsFetched.as_str(), from = %old.display(), sockets = fetched.len(), "fetched the sockets to take over");
    Ok(fetched
        .into_iter()
        .map(|(socket, fd)| spec::Inherited {
            file: files
                .iter()
                .find(|(name, _)| *name == socket.name)
                .map(|(_, file)| file.clone()),
            name: socket.name,
            kind: socket.kind,
            address: socket.address,
            fd,
        })
        .collect())
}

/// Explicit socket names must be unique: `{fd:NAME}` and `take_*("NAME")` must mean one socket.
fn check_names(args: &RunArgs) -> Result<(), Failure> {
    let mut seen: Vec<&str> = Vec::new();
    let shm = args.shm.iter().map(|s| s.name.as_str());
    for name in args
        .binds
        .iter()
        .filter_map(|b| b.name.as_deref())
        .chain(shm)
    {
        if seen.contains(&name) {
            return Err(Failure::Usage(format!(
                "the name '{name}' is given to more than one --bind or --shm; names must be unique"
            )));
        }
        seen.push(name);
    }
    Ok(())
}

/// `--balance reuseport` needs a TCP socket herd binds itself (and Linux, for steering), and
/// cannot be combined with `--takeover`.
fn check_balance(args: &RunArgs) -> Result<(), Failure> {
    if args.balance != Balance::Reuseport {
        return Ok(());
    }
    if !cfg!(any(target_os = "linux", target_os = "android")) {
        return Err(Failure::Usage(
            "--balance reuseport needs Linux (it steers connections with a reuseport BPF \
             program); use --balance shared"
                .to_string(),
        ));
    }
    if args.takeover.is_some() {
        return Err(Failure::Usage(
            "--balance reuseport cannot be combined with --takeover: per-worker sockets cannot \
             be handed over; replace herd's binary with `herd reexec` instead"
                .to_string(),
        ));
    }
    if !args.binds.iter().any(|b| b.address.kind() == "tcp") {
        return Err(Failure::Usage(
            "--balance reuseport applies to TCP sockets herd binds, and no --bind is one; \
             add a TCP --bind or drop --balance"
                .to_string(),
        ));
    }
    Ok(())
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

/// The number of CPUs herd may run on (affinity and cgroup quota included).
fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, NonZeroUsize::get)
}
