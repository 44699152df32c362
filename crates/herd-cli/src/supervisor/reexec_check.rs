//! The check a binary must pass before herd re-executes onto it, as einhorn's
//! `--upgrade-check`: `execve` succeeding proves little (a truncated binary that crashes, a
//! script that exits, a herd that cannot read this state would take herd's pid, and with it
//! every worker, down), so herd first runs the new binary in a child:
//!
//! ```text
//! NEW_BINARY __reexec-check VERSION -- ARGS...
//! ```
//!
//! where `ARGS` is herd's own command line and `VERSION` the state version this re-exec needs
//! ([`version_needed`]). The new binary parses `ARGS` as it would after the exec, and if it
//! can read state of `VERSION`, prints
//! `herd-reexec-check state=VERSION version=HERD_VERSION` and exits 0, within
//! [`TIMEOUT`]. Anything else (a crash, another exit code, another answer, no answer in time)
//! refuses the re-exec, and herd keeps running. A binary that passes the check and then fails
//! after the exec is not covered: nothing can be, once `execve` has replaced the program.
//!
//! The check child leads a process group of its own. One that does not answer in time is
//! killed with its group, and so is one still running when herd stops (a client waiting for
//! that re-exec is answered `stopping`); once it has exited, whatever it left in its group is
//! killed as a [leftover](super::leftovers) and herd does not finish stopping before it is gone.
//! A herd killed meanwhile (SIGKILL) takes the check child with it (`PR_SET_PDEATHSIG`).

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::io::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;
use std::time::Duration;

use herd_sys::spawn::ExecPlan;
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, oneshot};

use super::effects::Effect;
use super::platform::describe_exit;
use super::reexec::{reads, version_needed, STATE_VERSION};
use super::waiters::{Check, ReexecRefused};
use super::Supervisor;
use crate::control::protocol::ErrorCode;
use crate::exit;
use crate::logging::LogEvent;

/// The hidden first argument that selects the check mode.
pub const CHECK_ARG: &str = "__reexec-check";

/// The first word of the answer line.
const ANSWER: &str = "herd-reexec-check";

/// How long the new binary has to answer.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// The most output kept from the checked binary, per stream.
const MAX_OUTPUT: u64 = 64 * 1024;

/// The client waiting for a re-exec (`None` for SIGUSR2).
pub type Client = Option<super::effects::Client>;

/// A re-exec whose binary passed its check: its client, and the file to run.
pub type Passed = Check<super::effects::Client>;

/// A finished check, sent back to the loop.
pub struct Checked {
    /// The checked child's pid.
    pid: u32,
    /// `Ok(answer)` if the binary passed, else why not.
    verdict: Result<String, String>,
}

/// Check children that have not exited (each leads its process group), with the task waiting
/// for each one's exit status. The client of the check under way waits among the
/// [waiters](super::waiters).
#[derive(Default)]
pub struct Children {
    running: HashMap<u32, Option<oneshot::Sender<ExitStatus>>>,
}

impl Children {
    /// Whether no check child is running.
    pub fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    /// The check children, to look for their exits.
    pub fn pids(&self) -> Vec<u32> {
        self.running.keys().copied().collect()
    }

    /// Check child `pid` has exited (and is not reaped: its pid holds its group's id): its
    /// check gets the status.
    pub fn exited(&mut self, pid: u32, status: ExitStatus) {
        if let Some(Some(waiter)) = self.running.remove(&pid) {
            let _ = waiter.send(status);
        }
    }

    /// Check child `pid` is no longer herd's child (nothing to wait for).
    pub fn lost(&mut self, pid: u32) {
        self.running.remove(&pid);
    }

    /// herd is stopping: logs that each check child is killed, and returns them, to kill each
    /// with its group (not reaped yet, so each pid is still its group's id).
    pub fn log_kills_at_stop(&self) -> Vec<u32> {
        let pids = self.pids();
        for &pid in &pids {
            tracing::info!(
                event = LogEvent::ReexecCheckKilled.as_str(),
                pid,
                "killing the re-exec check: herd is stopping"
            );
        }
        pids
    }
}

/// Why a re-exec is refused while another is being checked.
const ALREADY_CHECKING: &str = "a re-exec is already being checked; try again";

