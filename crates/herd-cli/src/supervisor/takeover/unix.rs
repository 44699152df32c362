//! Completing a takeover on Unix: the old herd is reached at its control socket and watched
//! by its pidfd; this herd's control socket moves to the old one's path.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use herd_sys::pidfd::PidFd;
use tokio::sync::mpsc;

use crate::control::client::{connect_nonblocking, AsyncClient, Client, ClientError};
use crate::control::protocol::Command;
use crate::logging::LogEvent;
use crate::spec::SocketFile;

use super::{answer_bound, judge_stop_answer, log_silent, stop_request, Abort, StopAnswer};
use super::{outrun, Glimpse, OldHerdNow, LOOK_BOUND};

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
    /// The old herd's pid, as its status said: a socket at `old` it serves is its own, even
    /// if it is not `old_socket` (bound again after its file was removed).
    pub old_pid: u32,
    /// Until when the end waits for the old herd to bind its control socket again, once its
    /// file was found removed while it runs (`None` until then).
    pub vacant_until: Option<Instant>,
}

/// How long the end of a takeover waits for an old herd whose control socket's file was
/// removed to bind it again (it looks every 250 ms).
const REBIND_BOUND: Duration = Duration::from_secs(5);

/// Ends a takeover whose workers are all available: connect to the old herd (before its control
/// socket's path is taken), move this herd's control socket to its place (in place of the old
/// one's there, and only if it still is the old one's: see [`SocketFile::replace`]), and ask the
/// old herd to stop, leaving its socket files in place. Its answer arrives on `answered`: the
/// listeners' socket files become this herd's only once it accepted
/// ([`Supervisor::takeover_answered`]). `Ok(Some)`: not yet, to be tried again at a later
/// turn: the old herd still runs, but its control socket's file was removed (an operator's
/// clean-up), and it binds it again at its next look ([`REBIND_BOUND`]).
pub fn complete_takeover(
    mut takeover: Takeover,
    control_file: &mut SocketFile,
    answered: mpsc::Sender<StopAnswer>,
) -> Result<Option<Takeover>, Abort> {
    if waits_for_rebind(&mut takeover)? {
        return Ok(Some(takeover));
    }
    let before = identity(&takeover.old);
    let connection = AsyncClient::connect_now(&takeover.old);
    // Removed between the look above and the connection: wait for it as above.
    if let Err(ClientError::NotRunning { .. }) = &connection {
        if waits_for_rebind(&mut takeover)? {
            return Ok(Some(takeover));
        }
    }
    // The old herd's own socket, bound again at its path after its file was removed (the
    // same file before and after connecting, served by the old herd's process, which still
    // runs): it takes the place of the one seen when the takeover began.
    let rebound = connection.as_ref().ok().and_then(|client| {
        let theirs = client.server_pid() == Some(takeover.old_pid)
            && takeover
                .old_process
                .as_ref()
                .is_some_and(|p| !p.has_exited());
        (theirs && before == identity(&takeover.old)).then_some(before)?
    });
    let Takeover {
        old,
        old_socket,
        old_grace,
        old_process,
        old_pid,
        ..
    } = takeover;
    let old_socket = rebound.unwrap_or(old_socket);
    let bound = answer_bound(old_grace);
    let abort = |why: String| Abort {
        why,
        after: old_herd_now(&old, old_process.as_ref(), old_pid).describe(&old, old_pid),
    };
    // An old herd that has exited has nothing left to stop, whatever is at its path now.
    if old_process.as_ref().is_some_and(PidFd::has_exited) {
        let why = "it has exited".to_string();
        old_herd_gone(&old, old_pid, old_socket, control_file, answered, why)?;
        return Ok(None);
    }
    // A stopped herd would take the stop only once resumed, its workers unsupervised until
    // then: it keeps everything, and this herd gives up (a takeover is tried again at will).
    if let Err(stopped @ ClientError::Stopped { .. }) = &connection {
        return Err(abort(format!("{stopped}; then take over again")));
    }
    if let Err(ClientError::NotRunning { why, .. }) = &connection {
        let why = why.describe().to_string();
        old_herd_gone(&old, old_pid, old_socket, control_file, answered, why)?;
        return Ok(None);
    }
    if let Err(e) = control_file.replace(&old, old_socket) {
        return Err(abort(format!(
            "cannot move the control socket to {}: {e}",
            old.display()
        )));
    }
    tracing::info!(event = LogEvent::TakeoverComplete.as_str(), old = %old.display(), "takeover complete: every worker is ready; asking the old herd to stop");
    tokio::spawn(ask_old_herd_to_stop(connection, old, bound, answered));
    Ok(None)
}

