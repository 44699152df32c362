//! `herd attach -- COMMAND` on Windows, which has no exec: `herd attach` fetches the sockets
//! with `attach` (herd registers *this* process, the pipe's client), starts COMMAND with them
//! as herd starts a worker ([`herd::windows::spawn_with`]: the sockets on its standard input,
//! `HERD_SOCKETS=stdin`), stays its parent and exits with its exit code.
//!
//! - COMMAND inherits the stop request herd made for this process (`HERD_STOP_EVENT`, which
//!   `herd::stop_requested` waits on): herd sets it when it stops, and ends this process with
//!   `TerminateProcess` once `--grace` is over. COMMAND lives in a Job Object of this
//!   process's that kills it on close, so it ends with `herd attach`, however that ends.
//! - COMMAND shares this console and process group: Ctrl-C typed there reaches it as it
//!   reaches any console program; `herd attach` itself outlives Ctrl-C, to relay the exit code.

use std::net::{TcpListener, UdpSocket};
use std::os::windows::io::{AsHandle, OwnedHandle, OwnedSocket};
use std::path::Path;
use std::process::{Child, Command, ExitStatus};

use anyhow::anyhow;
use herd::windows::{Inherited, Shared};
use herd_sys::job::Job;
use herd_sys::windows::handle;

use super::super::{failure, QUICK};
use crate::cli;
use crate::control::client::Client;
use crate::control::results::SocketInfo;
use crate::exit::Failure;
use crate::logging::LogEvent;
use crate::spec::SocketKind;

/// What a worker's environment has that COMMAND must not take from this one's.
const DROPPED: &[&str] = &[
    "HERD_WORKER",
    "HERD_GENERATION",
    "HERD_STOP_EVENT",
    "HERD_SHM",
    "NOTIFY_SOCKET",
    "HERD_SOCKETS",
];

/// A socket fetched from herd, as COMMAND is handed it.
enum Socket {
    Tcp(String, TcpListener),
    Udp(String, UdpSocket),
}

impl Socket {
    fn new(info: SocketInfo, socket: OwnedSocket) -> Socket {
        match info.kind {
            Some(SocketKind::Udp) => Socket::Udp(info.name, UdpSocket::from(socket)),
            _ => Socket::Tcp(info.name, TcpListener::from(socket)),
        }
    }

    fn shared(&self) -> Shared<'_> {
        match self {
            Socket::Tcp(name, s) => Shared::Tcp(name, s),
            Socket::Udp(name, s) => Shared::Udp(name, s),
        }
    }
}

/// Runs COMMAND attached to the herd at `pipe` (`named`: its name, when the pipe is its
/// default one) and returns its exit code.
pub fn run(args: cli::AttachArgs, pipe: &Path, named: Option<&str>) -> Result<i32, Failure> {
    let connect = || Client::connect(pipe).map_err(|e| failure(e.named(named)));
    let (program, program_args) = args
        .command
        .split_first()
        .ok_or_else(|| Failure::Usage("missing COMMAND after '--'".to_string()))?;
    let (fetched, stop_event) = connect()?.attach(args.only, Some(QUICK)).map_err(failure)?;
    let stop = stop_event.map(handle::claim).transpose().map_err(|e| {
        Failure::Runtime(anyhow!(
            "cannot take the stop request herd made for COMMAND: {e}"
        ))
    })?;
    let sockets: Vec<Socket> = fetched
        .into_iter()
        .map(|(i, s)| Socket::new(i, s))
        .collect();
    let mut command = Command::new(program);
    command.args(program_args).env("HERD_CONTROL", pipe);
    for name in DROPPED {
        command.env_remove(name);
    }
    let child = start(&mut command, &sockets, stop.as_ref()).map_err(|e| {
        Failure::Runtime(anyhow!("cannot start '{}': {e}", program.to_string_lossy()))
    })?;
    // Only COMMAND serves: this process's copies go.
    drop(sockets);
    let status = wait_outliving_ctrl_c(child)
        .map_err(|e| Failure::Runtime(anyhow!("cannot wait for COMMAND: {e}")))?;
    Ok(status.code().unwrap_or(1))
}

/// Starts `command` with `sockets` and the stop event `stop`, in a Job Object that ends it
/// when this process ends (held for ever: it is closed as this process exits).
fn start(
    command: &mut Command,
    sockets: &[Socket],
    stop: Option<&OwnedHandle>,
) -> std::io::Result<Child> {
    let shared: Vec<Shared<'_>> = sockets.iter().map(Socket::shared).collect();
    let inherit: Vec<Inherited<'_>> = stop
        .map(|h| Inherited::StopEvent(h.as_handle()))
        .into_iter()
        .collect();
    let enter_job = |child: &Child| {
        let joined =
            Job::kill_on_close().and_then(|job| job.assign(child.as_handle()).map(|()| job));
        match joined {
            Ok(job) => std::mem::forget(job),
            Err(e) => tracing::warn!(
                event = LogEvent::SetupNote.as_str(),
                "COMMAND is not in a Job Object, so it will outlive 'herd attach' if that is \
                 killed: {e}"
            ),
        }
        Ok(())
    };
    herd::windows::spawn_suspended(command, 0, &shared, &inherit, enter_job)
}

/// Waits for `child`, this process surviving Ctrl-C meanwhile (the child decides what Ctrl-C
/// means: this process only relays its exit code).
fn wait_outliving_ctrl_c(mut child: Child) -> std::io::Result<ExitStatus> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let mut ctrl_c = tokio::signal::windows::ctrl_c()?;
        let mut exited = crate::off_loop::run("herd-wait-child", move || child.wait())?;
        loop {
            tokio::select! {
                status = &mut exited => {
                    return status.map_err(|_| std::io::Error::other("the thread waiting for it panicked"))?
                }
                _ = ctrl_c.recv() => {}
            }
        }
    })
}
