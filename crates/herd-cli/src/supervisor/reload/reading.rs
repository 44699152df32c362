//! The config file read again off the loop. A read can take long (a large `[env]` is checked
//! variable by variable, the new command's program and directory are probed) or not return
//! at all (a file on a hung network filesystem), and herd goes on supervising meanwhile:
//! restarts, scaling, status, stops. The [`Reload`] goes to a thread of its own and comes
//! back with what it read, as an input ([`ReadAgain`]). While it is away, another
//! `--reload-config` and a re-exec (which hands the file's contents to the new image) are
//! refused, saying how long the read has taken; a stop answers its client at once.

use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::{Reload, Reloaded};
use crate::control::protocol::{ErrorCode, Response};
use crate::logging::LogEvent;
use crate::supervisor::effects::{Client, Effect};
use crate::supervisor::pool::{self, PoolError};
use crate::supervisor::waiters::Answer;
use crate::supervisor::Supervisor;

/// The config file's reader back from its thread, with what it read.
pub struct ReadAgain {
    reload: Reload,
    read: Result<Reloaded, String>,
}

/// A `herd upgrade --reload-config` whose file is being read.
pub struct Reading {
    /// The upgrade's timeout.
    timeout: Option<Duration>,
    /// Who asked; `None` once told that herd stops.
    client: Option<Client>,
    since: Instant,
}

impl Reading {
    /// Why a re-exec or another reload cannot start now.
    pub fn busy(&self) -> String {
        format!(
            "herd upgrade --reload-config has been reading the config file for {} (a hung \
             filesystem?); try again once it has answered",
            humantime::format_duration(Duration::from_millis(
                self.since.elapsed().as_millis() as u64
            ))
        )
    }
}

/// Reads `reload`'s file on a thread of its own; what it read comes back on `done`. Gives
/// `reload` back if no thread could be started.
fn read_off_the_loop(
    reload: Reload,
    done: mpsc::Sender<Box<ReadAgain>>,
) -> Result<(), (Reload, String)> {
    // The thread takes the reader once it runs: a thread that cannot be started would
    // drop what it was given.
    let (give, take) = std::sync::mpsc::channel::<Reload>();
    let spawned = std::thread::Builder::new()
        .name("herd-config".to_string())
        .spawn(move || {
            let Ok(mut reload) = take.recv() else {
                return;
            };
            // A panic in the read is said as its failure: the reader and its client must
            // come back to the loop whatever happens here.
            let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| reload.reload()))
                .unwrap_or_else(|_| {
                    Err(
                        "cannot read the config file again: herd failed inside (a bug: its \
                         log says where); nothing was changed"
                            .to_string(),
                    )
                });
            // The loop is gone when herd has stopped: nothing waits for it then.
            let _ = done.blocking_send(Box::new(ReadAgain { reload, read }));
        });
    if let Err(e) = spawned {
        return Err((reload, format!("cannot start a thread to read it: {e}")));
    }
    give.send(reload)
        .map_err(|e| (e.0, "its reading thread ended at once".to_string()))
}

impl Supervisor {
    /// `herd upgrade --reload-config`: reads the config file again, off the loop (`done`
    /// brings it back to [`Self::config_read`]), and upgrades to what it says; if it cannot
    /// be read or applied, `client` hears why and nothing changes.
    pub(in crate::supervisor) fn reload_and_upgrade(
        &mut self,
        timeout: Option<Duration>,
        client: Client,
        done: &mpsc::Sender<Box<ReadAgain>>,
    ) {
        if self.pool.is_stopping() {
            let why = PoolError::Stopping;
            return self.refuse_reload(pool::error_code(&why), why.to_string(), client);
        }
        if let Some(reading) = &self.reading {
            return self.refuse_reload(ErrorCode::Busy, reading.busy(), client);
        }
        if let Some(upgrade) = self.pool.upgrade_in_progress() {
            let why = PoolError::UpgradeInProgress {
                generation: upgrade.generation,
            };
            return self.refuse_reload(pool::error_code(&why), why.to_string(), client);
        }
        let Some(reload) = self.reload.take() else {
            let why = "herd was not started with --config: there is no file to read again; a \
                       plain herd upgrade restarts the workers with the same command";
            return self.refuse_reload(ErrorCode::ConfigInvalid, why.to_string(), client);
        };
        if let Err((reload, why)) = read_off_the_loop(reload, done.clone()) {
            self.reload = Some(reload);
            let why = format!("cannot read the config file again: {why}; nothing was changed");
            return self.refuse_reload(ErrorCode::Internal, why, client);
        }
        tracing::info!(
            event = LogEvent::ConfigReading.as_str(),
            "herd upgrade --reload-config: reading the config file again"
        );
        self.reading = Some(Reading {
            timeout,
            client: Some(client),
            since: Instant::now(),
        });
    }