impl Supervisor {
    /// Starts checking the binary on disk for `client`'s re-exec; the verdict comes back on
    /// `done`. Refuses at once when herd could not re-execute anyway.
    pub(super) fn check_reexec(&mut self, client: Client, done: &mpsc::Sender<Checked>) {
        let refuse = |client, code, why: String| {
            [Effect::RefuseReexec(ReexecRefused::new(client, code, why))]
        };
        let now = super::pool::Epoch::at(std::time::Instant::now());
        if let Err((code, why)) = self.reexec_export(now) {
            return self.effects.execute(refuse(client, code, why));
        }
        if self.waiters.reexec_checking() {
            let why = ALREADY_CHECKING.to_string();
            return self.effects.execute(refuse(client, ErrorCode::Busy, why));
        }
        // The path herd was started by, followed now: a symlink switched since counts.
        let file = super::reexec::resolve(&self.platform.exe);
        if let Err(e) = super::reexec::executable(&file) {
            return self.effects.execute(refuse(
                client,
                ErrorCode::ReexecCheckFailed,
                format!("{e:#}"),
            ));
        }
        let version = version_needed(self.pool.is_draining());
        // With --config, the file's contents the workers run, which the new image reads.
        let config = self.reload.as_ref().map(|r| r.in_force().to_string());
        let started = command(&file, version)
            .map_err(|e| e.to_string())
            .and_then(|plan| self.effects.spawner().start_check(&plan));
        let child = match started {
            Ok(child) => child,
            Err(e) => {
                let why = format!(
                    "cannot re-execute {}: cannot run it to check it: {e}; herd keeps running",
                    file.display()
                );
                return self
                    .effects
                    .execute(refuse(client, ErrorCode::ReexecCheckFailed, why));
            }
        };
        let CheckChild {
            pid,
            stdin,
            stdout,
            stderr,
        } = child;
        let (status_tx, status_rx) = oneshot::channel();
        self.platform
            .reexec_children
            .running
            .insert(pid, Some(status_tx));
        tracing::info!(
            event = LogEvent::ReexecChecking.as_str(),
            exe = %self.platform.exe.display(),
            file = %file.display(),
            pid,
            "checking the new binary before re-executing"
        );
        let check = Check {
            pid,
            client,
            file,
            version,
        };
        // Free, as checked above; were it not, the new check would not be left running.
        if let Err(check) = self.waiters.reexec_check_started(check) {
            self.platform.reexec_children.running.insert(pid, None);
            let refused = refuse(check.client, ErrorCode::Busy, ALREADY_CHECKING.to_string());
            let kill = Effect::KillGroup { pid };
            return self.effects.execute([kill].into_iter().chain(refused));
        }
        let done = done.clone();
        tokio::spawn(async move {
            // Written as it is read; a child that reads none of it fails its check by itself.
            let give = give_config(Some(stdin), config.unwrap_or_default());
            let checked = run_check(stdout, stderr, status_rx, version);
            let (verdict, ()) = tokio::join!(checked, give);
            let _ = done.send(Checked { pid, verdict }).await;
        });
    }

    /// Takes a finished check: the re-exec to carry out if the binary passed; else tells the
    /// client why not (and kills a check child that did not answer in time, with its group).
    /// `None` too for a check whose client was already answered (herd is stopping).
    pub(super) fn reexec_checked(&mut self, checked: Checked) -> Option<Passed> {
        let Checked { pid, verdict } = checked;
        let check = self.waiters.reexec_checked(pid)?;
        match verdict {
            Ok(answer) => {
                tracing::info!(event = LogEvent::ReexecCheckPassed.as_str(), pid, answer = %answer, "the new binary passed its check");
                Some(check)
            }
            Err(why) => {
                // Not reaped yet, so the pid is still the check child's group's id: safe to
                // kill. Its exit is then handled as a check child's.
                if let Some(waiter) = self.platform.reexec_children.running.get_mut(&pid) {
                    *waiter = None;
                    self.effects.execute([Effect::KillGroup { pid }]);
                }
                let why = format!(
                    "cannot re-execute {}: {why}; herd keeps running",
                    check.file.display()
                );
                let refused = ReexecRefused::new(check.client, ErrorCode::ReexecCheckFailed, why);
                self.effects.execute([Effect::RefuseReexec(refused)]);
                None
            }
        }
    }
}

