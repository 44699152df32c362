//! Re-exec: herd replaces its own program with the binary now on disk, in the same process.
//! Same pid, so the workers stay its children and a service manager sees no change.
//!
//! The old image writes its state (sockets, worker table, timers, attached processes) as JSON
//! into an anonymous file, clears close-on-exec on exactly the fds that must survive (the
//! listening sockets, the control, notify and metrics sockets, the attached processes' pidfds,
//! the workers' output pipes (their readers stopped first: [`crate::output`]), the state file,
//! and the connection of the client that asked), blocks the signals herd
//! handles (the mask survives `execve`, so no signal is lost or kills herd in between), and
//! executes the path herd was started by ([`invoked`]: this very binary, its symlinks resolved
//! anew at each re-exec, so that a switched symlink takes effect) with the same arguments and
//! `HERD_REEXEC_STATE=FD`. The new image claims those fds, unblocks the signals
//! once its handlers are in place, and answers the waiting client. Before any of that, the new
//! binary must pass its [check](super::reexec_check); if `execve` fails all the same, all of
//! that is undone and the old image carries on.

use std::io::{Read, Seek, Write};
use std::os::unix::io::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use herd_core::Ago;
use herd_sys::spawn::ExecPlan;
use serde::{Deserialize, Serialize};

use super::pool::PoolState;
use super::warm_up::Lowered;
use crate::output::{Parked, SavedLines, Stream, Writer};
use crate::spec::{SocketFile, SocketKind};

mod binary;

/// The saved lines of a state, or none if they cannot be read (see [`State::lines`]).
fn lines_or_none<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<SavedLines>, D::Error> {
    let value = <serde_json::Value as serde::Deserialize>::deserialize(deserializer)?;
    Ok(serde_json::from_value(value).ok())
}

#[cfg(test)]
use binary::invoked_path;
pub use binary::{executable, invoked, resolve};

/// The newest format of [`State`]: this herd reads every version from [`OLDEST_STATE`] to this
/// one, and writes the oldest that can carry its state ([`version_needed`], in the state's
/// `version`), so that a re-exec onto an older herd stays possible whenever that herd can read
/// the state. A new binary must say it reads that version before herd re-executes onto it
/// (see [`reexec_check`](super::reexec_check)). Bump it when the state changes so that a herd of an
/// older version would misread it (a field removed, or whose meaning changes), and keep
/// reading the older versions; a field added with `#[serde(default)]` that older herds may
/// ignore needs no bump (the excused-exits window, `version` itself).
///
/// Version 2: a worker may be draining its reuseport slot (`draining` in the pool's state),
/// which a version-1 herd would take for a worker already told to stop, and kill at the end of
/// its grace period without a stop signal.
pub const STATE_VERSION: u32 = 2;

/// The oldest format of [`State`] this herd reads.
pub const OLDEST_STATE: u32 = 1;

/// Whether this herd reads state of `version`.
pub fn reads(version: u32) -> bool {
    (OLDEST_STATE..=STATE_VERSION).contains(&version)
}

/// The oldest state version that carries this herd's state: 2 while a worker drains its
/// reuseport slot, else 1.
pub fn version_needed(draining: bool) -> u32 {
    match draining {
        true => 2,
        false => 1,
    }
}

/// The environment variable that carries the state file's fd to the new image.
pub const STATE_VAR: &str = "HERD_REEXEC_STATE";

