//! `herd status`: the table (or the JSON) once, or with `--watch` every second until Ctrl-C
//! or until herd is gone. The table's exit status says whether the pool is degraded.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::anyhow;
use serde::de::{self, Deserialize, Deserializer};

use super::{dumb_terminal, print, print_to_reader, table, Connect, QUICK};
use crate::cli::StatusArgs;
use crate::control::client::{Client, ClientError};
use crate::control::protocol::Command;
use crate::control::results::Status;
use crate::exit::Failure;

/// How often `--watch` asks again.
const EVERY: Duration = Duration::from_secs(1);

/// Clears a terminal and puts the cursor at its top left.
const CLEAR: &str = "\x1b[H\x1b[2J";

/// Shows the status once, or with `--watch` until Ctrl-C or herd is gone.
pub(super) fn show(args: &StatusArgs, connect: Connect<'_>) -> Result<(), Failure> {
    if !args.watch {
        let (text, health) = once(args.json, connect)?;
        print(&text)?;
        return health;
    }
    // A dumb terminal gets what a pipe gets: one status after another, no escapes.
    let screen = std::io::stdout().is_terminal() && !dumb_terminal();
    watch(args.json, screen, connect)
}

/// The status as printed, and what it says of the pool's health.
fn once(json: bool, connect: Connect<'_>) -> Result<(String, Result<(), Failure>), Failure> {
    asked(json, connect).map_err(Asked::failure)
}

/// Why a status could not be had: herd's answer, or what was made of it.
enum Asked {
    /// No answer (herd gone, paused, refusing).
    Client(ClientError),
    /// An answer that is no status.
    Failed(Failure),
}

impl Asked {
    fn failure(self) -> Failure {
        match self {
            Asked::Client(e) => super::failure(e),
            Asked::Failed(f) => f,
        }
    }
}

/// herd's status, read as `R`, and herd's pid as this client sees it ([`pid_here`]).
fn status<R: serde::de::DeserializeOwned>(
    connect: Connect<'_>,
) -> Result<(R, Option<u32>), ClientError> {
    let mut client = connect()?;
    let status = client.call(Command::Status, Some(QUICK))?;
    Ok((status, pid_here(&client)))
}

/// [`once`], with the client's error as it came.
fn asked(json: bool, connect: Connect<'_>) -> Result<(String, Result<(), Failure>), Asked> {
    if json {
        // As herd sent it: fields this client does not know are shown too. An object: a result
        // of another shape (an array, null) is not a status, whoever sent it.
        let (status, _): (RawObject, _) = status(connect).map_err(Asked::Client)?;
        let text = status.pretty().map_err(|why| {
            Asked::Failed(Failure::Runtime(anyhow!(
                "unexpected status from herd: {why}"
            )))
        })?;
        return Ok((text, Ok(())));
    }
    let (status, pid_here): (Status, _) = status(connect).map_err(Asked::Client)?;
    let health = match degraded(&status) {
        Some(why) => Err(Failure::Degraded(why)),
        None => Ok(()),
    };
    let pid_here = pid_here.filter(|&here| here != status.pid);
    Ok((table::render(&status, pid_here), health))
}

/// herd's pid as this client sees it (`SO_PEERCRED`; 0 for a herd outside this client's PID
/// namespace); on Windows, which has no PID namespaces, none.
#[cfg(unix)]
fn pid_here(client: &Client) -> Option<u32> {
    client.server_pid()
}

#[cfg(windows)]
fn pid_here(_client: &Client) -> Option<u32> {
    None
}

/// A JSON object as herd sent it, its text unparsed: `--json` shows it pretty-printed, its
/// members in herd's order, without building it as a tree (a status of 4096 workers is about
/// 900 KB, and a tree of it took a third of the client's time).
struct RawObject(Box<serde_json::value::RawValue>);

impl<'de> Deserialize<'de> for RawObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<RawObject, D::Error> {
        let raw = Box::<serde_json::value::RawValue>::deserialize(deserializer)?;
        match raw.get().starts_with('{') {
            true => Ok(RawObject(raw)),
            false => Err(de::Error::invalid_type(
                de::Unexpected::Other("JSON that is not an object"),
                &"a status (a JSON object)",
            )),
        }
    }
}