/// `exe` in check mode with herd's own arguments and environment (the state's variable
/// aside), leading a process group of its own, so that it is killed with whatever it starts,
/// and killed with herd (`PR_SET_PDEATHSIG`): one that hangs does not outlive a herd killed
/// while it is checked. Executed as it is, never through `/bin/sh` (as `execvp` would a file
/// that is no program).
fn command(exe: &Path, version: u32) -> std::io::Result<ExecPlan> {
    let mut plan = ExecPlan::new(exe.as_os_str())?;
    plan.arg(exe.as_os_str())?
        .arg(CHECK_ARG.as_ref())?
        .arg(version.to_string().as_ref())?
        .arg("--".as_ref())?;
    for arg in std::env::args_os().skip(1) {
        plan.arg(&arg)?;
    }
    for (key, value) in std::env::vars_os().filter(|(k, _)| k != super::reexec::STATE_VAR) {
        plan.env(&key, &value)?;
    }
    plan.new_process_group(true)
        .parent_death_signal(Some(herd_sys::process::Signal::KILL));
    Ok(plan)
}

/// Writes `config` (the config file's contents the workers run; empty without one) to the
/// check child's `stdin`, then closes it, within [`TIMEOUT`].
async fn give_config(stdin: Option<OwnedFd>, config: String) {
    use tokio::io::AsyncWriteExt;
    let Some(mut pipe) =
        stdin.and_then(|fd| tokio::net::unix::pipe::Sender::from_owned_fd(fd).ok())
    else {
        return;
    };
    let _ = tokio::time::timeout(TIMEOUT, pipe.write_all(config.as_bytes())).await;
}

/// A started check child: its pid, and our ends of its standard streams.
pub struct CheckChild {
    /// Its pid, which is also its process group's id.
    pub pid: u32,
    /// Where herd writes the config file's contents (the child's fd 0).
    pub stdin: OwnedFd,
    /// What it writes to its fd 1.
    pub stdout: OwnedFd,
    /// What it writes to its fd 2.
    pub stderr: OwnedFd,
}

/// Reads the child's output and waits for its exit status, within [`TIMEOUT`].
async fn run_check(
    stdout: OwnedFd,
    stderr: OwnedFd,
    status: oneshot::Receiver<ExitStatus>,
    version: u32,
) -> Result<String, String> {
    let pipe = |fd: OwnedFd| tokio::net::unix::pipe::Receiver::from_owned_fd(fd).ok();
    let (stdout, stderr) = (pipe(stdout), pipe(stderr));
    let read = |pipe: Option<tokio::net::unix::pipe::Receiver>| async move {
        let mut out = Vec::new();
        if let Some(pipe) = pipe {
            let _ = pipe.take(MAX_OUTPUT).read_to_end(&mut out).await;
        }
        out
    };
    let finished = async {
        let (stdout, stderr) = tokio::join!(read(stdout), read(stderr));
        let status = status.await.ok();
        (status, stdout, stderr)
    };
    match tokio::time::timeout(TIMEOUT, finished).await {
        Ok((Some(status), stdout, stderr)) => verdict(status, &stdout, &stderr, version),
        Ok((None, ..)) => Err("its check child vanished".to_string()),
        Err(_) => Err(format!(
            "the new binary did not answer its check within {}s (it hangs, or is not a herd \
             that has the check)",
            TIMEOUT.as_secs()
        )),
    }
}

/// Judges a finished check of state `version`: `Ok(answer line)` or why the binary is refused.
pub fn verdict(
    status: ExitStatus,
    stdout: &[u8],
    stderr: &[u8],
    version: u32,
) -> Result<String, String> {
    let said = String::from_utf8_lossy(stderr);
    let said = said
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| {
            // What a foreign binary printed: no control characters reach a log or a terminal.
            let said = crate::exit::one_line(l.trim());
            format!(" ({})", crate::text::escape(&said))
        })
        .unwrap_or_default();
    if !status.success() {
        let how = describe_exit(status);
        let hint = if status.signal().is_some() {
            " (a truncated or broken binary?)"
        } else {
            ""
        };
        return Err(format!(
            "the new binary failed its check: {how}{hint}{said}{}",
            drain_hint(version)
        ));
    }
    let stdout = String::from_utf8_lossy(stdout);
    let Some(answer) = stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(ANSWER))
    else {
        return Err(format!(
            "the new binary did not answer its check (it exited 0 without saying \
             '{ANSWER} state={version}'; is it a herd that has the check?){said}"
        ));
    };
    let state = answer
        .split_whitespace()
        .find_map(|w| w.strip_prefix("state="));
    if state != Some(&version.to_string()) {
        return Err(format!(
            "the new binary reads re-exec state version {}, and this herd writes version \
             {version}{}",
            state.unwrap_or("(none)"),
            drain_hint(version)
        ));
    }
    Ok(crate::text::escape(answer.trim()).into_owned())
}

