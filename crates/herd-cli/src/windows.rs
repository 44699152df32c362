//! `herd run` on Windows: bind TCP and UDP sockets once, run N workers that share them
//! (`WSADuplicateSocketW` for each worker's pid, through the worker library's
//! [`herd::windows`]), restart a worker that exits, with backoff (herd-core's pool, as on
//! Unix: [`supervise`]), and stop on Ctrl-C or a `stop` line on standard input.
//!
//! The command line is the Unix one ([`herd_cli::cli`]); what Windows cannot do yet was refused
//! before ([`herd_cli::cli::unavailable`]), so this maps the options that remain: `--bind`,
//! `--workers`, `--chdir`, `--env`, `--clear-env`, socket options but `nonblocking`, and the
//! command. The log is herd's own
//! ([`herd_cli::logging`]), with the same events as on Unix.

use std::cell::Cell;
use std::ffi::OsString;
use std::io::BufRead;
use std::net::{
    IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6, TcpListener, ToSocketAddrs, UdpSocket,
};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{anyhow, Context};
use herd::windows::Shared;
use herd_cli::cli::{RunArgs, Workers};
use herd_cli::exit::Failure;
use herd_cli::logging::LogEvent;
use herd_cli::spec::{default_name, unique_name, Address, BindOptions, BindSpec, Host, HostPort};
use socket2::{Domain, Protocol, Type};

mod supervise;

use supervise::{supervise, Event};

/// A bound socket and its name.
struct Bound {
    name: String,
    socket: Socket,
}

