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
    /// `LISTEN_*`, nor `--compat`'s variables (they name the sockets' fds, 3 being herd's
    /// socket here), and `HERD_FORK_SERVER=3`: its end of herd's socket, at fd 3. It stays in
    /// herd's process group (herd's helpers do; the orphan look passes them over).
    pub fn fork_server_plan(&self, generation: u64) -> Result<ExecPlan, StartError> {
        let fail = |message| StartError {
            cannot_execute: true,
            message,
        };
        let program = self.program(0, generation).map_err(fail)?;
        let plan = self
            .plan_with(&program, 0, generation, |key| !names_sockets(key))
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

/// Whether variable `key` names the sockets' fds (`--compat`'s): the fork server has none.
fn names_sockets(key: &OsStr) -> bool {
    let key = key.to_string_lossy();
    key.starts_with("EINHORN_FD") || key == "SERVER_STARTER_PORT"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compat_variables_that_name_fds_are_not_the_fork_servers() {
        for key in [
            "EINHORN_FD_COUNT",
            "EINHORN_FD_0",
            "EINHORN_FDS",
            "SERVER_STARTER_PORT",
        ] {
            assert!(names_sockets(OsStr::new(key)), "{key}");
        }
        for key in [
            "EINHORN_MASTER_PID",
            "EINHORN_SOCK_PATH",
            "HERD_CONTROL",
            "PATH",
        ] {
            assert!(!names_sockets(OsStr::new(key)), "{key}");
        }
    }
}
