//! The client commands: `herd status`, `scale`, `upgrade`, `stop` and `signal` send one
//! request to a running herd's control socket and print the answer.

mod table;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use anyhow::anyhow;

use crate::cli::{self, ScaleTarget};
use crate::control::protocol::{Command, ErrorCode, Request, Response, VERSION};
use crate::exit::Failure;
use crate::supervisor::status::Status;

/// How long a quick command (status, scale, signal) waits for its answer.
const QUICK: Duration = Duration::from_secs(30);

/// Runs one client command against the herd at `control`.
pub fn run(command: cli::Command, control: &Path) -> Result<(), Failure> {
    match command {
        cli::Command::Run(_) => unreachable!("herd run is not a client command"),
        cli::Command::Status(args) => {
            let result = request(control, Command::Status, Some(QUICK))?;
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&result).unwrap_or_default()
                );
            } else {
                let status: Status = serde_json::from_value(result)
                    .map_err(|e| anyhow!("unexpected status from {}: {e}", control.display()))?;
                print!("{}", table::render(&status));
            }
        }
        cli::Command::Scale(args) => {
            let (workers, delta) = match args.target {
                ScaleTarget::Set(n) => (Some(n), None),
                ScaleTarget::Delta(d) => (None, Some(d)),
            };
            let result = request(control, Command::Scale { workers, delta }, Some(QUICK))?;
            println!(
                "scaled from {} to {} workers",
                result["previous"], result["workers"]
            );
        }
        cli::Command::Upgrade(args) => {
            let timeout_ms = Some(args.timeout.as_millis() as u64);
            let result = request(control, Command::Upgrade { timeout_ms }, None)?;
            println!(
                "upgraded: every worker now runs generation {}",
                result["generation"]
            );
        }
        cli::Command::Stop(args) => {
            let grace_ms = args.grace.map(|g| g.as_millis() as u64);
            request(
                control,
                Command::Stop {
                    grace_ms,
                    fast: args.fast,
                },
                None,
            )?;
            println!("stopped");
        }
        cli::Command::Signal(args) => {
            let signal = args.signal.number().to_string();
            let command = Command::Signal {
                signal,
                slot: args.worker,
            };
            let result = request(control, command, Some(QUICK))?;
            println!("sent {} to {} worker(s)", args.signal, result["signalled"]);
        }
    }
    Ok(())
}

/// Sends one request and returns its result, or a failure that says what went wrong.
pub fn request(
    control: &Path,
    command: Command,
    timeout: Option<Duration>,
) -> Result<serde_json::Value, Failure> {
    let shown = control.display();
    let mut stream = UnixStream::connect(control).map_err(|e| {
        let why = match e.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ECONNREFUSED) => format!(
                "no herd is running at {shown}: start one with 'herd run', or select it with \
                 --name or --control"
            ),
            Some(libc::EACCES) => format!("permission denied opening {shown}"),
            _ => format!("cannot connect to {shown}: {e}"),
        };
        Failure::Runtime(anyhow!(why))
    })?;
    stream
        .set_read_timeout(timeout)
        .and_then(|()| stream.set_write_timeout(Some(QUICK)))
        .map_err(|e| Failure::Runtime(e.into()))?;
    let mut line = serde_json::to_vec(&Request {
        version: VERSION,
        command,
    })
    .map_err(|e| Failure::Runtime(e.into()))?;
    line.push(b'\n');
    // herd may answer before reading (a refusal) and close: then the write fails, but the
    // answer is waiting to be read, and it says more than "broken pipe".
    let sent = stream.write_all(&line);
    let mut answer = String::new();
    let read = BufReader::new(&stream).read_line(&mut answer);
    if answer.is_empty() {
        let why = match (sent, read) {
            (Err(e), _) => format!("cannot send to {shown}: {e}"),
            (_, Err(e)) => format!("no answer from {shown}: {e}"),
            _ => format!("{shown} closed the connection without an answer"),
        };
        return Err(Failure::Runtime(anyhow!(why)));
    }
    let response: Response = serde_json::from_str(&answer)
        .map_err(|e| Failure::Runtime(anyhow!("unexpected answer from {shown}: {e}")))?;
    match (response.ok, response.result, response.error) {
        (true, result, _) => Ok(result.unwrap_or_default()),
        (false, _, Some(error)) => {
            let code = serde_json::to_value(error.code)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            let prefix = match error.code {
                ErrorCode::UpgradeFailed => "upgrade failed, the old workers keep serving",
                _ => "herd refused",
            };
            Err(Failure::Runtime(anyhow!(
                "{prefix} ({code}): {}",
                error.message
            )))
        }
        (false, _, None) => Err(Failure::Runtime(anyhow!("herd refused without saying why"))),
    }
}
