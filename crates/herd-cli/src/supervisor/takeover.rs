//! `--takeover`: ending a takeover by moving the control socket and stopping the old herd.

use std::path::PathBuf;

use herd_sys::pidfd::PidFd;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::control::client::{connect_nonblocking, AsyncClient, ClientError};
use crate::control::protocol::{Command, ErrorCode};
use crate::control::results::StopResult;
use crate::logging::LogEvent;
use crate::spec::SocketFile;

use super::Supervisor;

/// A takeover in progress: once this herd's workers are available (ready for `--min-ready`),
/// its control socket replaces the old herd's at `old`, and the old herd is asked to stop.
pub struct Takeover {
    /// The old herd's control socket, where this herd's ends.
    pub old: PathBuf,
    /// That socket file's device and inode when the takeover began: a different file there at
    /// the end (another herd's) is never replaced.
    pub old_socket: (u64, u64),
    /// The old herd's `--grace`, if its status said: its stop answer comes after at most
    /// that, and a margin ([`answer_bound`]).
    pub old_grace: Option<Duration>,
    /// The old herd's process, which tells whether it still runs (`None` where the system
    /// cannot hold a process).
    pub old_process: Option<PidFd>,
}

/// The grace assumed of an old herd whose status does not say (herd's default `--grace`).
const ASSUMED_GRACE: Duration = Duration::from_secs(30);

/// What a stop takes beyond the grace period: killing the workers left, reaping them, and
/// answering.
const STOP_MARGIN: Duration = Duration::from_secs(5);

/// How long the old herd's answer to the stop may take: a herd that has not answered by then
/// hangs, or was stopped (SIGSTOP), and this herd stops waiting for it.
pub(super) fn answer_bound(old_grace: Option<Duration>) -> Duration {
    old_grace
        .unwrap_or(ASSUMED_GRACE)
        .saturating_add(STOP_MARGIN)
}

/// What the old herd said to the stop that ends a takeover.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum StopAnswer {
    /// It accepted the takeover and has stopped, leaving its socket files in place.
    Stopped,
    /// It predates takeovers (`invalid_argument`): it gets a plain stop, and removes its
    /// socket files as it exits.
    Unsupported,
    /// It refused (or answered nothing this herd understands), why.
    Refused(String),
    /// It was gone when the takeover completed (stopped or killed meanwhile), why this herd
    /// thinks so: this herd serves on, and takes what the old herd left.
    Gone(String),
    /// It did not answer within the bound, how long this herd waited: this herd serves on,
    /// and leaves the old herd's socket files to it.
    Silent(Duration),
}

/// Judges the old herd's answer to a stop by its error code, never by the text of a message.
pub(super) fn judge_stop_answer(answer: Result<StopResult, ClientError>) -> StopAnswer {
    match answer {
        Ok(_) => StopAnswer::Stopped,
        Err(ClientError::Refused { error, .. }) if error.code == ErrorCode::InvalidArgument => {
            StopAnswer::Unsupported
        }
        Err(ClientError::Refused { error, .. }) => StopAnswer::Refused(format!(
            "{} ({})",
            crate::text::escape(&error.message),
            error.code
        )),
        Err(ClientError::Closed { .. }) => {
            StopAnswer::Refused("it closed the connection without an answer".to_string())
        }
        Err(e) => StopAnswer::Refused(e.to_string()),
    }
}

/// The stop that ends a takeover; `takeover: false` for a herd that predates takeovers.
fn stop_request(takeover: bool) -> Command {
    Command::Stop {
        grace_ms: None,
        fast: false,
        takeover,
    }
}

