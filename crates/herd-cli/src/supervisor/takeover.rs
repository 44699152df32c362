//! `--takeover`: ending a takeover by moving the control socket and stopping the old herd.

use std::path::PathBuf;

use tokio::sync::mpsc;

use crate::control::protocol::{ErrorCode, Response};
use crate::logging::LogEvent;
use crate::spec::{Listener, SocketFile};

use super::Supervisor;

/// A takeover in progress: once this herd's workers are available (ready for `--min-ready`),
/// its control socket replaces the old herd's at `old`, and the old herd is asked to stop.
pub struct Takeover {
    /// The old herd's control socket, where this herd's ends.
    pub old: PathBuf,
    /// That socket file's device and inode when the takeover began: a different file there at
    /// the end (another herd's) is never replaced.
    pub old_socket: (u64, u64),
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
}

/// Reads the old herd's answer line as a control [`Response`]: its error code decides, never
/// the text of a message.
pub(super) fn judge_stop_answer(line: &[u8]) -> StopAnswer {
    let text = String::from_utf8_lossy(line);
    match serde_json::from_str::<Response>(text.trim()) {
        Ok(Response { ok: true, .. }) => StopAnswer::Stopped,
        Ok(Response {
            error: Some(error), ..
        }) if error.code == ErrorCode::InvalidArgument => StopAnswer::Unsupported,
        Ok(Response {
            error: Some(error), ..
        }) => {
            let code = serde_json::to_value(error.code)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            StopAnswer::Refused(format!("{} ({code})", crate::text::escape(&error.message)))
        }
        Ok(_) => StopAnswer::Refused("it refused without saying why".to_string()),
        Err(_) if text.trim().is_empty() => {
            StopAnswer::Refused("it closed the connection without an answer".to_string())
        }
        Err(_) => StopAnswer::Refused(format!(
            "unexpected answer: {}",
            crate::text::escape(text.trim())
        )),
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
) -> Result<(), String> {
    let Takeover { old, old_socket } = takeover;
    let connection = std::os::unix::net::UnixStream::connect(&old);
    if let Err(e) = &connection {
        if let Some(why) = gone(e) {
            take_vacant_control(&old, old_socket, control_file);
            tokio::spawn(async move {
                let _ = answered.send(StopAnswer::Gone(why)).await;
            });
            return Ok(());
        }
    }
    let connection = connection
        .and_then(|s| s.set_nonblocking(true).map(|()| s))
        .and_then(tokio::net::UnixStream::from_std);
    if let Err(e) = control_file.replace(&old, old_socket) {
        return Err(format!(
            "cannot move the control socket to {}: {e}",
            old.display()
        ));
    }
    tracing::info!(event = LogEvent::TakeoverComplete.as_str(), old = %old.display(), "takeover complete: every worker is ready; asking the old herd to stop");
    tokio::spawn(async move {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        let mut stream = match connection {
            Ok(stream) => tokio::io::BufReader::new(stream),
            Err(e) => {
                let why = format!("cannot ask it to stop: {e}");
                let _ = answered.send(StopAnswer::Refused(why)).await;
                return;
            }
        };
        async fn ask(
            stream: &mut tokio::io::BufReader<tokio::net::UnixStream>,
            request: &[u8],
        ) -> std::io::Result<StopAnswer> {
            let mut answer = Vec::new();
            stream.get_mut().write_all(request).await?;
            stream.read_until(b'\n', &mut answer).await?;
            Ok(judge_stop_answer(&answer))
        }
        let first = ask(
            &mut stream,
            b"{\"version\":1,\"command\":\"stop\",\"takeover\":true}\n",
        )
        .await;
        let first = first.unwrap_or_else(|e| StopAnswer::Refused(format!("no answer: {e}")));
        let unsupported = first == StopAnswer::Unsupported;
        let _ = answered.send(first).await;
        if unsupported {
            let plain = ask(&mut stream, b"{\"version\":1,\"command\":\"stop\"}\n").await;
            match plain {
                Ok(StopAnswer::Stopped) => {
                    tracing::info!(event = LogEvent::OldHerdStopped.as_str(), old = %old.display(), "the old herd has stopped")
                }
                Ok(StopAnswer::Refused(why) | StopAnswer::Gone(why)) => {
                    tracing::warn!(event = LogEvent::OldHerdNotStopped.as_str(), old = %old.display(), "the old herd did not stop: {why}")
                }
                Ok(StopAnswer::Unsupported) => {
                    tracing::warn!(event = LogEvent::OldHerdNotStopped.as_str(), old = %old.display(), "the old herd refused to stop")
                }
                Err(e) => {
                    tracing::warn!(event = LogEvent::OldHerdNotStopped.as_str(), old = %old.display(), "cannot ask the old herd to stop: {e}")
                }
            }
        }
    });
    Ok(())
}

/// Why a failed connection to the old herd's control socket means the old herd is gone:
/// nothing at the path (it removed its socket as it stopped) or nobody listening (killed).
pub(super) fn gone(e: &std::io::Error) -> Option<String> {
    match e.kind() {
        std::io::ErrorKind::NotFound => Some("its control socket is gone".to_string()),
        std::io::ErrorKind::ConnectionRefused => {
            Some("nobody listens on its control socket".to_string())
        }
        _ => None,
    }
}

/// What an aborted takeover leaves serving, said truthfully: the old herd, if it still answers
/// at `old`.
pub(super) fn after_abort(old: Option<&std::path::Path>) -> &'static str {
    match old.map(std::os::unix::net::UnixStream::connect) {
        Some(Ok(_)) => "the old herd keeps serving",
        _ => "and the old herd is gone too: nothing serves",
    }
}

