//! `herd top`: a live view of the pool in the terminal, sampled from `herd status` once a
//! second, with keys to scale and upgrade. [`model`] turns statuses into what is shown,
//! [`view`] draws it, [`keys`] says what each key does, [`terminal`] sets the terminal up and
//! always gives it back, [`ending`] lets a signal end the view as `q` does, and [`input`]
//! reads keys on a thread of its own and says when the terminal hung up.

mod ending;
mod input;
mod keys;
mod model;
mod terminal;
mod view;

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use crossterm::event::Event;

use super::{call, dumb_terminal, Connect, QUICK};
use crate::control::client::ClientError;
use crate::control::protocol::Command;
use crate::control::results::{ScaleResult, Status, UpgradeResult};
use crate::exit::Failure;
use input::{Got, Input};
use keys::Key;
use model::Model;

/// How often the status is sampled.
const EVERY: Duration = Duration::from_secs(1);

/// How often the loop looks whether a signal asked it to end.
const GLANCE: Duration = Duration::from_millis(100);

/// How long `u` waits for herd to refuse an upgrade; an upgrade still running then is
/// followed on the status.
const UPGRADE_ANSWER: Duration = Duration::from_secs(1);

/// How long herd may take for the whole upgrade, as `herd upgrade`'s default.
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(600);

/// Runs the view until `q` or Ctrl-C (exit 0) or until herd is gone (exit 1).
pub(super) fn run(connect: Connect<'_>) -> Result<(), Failure> {
    if !std::io::stdout().is_terminal() {
        return Err(Failure::Usage(
            "herd top draws on a terminal and stdout is not one: use 'herd status --watch' to \
             print the status every second"
                .to_string(),
        ));
    }
    if dumb_terminal() {
        return Err(Failure::Usage(
            "herd top draws with terminal escapes and TERM=dumb says this terminal takes none: \
             use 'herd status --watch' to print the status every second, or set TERM to your \
             terminal's type"
                .to_string(),
        ));
    }
    if !super::in_foreground() {
        return Err(Failure::Usage(
            "herd top is in the background of its terminal (its process group is not the \
             terminal's foreground one, as under 'timeout' without --foreground), where \
             drawing would stop it: run it in the foreground, e.g. 'timeout --foreground 60 \
             herd top'"
                .to_string(),
        ));
    }
    // No herd: said before the terminal is touched.
    let mut model = Model::default();
    model.update(call(connect, Command::Status, Some(QUICK))?);
    ending::watch()
        .map_err(|e| Failure::Runtime(anyhow!("cannot catch the signals that end it: {e}")))?;
    let mut guard = terminal::Guard::enter()
        .map_err(|e| Failure::Runtime(anyhow!("cannot set up the terminal: {e}")))?;
    let (result, hung_up) = match Input::start() {
        Ok(input) => {
            let result = session(&mut guard.screen, &input, &mut model, connect);
            (result, input.hung_up())
        }
        Err(e) => (
            Err(Failure::Runtime(anyhow!("cannot read the terminal: {e}"))),
            false,
        ),
    };
    drop(guard);
    // Ended by a signal (`kill`, `timeout`, the terminal closed): the terminal is back, and
    // the signal ends the process as it would have. A terminal that hung up sends SIGHUP.
    match (ending::arrived(), hang_up(result, hung_up)) {
        (Some(signal), _) => ending::die_of(signal),
        (None, Ok(Ended::HungUp)) => ending::die_of_hang_up(),
        (None, result) => result.map(|_| ()),
    }
}

/// How a session that ended with `result` ended, the terminal having hung up or not
/// (`hung_up`): a read or a drawing that failed as it hung up (before its SIGHUP came) is
/// that hang-up, not an error.
fn hang_up(result: Result<Ended, Failure>, hung_up: bool) -> Result<Ended, Failure> {
    match result {
        Err(_) if hung_up => Ok(Ended::HungUp),
        result => result,
    }
}

/// Why the view ended without an error.
enum Ended {
    /// `q`, Ctrl-C, or a signal.
    Asked,
    /// The terminal hung up.
    HungUp,
}

