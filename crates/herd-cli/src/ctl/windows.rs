//! The client commands on Windows: the herd is reached at its control pipe
//! ([`crate::control::pipe_name`]), whose server must run as the caller's user or LocalSystem.
//! `herd signal` sends what has a meaning there: a stop request (TERM, INT) or KILL. `herd
//! attach` starts COMMAND and stays its parent ([`attach`]).

use std::os::windows::io::OwnedSocket;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::anyhow;
use herd_sys::windows::process::Process;
use serde::de::DeserializeOwned;

mod attach;

use super::{ask, failure, WireSignal, QUICK};
use crate::cli;
use crate::control::client::Client;
use crate::control::protocol::Command;
use crate::control::results::{SocketInfo, Status};
use crate::control::{name, pipe_name};
use crate::exit::Failure;

/// Runs one client command against the herd named `herd`, at `control` (`--control`) if
/// given, else at `$HERD_CONTROL`, else at its default pipe.
pub fn run(command: cli::Command, control: Option<&Path>, herd: &str) -> Result<(), Failure> {
    let (pipe, default) = pipe_for(control, herd)?;
    let named = default.then_some(herd);
    match command {
        cli::Command::Attach(args) => {
            let code = attach::run(args, &pipe, named)?;
            // COMMAND's exit code is this process's own.
            crate::logging::flush();
            std::process::exit(code)
        }
        command => ask(command, &|| {
            Client::connect(&pipe).map_err(|e| e.named(named))
        }),
    }
}

/// The control pipe of the herd named `herd` run by this user: `control` if given, else
/// `$HERD_CONTROL`, else its default pipe; and whether it is the default one.
pub fn pipe_for(control: Option<&Path>, herd: &str) -> Result<(PathBuf, bool), Failure> {
    name::check_name(herd).map_err(Failure::Usage)?;
    let control = match control {
        None => None,
        Some(given) => Some(given.to_str().ok_or_else(|| {
            Failure::Usage(format!(
                "--control {}: a pipe name must be Unicode",
                given.display()
            ))
        })?),
    };
    let env = std::env::var("HERD_CONTROL").ok().filter(|e| !e.is_empty());
    let user = herd_sys::windows::sid::Sid::current_user()
        .map_err(|e| Failure::Runtime(anyhow!("cannot learn which user this is: {e}")))?;
    let pipe =
        pipe_name::resolve(control, env.as_deref(), herd, user.as_str()).map_err(Failure::Usage)?;
    Ok((PathBuf::from(pipe), control.is_none() && env.is_none()))
}

/// A signal as the protocol names it on Windows: `TERM`, `INT` or `KILL`.
pub(super) fn wire_signal(args: &cli::SignalArgs) -> Result<WireSignal, Failure> {
    let name = cli::unavailable::windows_signal(&args.signal.0).map_err(Failure::Usage)?;
    Ok(WireSignal {
        wire: name.to_string(),
        shown: name.to_string(),
    })
}

/// Sends one request to the herd at `control` and returns its result.
pub fn request<R: DeserializeOwned>(
    control: &Path,
    command: Command,
    timeout: Option<Duration>,
) -> Result<R, Failure> {
    Client::connect(control)
        .and_then(|mut client| client.call(command, timeout))
        .map_err(failure)
}

/// Fetches the sockets named in `only` (all if empty) from the herd at `control`, made for
/// this process; with `attach`, registers this process with herd.
pub fn fetch(
    control: &Path,
    only: Vec<String>,
    attach: bool,
) -> Result<Vec<(SocketInfo, OwnedSocket)>, Failure> {
    Client::connect(control)
        .and_then(|mut client| client.sockets(only, attach, Some(QUICK)))
        .map_err(failure)
}

/// What a takeover learns of the old herd, over one connection.
pub struct TakeoverSource {
    /// Its status.
    pub status: Status,
    /// Its process, opened while the connection showed it serving the pipe (`None` if it
    /// could not be opened).
    pub process: Option<Process>,
    /// Its sockets, made for this process.
    pub sockets: Vec<(SocketInfo, OwnedSocket)>,
}

/// What a takeover needs of the herd at `control`, over one connection: its status, its
/// process and its sockets (made for this process). A server whose process
/// (`GetNamedPipeServerProcessId`) is not the one its status names is refused: the takeover
/// would stop and wait for the wrong process, then take the pipe from under the real one. The
/// process is opened while connected, so its pid cannot have been reused by then.
pub fn takeover_source(control: &Path) -> Result<TakeoverSource, Failure> {
    let mut client = Client::connect(control).map_err(failure)?;
    let status: Status = client.call(Command::Status, Some(QUICK)).map_err(failure)?;
    let server = client.server_pid().map_err(|e| {
        Failure::Runtime(anyhow!(
            "cannot tell which process serves {}: {e}",
            control.display()
        ))
    })?;
    if server != status.pid {
        return Err(Failure::Runtime(anyhow!(
            "its status says herd is process {}, but the pipe is served by process {server}: \
             not the herd it names, so nothing is taken over",
            status.pid
        )));
    }
    let process = Process::open(server).ok();
    let sockets = client
        .sockets(Vec::new(), false, Some(QUICK))
        .map_err(failure)?;
    Ok(TakeoverSource {
        status,
        process,
        sockets,
    })
}

/// Whether stdout's reader is gone, seen without writing to it: not known on Windows, where
/// the next write says so.
pub(super) fn stdout_gone() -> bool {
    false
}

/// Whether this process may draw on its console: always on Windows, which stops no
/// background process for it.
pub(super) fn in_foreground() -> bool {
    true
}
