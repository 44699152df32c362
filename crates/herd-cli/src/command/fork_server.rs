//! The start of a generation's fork server (`--fork-server`, see
//! [`fork_server`](crate::supervisor::fork_server)): the workers' command without their
//! sockets, and what went wrong starting it.

use std::ffi::OsStr;

use herd_sys::process::Signal;
use herd_sys::spawn::{ExecPlan, SpawnError, Stage};

use super::{StartError, WorkerCommand};

impl WorkerCommand {
    /// The plan that starts `generation`'s fork server: the command as slot 0's worker would
    /// run it, with the workers' environment and options but no sockets, `HERD_WORKER` nor
    /// `LISTEN_*`, and `HERD_FORK_SERVER=3`: its end of herd's socket, at fd 3. It stays in
    /// herd's process group (herd's helpers do; the orphan look passes them over).
    pub fn fork_server_plan(&self, generation: u64) -> Result<ExecPlan, StartError> {
        let fail = |message| StartError {
            cannot_execute: true,
            message,
        };
        let program = self.program(0, generation).map_err(fail)?;
        let plan = self
            .base_plan(&program, 0, generation)
            .and_then(|mut plan| {
                plan.env(OsStr::new("HERD_FORK_SERVER"), OsStr::new("3"))?
                    .env(
                        OsStr::new("HERD_GENERATION"),
                        OsStr::new(&generation.to_string()),
                    )?
                    .parent_death_signal(Some(Signal::KILL));
                Ok(plan)
            });
        plan.map_err(|e| fail(e.to_string()))
    }

    /// What went wrong starting `generation`'s fork server (`e`, from its plan's spawn).
    pub fn fork_server_failed(&self, generation: u64, e: &SpawnError) -> StartError {
        let program = self.program(0, generation).unwrap_or_default();
        StartError {
            cannot_execute: e.stage() == Stage::Exec,
            message: format!(
                "cannot start its fork server: {}",
                self.describe(&program, e)
            ),
        }
    }
}