/// Draws, reads keys and samples until the user quits, herd is gone or a signal ends it.
fn session(
    screen: &mut terminal::Screen,
    input: &Input,
    model: &mut Model,
    connect: Connect<'_>,
) -> Result<Ended, Failure> {
    let io = |e: std::io::Error| Failure::Runtime(anyhow!("herd top: the terminal failed: {e}"));
    let mut next = Instant::now() + EVERY;
    let mut asked = false;
    let mut redraw = true;
    let mut paused = false;
    loop {
        if ending::arrived().is_some() {
            return Ok(Ended::Asked);
        }
        if redraw {
            screen.draw(|frame| view::draw(frame, model)).map_err(io)?;
            redraw = false;
        }
        let wait = next.saturating_duration_since(Instant::now()).min(GLANCE);
        match input.next(wait).map_err(io)? {
            Got::HungUp => return Ok(Ended::HungUp),
            Got::Nothing => {}
            Got::Event(event) => {
                redraw = true;
                if let Event::Key(press) = event {
                    let key = keys::key(press, asked);
                    if key == Key::Quit {
                        return Ok(Ended::Asked);
                    }
                    asked = respond(key, asked, model, connect);
                }
            }
        }
        if Instant::now() >= next {
            next = Instant::now() + EVERY;
            sample(model, &mut paused, connect)?;
            redraw = true;
        }
    }
}

/// Takes the next status into `model`. A herd that is paused (SIGSTOP, Ctrl-Z, a debugger)
/// is not gone: the note says so, with how to resume it, until it answers again (`paused`).
fn sample(model: &mut Model, paused: &mut bool, connect: Connect<'_>) -> Result<(), Failure> {
    let answer = connect().and_then(|mut client| client.call(Command::Status, Some(QUICK)));
    match answer {
        Ok(status) => {
            let status: Status = status;
            model.update(status);
            if std::mem::take(paused) {
                model.note = None;
            }
            Ok(())
        }
        Err(ClientError::Stopped { pid, .. }) => {
            *paused = true;
            model.note = Some(super::paused_note(pid, "this view"));
            Ok(())
        }
        Err(e) => Err(Failure::Runtime(anyhow!(
            "herd is gone: {}",
            super::failure(e)
        ))),
    }
}

/// Does what `key` asks and says so in the model's note; returns whether an upgrade now
/// awaits its confirmation.
fn respond(key: Key, asked: bool, model: &mut Model, connect: Connect<'_>) -> bool {
    let note = match key {
        // One key press never leaves the service with nothing serving.
        Key::Scale(delta) if delta < 0 && !matches!(model.desired(), Some(n) if n > 1) => {
            "herd top keeps 1 worker at least: 'herd scale 0' stops serving".to_string()
        }
        Key::Scale(delta) => scale(delta, model, connect),
        Key::AskUpgrade => {
            model.note = Some(
                "Start a rolling upgrade of every worker? y: yes, any other key: no".to_string(),
            );
            return true;
        }
        Key::Upgrade => upgrade(connect),
        Key::Cancel => "no upgrade".to_string(),
        Key::Quit | Key::Ignored => return asked,
    };
    model.note = Some(note);
    false
}

/// Scales by `delta`; says what happened. The model takes the new number at once: the next
/// key may come before the next sample.
fn scale(delta: i64, model: &mut Model, connect: Connect<'_>) -> String {
    let command = Command::Scale {
        workers: None,
        delta: Some(delta),
        min: None,
        max: None,
    };
    match call::<ScaleResult>(connect, command, Some(QUICK)) {
        Ok(r) => {
            model.set_desired(r.workers);
            format!(
                "scaled from {} to {} {}",
                r.previous,
                r.workers,
                crate::text::workers(r.workers)
            )
        }
        Err(e) => e.to_string(),
    }
}

/// Starts a rolling upgrade; says whether herd refused it, finished it or is rolling it out.
fn upgrade(connect: Connect<'_>) -> String {
    let command = Command::Upgrade {
        timeout_ms: Some(UPGRADE_TIMEOUT.as_millis() as u64),
        reload_config: false,
    };
    let answer = connect().and_then(|mut client| client.call(command, Some(UPGRADE_ANSWER)));
    match answer {
        Ok(UpgradeResult { generation, .. }) => {
            format!("upgraded: every worker runs generation {generation}")
        }
        Err(ClientError::Timeout { .. }) => "upgrade started: see the generation".to_string(),
        Err(e) => super::failure(e).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A terminal that hung up ends the view as its SIGHUP does, whether the view saw it hang
    /// up or a read or a drawing failed first (CI saw exit 1 once); other ends stand.
    #[test]
    fn a_failure_as_the_terminal_hangs_up_is_the_hang_up() {
        let failed = || Err(Failure::Runtime(anyhow!("herd top: the terminal failed")));
        assert!(matches!(hang_up(failed(), true), Ok(Ended::HungUp)));
        assert!(matches!(hang_up(failed(), false), Err(Failure::Runtime(_))));
        assert!(matches!(hang_up(Ok(Ended::Asked), true), Ok(Ended::Asked)));
        assert!(matches!(
            hang_up(Ok(Ended::HungUp), false),
            Ok(Ended::HungUp)
        ));
    }
}
