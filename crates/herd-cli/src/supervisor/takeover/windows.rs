//! Completing a takeover on Windows: the old herd is reached at its control pipe and watched
//! by its process handle. Its pipe's name cannot be served by two herds, so this herd serves a
//! takeover pipe meanwhile and takes the old name once the old herd is gone
//! ([`Takeover::vacated`], acted on by the platform's `Control`).

use std::path::PathBuf;
use std::time::Duration;

use herd_sys::windows::process::{self, Process};
use tokio::sync::{mpsc, oneshot};

use crate::control::client::{Client, ClientError};
use crate::control::protocol::Command;
use crate::control::results::StopResult;
use crate::logging::LogEvent;
use crate::supervisor::platform::ControlFile;

use super::{answer_bound, judge_stop_answer, log_silent, stop_request, Abort, StopAnswer};
use super::{outrun, Glimpse, OldHerdNow, LOOK_BOUND};

/// A takeover in progress: once this herd's workers are available (ready for `--min-ready`),
/// the old herd is asked to stop, and this herd's control pipe takes its name.
pub struct Takeover {
    /// The old herd's control pipe, whose name this herd's pipe takes at the end.
    pub old: PathBuf,
    /// The old herd's `--grace`, if its status said ([`answer_bound`]).
    pub old_grace: Option<Duration>,
    /// The old herd's pid, as its status said: another pid answering at `old` is a herd that
    /// took over first ([`old_herd_now`]).
    pub old_pid: u32,
    /// The old herd's process, which tells whether it still runs (`None` if it could not be
    /// opened).
    pub old_process: Option<Process>,
    /// Told once the old herd is gone (it stopped or exited): the control pipe may take its
    /// name, and answers on the channel sent along with the pid of another herd that took the
    /// name first (it drops it once the name is its own, or it gives up). Dropped unsent when
    /// the takeover is aborted.
    pub vacated: oneshot::Sender<oneshot::Sender<u32>>,
}

/// How long an old herd that answered the stop may take to exit and close its pipe.
const EXIT_BOUND: Duration = Duration::from_secs(10);

/// Whether `process` has exited.
fn has_exited(process: &Process) -> bool {
    process::wait(process, Some(Duration::ZERO)).unwrap_or(false)
}

/// Ends a takeover whose workers are all available: asks the old herd to stop (on a thread of
/// its own, bounded by its grace and a margin), reports its answer on `answered`, and once the old
/// herd is gone, tells [`Takeover::vacated`]. An old herd that has exited already is `Gone`,
/// unless another herd serves its pipe (a takeover that completed first): this herd gives up
/// rather than serve beside it.
pub fn complete_takeover(
    takeover: Takeover,
    _control_file: &mut ControlFile,
    answered: mpsc::Sender<StopAnswer>,
) -> Result<Option<Takeover>, Abort> {
    let Takeover {
        old,
        old_grace,
        old_pid,
        old_process,
        vacated,
    } = takeover;
    if old_process.as_ref().is_some_and(has_exited) {
        if let Some(abort) = outrun(&old, old_pid, glimpse(&old)) {
            return Err(abort);
        }
        let taken = vacate(vacated);
        tokio::spawn(async move {
            let answer = match taken.await {
                Ok(pid) => outrun_at(&old, pid),
                Err(_) => StopAnswer::Gone("it has exited".to_string()),
            };
            let _ = answered.send(answer).await;
        });
        return Ok(None);
    }
    tracing::info!(event = LogEvent::TakeoverComplete.as_str(), old = %old.display(), "takeover complete: every worker is ready; asking the old herd to stop");
    let bound = answer_bound(old_grace);
    let pipe = old.clone();
    let asked = crate::off_loop::run("herd-stop-old", move || {
        let answer = stop_old_herd(&old, old_pid, bound);
        if let StopAnswer::Silent(waited) = answer {
            log_silent(&old, waited);
        }
        // The herd that took over first takes the old pipe's name; this one gives up.
        if let StopAnswer::Outrun(_) = answer {
            return answer;
        }
        let gone = match &old_process {
            Some(process) => process::wait(process, Some(EXIT_BOUND)),
            None => Ok(matches!(answer, StopAnswer::Stopped | StopAnswer::Gone(_))),
        };
        match gone {
            // Another herd that took the old pipe's name first serves beside this one: it
            // gives up (whatever the old herd answered: one that predates `taken_over`
            // accepts every stop).
            Ok(true) => match vacate(vacated).blocking_recv() {
                Ok(pid) => outrun_at(&old, pid),
                Err(_) => answer,
            },
            Ok(false) => {
                not_moved(&old, "the old herd has not exited");
                answer
            }
            Err(e) => {
                not_moved(&old, &format!("cannot tell whether the old herd runs: {e}"));
                answer
            }
        }
    });
    let asked = asked.map_err(|e| {
        not_moved(&pipe, "no thread could start to ask the old herd to stop");
        StopAnswer::Refused(format!(
            "it was never asked: no thread could start to ask it ({e})"
        ))
    });
    tokio::spawn(async move {
        let answer = match asked {
            Ok(asked) => asked.await.unwrap_or_else(|_| {
                StopAnswer::Refused("the stop was lost: its thread panicked".into())
            }),
            Err(answer) => answer,
        };
        let _ = answered.send(answer).await;
    });
    Ok(None)
}