/// Ends a takeover whose workers are all available: connect to the old herd (before its control
/// socket's path is taken), move this herd's control socket to its place (in place of the old
/// one's there, and only if it still is the old one's: see [`SocketFile::replace`]), and ask the
/// old herd to stop, leaving its socket files in place. Its answer arrives on `answered`: the
/// listeners' socket files become this herd's only once it accepted
/// ([`Supervisor::takeover_answered`]).
pub(super) fn complete_takeover(
    takeover: Takeover,
    control_file: &mut SocketFile,
    answered: mpsc::Sender<StopAnswer>,
) -> Result<(), Abort> {
    let Takeover {
        old,
        old_socket,
        old_grace,
        old_process,
    } = takeover;
    let bound = answer_bound(old_grace);
    let abort = |why: String| Abort {
        why,
        after: after_abort(&old, old_process.as_ref()),
    };
    // An old herd that has exited has nothing left to stop, whatever is at its path now.
    if old_process.as_ref().is_some_and(PidFd::has_exited) {
        let why = "it has exited".to_string();
        old_herd_gone(&old, old_socket, control_file, answered, why);
        return Ok(());
    }
    let connection = AsyncClient::connect_now(&old);
    // A stopped herd would take the stop only once resumed, its workers unsupervised until
    // then: it keeps everything, and this herd gives up (a takeover is tried again at will).
    if let Err(stopped @ ClientError::Stopped { .. }) = &connection {
        return Err(abort(format!("{stopped}; then take over again")));
    }
    if let Err(ClientError::NotRunning { why, .. }) = &connection {
        let why = why.describe().to_string();
        old_herd_gone(&old, old_socket, control_file, answered, why);
        return Ok(());
    }
    if let Err(e) = control_file.replace(&old, old_socket) {
        return Err(abort(format!(
            "cannot move the control socket to {}: {e}",
            old.display()
        )));
    }
    tracing::info!(event = LogEvent::TakeoverComplete.as_str(), old = %old.display(), "takeover complete: every worker is ready; asking the old herd to stop");
    tokio::spawn(async move {
        let mut client = match connection {
            Ok(client) => client,
            Err(e) => {
                let why = format!("cannot ask it to stop: {e}");
                let _ = answered.send(StopAnswer::Refused(why)).await;
                return;
            }
        };
        let first = ask_to_stop(&mut client, true, bound).await;
        if let StopAnswer::Silent(waited) = first {
            log_silent(&old, waited);
        }
        let unsupported = first == StopAnswer::Unsupported;
        let _ = answered.send(first).await;
        if unsupported {
            match ask_to_stop(&mut client, false, bound).await {
                StopAnswer::Stopped => {
                    tracing::info!(event = LogEvent::OldHerdStopped.as_str(), old = %old.display(), "the old herd has stopped")
                }
                StopAnswer::Refused(why) | StopAnswer::Gone(why) => {
                    tracing::warn!(event = LogEvent::OldHerdNotStopped.as_str(), old = %old.display(), "the old herd did not stop: {why}")
                }
                StopAnswer::Unsupported => {
                    tracing::warn!(event = LogEvent::OldHerdNotStopped.as_str(), old = %old.display(), "the old herd refused to stop")
                }
                StopAnswer::Silent(waited) => log_silent(&old, waited),
            }
        }
    });
    Ok(())
}

/// Whether a server listens on the socket file at `path` (a connection is not refused).
fn listened_on(path: &std::path::Path) -> bool {
    !matches!(
        connect_nonblocking(path),
        Err(ClientError::NotRunning { .. })
    )
}

/// Ends a takeover whose old herd is gone (`why`): its control path becomes this herd's where
/// it can ([`take_vacant_control`]), and the loop hears of it as the stop's answer.
fn old_herd_gone(
    old: &std::path::Path,
    old_socket: (u64, u64),
    control_file: &mut SocketFile,
    answered: mpsc::Sender<StopAnswer>,
    why: String,
) {
    take_vacant_control(old, old_socket, control_file);
    tokio::spawn(async move {
        let _ = answered.send(StopAnswer::Gone(why)).await;
    });
}

/// Asks the old herd to stop (`takeover`: leaving its socket files) and judges its answer,
/// waiting at most `bound` for it.
async fn ask_to_stop(client: &mut AsyncClient, takeover: bool, bound: Duration) -> StopAnswer {
    match tokio::time::timeout(bound, client.call(stop_request(takeover))).await {
        Ok(answer) => judge_stop_answer(answer),
        Err(_) => StopAnswer::Silent(bound),
    }
}