/// The old herd is gone: its control path becomes this herd's if it is free, or still holds
/// the old herd's own socket file (left by a herd that was killed). Anything else there is
/// left alone, and this herd's control socket stays where it is (logged).
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
        Some(identity) if identity == old_socket => control_file.replace(old, old_socket),
        Some(_) => Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "another file is there now",
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
                for listener in &mut self.listeners {
                    listener.adopt_file();
                }
            }
            StopAnswer::Unsupported => {
                let lost: Vec<String> = self
                    .listeners
                    .iter_mut()
                    .filter_map(Listener::forget_takeover_file)
                    .map(|p| p.display().to_string())
                    .collect();
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
                for listener in &mut self.listeners {
                    listener.forget_takeover_file();
                }
                tracing::warn!(
                    event = LogEvent::OldHerdNotStopped.as_str(),
                    "the old herd did not accept the takeover's stop: {why}"
                );
            }
            StopAnswer::Gone(why) => {
                tracing::warn!(
                    event = LogEvent::OldHerdGone.as_str(),
                    "the old herd stopped while this herd was taking over ({why}); this herd \
                     serves on with the sockets it took"
                );
                // A herd that was killed left its socket files: this herd's now. One that
                // stopped removed them, and a listening socket cannot be given a file again.
                let lost: Vec<String> = self
                    .listeners
                    .iter_mut()
                    .filter_map(Listener::adopt_file)
                    .map(|p| p.display().to_string())
                    .collect();
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
        let judge = |line: &str| judge_stop_answer(line.as_bytes());
        assert_eq!(
            judge("{\"version\":1,\"ok\":true,\"result\":{\"stopped\":true}}\n"),
            StopAnswer::Stopped
        );
        assert_eq!(
            judge("{\"version\":1,\"ok\":false,\"error\":{\"code\":\"invalid_argument\",\"message\":\"stop: unknown field `takeover`\"}}\n"),
            StopAnswer::Unsupported
        );
        // Another code whose message quotes "invalid_argument" is a refusal, not an old herd
        // (a byte search took it for one, and sent a plain stop).
        let quoted = judge(
            "{\"version\":1,\"ok\":false,\"error\":{\"code\":\"stopping\",\"message\":\"not \\\"invalid_argument\\\"\"}}\n",
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
}
