//! `herd logs`: the workers' recent lines, and with `--follow` the new ones as they come.

use std::io::Write;

use anyhow::anyhow;

use super::{failure, Connect, QUICK};
use crate::cli::LogsArgs;
use crate::control::protocol::Command;
use crate::control::results::{LogFrame, LogLine, LogsResult};
use crate::exit::Failure;
use crate::output::{prefixed, Writer};

/// Asks for the lines, prints them, and with `--follow` keeps printing until herd is gone.
pub(super) fn show(args: &LogsArgs, connect: Connect<'_>) -> Result<(), Failure> {
    let mut client = connect().map_err(failure)?;
    let command = Command::Logs {
        slot: args.worker,
        lines: args.lines.map(|n| n as usize),
        follow: args.follow,
    };
    let result: LogsResult = client.call(command, Some(QUICK)).map_err(failure)?;
    for line in &result.lines {
        if !print(line, args.json)? {
            return Ok(());
        }
    }
    if !args.follow {
        return Ok(());
    }
    while let Some(line) = client.next_line().map_err(failure)? {
        let frame: LogFrame = serde_json::from_slice(&line).map_err(|e| {
            Failure::Runtime(anyhow!("herd sent a line that is not a log line: {e}"))
        })?;
        if let Some(missed) = frame.missed {
            eprintln!("herd logs: {missed} lines were missed: this terminal read too slowly");
        }
        if let Some(line) = frame.line {
            if !print(&line, args.json)? {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Prints one line where the worker wrote it (stdout or stderr), or as JSON on stdout;
/// `false` once the reader is gone (`herd logs | head`).
fn print(line: &LogLine, json: bool) -> Result<bool, Failure> {
    let text = match json {
        true => format!("{}\n", serde_json::to_string(line).unwrap_or_default()),
        false => {
            let writer = Writer {
                slot: line.worker,
                pid: line.pid,
                generation: line.generation,
            };
            prefixed(&writer, line.split, &line.line)
        }
    };
    let written = match (json, line.stream.as_str()) {
        (false, "stderr") => std::io::stderr().lock().write_all(text.as_bytes()),
        _ => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes()).and_then(|()| out.flush())
        }
    };
    match written {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(Failure::Runtime(anyhow!("cannot write the lines out: {e}"))),
    }
}