/// Says that the old herd at `old` did not answer the stop within `waited`.
fn log_silent(old: &std::path::Path, waited: Duration) {
    tracing::warn!(
        event = LogEvent::OldHerdSilent.as_str(),
        old = %old.display(),
        waited = %humantime::format_duration(waited),
        "the old herd did not answer the stop within {}: it hangs or is stopped (SIGSTOP); \
         this herd serves on and leaves the old herd's socket files to it; once resumed, the \
         old herd stops as asked, else stop it by its pid",
        humantime::format_duration(waited)
    );
}

/// What an aborted takeover leaves serving, said truthfully: the old herd, if it still runs
/// (where the system cannot tell, if anything answers at `old`).
pub(super) fn after_abort(old: &std::path::Path, process: Option<&PidFd>) -> &'static str {
    let gone = match process {
        Some(process) => process.has_exited(),
        None => matches!(
            connect_nonblocking(old),
            Err(ClientError::NotRunning { .. })
        ),
    };
    match gone {
        true => "and the old herd is gone too: nothing serves",
        false => "the old herd keeps serving",
    }
}

/// A takeover given up: why, and what still serves ([`after_abort`]).
pub(super) struct Abort {
    pub why: String,
    pub after: &'static str,
}

/// The old herd is gone: its control path becomes this herd's if it is free, or still holds
/// the old herd's own socket file (left by a herd that was killed) that nothing listens on.
/// Anything else there is left alone, and this herd's control socket stays where it is
/// (logged). A live socket is never replaced: a file system reuses a removed file's inode
/// number, so a socket bound there since can look like the old herd's.
pub(super) fn take_vacant_control(
    old: &std::path::Path,
    old_socket: (u64, u64),
    control_file: &mut SocketFile,
) {
    use std::os::unix::fs::MetadataExt;
    let there = std::fs::symlink_metadata(old)
        .ok()
        .map(|m| (m.dev(), m.ino()));
    let moved = match there {
        None => control_file.move_to_vacant(old),
        Some(identity) if identity == old_socket && !listened_on(old) => {
            control_file.replace(old, old_socket)
        }
        Some(_) => Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "another socket or file is there now",
        )),
    };
    match moved {
        Ok(()) => {
            tracing::info!(event = LogEvent::ControlMoved.as_str(), path = %old.display(), "control socket moved to the old herd's path")
        }
        Err(e) => tracing::warn!(
            event = LogEvent::ControlNotMoved.as_str(),
            path = %control_file.parts().0.display(),
            "the control socket stays at its takeover path: cannot take {}: {e}",
            old.display()
        ),
    }
}

