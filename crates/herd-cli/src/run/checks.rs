//! What `herd run` checks before it binds anything: socket names, `--balance`, and the
//! workers' user, directory, umask and limits, so that a mistake is a usage error rather than a
//! crash loop.

use std::path::Path;

use crate::cli::{Balance, RunArgs, Workers};
use crate::command::WorkerCommand;
use crate::command::WorkerOptions;
use crate::exit::Failure;
use crate::logging::LogEvent;
use crate::spec;
use crate::supervisor::warm_up::{
    born_with, raise_way_out, SchedIdle, StartingNice, WarmUp, LOWEST,
};

/// The workers' user, directory, umask and limits, checked now so that a mistake is a usage
/// error rather than a crash loop.
pub(super) fn worker_options(args: &RunArgs) -> Result<WorkerOptions, Failure> {
    if let (Some(group), None) = (&args.group, &args.user) {
        // An option first, so that a config file's error is placed at its key.
        return Err(Failure::Usage(format!(
            "--group {group} needs --user: herd sets a worker's group with its user; give \
             --user USER too (the group alone would be ignored)"
        )));
    }
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
    // Two settings of one limit: the first applied would bound the second (a hard limit is
    // raised only with CAP_SYS_RESOURCE), so which one wins would depend on privileges.
    for (i, (resource, ..)) in limits.iter().enumerate() {
        if let Some(j) = limits[..i].iter().position(|l| l.0 == *resource) {
            return Err(Failure::Usage(format!(
                "{} and {} set the same limit: give it once",
                limit_names[j], limit_names[i]
            )));
        }
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
    if args.fork_server && !cfg!(any(target_os = "linux", target_os = "android")) {
        return Err(Failure::Usage(
            "--fork-server needs Linux: herd adopts the workers a fork server forks as a child \
             subreaper (PR_SET_CHILD_SUBREAPER), which this system does not have; leave it out"
                .to_string(),
        ));
    }
    Ok(WorkerOptions {
        credentials,
        user: args.user.clone(),
        chdir,
        umask: args.umask,
        limits,
        limit_names,
        clear_env: args.clear_env,
        fork_server: args.fork_server,
    })
}

/// A worker starts with stdin, stdout, stderr and `fds` inherited fds, and must be able to open
/// at least one more (its program's libraries, a connection): a `nofile` limit below that
/// fails every worker.
pub(super) fn check_nofile(options: &WorkerOptions, fds: usize) -> Result<(), Failure> {
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

/// What `herd run` checks first, before it binds anything: the socket names, an address
/// given to two `--bind`s, `--metrics` or `--health` at an address another serves, `--balance`,
/// `--ready-min`, the herd's `name`, and the size of the workers' command and environment.
pub(super) fn check_before_binding(args: &RunArgs, name: &str) -> Result<(), Failure> {
    spec::check_names(&args.binds, &args.shm).map_err(Failure::Usage)?;
    crate::worker_env::check_env(args).map_err(Failure::Usage)?;
    spec::check_given_twice(&args.binds).map_err(|e| Failure::Usage(e.to_string()))?;
    crate::endpoints::check_addresses(args)?;
    check_balance(args)?;
    check_fds_per_worker(args)?;
    check_stdin(args)?;
    crate::endpoints::ready_min(args, crate::cli::cpus())?;
    crate::control::path::check_name(name).map_err(Failure::Usage)?;
    check_notify_base(args)?;
    super::exec_size::check(args).map_err(Failure::Usage)
}

/// With `--user` naming another user than herd's: their notify socket's directory goes in the
/// temporary directory, which must suit it ([`check_base`](crate::supervisor::notify_dir::check_base)).
fn check_notify_base(args: &RunArgs) -> Result<(), Failure> {
    let euid = herd_sys::process::effective_uid();
    let Some((uid, gids)) = super::workers_of_another_user(args, euid)? else {
        return Ok(());
    };
    let workers = crate::supervisor::notify_dir::WorkerUser { uid, gids: &gids };
    crate::supervisor::notify_dir::check_base(&crate::supervisor::notify_dir::base(), workers)
        .map(drop)
        .map_err(Failure::Usage)
}

/// At most one socket can be a worker's fd 0 (`--bind ...,stdin`).
fn check_stdin(args: &RunArgs) -> Result<(), Failure> {
    let mut on_stdin = args.binds.iter().filter(|b| b.options.stdin);
    match (on_stdin.next(), on_stdin.next()) {
        (Some(first), Some(second)) => Err(Failure::Usage(format!(
            "--bind '{}' and --bind '{}' both ask for the worker's stdin, which holds one \
             socket: keep 'stdin' on one of them",
            first.text, second.text
        ))),
        _ => Ok(()),
    }
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
    if tcp_binds(args) == 0 {
        return Err(Failure::Usage(
            "--balance reuseport applies to TCP sockets herd binds, and no --bind is one; \
             add a TCP --bind or drop --balance"
                .to_string(),
        ));
    }
    Ok(())
}

/// How many TCP sockets `args` binds (each a socket per slot with `--balance reuseport`).
fn tcp_binds(args: &RunArgs) -> usize {
    args.binds
        .iter()
        .filter(|b| b.address.kind() == "tcp")
        .count()
}

/// Whether herd itself ([`crate::fdlimit::too_few_for_herd`]) and the workers `args` asks for
/// (the most, with autoscaling) fit the open-file limit herd will raise its own to, with the
/// files herd holds for each: `--balance reuseport`'s
/// sockets, `--worker-output`'s pipes (those of an upgrade's successors too, `--max-surge`).
fn check_fds_per_worker(args: &RunArgs) -> Result<(), Failure> {
    let sockets = match args.balance {
        Balance::Reuseport => tcp_binds(args),
        Balance::Shared => 0,
    };
    let output_read = args.worker_output != crate::cli::WorkerOutput::Inherit;
    let bound = args.binds.len() + args.shm.len();
    let per_worker = crate::fdlimit::PerWorker::new(sockets, output_read).with_bound(bound);
    let workers = match args.workers {
        Some(Workers::Fixed(n)) => n,
        Some(Workers::Auto(_, max)) => max,
        None => crate::cli::cpus(),
    };
    // herd raises its soft limit to the hard one (at most 2^20) before it binds.
    if let Ok((soft, hard)) = herd_sys::process::nofile_limit() {
        let limit = crate::fdlimit::raised(soft, hard);
        if let Some(why) = crate::fdlimit::too_few_for_herd(limit, bound) {
            return Err(Failure::Usage(why));
        }
        let surge = |workers| args.max_surge.limit(workers);
        if let Some(why) = crate::fdlimit::too_many_for_fds(workers, per_worker, surge, limit) {
            return Err(Failure::Usage(why));
        }
    }
    Ok(())
}

/// What `herd run` checks of `args` before it binds anything, without binding or starting
/// anything: what [`check_before_binding`] checks, the control socket's path (`control`, as
/// given), the `--control-allow-user` users, the workers' user, directory and
/// limits, the command's templates and its program (found, and checked executable by a child
/// that takes a worker's steps, as `herd run` does; not run).
pub fn check(args: &RunArgs, control: Option<&Path>, name: &str) -> Result<(), Failure> {
    check_before_binding(args, name)?;
    // Where it would bind its control socket (a takeover's is the old herd's, checked then).
    if args.takeover.is_none() {
        let uid = herd_sys::process::effective_uid();
        super::control_paths::ControlPaths::new(args, control, name, uid)?;
    }
    super::policy(args, herd_sys::process::effective_uid())?;
    let options = worker_options(args)?;
    check_nofile(&options, args.binds.len() + args.shm.len())?;
    // The names `{fd:NAME}` may use, where they are known before binding (not those of
    // systemd's sockets).
    let mut names = Vec::new();
    for bind in &args.binds {
        let port = match &bind.address {
            spec::Address::Tcp(hp) | spec::Address::Udp(hp) => Some(hp.port),
            _ => None,
        };
        let name = match (&bind.name, port, &bind.address) {
            (Some(name), _, _) => name.clone(),
            (None, _, spec::Address::SystemdAll) => return Ok(()),
            (None, port, address) => spec::default_name(address, port),
        };
        names.push(spec::unique_name(name, &names));
    }
    names.extend(args.shm.iter().map(|s| s.name.clone()));
    let command =
        WorkerCommand::new(&args.command, &names, Vec::new(), options).map_err(Failure::Usage)?;
    command.program(0, 1).map_err(Failure::Usage)?;
    // What `herd run` meets before its first worker: a child takes every step a worker takes
    // (limits, umask, user, directory) and checks the program there, without running it.
    command.probe().map_err(Failure::Usage)?;
    Ok(())
}

/// `--starting-nice`, resolved for herd's own nice value and privileges: an explicit value
/// herd could not undo on readiness is a usage error; `auto` is then off, which a setup note
/// says. With it, the nice value herd's workers start at, which a worker herd lowered gets
/// back (one a re-exec handed over lowered too, when this image lowers none).
pub(super) fn warm_up(args: &RunArgs) -> Result<(Option<WarmUp>, i32), Failure> {
    let linux = cfg!(any(target_os = "linux", target_os = "android"));
    let policy = herd_sys::process::scheduling_policy(0)
        .ok()
        .filter(|_| linux);
    // The nice value the workers start at and get back once ready: herd's own, unless herd's
    // policy resets it for children (`SCHED_RESET_ON_FORK`: 0 for a negative one).
    let own = herd_sys::process::nice_of(0).unwrap_or(0);
    let own = policy.map_or(own, |policy| born_with(policy, own).nice);
    // Workers of another user (--user): raising them back needs CAP_SYS_NICE.
    let credentials = match &args.user {
        Some(user) => {
            crate::command::credentials(user, args.group.as_deref()).map_err(Failure::Usage)?
        }
        None => None,
    };
    let other_user =
        credentials.is_some_and(|(uid, _, _)| uid != herd_sys::process::effective_uid());
    let may_raise = |nice| match herd_sys::process::may_raise_priority_to(nice, other_user) {
        true => Ok(()),
        false => Err(raise_way_out(nice, other_user)),
    };
    // SCHED_IDLE only for a herd in SCHED_OTHER, the class a ready worker is raised to.
    let idle = match policy {
        _ if !linux => SchedIdle::Missing,
        Some(policy) => SchedIdle::on_linux_in(policy),
        None => SchedIdle::Available,
    };
    let resolved = args
        .starting_nice
        .resolve(own, idle, may_raise)
        .map_err(Failure::Usage)?;
    if resolved.is_none()
        && args.starting_nice == StartingNice::Auto
        && (idle == SchedIdle::Available || own < LOWEST)
    {
        tracing::info!(
            event = LogEvent::SetupNote.as_str(),
            "starting workers keep herd's priority (--starting-nice auto): herd could not raise \
             a ready worker's priority back: {}",
            raise_way_out(own, other_user)
        );
    }
    Ok((resolved, own))
}