    /// The config file was read again: the upgrade it was read for starts, or its client
    /// hears why not.
    pub(in crate::supervisor) fn config_read(&mut self, again: Box<ReadAgain>) {
        let ReadAgain { reload, read } = *again;
        self.reload = Some(reload);
        let Some(Reading {
            timeout, client, ..
        }) = self.reading.take()
        else {
            return self.settle_reload(false);
        };
        let Some(client) = client else {
            // herd stops: its client heard so.
            return self.settle_reload(false);
        };
        let read = read
            .map_err(|why| (ErrorCode::ConfigInvalid, why))
            .and_then(|reloaded| self.applicable(reloaded));
        match read {
            Ok(reloaded) => self.upgrade_to(
                "herd upgrade --reload-config",
                timeout,
                Some(client),
                Some(reloaded.split()),
            ),
            Err((code, why)) => {
                self.settle_reload(false);
                self.refuse_reload(code, why, client);
            }
        }
    }

    /// herd stops while its config file is being read: the upgrade it was read for will not
    /// happen, and its client hears so now (the read itself may never return).
    pub(in crate::supervisor) fn reading_stopped(&mut self) -> Option<Effect> {
        let client = self.reading.as_mut()?.client.take()?;
        let why = "herd is stopping: the upgrade the config file was being read for will not \
                   happen";
        let answer = Answer::new(client, Response::error(ErrorCode::Stopping, why));
        Some(Effect::Answer(answer))
    }

    /// `reloaded`, if an upgrade to it can start now: else the code and why (a plain
    /// upgrade may have started while the file was read).
    fn applicable(&self, reloaded: Reloaded) -> Result<Reloaded, (ErrorCode, String)> {
        if let Some(upgrade) = self.pool.upgrade_in_progress() {
            let why = PoolError::UpgradeInProgress {
                generation: upgrade.generation,
            };
            return Err((
                pool::error_code(&why),
                format!("{why}; nothing was changed"),
            ));
        }
        match self.no_fds_for_file(reloaded.workers) {
            Some(why) => Err((
                ErrorCode::ConfigInvalid,
                format!("the config file's workers: {why}; nothing was changed"),
            )),
            None => Ok(reloaded),
        }
    }

    /// Why the file's `workers` (the most, with autoscaling) cannot run, if they cannot: the
    /// upgrade that would apply them is refused before it starts, in the reply, rather than
    /// said in the log once it finished (see [`Self::no_fds_for`]).
    fn no_fds_for_file(&self, workers: Option<crate::cli::Workers>) -> Option<String> {
        use crate::cli::Workers;
        match workers? {
            Workers::Fixed(n) => self.no_fds_for(n),
            Workers::Auto(_, max) => self.no_fds_for(max),
        }
    }

    /// `herd upgrade --reload-config` changes nothing: `client` hears why (`code`).
    fn refuse_reload(&mut self, code: ErrorCode, why: String, client: Client) {
        tracing::warn!(
            event = LogEvent::UpgradeRefused.as_str(),
            "herd upgrade --reload-config: {why}"
        );
        let answer = Answer::new(client, Response::error(code, why));
        self.effects.execute([Effect::Answer(answer)]);
    }
}