impl Supervisor {
    /// The old herd answered the stop that ends a takeover: once it accepted, the socket files
    /// of the sockets taken over are this herd's (it left them in place). A herd that predates
    /// takeovers removes them as it exits, and a socket file cannot be given back to a socket
    /// that is still listening: say which paths clients can no longer reach.
    pub(super) fn takeover_answered(&mut self, answer: StopAnswer) {
        match answer {
            StopAnswer::Stopped => {
                tracing::info!(
                    event = LogEvent::OldHerdStopped.as_str(),
                    "the old herd has stopped"
                );
                self.effects.adopt_socket_files();
            }
            StopAnswer::Unsupported => {
                let lost = self.effects.give_up_socket_files();
                let lost: Vec<String> = lost.iter().map(|p| p.display().to_string()).collect();
                if lost.is_empty() {
                    tracing::info!(
                        event = LogEvent::OldHerdPredatesTakeover.as_str(),
                        "the old herd predates takeovers: asking it for a plain stop"
                    );
                } else {
                    tracing::warn!(
                        event = LogEvent::OldHerdPredatesTakeover.as_str(),
                        "the old herd predates takeovers: asking it for a plain stop, after which \
                         it removes the socket files {}; the sockets keep serving the clients \
                         that are connected and those that reach them otherwise, but nobody \
                         can connect by those paths until this herd is restarted on them",
                        crate::text::escape(&lost.join(", "))
                    );
                }
            }
            StopAnswer::Refused(why) => {
                self.effects.give_up_socket_files();
                tracing::warn!(
                    event = LogEvent::OldHerdNotStopped.as_str(),
                    "the old herd did not accept the takeover's stop: {why}"
                );
            }
            // Logged as it happened ([`log_silent`]).
            StopAnswer::Silent(_) => {
                self.effects.give_up_socket_files();
            }
            StopAnswer::Gone(why) => {
                tracing::warn!(
                    event = LogEvent::OldHerdGone.as_str(),
                    "the old herd stopped while this herd was taking over ({why}); this herd \
                     serves on with the sockets it took"
                );
                // A herd that was killed left its socket files: this herd's now. One that
                // stopped removed them, and a listening socket cannot be given a file again.
                let lost = self.effects.adopt_socket_files();
                let lost: Vec<String> = lost.iter().map(|p| p.display().to_string()).collect();
                if !lost.is_empty() {
                    tracing::warn!(
                        event = LogEvent::SocketFilesLost.as_str(),
                        "the old herd removed the socket files {} as it stopped; the sockets \
                         keep serving the clients that are connected and those that reach them \
                         otherwise, but nobody can connect by those paths until this herd is \
                         restarted on them",
                        crate::text::escape(&lost.join(", "))
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_old_herds_answer_is_judged_by_its_error_code() {
        let path = std::path::Path::new("/old.sock");
        let judge = |line: &str| {
            judge_stop_answer(crate::control::client::decode_answer(line.as_bytes(), path))
        };
        assert_eq!(
            judge("{\"version\":1,\"ok\":true,\"result\":{\"stopped\":true}}"),
            StopAnswer::Stopped
        );
        assert_eq!(
            judge("{\"version\":1,\"ok\":false,\"error\":{\"code\":\"invalid_argument\",\"message\":\"stop: unknown field `takeover`\"}}"),
            StopAnswer::Unsupported
        );
        // Another code whose message quotes "invalid_argument" is a refusal, not an old herd
        // (a byte search took it for one, and sent a plain stop).
        let quoted = judge(
            "{\"version\":1,\"ok\":false,\"error\":{\"code\":\"stopping\",\"message\":\"not \\\"invalid_argument\\\"\"}}",
        );
        assert!(
            matches!(&quoted, StopAnswer::Refused(why) if why.contains("(stopping)")),
            "{quoted:?}"
        );
        assert!(matches!(judge(""), StopAnswer::Refused(why) if why.contains("without an answer")));
        assert!(matches!(
            judge("garbage \"invalid_argument\""),
            StopAnswer::Refused(_)
        ));
        assert!(matches!(
            judge("{\"version\":1,\"ok\":false}"),
            StopAnswer::Refused(_)
        ));
    }

    #[test]
    fn the_old_herds_answer_is_awaited_for_its_grace_and_a_margin() {
        let secs = Duration::from_secs;
        assert_eq!(answer_bound(Some(secs(0))), secs(5));
        assert_eq!(answer_bound(Some(secs(60))), secs(65));
        // A herd that predates `grace_ms` in its status: herd's default grace.
        assert_eq!(answer_bound(None), secs(35));
        assert_eq!(answer_bound(Some(Duration::MAX)), Duration::MAX);
    }

    #[test]
    fn the_stop_requests_are_those_every_herd_reads() {
        let line = |takeover| crate::control::client::encode_request(stop_request(takeover));
        assert_eq!(
            line(true),
            b"{\"version\":1,\"command\":\"stop\",\"fast\":false,\"takeover\":true}\n"
        );
        assert_eq!(
            line(false),
            b"{\"version\":1,\"command\":\"stop\",\"fast\":false}\n"
        );
    }
}