impl RawObject {
    /// The object pretty-printed, with a line end: its tokens copied from the text to a
    /// pretty serializer one by one (`serde_transcode`). A copy fails where the raw text holds
    /// what serde_json reads as no value (a number out of range, such as `1e400`): why.
    fn pretty(&self) -> Result<String, String> {
        let text = self.0.get();
        let mut out = Vec::with_capacity(text.len() * 3 / 2 + 1);
        let mut from = serde_json::Deserializer::from_str(text);
        let mut to = serde_json::Serializer::pretty(&mut out);
        serde_transcode::transcode(&mut from, &mut to).map_err(|e| e.to_string())?;
        out.push(b'\n');
        String::from_utf8(out).map_err(|e| e.to_string())
    }
}

/// Why the pool is degraded, if it is: fewer workers are ready than herd wants, for whatever
/// reason (starting, restarting after a crash, scaling up, failing to start), or too few of
/// the ready ones are not paused (a paused one serves nothing), or a slot herd
/// wants has no ready worker while another has two (its worker being replaced, by a recycle
/// or an upgrade, until `--min-ready` has passed): counted by process, those two hid it. A
/// stopping herd is said to be stopping, not degraded: it wants no worker any more, and is no
/// herd to send work to (`/readyz` answers 503 `stopping`); so is one in its `--drain-delay`
/// before the stop (`/readyz` answers 503 `draining`), its workers still serving.
pub fn degraded(status: &Status) -> Option<String> {
    let desired = status.desired;
    if status.stopping {
        return Some(format!(
            "stopping: {} of {desired} workers ready",
            status.ready
        ));
    }
    if let Some(left) = status.draining_ms {
        return Some(format!(
            "stopping: draining for {} more before its workers stop ({} of {desired} ready)",
            super::table::short(left),
            status.ready
        ));
    }
    if status.ready < desired {
        return Some(format!(
            "degraded: {} of {desired} workers ready",
            status.ready
        ));
    }
    // A ready worker that is paused (`kill -STOP`, a debugger) serves nothing.
    let paused = (status.workers.iter())
        .filter(|w| w.state == "ready" && w.paused)
        .count();
    if status.ready.saturating_sub(paused) < desired {
        return Some(format!(
            "degraded: {} of {desired} workers ready and not paused ({paused} paused, serving \
             nothing: kill -CONT resumes them, or the debugger that holds them)",
            status.ready.saturating_sub(paused)
        ));
    }
    let mut slots: Vec<usize> = (status.workers.iter())
        .filter(|w| w.state == "ready" && !w.paused && w.slot < desired)
        .map(|w| w.slot)
        .collect();
    slots.sort_unstable();
    slots.dedup();
    // No workers listed: a status too short to tell (herd lists every worker it has).
    if status.workers.is_empty() || slots.len() >= desired {
        return None;
    }
    let none = (0..desired).find(|slot| slots.binary_search(slot).is_err())?;
    Some(format!(
        "degraded: slot {none} has no ready worker ({} of {desired} slots have one)",
        slots.len()
    ))
}

/// `--watch`: one status a second; Ctrl-C, or stdout's reader going away, ends it with the
/// last status's exit code.
fn watch(json: bool, terminal: bool, connect: Connect<'_>) -> Result<(), Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(anyhow!("cannot start --watch's timer: {e}")))?;
    runtime.block_on(async {
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        let mut ticks = tokio::time::interval(EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut health = Ok(());
        loop {
            tokio::select! {
                _ = &mut ctrl_c => return health,
                _ = ticks.tick() => {}
            }
            let at = std::time::SystemTime::now();
            let (text, now) = match asked(json, connect) {
                Ok(got) => got,
                // Paused (SIGSTOP, a debugger) is not gone: said, and waited for.
                Err(Asked::Client(ClientError::Stopped { pid, .. })) => {
                    let note = super::paused_note(pid, "--watch") + "\n";
                    if !print_to_reader(&frame(&note, terminal, at))? {
                        return health;
                    }
                    continue;
                }
                Err(e) => return Err(e.failure()),
            };
            // A reader that went away (`| head -1`) ends it, with this status's code.
            if !print_to_reader(&frame(&text, terminal, at))? {
                return now;
            }
            health = now;
        }
    })
}

/// One status as `--watch` prints it: on a terminal, over the last one; else after a line
/// that says when it was taken.
fn frame(text: &str, terminal: bool, at: std::time::SystemTime) -> String {
    match terminal {
        true => format!("{CLEAR}{text}"),
        false => format!("--- {}\n{text}", humantime::format_rfc3339_seconds(at)),
    }
}

#[cfg(test)]
mod tests;
