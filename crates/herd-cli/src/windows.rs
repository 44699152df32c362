//! `herd run` on Windows: bind TCP and UDP sockets once, run N workers that share them
//! (`WSADuplicateSocketW` for each worker's pid, through the worker library's
//! [`herd::windows`]), restart a worker that exits, with backoff (herd-core's pool, as on
//! Unix: [`supervise`]), and stop on Ctrl-C or a `stop` line on standard input. It builds with
//! Rust 1.63, like the worker library.
//!
//! The Unix supervisor's control socket, signals, readiness, upgrades and Unix sockets are not
//! available here; the commands and options that need them say so.

use std::cell::Cell;
use std::ffi::OsString;
use std::io::BufRead;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs, UdpSocket};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use herd::windows::Shared;

mod supervise;

use supervise::{supervise, Event};

const USAGE: &str = "\
usage: herd run [-w N] -b [NAME=]ADDRESS... -- COMMAND [ARGS]...

Runs N copies of COMMAND sharing the sockets, restarts those that exit, and stops on Ctrl-C
or a 'stop' line on standard input. Workers read their sockets from standard input
(HERD_SOCKETS=stdin, the format in docs/windows.md; herd::Sockets::from_env() in Rust,
socket.fromshare() in Python) and their slot from HERD_WORKER.

  -b, --bind [NAME=]ADDRESS  HOST:PORT or tcp://HOST:PORT (TCP), udp://HOST:PORT (UDP),
                             :PORT (TCP on 0.0.0.0); port 0 picks a free port (repeatable)
  -w, --workers N            how many workers [default: the number of CPUs]
  -h, --help                 this help
  -V, --version              herd's version

On Windows, herd has no control socket: 'herd status', 'scale', 'upgrade', 'stop' and the
Unix socket, systemd, readiness and privilege options are Unix-only (see docs/windows.md).";

/// A usage error (exit 2) or a failure (exit 1), as one line.
enum Failure {
    Usage(String),
    Failed(String),
}

/// One `--bind`.
struct BindSpec {
    name: Option<String>,
    udp: bool,
    address: String,
}

struct RunArgs {
    workers: usize,
    binds: Vec<BindSpec>,
    command: Vec<OsString>,
}

/// The program's entry point on Windows.
pub fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    match parse(&args).and_then(|parsed| match parsed {
        Some(run_args) => run(run_args),
        None => Ok(()),
    }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(why)) => {
            eprintln!("herd: error: {why}; try 'herd run --help'");
            ExitCode::from(2)
        }
        Err(Failure::Failed(why)) => {
            eprintln!("herd: error: {why}");
            ExitCode::from(1)
        }
    }
}

/// The subcommand, after the options before it (only those that make sense here); `None`
/// after `--help` or `--version`.
fn subcommand(words: &mut std::slice::Iter<'_, OsString>) -> Result<Option<String>, Failure> {
    let usage = |why: String| Err(Failure::Usage(why));
    loop {
        match words.next().map(|w| w.to_string_lossy().into_owned()) {
            None => return usage("a command is required: herd run ...".to_string()),
            Some(w) if w == "-h" || w == "--help" => {
                println!("{USAGE}");
                return Ok(None);
            }
            Some(w) if w == "-V" || w == "--version" => {
                println!("herd {}", env!("CARGO_PKG_VERSION"));
                return Ok(None);
            }
            Some(w) if w == "--log-level" || w == "--log-format" => {
                words.next();
            }
            Some(w) if w.starts_with('-') => {
                return usage(format!("the option '{w}' is not available on Windows"))
            }
            Some(w) => return Ok(Some(w)),
        }
    }
}

/// The command line; `None` after `--help` or `--version`.
fn parse(args: &[OsString]) -> Result<Option<RunArgs>, Failure> {
    let usage = |why: String| Err(Failure::Usage(why));
    let mut words = args.iter();
    let sub = match subcommand(&mut words)? {
        Some(sub) => sub,
        None => return Ok(None),
    };
    if sub != "run" {
        return usage(format!(
            "'herd {sub}' is not available on Windows, where herd has no control socket; \
             'herd run' is, and stops on Ctrl-C or a 'stop' line on its standard input"
        ));
    }
    let mut run = RunArgs {
        workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
        binds: Vec::new(),
        command: Vec::new(),
    };
    while let Some(word) = words.next() {
        let w = word.to_string_lossy().into_owned();
        let value = |words: &mut std::slice::Iter<'_, OsString>| {
            words
                .next()
                .map(|v| v.to_string_lossy().into_owned())
                .ok_or_else(|| Failure::Usage(format!("'{w}' needs a value")))
        };
        match w.as_str() {
            "--" => {
                run.command = words.by_ref().cloned().collect();
                break;
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(None);
            }
            "-w" | "--workers" => {
                let v = value(&mut words)?;
                run.workers = match v.parse::<usize>() {
                    Ok(n) if (1..=4096).contains(&n) => n,
                    _ => {
                        return usage(format!(
                            "invalid --workers '{v}': a number of workers from 1 to 4096 \
                             (autoscaling is Unix-only)"
                        ))
                    }
                };
            }
            "-b" | "--bind" => {
                let v = value(&mut words)?;
                run.binds.push(parse_bind(&v).map_err(Failure::Usage)?);
            }
            other if other.starts_with('-') => {
                return usage(format!("the option '{other}' is not available on Windows"))
            }
            other => {
                return usage(format!(
                    "unexpected '{other}': put the worker command after '--'"
                ))
            }
        }
    }
    if run.binds.is_empty() {
        return usage("at least one --bind is required".to_string());
    }
    if run.command.is_empty() {
        return usage("the worker command is missing: herd run -b ADDRESS -- COMMAND".to_string());
    }
    Ok(Some(run))
}