/// Asks the old herd at `old` to stop over `connection` (its control socket's), telling
/// `answered` what it said; one that does not know the takeover's stop is asked for a plain
/// one, whose answer is only logged.
async fn ask_old_herd_to_stop(
    connection: Result<AsyncClient, ClientError>,
    old: PathBuf,
    bound: Duration,
    answered: mpsc::Sender<StopAnswer>,
) {
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
            StopAnswer::Refused(why)
            | StopAnswer::Gone(why)
            | StopAnswer::Outrun(Abort { why, .. }) => {
                tracing::warn!(event = LogEvent::OldHerdNotStopped.as_str(), old = %old.display(), "the old herd did not stop: {why}")
            }
            StopAnswer::Unsupported => {
                tracing::warn!(event = LogEvent::OldHerdNotStopped.as_str(), old = %old.display(), "the old herd refused to stop")
            }
            StopAnswer::Silent(waited) => log_silent(&old, waited),
        }
    }
}

/// The device and inode of the file at `path`, if any.
fn identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path).ok()?;
    Some((meta.dev(), meta.ino()))
}

/// Whether the end of `takeover` must wait for the old herd, which still runs, to bind its
/// control socket again (its file is gone; a herd gone meanwhile is not taken for one that
/// runs). An error once it has not within [`REBIND_BOUND`]: nothing can ask it to stop.
fn waits_for_rebind(takeover: &mut Takeover) -> Result<bool, Abort> {
    let runs = takeover
        .old_process
        .as_ref()
        .is_some_and(|p| !p.has_exited());
    if !runs || !crate::supervisor::socket_files::removed(&takeover.old) {
        // Bound again (or never removed): a later removal gets a whole wait of its own.
        takeover.vacant_until = None;
        return Ok(false);
    }
    let now = Instant::now();
    if now < *takeover.vacant_until.get_or_insert(now + REBIND_BOUND) {
        return Ok(true);
    }
    Err(Abort {
        why: format!(
            "the old herd (pid {}) runs, but its control socket's file {} was removed and \
             not bound again within {}: nothing can ask it to stop; take over again once \
             `herd --control {} status` answers, or stop it by its pid",
            takeover.old_pid,
            takeover.old.display(),
            humantime::format_duration(REBIND_BOUND),
            takeover.old.display()
        ),
        after: "the old herd keeps serving".to_string(),
    })
}

/// Whether a server listens on the socket file at `path` (a connection is not refused).
fn listened_on(path: &std::path::Path) -> bool {
    !matches!(
        connect_nonblocking(path),
        Err(ClientError::NotRunning { .. })
    )
}

/// Ends a takeover whose old herd (`old_pid`) is gone (`why`): its control path becomes this
/// herd's where it can ([`take_vacant_control`]), and the loop hears of it as the stop's
/// answer. An error if another herd took that path (a takeover that completed first): this
/// herd gives up rather than serve beside it.
fn old_herd_gone(
    old: &Path,
    old_pid: u32,
    old_socket: (u64, u64),
    control_file: &mut SocketFile,
    answered: mpsc::Sender<StopAnswer>,
    why: String,
) -> Result<(), Abort> {
    // Taking the path first, then looking who holds it, leaves no gap for a rival's move.
    if let Err(e) = take_vacant_control(old, old_socket, control_file) {
        if let Some(abort) = outrun(old, old_pid, glimpse(old)) {
            return Err(abort);
        }
        tracing::warn!(
            event = LogEvent::ControlNotMoved.as_str(),
            path = %control_file.parts().0.display(),
            "the control socket stays at its takeover path: cannot take {}: {e}",
            old.display()
        );
    }
    tokio::spawn(async move {
        let _ = answered.send(StopAnswer::Gone(why)).await;
    });
    Ok(())
}

