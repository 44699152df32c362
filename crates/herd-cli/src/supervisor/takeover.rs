//! `--takeover`: ending a takeover by stopping the old herd, and what its answer means. How
//! the old herd is reached, watched and replaced at its control endpoint is the platform's
//! (`takeover/unix.rs`: the control socket moves to the old one's path; `takeover/windows.rs`:
//! the control pipe takes the old one's name once it is free).

use std::time::Duration;

use crate::control::answer::ClientError;
use crate::control::protocol::{Command, ErrorCode};
use crate::control::results::StopResult;
use crate::logging::LogEvent;

use super::Supervisor;

#[cfg_attr(unix, path = "takeover/unix.rs")]
#[cfg_attr(windows, path = "takeover/windows.rs")]
mod imp;

pub use imp::{complete_takeover, old_herd_now, Takeover};

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
    /// Another herd's takeover reached it first (`taken_over`), or (Windows) another herd
    /// serves or took its control pipe: that herd serves the sockets, and this one gives up
    /// rather than serve beside it. Also when it is stopping (`stopping`: the stop someone
    /// asked for stands) or still taking over another herd (`busy`: it serves on).
    Outrun(Abort),
}

/// Judges the old herd's answer to a stop by its error code, never by the text of a message.
pub(super) fn judge_stop_answer(answer: Result<StopResult, ClientError>) -> StopAnswer {
    match answer {
        Ok(_) => StopAnswer::Stopped,
        Err(ClientError::Refused { error, .. }) if error.code == ErrorCode::InvalidArgument => {
            StopAnswer::Unsupported
        }
        Err(ClientError::Refused { error, .. }) if error.code == ErrorCode::TakenOver => {
            StopAnswer::Outrun(Abort {
                why: format!("the old herd says {}", crate::text::escape(&error.message)),
                after: "the herd that took over first serves".to_string(),
            })
        }
        Err(ClientError::Refused { error, .. }) if error.code == ErrorCode::Stopping => {
            StopAnswer::Outrun(Abort {
                why: format!("the old herd says {}", crate::text::escape(&error.message)),
                after: "the old herd stops as it was asked".to_string(),
            })
        }
        // Still taking over another herd (or out of connections): it serves on, and this
        // herd, which would serve beside it unseen, gives up.
        Err(ClientError::Refused { error, .. }) if error.code == ErrorCode::Busy => {
            StopAnswer::Outrun(Abort {
                why: format!("the old herd says {}", crate::text::escape(&error.message)),
                after: "the old herd serves on".to_string(),
            })
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
pub(super) fn stop_request(takeover: bool) -> Command {
    Command::Stop {
        grace_ms: None,
        fast: false,
        takeover,
    }
}

/// Says that the old herd at `old` did not answer the stop within `waited`.
pub(super) fn log_silent(old: &std::path::Path, waited: Duration) {
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

/// A takeover given up: why, and what still serves ([`OldHerdNow::describe`]).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Abort {
    pub why: String,
    pub after: String,
}

/// How long an aborted takeover waits for the status of whatever serves at the old herd's
/// control path, to say what still serves ([`OldHerdNow`]).
const LOOK_BOUND: Duration = Duration::from_secs(1);

/// What a herd's status says of it that tells an aborted takeover what still serves.
#[derive(Debug, serde::Deserialize)]
struct Glimpse {
    pid: u32,
    #[serde(default)]
    stopping: bool,
}

/// What a failed takeover finds of the old herd: what it says still serves.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum OldHerdNow {
    /// It runs, and nothing says it stops: it serves on.
    Serving,
    /// Its status says it is stopping: a stop, or another herd's takeover, asked it to.
    Stopping,
    /// Another herd (`by`) answers at the old herd's control path: a takeover that completed
    /// first, which serves the sockets and stops the old herd (`exited`: it has already).
    TakenOver { by: u32, exited: bool },
    /// It has exited, and no herd answers at its path.
    Gone,
}

impl OldHerdNow {
    /// Judges what was seen: whether the old herd (`old_pid`) has exited, and the status of
    /// the herd that answered at its control path, if one did.
    fn judge(old_pid: u32, exited: bool, answered: Option<Glimpse>) -> OldHerdNow {
        match answered {
            Some(herd) if herd.pid != old_pid => OldHerdNow::TakenOver {
                by: herd.pid,
                exited,
            },
            _ if exited => OldHerdNow::Gone,
            Some(herd) if herd.stopping => OldHerdNow::Stopping,
            _ => OldHerdNow::Serving,
        }
    }

    /// What still serves, as "takeover aborted, ..." goes on; `old` is the old herd's control
    /// path, `old_pid` its pid.
    pub(super) fn describe(&self, old: &std::path::Path, old_pid: u32) -> String {
        let old = old.display();
        match *self {
            OldHerdNow::Serving => "the old herd keeps serving".to_string(),
            OldHerdNow::Stopping => format!(
                "and the old herd (pid {old_pid}) is stopping too (a stop or another takeover \
                 asked it to): it serves only until it has stopped"
            ),
            OldHerdNow::TakenOver { by, exited: false } => format!(
                "another herd (pid {by}) took over at {old} first and serves; it stops the old \
                 herd (pid {old_pid})"
            ),
            OldHerdNow::TakenOver { by, exited: true } => format!(
                "another herd (pid {by}) took over at {old} first and serves; the old herd \
                 (pid {old_pid}) has exited"
            ),
            OldHerdNow::Gone => "and the old herd is gone too: nothing serves".to_string(),
        }
    }
}

/// The end of a takeover whose old herd (`old_pid`) has exited: `None` if this herd may take
/// its place, or why it gives up if another herd answers at its control path `old`
/// (`answered`): a takeover that completed first, which serves the sockets; this herd would
/// serve beside it.
fn outrun(old: &std::path::Path, old_pid: u32, answered: Option<Glimpse>) -> Option<Abort> {
    let now = OldHerdNow::judge(old_pid, true, answered);
    let OldHerdNow::TakenOver { by, .. } = now else {
        return None;
    };
    Some(Abort {
        why: format!("this herd would serve beside herd {by} on the same sockets"),
        after: now.describe(old, old_pid),
    })
}

impl Supervisor {
    /// The socket files of the sockets taken over that this herd did not take: once the old
    /// herd has stopped (or is gone), nothing serves them, and they are removed
    /// ([`Effects::adopt_socket_files`](super::effects::Effects::adopt_socket_files)).
    #[cfg(unix)]
    pub fn remove_once_taken_over(&mut self, untaken: Vec<crate::spec::UntakenFile>) {
        self.effects.remove_once_taken_over(untaken);
    }

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
            StopAnswer::Outrun(abort) => {
                self.effects.give_up_socket_files();
                self.abort_takeover(abort);
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
            judge_stop_answer(crate::control::answer::decode_answer(line.as_bytes(), path))
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
            "{\"version\":1,\"ok\":false,\"error\":{\"code\":\"permission_denied\",\"message\":\"not \\\"invalid_argument\\\"\"}}",
        );
        assert!(
            matches!(&quoted, StopAnswer::Refused(why) if why.contains("(permission_denied)")),
            "{quoted:?}"
        );
        // A herd already stopping is not taken over: the stop stands, this herd gives up.
        assert_eq!(
            judge("{\"version\":1,\"ok\":false,\"error\":{\"code\":\"stopping\",\"message\":\"it is stopping\"}}"),
            StopAnswer::Outrun(Abort {
                why: "the old herd says it is stopping".into(),
                after: "the old herd stops as it was asked".into(),
            })
        );
        // Nor one still taking over another: this herd would serve beside it, unseen.
        assert!(matches!(
            judge("{\"version\":1,\"ok\":false,\"error\":{\"code\":\"busy\",\"message\":\"x\"}}"),
            StopAnswer::Outrun(Abort { after, .. }) if after == "the old herd serves on"
        ));
        assert_eq!(
            judge("{\"version\":1,\"ok\":false,\"error\":{\"code\":\"taken_over\",\"message\":\"herd 7 has taken this herd over already\"}}"),
            StopAnswer::Outrun(Abort {
                why: "the old herd says herd 7 has taken this herd over already".into(),
                after: "the herd that took over first serves".into(),
            })
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
    fn an_abort_says_what_serves_by_the_herd_that_answers_at_the_old_path() {
        let old = std::path::Path::new("/run/old.sock");
        let seen = |exited, answered: Option<(u32, bool)>| {
            let answered = answered.map(|(pid, stopping)| Glimpse { pid, stopping });
            OldHerdNow::judge(7, exited, answered)
        };
        assert_eq!(seen(false, Some((7, false))), OldHerdNow::Serving);
        // Nothing answered (a stopped herd, another server, no pidfd): it runs, so it serves.
        assert_eq!(seen(false, None), OldHerdNow::Serving);
        assert_eq!(seen(false, Some((7, true))), OldHerdNow::Stopping);
        assert_eq!(seen(true, None), OldHerdNow::Gone);
        let won = seen(false, Some((9, false)));
        assert_eq!(
            won,
            OldHerdNow::TakenOver {
                by: 9,
                exited: false
            }
        );
        assert_eq!(
            won.describe(old, 7),
            "another herd (pid 9) took over at /run/old.sock first and serves; it stops the \
             old herd (pid 7)"
        );
        let gone = seen(true, Some((9, false)));
        assert!(gone
            .describe(old, 7)
            .ends_with("the old herd (pid 7) has exited"));
        assert_eq!(
            OldHerdNow::Stopping.describe(old, 7),
            "and the old herd (pid 7) is stopping too (a stop or another takeover asked it \
             to): it serves only until it has stopped"
        );
    }

    #[test]
    fn a_takeover_whose_old_herd_exited_gives_up_only_to_another_herd() {
        let old = std::path::Path::new("/run/old.sock");
        let answered = |pid| {
            Some(Glimpse {
                pid,
                stopping: false,
            })
        };
        assert!(outrun(old, 7, None).is_none());
        assert!(outrun(old, 7, answered(7)).is_none());
        let abort = outrun(old, 7, answered(9)).unwrap();
        assert_eq!(
            abort.after,
            "another herd (pid 9) took over at /run/old.sock first and serves; the old herd \
             (pid 7) has exited"
        );
        assert_eq!(
            abort.why,
            "this herd would serve beside herd 9 on the same sockets"
        );
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
        let line = |takeover| crate::control::protocol::encode_request(stop_request(takeover));
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