/// What survives a re-exec: the version of its format, the fds and what they are, and the
/// state of the supervisor's cores. Its JSON is one flat object (older herds read it so).
#[derive(Debug, Serialize, Deserialize)]
pub struct State {
    /// The version of this state's format: the oldest that carries it ([`version_needed`]).
    /// Absent from the state of herds before it was written, which wrote version 1 or 2 (this
    /// herd reads both alike).
    #[serde(default = "oldest_state")]
    pub version: u32,
    /// The control socket's fd and file.
    pub control: SavedSocket,
    /// The notify socket's fd and file.
    pub notify: SavedSocket,
    /// The listening sockets, in fd order.
    pub listeners: Vec<SavedListener>,
    /// The connection of the client that asked for the re-exec, to answer from the new image.
    pub reply_fd: Option<RawFd>,
    /// The `--metrics` socket's fd across the exec (same address, no scrape refused).
    #[serde(default)]
    pub metrics_fd: Option<RawFd>,
    /// The `--health` socket's fd across the exec. Left out when there is none: the state
    /// stays what herds before it wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_fd: Option<RawFd>,
    /// With `--compat einhorn`: the socket of einhorn's acknowledgements; left out without.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub einhorn: Option<SavedSocket>,
    /// The open-file limit the first image was started with, `(soft, hard)`: what workers get
    /// by default. Absent from the state of an older herd, which put it back in force before
    /// the exec.
    #[serde(default)]
    pub nofile: Option<(u64, u64)>,
    /// The workers' output pipes (`--worker-output prefix|json`), read by this image until the
    /// exec and by the next one after it. Left out when empty: the state stays what herds
    /// before it wrote.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<SavedOutput>,
    /// The workers' lines kept for `herd logs`, numbered, which the new image keeps and
    /// numbers on from: a follower that reconnects gets what it had not been sent. Left out
    /// without `--worker-output prefix|json`; a state from an older herd has none (its lines
    /// were lost with it). Best effort: lines the new image cannot read are lost, not its
    /// state (which would end herd and its workers).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lines_or_none"
    )]
    pub lines: Option<SavedLines>,
    /// With `--config`: the file's contents the workers run, which the new image uses rather
    /// than what the file holds now (only `herd upgrade --reload-config` reads it again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// The supervisor's cores.
    #[serde(flatten)]
    pub cores: Cores,
}

fn oldest_state() -> u32 {
    OLDEST_STATE
}

/// The state of the supervisor's cores, its times relative to the moment it was saved. Built
/// by destructuring the supervisor, and restored in one place,
/// [`Supervisor::resume`](super::Supervisor::resume), which destructures it in turn: a field
/// added to either does not compile until it is carried over.
#[derive(Debug, Serialize, Deserialize)]
pub struct Cores {
    /// When herd started.
    pub uptime_ms: Ago,
    /// The worker pool.
    pub pool: PoolState,
    /// Processes started with `herd attach`, in the order of their pidfds.
    pub attached: Vec<SavedAttached>,
    /// Whether the service manager was told READY=1: the new image says it is ready again as it
    /// resumes only if so.
    pub service_ready: bool,
    /// Autoscaling as the runtime left it (`herd scale MIN..MAX` turns it on, `herd scale N`
    /// off); absent in the state of a herd that did not record it, whose command line then
    /// decides.
    #[serde(default)]
    pub autoscale: Option<SavedAutoscale>,
    /// Process groups exited workers left (their leaders are held as zombies, which stay this
    /// process's children across the exec).
    #[serde(default)]
    pub leftovers: super::leftovers::Saved,
    /// The `--metrics` counters.
    #[serde(default)]
    pub counters: super::metrics::SavedCounters,
    /// The workers herd lowered that were still warming up (`--starting-nice`): the new
    /// image raises these, and only these, once ready. Left out when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warming: Vec<u32>,
    /// How herd lowered each of `warming`, in order (`SCHED_IDLE` or a nice value): the new
    /// image raises each as it was lowered, whatever it makes of `--starting-nice`. Absent in
    /// the state of an older herd; left out when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warming_lowered: Vec<Lowered>,
    /// The recycler's workers that asked to be replaced (`HERD_RECYCLE=1`) and still wait,
    /// its slots held back or counting recycles that went wrong, and its jitter's seed: a
    /// worker that asked is still replaced, and a held slot stays held, in the new image.
    /// Absent in the state of an older herd, whose requests and holds were lost; left out
    /// when empty.
    #[serde(default, skip_serializing_if = "herd_core::SavedRecycler::is_empty")]
    pub recycling: herd_core::SavedRecycler,
    /// Those of `warming` that trickle (starved in `SCHED_IDLE`, moved to a low nice value
    /// until ready): the new image trickles them on rather than sample them again, which
    /// would soon find them starved and give them herd's priority at once. Absent in the
    /// state of an older herd; left out when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warming_trickling: Vec<u32>,
}

pub use super::attached::Saved as SavedAttached;
pub use super::autoscale::Saved as SavedAutoscale;

/// A worker's output pipe across the exec.
#[derive(Debug, Serialize, Deserialize)]
pub struct SavedOutput {
    /// The writer's slot.
    pub worker: usize,
    /// The writer's pid.
    pub pid: u32,
    /// The writer's generation.
    pub generation: u64,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// The read end's fd number across the exec.
    pub fd: RawFd,
    /// The start of a character the reader cut a line before (at most 3 bytes), for the
    /// next image to read first; left out when none, for an older image to read the state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held: Vec<u8>,
}