/// A listening TCP socket or a UDP socket.
enum Socket {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

/// The worker command and what every worker gets besides its sockets.
struct WorkerCommand {
    program: OsString,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    clear_env: bool,
    chdir: Option<PathBuf>,
}

/// What `--clear-env` keeps of herd's environment: PATH, as on Unix, and SystemRoot, without
/// which Windows programs cannot even start Winsock.
const KEPT_ENV: &[&str] = &["PATH", "SystemRoot"];

impl WorkerCommand {
    fn command(&self) -> Command {
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
        command.envs(self.env.iter().cloned());
        if let Some(dir) = &self.chdir {
            command.current_dir(dir);
        }
        command
    }
}

/// Runs `herd run` with `args`, which ask only for what Windows can do, until told to stop.
pub fn run(args: RunArgs) -> Result<(), Failure> {
    let workers = match args.workers {
        Some(Workers::Fixed(n)) => n,
        // Refused before: autoscaling is Unix-only for now.
        Some(Workers::Auto(min, _)) => min,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let bound = bind(&args.binds)?;
    let shared: Vec<Shared<'_>> = bound
        .iter()
        .map(|b| match &b.socket {
            Socket::Tcp(s) => Shared::Tcp(&b.name, s),
            Socket::Udp(s) => Shared::Udp(&b.name, s),
        })
        .collect();
    let mut command = args.command.into_iter();
    let worker = WorkerCommand {
        program: command.next().unwrap_or_default(),
        args: command.collect(),
        env: args.env,
        clear_env: args.clear_env,
        chdir: args.chdir,
    };
    if let Err(e) = herd_sys::wsa::catch_ctrl_c() {
        tracing::warn!(
            event = LogEvent::SetupNote.as_str(),
            "Ctrl-C will not stop herd: {e}"
        );
    }
    let told = told_to_stop();
    tracing::info!(
        event = LogEvent::Starting.as_str(),
        workers,
        "herd {} starting (pid {})",
        env!("CARGO_PKG_VERSION"),
        std::process::id()
    );
    if let Some(why) = supervise_workers(&worker, &shared, workers, &told) {
        return Err(Failure::Runtime(anyhow!(why)));
    }
    tracing::info!(
        event = LogEvent::Stopped.as_str(),
        "all workers have exited; herd stops"
    );
    Ok(())
}

/// Supervises until told to stop; `Some(why)` if the first worker could not be started at all.
fn supervise_workers(
    worker: &WorkerCommand,
    shared: &[Shared<'_>],
    workers: usize,
    told: &AtomicBool,
) -> Option<String> {
    let shown = worker.program.to_string_lossy().into_owned();
    let fatal: Cell<Option<String>> = Cell::new(None);
    let started_once = Cell::new(false);
    supervise(
        |_slot| worker.command(),
        shared,
        workers,
        || {
            let pending = fatal.take();
            let stop =
                pending.is_some() || told.load(Ordering::SeqCst) || herd_sys::wsa::ctrl_c_pressed();
            fatal.set(pending);
            stop
        },
        |event| {
            if let Event::SpawnFailed { error, .. } = &event {
                if !started_once.get() && error.kind() == std::io::ErrorKind::NotFound {
                    fatal.set(Some(format!("cannot start '{shown}': {error}")));
                    return;
                }
            }
            started_once.set(started_once.get() || matches!(event, Event::Started { .. }));
            log(event);
        },
    );
    fatal.take()
}

/// One supervision event as herd's log line.
fn log(event: Event<'_>) {
    match event {
        Event::Started { slot, pid } => tracing::info!(
            event = LogEvent::WorkerStarted.as_str(),
            slot,
            pid,
            "worker started"
        ),
        Event::Exited {
            slot,
            pid,
            status,
            restart_in: Some(delay),
        } => tracing::warn!(
            event = LogEvent::WorkerExited.as_str(),
            slot,
            pid,
            "worker exited: {status}; restarting it in {}",
            humantime::format_duration(delay)
        ),
        Event::Exited {
            slot, pid, status, ..
        } => tracing::info!(
            event = LogEvent::WorkerExited.as_str(),
            slot,
            pid,
            "worker exited: {status}"
        ),
        Event::Unbound { error } => tracing::warn!(
            event = LogEvent::SetupNote.as_str(),
            "workers are not in a Job Object, so they will outlive herd if it is killed: {error}"
        ),
        Event::SpawnFailed {
            slot,
            error,
            retry_in,
        } => tracing::warn!(
            event = LogEvent::WorkerStartFailed.as_str(),
            slot,
            retry_in = %humantime::format_duration(retry_in),
            "cannot start worker: {error}"
        ),
    }
}

/// Binds every `--bind` (TCP or UDP: the rest was refused before) and logs where it listens.
fn bind(specs: &[BindSpec]) -> Result<Vec<Bound>, Failure> {
    let mut bound: Vec<Bound> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for spec in specs {
        let (udp, host_port) = match &spec.address {
            Address::Tcp(hp) => (false, hp),
            Address::Udp(hp) => (true, hp),
            _ => {
                return Err(Failure::Usage(format!(
                    "--bind '{}': not on Windows",
                    spec.text
                )))
            }
        };
        let (socket, local) = bind_one(host_port, &spec.options, udp)
            .map_err(|e| anyhow!("--bind '{}': {e:#}", spec.text))?;
        let name = match &spec.name {
            Some(name) if names.contains(name) => {
                return Err(Failure::Usage(format!(
                    "the name '{name}' is given to more than one --bind; names must be unique"
                )))
            }
            Some(name) => name.clone(),
            None => unique_name(default_name(&spec.address, Some(local.port())), &names),
        };
        let kind = if udp { "udp" } else { "tcp" };
        let shown = if udp {
            format!("udp://{local}")
        } else {
            local.to_string()
        };
        tracing::info!(
            event = LogEvent::Listening.as_str(),
            name = %name,
            address = %shown,
            kind,
            "listening on {shown}"
        );
        names.push(name.clone());
        bound.push(Bound { name, socket });
    }
    Ok(bound)
}

/// Binds `HOST:PORT` for TCP (listening) or UDP, with `options` (`nonblocking` was refused
/// before): `:PORT` on every interface, IPv6 and IPv4 (dual-stack, unless `v6only`) where the
/// system has IPv6, else IPv4; a name at its first address. Like every socket herd makes on
/// Windows, it is not inheritable: workers get it duplicated for them.
fn bind_one(
    hp: &HostPort,
    options: &BindOptions,
    udp: bool,
) -> anyhow::Result<(Socket, SocketAddr)> {
    let (ty, protocol) = match udp {
        true => (Type::DGRAM, Protocol::UDP),
        false => (Type::STREAM, Protocol::TCP),
    };
    let (socket, address) = match &hp.host {
        Host::Any => {
            let v6 = SocketAddr::from((Ipv6Addr::UNSPECIFIED, hp.port));
            match socket2::Socket::new(Domain::IPV6, ty, Some(protocol)) {
                Ok(socket) => (socket, v6),
                Err(_) if !options.v6only => {
                    let v4 = SocketAddr::from((Ipv4Addr::UNSPECIFIED, hp.port));
                    (socket2::Socket::new(Domain::IPV4, ty, Some(protocol))?, v4)
                }
                Err(e) => return Err(e.into()),
            }
        }
        host => {
            let address = socket_address(host, hp)?;
            let socket = socket2::Socket::new(Domain::for_address(address), ty, Some(protocol))?;
            (socket, address)
        }
    };
    if address.is_ipv6() {
        // Windows' default is IPv6 only; herd's, as on Unix, is both unless `v6only`.
        socket.set_only_v6(options.v6only)?;
    }
    if options.nodelay {
        socket.set_tcp_nodelay(true)?;
    }
    socket
        .bind(&address.into())
        .with_context(|| format!("cannot bind {address}"))?;
    let local = socket
        .local_addr()?
        .as_socket()
        .ok_or_else(|| anyhow!("the bound socket has no IP address"))?;
    let socket = match udp {
        true => Socket::Udp(socket.into()),
        false => {
            let backlog = options
                .backlog
                .map_or(SOMAXCONN, |n| n.min(SOMAXCONN as u32) as i32);
            socket.listen(backlog)?;
            Socket::Tcp(socket.into())
        }
    };
    Ok((socket, local))
}

/// The accept queue's length unless `backlog=` says: Winsock's `SOMAXCONN`, "as long as the
/// system allows" (on Unix herd asks for `net.core.somaxconn`).
const SOMAXCONN: i32 = 0x7fff_ffff;

/// The address of a literal or named host (`:PORT` is IPv4's any address here).
fn socket_address(host: &Host, hp: &HostPort) -> anyhow::Result<SocketAddr> {
    match host {
        Host::Ip(IpAddr::V6(ip)) => {
            Ok(SocketAddr::V6(SocketAddrV6::new(*ip, hp.port, 0, hp.scope)))
        }
        Host::Ip(ip) => Ok(SocketAddr::new(*ip, hp.port)),
        Host::Name(name) => (name.as_str(), hp.port)
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve '{name}'"))?
            .next()
            .ok_or_else(|| anyhow!("'{name}' has no address")),
        Host::Any => Ok(SocketAddr::from((Ipv4Addr::UNSPECIFIED, hp.port))),
    }
}

/// "When told": a `stop` line on standard input (end of file alone is not a request: a
/// service wrapper may start herd with no input at all).
fn told_to_stop() -> Arc<AtomicBool> {
    let told = Arc::new(AtomicBool::new(false));
    let flag = told.clone();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            match line {
                Ok(l) if l.trim() == "stop" => {
                    flag.store(true, Ordering::SeqCst);
                    return;
                }
                Ok(_) => continue,
                Err(_) => return,
            }
        }
    });
    told
}