/// Why this re-exec needs a newer state version than the oldest, for a binary that refuses it.
fn drain_hint(version: u32) -> &'static str {
    match version {
        1 => "",
        _ => {
            "; this re-exec writes state version 2 because a worker is draining its reuseport \
              slot: try again once it has stopped"
        }
    }
}

/// The check's answer for state `offered`, on stdout: its exit code.
fn answer(offered: u32) -> Option<u8> {
    // An answer that cannot be written is a failed check, not a panic.
    let answer = format!(
        "{ANSWER} state={offered} version={}\n",
        env!("CARGO_PKG_VERSION")
    );
    let mut out = std::io::stdout();
    match std::io::Write::write_all(&mut out, answer.as_bytes())
        .and_then(|()| std::io::Write::flush(&mut out))
    {
        Ok(()) => Some(exit::OK),
        Err(_) => Some(exit::FAILURE),
    }
}

/// The check mode, when this process was started as `herd __reexec-check VERSION -- ARGS...`:
/// its exit code, after answering. `None` otherwise.
pub fn answer_if_asked() -> Option<u8> {
    let mut args = std::env::args_os();
    let program = args.next()?;
    if args.next()? != CHECK_ARG {
        return None;
    }
    let offered = args.next();
    let separator = args.next();
    let rest: Vec<OsString> = args.collect();
    let fail = |code: u8, why: String| {
        crate::logging::line(&format!("herd: error: {why}"));
        Some(code)
    };
    if separator.as_deref() != Some("--".as_ref()) {
        return fail(
            exit::USAGE,
            format!("usage: herd {CHECK_ARG} VERSION -- ARGS... (used by herd reexec)"),
        );
    }
    let shown = offered.as_ref().map(|v| v.to_string_lossy().into_owned());
    let Some(offered) = offered
        .as_ref()
        .and_then(|v| v.to_str()?.parse::<u32>().ok())
        .filter(|v| reads(*v))
    else {
        return fail(
            exit::FAILURE,
            format!(
                "this herd reads re-exec state versions {}..={STATE_VERSION}, not {}",
                super::reexec::OLDEST_STATE,
                shown.as_deref().unwrap_or("(none)")
            ),
        );
    };
    let argv: Vec<OsString> = std::iter::once(program).chain(rest).collect();
    let parsed = <crate::cli::Cli as clap::Parser>::try_parse_from(&argv);
    match parsed {
        Ok(cli) if matches!(&cli.command, crate::cli::Command::Run(run) if run.config.is_some()) => {
            // The config file's contents the workers run, on stdin: what the new image reads.
            let mut text = String::new();
            if let Err(e) = std::io::Read::read_to_string(&mut std::io::stdin(), &mut text) {
                return fail(
                    exit::FAILURE,
                    format!("cannot read the config file's contents on stdin: {e}"),
                );
            }
            match crate::cli::config::parse_with(&argv, Some(&text)) {
                Ok(_) => answer(offered),
                Err(why) => fail(
                    exit::USAGE,
                    format!(
                        "this herd does not accept the config file the running herd's workers \
                         run (as it read it at start or at its last reload): {why}; fix the \
                         file, apply it with herd upgrade --reload-config, then re-exec"
                    ),
                ),
            }
        }
        Ok(cli) if matches!(cli.command, crate::cli::Command::Run(_)) => answer(offered),
        Ok(_) => fail(
            exit::USAGE,
            "the command line is not a 'herd run' command line".to_string(),
        ),
        Err(e) => fail(
            exit::USAGE,
            format!(
                "this herd does not accept the running herd's command line: {}",
                exit::one_line(&e.render().to_string())
            ),
        ),
    }
}

#[cfg(test)]
mod tests;