impl SavedOutput {
    /// `parked` as the state says it.
    pub fn of(parked: &Parked) -> SavedOutput {
        SavedOutput {
            worker: parked.writer.slot,
            pid: parked.writer.pid,
            generation: parked.writer.generation,
            stream: parked.stream.name().to_string(),
            fd: parked.file.as_raw_fd(),
            held: parked.held.clone(),
        }
    }

    /// The pipe again, its fd claimed.
    fn claim(&self) -> anyhow::Result<Parked> {
        let stream = match self.stream.as_str() {
            "stdout" => Stream::Stdout,
            "stderr" => Stream::Stderr,
            other => bail!("the previous herd handed over an output stream named {other:?}"),
        };
        Ok(Parked {
            writer: Writer {
                slot: self.worker,
                pid: self.pid,
                generation: self.generation,
            },
            stream,
            file: std::fs::File::from(claim(self.fd)?),
            held: self.held.clone(),
        })
    }
}

/// A socket and its file.
#[derive(Debug, Serialize, Deserialize)]
pub struct SavedSocket {
    /// Its fd number across the exec.
    pub fd: RawFd,
    /// Its file: path, device and inode.
    pub file: (PathBuf, u64, u64),
    /// The directory its file was bound in, if known (the control and notify sockets': they
    /// are bound again only there); a state from an older herd has none, and the new image
    /// learns it from the file, if it is there. Not written when unknown: an older herd reads
    /// the state as it wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<super::socket_files::DirIdentity>,
    /// The uid its file was given to: the notify socket of workers of another user
    /// (`--user`). Not written when none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<u32>,
}

/// A listening socket.
#[derive(Debug, Serialize, Deserialize)]
pub struct SavedListener {
    /// Its name.
    pub name: String,
    /// What it is (`tcp`, `udp`, `unix` or `shm` in the state).
    pub kind: SocketKind,
    /// Where it is bound.
    pub address: String,
    /// Its fd number across the exec.
    pub fd: RawFd,
    /// Its socket file, if herd created one.
    pub file: Option<(PathBuf, u64, u64)>,
    /// Under `--balance reuseport`: the sockets of slots 1 and up (`fd` is slot 0's).
    #[serde(default)]
    pub group: Option<SavedGroup>,
    /// Whether workers also get it as fd 0 (`--bind ...,stdin`); left out when not.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stdin: bool,
    /// The backlog herd listened with (TCP); left out when unknown, and then read anew.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backlog_set: Option<u32>,
    /// Whether herd made (or found) it non-blocking; left out when unknown, and then read anew.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonblocking_set: Option<bool>,
}

/// The per-slot sockets of a `--balance reuseport` listener.
#[derive(Debug, Serialize, Deserialize)]
pub struct SavedGroup {
    /// Where every socket is bound.
    pub address: std::net::SocketAddr,
    /// How they are made.
    pub options: crate::spec::GroupOptions,
    /// The fd numbers of slots 1 and up, in slot order.
    pub fds: Vec<RawFd>,
}

/// A socket file's parts, for the state.
pub fn file_parts(file: &SocketFile) -> (PathBuf, u64, u64) {
    let (path, dev, ino) = file.parts();
    (path.to_path_buf(), dev, ino)
}