fn parse_bind(text: &str) -> Result<BindSpec, String> {
    let (name, rest) = match text.split_once('=') {
        Some((name, rest)) => (Some(name.to_string()), rest),
        None => (None, text),
    };
    if let Some(name) = &name {
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !valid {
            return Err(format!(
                "invalid socket name in --bind '{text}': use letters, digits, '.', '_' and '-'"
            ));
        }
    }
    if rest.contains(',') {
        return Err(format!(
            "--bind '{text}': socket options are not available on Windows; drop them"
        ));
    }
    let (udp, address) = if let Some(a) = rest.strip_prefix("udp://") {
        (true, a)
    } else if let Some(a) = rest.strip_prefix("tcp://") {
        (false, a)
    } else if rest.starts_with("unix:") || rest == "systemd" || rest.starts_with("fd:") {
        return Err(format!(
            "--bind '{text}': Unix sockets and systemd sockets are Unix-only; use HOST:PORT"
        ));
    } else {
        (false, rest)
    };
    let address = if address.starts_with(':') {
        format!("0.0.0.0{address}")
    } else {
        address.to_string()
    };
    if address.to_socket_addrs().is_err() {
        return Err(format!(
            "--bind '{text}': '{address}' is not HOST:PORT (e.g. 127.0.0.1:8080, [::1]:8080, :8080)"
        ));
    }
    Ok(BindSpec { name, udp, address })
}

/// A bound socket and its name.
enum Bound {
    Tcp(String, TcpListener),
    Udp(String, UdpSocket),
}

impl Bound {
    fn name(&self) -> &str {
        match self {
            Bound::Tcp(name, _) | Bound::Udp(name, _) => name,
        }
    }
}

fn bind(specs: &[BindSpec]) -> Result<Vec<Bound>, Failure> {
    let mut bound: Vec<Bound> = Vec::new();
    for spec in specs {
        let failed =
            |e: std::io::Error| Failure::Failed(format!("cannot bind {}: {e}", spec.address));
        let name = |kind: &str, local: SocketAddr| {
            spec.name
                .clone()
                .unwrap_or_else(|| format!("{kind}-{}", local.port()))
        };
        let socket = if spec.udp {
            let s = UdpSocket::bind(&spec.address).map_err(failed)?;
            let local = s.local_addr().map_err(failed)?;
            eprintln!(
                "herd: listening on udp://{local} (socket {})",
                name("udp", local)
            );
            Bound::Udp(name("udp", local), s)
        } else {
            let s = TcpListener::bind(&spec.address).map_err(failed)?;
            let local = s.local_addr().map_err(failed)?;
            eprintln!("herd: listening on {local} (socket {})", name("tcp", local));
            Bound::Tcp(name("tcp", local), s)
        };
        if bound.iter().any(|b| b.name() == socket.name()) {
            return Err(Failure::Usage(format!(
                "the name '{}' is given to more than one --bind; names must be unique",
                socket.name()
            )));
        }
        bound.push(socket);
    }
    Ok(bound)
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

fn run(args: RunArgs) -> Result<(), Failure> {
    let bound = bind(&args.binds)?;
    let shared: Vec<Shared<'_>> = bound
        .iter()
        .map(|b| match b {
            Bound::Tcp(name, s) => Shared::Tcp(name, s),
            Bound::Udp(name, s) => Shared::Udp(name, s),
        })
        .collect();
    if let Err(e) = herd_sys::wsa::catch_ctrl_c() {
        eprintln!("herd: warning: Ctrl-C will not stop herd: {e}");
    }
    let told = told_to_stop();
    let program = args.command[0].clone();
    let rest = args.command[1..].to_vec();
    let shown = program.to_string_lossy().into_owned();
    // A first worker that cannot be started at all stops herd with the reason.
    let fatal: Cell<Option<String>> = Cell::new(None);
    let started_once = Cell::new(false);
    eprintln!(
        "herd {} starting {} workers (pid {})",
        env!("CARGO_PKG_VERSION"),
        args.workers,
        std::process::id()
    );
    supervise(
        |_slot| {
            let mut command = Command::new(&program);
            command.args(&rest);
            command
        },
        &shared,
        args.workers,
        || {
            let pending = fatal.take();
            let stop =
                pending.is_some() || told.load(Ordering::SeqCst) || herd_sys::wsa::ctrl_c_pressed();
            fatal.set(pending);
            stop
        },
        |event| match event {
            Event::Started { slot, pid } => {
                started_once.set(true);
                eprintln!("herd: worker {slot} started as pid {pid}");
            }
            Event::Exited {
                slot,
                pid,
                status,
                restart_in,
            } => match restart_in {
                Some(delay) => eprintln!(
                    "herd: worker {slot} (pid {pid}) exited ({status}); restarting in {delay:?}"
                ),
                None => eprintln!("herd: worker {slot} (pid {pid}) exited ({status})"),
            },
            Event::SpawnFailed {
                slot,
                error,
                retry_in,
            } => {
                if !started_once.get() && error.kind() == std::io::ErrorKind::NotFound {
                    fatal.set(Some(format!("cannot start '{shown}': {error}")));
                } else {
                    eprintln!(
                        "herd: cannot start worker {slot}: {error}; retrying in {retry_in:?}"
                    );
                }
            }
        },
    );
    if let Some(why) = fatal.take() {
        return Err(Failure::Failed(why));
    }
    eprintln!("herd: stopped");
    Ok(())
}
