//! `herd run --takeover NAME|PIPE` on Windows: the old herd's control pipe, the sockets fetched
//! over it (rebuilt from blocks it made for this process), and the [`Takeover`] the supervisor
//! completes once this herd's workers are ready.

use std::path::Path;
use std::time::Duration;

use herd_cli::control::pipe_name;
use herd_cli::exit::Failure;
use herd_cli::logging::LogEvent;
use herd_cli::spec::Inherited;
use herd_cli::supervisor::{MoveTo, Takeover};
use herd_sys::windows::sid::Sid;
use tokio::sync::oneshot;

/// What a takeover knows before this herd starts its workers.
pub struct Prepared {
    /// The sockets taken over.
    pub inherited: Vec<Inherited>,
    /// What the supervisor completes.
    pub takeover: Takeover,
    /// Where this herd's control pipe moves once the old herd is gone.
    pub moves_to: MoveTo,
}

/// The old herd's control pipe for `--takeover given`, checked against `--control` (a
/// takeover ends at the old herd's pipe).
pub fn old_pipe(given: &Path, control: Option<&Path>, user_sid: &str) -> Result<String, Failure> {
    let text = |p: &Path| p.to_string_lossy().into_owned();
    let old = pipe_name::takeover_pipe(&text(given), user_sid).map_err(Failure::Usage)?;
    let control = control.map(text);
    pipe_name::takeover_control(&old, control.as_deref()).map_err(Failure::Usage)?;
    Ok(old)
}

/// Asks the herd at the pipe `old` for its status and its sockets; `allowed` may open its
/// pipe once this herd serves it.
pub fn prepare(old: &str, allowed: Vec<Sid>) -> Result<Prepared, Failure> {
    let path = Path::new(old);
    let in_takeover = |failure: Failure| match failure {
        Failure::Runtime(e) => Failure::Runtime(e.context(format!("cannot take over from {old}"))),
        usage => usage,
    };
    // One connection, whose server must be the process the status names.
    let source = herd_cli::ctl::takeover_source(path).map_err(in_takeover)?;
    let (status, fetched) = (source.status, source.sockets);
    tracing::info!(event = LogEvent::TakeoverSocketsFetched.as_str(), from = %old, sockets = fetched.len(), "fetched the sockets to take over");
    let inherited = fetched
        .into_iter()
        .map(|(socket, fd)| Inherited {
            name: socket.name,
            kind: socket.kind,
            address: socket.address,
            fd,
            file: None,
            from_store: false,
        })
        .collect();
    let (vacated_tx, vacated) = oneshot::channel();
    let takeover = Takeover {
        old: old.into(),
        old_grace: status.grace_ms.map(Duration::from_millis),
        old_pid: status.pid,
        old_process: source.process,
        vacated: vacated_tx,
    };
    let moves_to = MoveTo {
        pipe: old.to_string(),
        vacated,
        allowed,
        old_pid: status.pid,
    };
    Ok(Prepared {
        inherited,
        takeover,
        moves_to,
    })
}