/// Replaces this process's program with `exe`, handing over `state` and the fds in `keep`.
/// Returns only if that failed, with everything as it was.
pub fn exec(exe: &Path, state: &State, keep: &[BorrowedFd<'_>]) -> anyhow::Error {
    match try_exec(exe, state, keep) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

enum Never {}

fn try_exec(exe: &Path, state: &State, keep: &[BorrowedFd<'_>]) -> anyhow::Result<Never> {
    let shown = exe.display();
    executable(exe)?;
    let mut file = herd_sys::fd::anonymous_file("herd-reexec-state")?;
    // Buffered: the kept lines of worker output are thousands of small writes.
    let mut buffered = std::io::BufWriter::new(&mut file);
    serde_json::to_writer(&mut buffered, state)?;
    buffered.flush()?;
    drop(buffered);
    file.rewind()?;

    let mut plan = ExecPlan::new(exe.as_os_str())?;
    for arg in std::env::args_os() {
        plan.arg(&arg)?;
    }
    for (key, value) in std::env::vars_os().filter(|(k, _)| k != STATE_VAR) {
        plan.env(&key, &value)?;
    }
    plan.env(STATE_VAR.as_ref(), file.as_raw_fd().to_string().as_ref())?;

    let survivors: Vec<BorrowedFd<'_>> = keep.iter().copied().chain([file.as_fd()]).collect();
    for fd in &survivors {
        herd_sys::fd::set_cloexec(*fd, false)?;
    }
    herd_sys::process::block_signals(&super::platform::signals::held())?;
    // The open-file limit stays as it is: this image may hold more fds than the limit herd was
    // started with, and the new one must be able to open files at once (the state carries
    // the original, for the workers).
    let error = plan.exec_in_place();
    // Still here: the exec failed. Undo everything.
    let _ = herd_sys::process::unblock_signals(&super::platform::signals::held());
    for fd in &survivors {
        let _ = herd_sys::fd::set_cloexec(*fd, true);
    }
    Err(anyhow!(
        "cannot re-execute {shown}: {error}; herd keeps running"
    ))
}

/// The state and fds handed over by the previous image, when this process is a re-exec.
pub struct Restored {
    /// The state.
    pub state: State,
    /// The fds the state names, claimed: control, notify, listeners (in order), reply.
    pub control: OwnedFd,
    /// The notify socket.
    pub notify: OwnedFd,
    /// The listening sockets, in order.
    pub listeners: Vec<OwnedFd>,
    /// For each listening socket, the sockets of its slots 1 and up (empty unless per-slot).
    pub groups: Vec<Vec<OwnedFd>>,
    /// The waiting client's connection.
    pub reply: Option<OwnedFd>,
    /// The attached processes' pidfds, in the order of the state's cores' `attached`.
    pub attached: Vec<Option<OwnedFd>>,
    /// The `--metrics` socket.
    pub metrics: Option<OwnedFd>,
    /// The `--health` socket.
    pub health: Option<OwnedFd>,
    /// einhorn's acknowledgement socket.
    pub einhorn: Option<OwnedFd>,
    /// The workers' output pipes.
    pub outputs: Vec<Parked>,
}

/// Reads the state from `HERD_REEXEC_STATE`, if set, and claims the fds it names.
pub fn take() -> anyhow::Result<Option<Restored>> {
    let Some(value) = std::env::var_os(STATE_VAR) else {
        return Ok(None);
    };
    std::env::remove_var(STATE_VAR);
    let fd: RawFd = value
        .to_str()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("{STATE_VAR} is not an fd number"))?;
    let mut file = std::fs::File::from(claim(fd)?);
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    let state = read_state(&text)?;
    let listeners = state
        .listeners
        .iter()
        .map(|l| claim(l.fd))
        .collect::<anyhow::Result<_>>()?;
    let groups = state
        .listeners
        .iter()
        .map(|l| {
            let fds = l.group.as_ref().map_or(&[][..], |g| &g.fds[..]);
            fds.iter().map(|&fd| claim(fd)).collect()
        })
        .collect::<anyhow::Result<_>>()?;
    let attached = state
        .cores
        .attached
        .iter()
        .map(|a| a.pidfd.map(claim).transpose())
        .collect::<anyhow::Result<_>>()?;
    let outputs = state
        .outputs
        .iter()
        .map(SavedOutput::claim)
        .collect::<anyhow::Result<_>>()?;
    Ok(Some(Restored {
        groups,
        attached,
        outputs,
        metrics: state.metrics_fd.map(claim).transpose()?,
        health: state.health_fd.map(claim).transpose()?,
        einhorn: state.einhorn.as_ref().map(|e| claim(e.fd)).transpose()?,
        control: claim(state.control.fd)?,
        notify: claim(state.notify.fd)?,
        listeners,
        reply: state.reply_fd.map(claim).transpose()?,
        state,
    }))
}

/// The state in `text`, if this herd reads its version.
fn read_state(text: &str) -> anyhow::Result<State> {
    let state: State =
        serde_json::from_str(text).context("cannot read the state of the previous herd")?;
    if !reads(state.version) {
        // The check before the exec makes sure this does not happen.
        bail!(
            "the previous herd handed over re-exec state version {}; this herd reads versions \
             {OLDEST_STATE}..={STATE_VERSION}",
            state.version
        );
    }
    Ok(state)
}

fn claim(fd: RawFd) -> anyhow::Result<OwnedFd> {
    // The previous image of this very process listed `fd` in its state and cleared
    // FD_CLOEXEC on it just for this exec; herd-sys refuses a number claimed twice.
    herd_sys::fd::claim_inherited(fd)
        .with_context(|| format!("the fd {fd} handed over by the previous herd is not open"))
}

#[cfg(test)]
mod tests;