/// Asks the old herd to stop (`takeover`: leaving its socket files) and judges its answer,
/// waiting at most `bound` for it.
async fn ask_to_stop(client: &mut AsyncClient, takeover: bool, bound: Duration) -> StopAnswer {
    match tokio::time::timeout(bound, client.call(stop_request(takeover))).await {
        Ok(answer) => judge_stop_answer(answer),
        Err(_) => StopAnswer::Silent(bound),
    }
}

/// What a failed takeover leaves serving ([`OldHerdNow`]): the old herd (`old_pid`), if it
/// still runs (where the system cannot tell, if anything answers at `old`) and does not stop,
/// the herd that took over at `old` first, or nothing.
pub fn old_herd_now(old: &Path, process: Option<&PidFd>, old_pid: u32) -> OldHerdNow {
    let exited = old_herd_exited(old, process);
    OldHerdNow::judge(old_pid, exited, glimpse(old))
}

/// The status of the herd at `old`, if one answers within [`LOOK_BOUND`] (one that is
/// stopped by SIGSTOP, or whose backlog is full, is not waited for).
fn glimpse(old: &Path) -> Option<Glimpse> {
    let mut client = Client::connect_now(old, None).ok()?;
    let glimpse: Glimpse = client.call(Command::Status, Some(LOOK_BOUND)).ok()?;
    // The kernel's word for who answers, not the answer's: a takeover gives up to it.
    let pid = client.server_pid().unwrap_or(glimpse.pid);
    Some(Glimpse { pid, ..glimpse })
}

/// Whether the old herd at `old` (its process, if it could be opened) is gone.
fn old_herd_exited(old: &std::path::Path, process: Option<&PidFd>) -> bool {
    match process {
        Some(process) => process.has_exited(),
        None => matches!(
            connect_nonblocking(old),
            Err(ClientError::NotRunning { .. })
        ),
    }
}

/// The old herd is gone: its control path becomes this herd's if it is free, or still holds
/// the old herd's own socket file (left by a herd that was killed) that nothing listens on.
/// Anything else there is left alone (an error), and this herd's control socket stays where it
/// is. A live socket is never replaced: a file system reuses a removed file's inode number, so
/// a socket bound there since can look like the old herd's.
fn take_vacant_control(
    old: &Path,
    old_socket: (u64, u64),
    control_file: &mut SocketFile,
) -> std::io::Result<()> {
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
    moved?;
    tracing::info!(event = LogEvent::ControlMoved.as_str(), path = %old.display(), "control socket moved to the old herd's path");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An old herd that runs, its control socket's file gone: the end waits for it to be
    /// bound again, for at most [`REBIND_BOUND`], then fails saying what happened and what to
    /// do (it took the old herd for gone, and left it running, unstopped).
    #[test]
    fn the_end_waits_a_bounded_time_for_the_old_herds_control_socket() {
        let dir = tempfile::tempdir().unwrap();
        let Ok(me) = PidFd::open(std::process::id()) else {
            return; // No pidfd (a kernel before 5.3): nothing tells that the old herd runs.
        };
        let mut takeover = Takeover {
            old: dir.path().join("old.sock"),
            old_socket: (1, 2),
            old_grace: None,
            old_process: Some(me),
            old_pid: std::process::id(),
            vacant_until: None,
        };
        assert!(waits_for_rebind(&mut takeover).unwrap());
        let until = takeover.vacant_until.unwrap();
        assert!(until > Instant::now() + REBIND_BOUND / 2);
        // Bound again: no wait.
        let _bound = std::os::unix::net::UnixListener::bind(&takeover.old).unwrap();
        assert!(!waits_for_rebind(&mut takeover).unwrap());
        std::fs::remove_file(&takeover.old).unwrap();
        assert!(waits_for_rebind(&mut takeover).unwrap(), "within the bound");
        takeover.vacant_until = Some(Instant::now());
        let abort = waits_for_rebind(&mut takeover).unwrap_err();
        assert!(
            abort
                .why
                .contains("was removed and not bound again within 5s"),
            "{}",
            abort.why
        );
        assert!(abort.why.contains("take over again once"), "{}", abort.why);
        assert!(!abort.why.contains('\n'));
        assert_eq!(abort.after, "the old herd keeps serving");
    }
}