/// Tells the control pipe that the old herd's name is free; returns where it says which herd
/// took the name first, if another did.
fn vacate(vacated: oneshot::Sender<oneshot::Sender<u32>>) -> oneshot::Receiver<u32> {
    let (taken_tx, taken) = oneshot::channel();
    let _ = vacated.send(taken_tx);
    taken
}

/// The answer when the herd `pid` took the old herd's pipe `old` first: this herd gives up.
fn outrun_at(old: &std::path::Path, pid: u32) -> StopAnswer {
    let old = old.display();
    StopAnswer::Outrun(Abort {
        why: format!("herd {pid} took the old herd's pipe {old} first"),
        after: format!("another herd (pid {pid}) took over at {old} first and serves"),
    })
}

/// Says that this herd's control pipe keeps its takeover name, and why.
fn not_moved(old: &std::path::Path, why: &str) {
    tracing::warn!(
        event = LogEvent::ControlNotMoved.as_str(),
        path = %old.display(),
        "the control pipe stays at its takeover name: {why}"
    );
}

/// Asks the herd at `old` (`old_pid`) to stop, with `takeover: true`, then plainly if it
/// predates takeovers; waits at most `bound` for each answer. Another process serving the
/// pipe (a herd whose takeover completed first, once the old herd exited) is not asked.
fn stop_old_herd(old: &std::path::Path, old_pid: u32, bound: Duration) -> StopAnswer {
    let mut client = match Client::connect(old) {
        Ok(client) => client,
        Err(ClientError::NotRunning { why, .. }) => {
            return StopAnswer::Gone(why.describe().to_string())
        }
        Err(e) => return StopAnswer::Refused(format!("cannot ask it to stop: {e}")),
    };
    match client.server_pid() {
        Ok(pid) if pid != old_pid => {
            let old = old.display();
            return StopAnswer::Outrun(Abort {
                why: format!("pid {pid}, not the old herd (pid {old_pid}), serves {old} now"),
                after: format!("another herd (pid {pid}) serves at {old}"),
            });
        }
        _ => {}
    }
    let ask = |client: &mut Client, takeover: bool| match client
        .call::<StopResult>(stop_request(takeover), Some(bound))
    {
        Err(ClientError::Timeout { .. }) => StopAnswer::Silent(bound),
        answer => judge_stop_answer(answer),
    };
    match ask(&mut client, true) {
        StopAnswer::Unsupported => {
            tracing::info!(
                event = LogEvent::OldHerdPredatesTakeover.as_str(),
                "the old herd predates takeovers: asking it for a plain stop"
            );
            match ask(&mut client, false) {
                StopAnswer::Unsupported => StopAnswer::Refused("it refused to stop".to_string()),
                answer => answer,
            }
        }
        answer => answer,
    }
}

/// What a failed takeover leaves serving ([`OldHerdNow`]): the old herd (`old_pid`), if it
/// still runs and does not stop, the herd that took over at `old` first (whose pipe takes the
/// old name once the old herd has exited), or nothing.
pub fn old_herd_now(old: &std::path::Path, process: Option<&Process>, old_pid: u32) -> OldHerdNow {
    let exited = old_herd_exited(old, process);
    OldHerdNow::judge(old_pid, exited, glimpse(old))
}

/// The status of the herd serving the pipe `old`, if one answers within [`LOOK_BOUND`]; its
/// pid as the system reports the pipe's server, not as the answer says.
fn glimpse(old: &std::path::Path) -> Option<Glimpse> {
    let mut client = Client::connect(old).ok()?;
    let mut glimpse: Glimpse = client.call(Command::Status, Some(LOOK_BOUND)).ok()?;
    if let Ok(pid) = client.server_pid() {
        glimpse.pid = pid;
    }
    Some(glimpse)
}

/// Whether the old herd at `old` is gone: its process has exited, or, if it could not be
/// opened, nothing serves its pipe any more.
fn old_herd_exited(old: &std::path::Path, process: Option<&Process>) -> bool {
    match process {
        Some(process) => has_exited(process),
        None => matches!(Client::connect(old), Err(ClientError::NotRunning { .. })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_old_herd_not_opened_is_gone_once_nothing_serves_its_pipe() {
        let old = std::path::Path::new(r"\\.\pipe\herd-test-nothing-serves-this-pipe");
        assert!(old_herd_exited(old, None));
    }

    #[test]
    fn an_old_herd_not_opened_runs_while_its_pipe_is_served() {
        let name = format!(r"\\.\pipe\herd-test-served-{}", std::process::id());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _entered = runtime.enter();
        let pipe = herd_sys::windows::pipe::SecurePipe::new(&name, &[]).unwrap();
        let _server = pipe.first_instance().unwrap();
        assert!(!old_herd_exited(std::path::Path::new(&name), None));
    }
}
