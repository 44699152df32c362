//! `herd upgrade --reload-config`: an upgrade whose new generation runs what the config file
//! says now. The file is read by the [`Reload`] that `herd run` gave the supervisor; its
//! command, environment and pool settings are staged for the upgrade, kept if it finishes and
//! dropped if it does not, so that the old workers (and their restarts) keep what they had.

use crate::cli::config::{Reloader, Reread};
use crate::cli::{RunArgs, Workers};
use crate::command::WorkerCommand;
use crate::logging::LogEvent;

use super::platform::Signal;
use super::pool::PoolConfig;
use super::Supervisor;
use herd_core::RecyclePolicy;

pub(super) mod reading;

/// What a config file read again asks of the next generation.
pub struct Reloaded {
    /// The worker command, with its environment.
    pub command: WorkerCommand,
    /// The pool's settings (grace, readiness, watchdog, surge, ...; its `workers` and `drain`
    /// are not used).
    pub config: PoolConfig,
    /// The number of workers, if the file changed it.
    pub workers: Option<Workers>,
    /// What asks a worker to stop.
    pub stop_signal: Signal,
    /// `--max-memory` and `--max-lifetime`.
    pub recycling: RecyclePolicy,
    /// The keys the file changed that herd's command line gives, whose values stay.
    pub overridden: Vec<String>,
}

/// herd's config file, read again on request.
pub trait ReloadConfig {
    /// Reads the file again: what the next generation runs, or why it cannot (one line).
    fn reload(&mut self) -> Result<Reloaded, String>;
    /// What the last [`ReloadConfig::reload`] read is what the workers run now, if
    /// `applied` (the upgrade finished); else it is forgotten.
    fn settle(&mut self, applied: bool);
    /// The file's contents the workers run, which a re-exec keeps.
    fn in_force(&self) -> &str;
}

/// The supervisor's [`ReloadConfig`], which reads on a thread of its own ([`reading`]).
pub type Reload = Box<dyn ReloadConfig + Send>;

/// A [`ReloadConfig`] that reads the file with a [`Reloader`] and makes the worker command
/// with `command`, as `herd run` made the first (its errors placed in the file, as `herd run`
/// places them).
pub struct FileReload<F> {
    /// Reads the file with herd's command line.
    pub reloader: Reloader,
    /// The worker command for a `herd run`'s options.
    pub command: F,
    /// The stop signal for a `herd run`'s options.
    pub stop_signal: fn(&RunArgs) -> Signal,
}

impl<F: FnMut(&RunArgs) -> Result<WorkerCommand, String>> ReloadConfig for FileReload<F> {
    fn reload(&mut self) -> Result<Reloaded, String> {
        let Reread {
            args,
            workers,
            overridden,
        } = self.reloader.reread()?;
        let command = (self.command)(&args).map_err(|why| self.reloader.place(why))?;
        Ok(Reloaded {
            command,
            config: super::pool::config(&args, 0),
            workers,
            stop_signal: (self.stop_signal)(&args),
            recycling: super::recycling_policy(&args),
            overridden,
        })
    }

    fn settle(&mut self, applied: bool) {
        self.reloader.settle(applied);
    }

    fn in_force(&self) -> &str {
        self.reloader.in_force()
    }
}

/// Says which keys the config file changed that herd's command line gives (`keys`), if any:
/// their changes are not applied, and nothing else would tell.
fn overridden_said(keys: &[String]) {
    if keys.is_empty() {
        return;
    }
    let keys = keys.join(", ");
    tracing::warn!(
        event = LogEvent::ConfigOverridden.as_str(),
        keys = %keys,
        "herd upgrade --reload-config: the config file changes {keys}, which herd's command \
         line gives: the command line's values stay; to take the file's, start herd without \
         them (herd run --takeover starts a new herd beside this one)"
    );
}

/// What a reloaded upgrade changes once it has finished (its pool settings are the pool's
/// new generation's, see [`herd_core::Pool::upgrade_with`]).
pub(super) struct Staged {
    /// The number of workers the file asks for, if it changed it.
    workers: Option<Workers>,
    /// What asks a worker to stop, from the file.
    stop_signal: Signal,
    /// `--max-memory` and `--max-lifetime`, from the file.
    recycling: RecyclePolicy,
    /// The keys the file changed that herd's command line gives, whose values stay.
    overridden: Vec<String>,
}

/// A config file read again, for an upgrade: the new generation's pool settings and
/// command, and what changes once the upgrade finishes.
pub(super) type ForUpgrade = (PoolConfig, WorkerCommand, Staged);

impl Reloaded {
    /// The new generation's pool settings, and what changes once its upgrade finishes.
    pub(super) fn split(self) -> ForUpgrade {
        let staged = Staged {
            workers: self.workers,
            stop_signal: self.stop_signal,
            recycling: self.recycling,
            overridden: self.overridden,
        };
        (self.config, self.command, staged)
    }
}

/// The worker command of each generation: the current one, and while an upgrade rolls out a
/// reloaded config, the new generation's.
pub struct Commands<C> {
    current: C,
    next: Option<(u64, C)>,
}

impl<C> Commands<C> {
    /// Every generation runs `current`.
    pub fn new(current: C) -> Commands<C> {
        Commands {
            current,
            next: None,
        }
    }

    /// The command of a worker of `generation`.
    pub fn for_generation(&self, generation: u64) -> &C {
        match &self.next {
            Some((from, next)) if generation >= *from => next,
            _ => &self.current,
        }
    }

    /// The command of the workers that are not part of an upgrade.
    pub fn current(&self) -> &C {
        &self.current
    }

    /// Every command in use: the current one, and an upgrade's.
    pub fn all(&self) -> impl Iterator<Item = &C> {
        std::iter::once(&self.current).chain(self.next.as_ref().map(|(_, next)| next))
    }

    /// Workers of `generation` and later run `next`, until [`Commands::settle`].
    pub fn stage(&mut self, generation: u64, next: C) {
        self.next = Some((generation, next));
    }

    /// The upgrade ended: its command becomes every worker's if it `finished`, else it is
    /// dropped.
    pub fn settle(&mut self, finished: bool) {
        if let (Some((_, next)), true) = (self.next.take(), finished) {
            self.current = next;
        }
    }
}

impl Supervisor {
    /// Lets `herd upgrade --reload-config` read herd's config file again with `reload`.
    pub fn set_reload(&mut self, reload: Reload) {
        self.reload = Some(reload);
    }

    /// The upgrade to `generation` started with a config file read again: its new workers
    /// run `command`, and `staged` applies once it finishes.
    pub(super) fn reloaded_upgrade_started(
        &mut self,
        generation: u64,
        command: WorkerCommand,
        staged: Staged,
    ) {
        tracing::info!(
            event = LogEvent::ConfigReloaded.as_str(),
            generation,
            "config file read again: generation {generation} runs what it says"
        );
        overridden_said(&staged.overridden);
        self.effects.commands().stage(generation, command);
        self.staged = Some(staged);
    }

    /// An upgrade with a config file read again was refused: what was read is forgotten.
    pub(super) fn reloaded_upgrade_refused(&mut self) {
        self.settle_reload(false);
    }

    /// The upgrade ended: a reloaded config is kept if it `finished` (with its number of
    /// workers and stop signal), else the pool's settings and command are put back. Returns
    /// the keys of the file that herd's command line gives, for the upgrade's clients.
    pub(super) fn reloaded_upgrade_ended(&mut self, finished: bool) -> Vec<String> {
        self.effects.commands().settle(finished);
        let Some(staged) = self.staged.take() else {
            return Vec::new();
        };
        self.settle_reload(finished);
        if !finished {
            return Vec::new();
        }
        self.effects.set_stop_signal(staged.stop_signal);
        self.change_recycling(staged.recycling);
        match staged.workers {
            Some(Workers::Fixed(n)) => {
                self.set_autoscale(None);
                let scaled = match self.no_fds_for(n) {
                    Some(why) => Err(why),
                    None => self.scale(n, "config file").map_err(|e| e.to_string()),
                };
                if let Err(why) = scaled {
                    tracing::warn!(
                        event = LogEvent::ScaleRefused.as_str(),
                        "config file: cannot scale to {n} workers: {why}"
                    );
                }
            }
            // The autoscaler grows the pool up to `max` without asking again: a range the
            // open-file limit cannot hold is refused here, as `herd scale MIN..MAX` refuses it.
            Some(Workers::Auto(min, max)) => match self.no_fds_for(max) {
                Some(why) => tracing::warn!(
                    event = LogEvent::ScaleRefused.as_str(),
                    "config file: cannot autoscale between {min} and {max} workers: {why}"
                ),
                None => self.set_autoscale(Some((min, max))),
            },
            None => {}
        }
        staged.overridden
    }
}

impl Supervisor {
    /// The pool was scaled by hand (`by`: `herd scale`, SIGTTIN, SIGTTOU). The autoscaler
    /// measures the new size from scratch, rather than undo it at its next sample. While a
    /// reloaded upgrade rolls, the later order wins: the file's `workers`, staged for the
    /// upgrade's end, is dropped rather than undo it then (as a `herd scale` since herd
    /// started stays when the file leaves `workers` as it was).
    pub(super) fn scaled_by_hand(&mut self, by: &str) {
        if let Some(autoscaler) = self.autoscaler.as_mut() {
            autoscaler.scaled_by_hand();
        }
        let Some(workers) = self.staged.as_mut().and_then(|s| s.workers.take()) else {
            return;
        };
        let file = match workers {
            Workers::Fixed(n) => n.to_string(),
            Workers::Auto(min, max) => format!("{min}..{max}"),
        };
        tracing::info!(
            event = LogEvent::Scaling.as_str(),
            trigger = by,
            "{by} came during the config reload's upgrade: the file's workers = {file} is not \
             applied when it finishes"
        );
    }

    /// Tells the config file's reader whether what it read last is what the workers run.
    pub(super) fn settle_reload(&mut self, applied: bool) {
        if let Some(reload) = self.reload.as_mut() {
            reload.settle(applied);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Commands;

    #[test]
    fn a_staged_command_runs_from_its_generation_on_and_settles() {
        let mut commands = Commands::new("old");
        assert_eq!(*commands.for_generation(1), "old");
        commands.stage(3, "new");
        assert_eq!(
            *commands.for_generation(2),
            "old",
            "restarts of old workers"
        );
        assert_eq!(*commands.for_generation(3), "new");
        assert_eq!(*commands.current(), "old");
        assert_eq!(commands.all().copied().collect::<Vec<_>>(), ["old", "new"]);
        commands.settle(false);
        assert_eq!(
            *commands.for_generation(3),
            "old",
            "an aborted upgrade's is dropped"
        );
        commands.stage(4, "new");
        commands.settle(true);
        assert_eq!(*commands.for_generation(1), "new");
        assert_eq!(*commands.current(), "new");
        commands.settle(true);
        assert_eq!(*commands.current(), "new", "settling twice changes nothing");
        assert_eq!(commands.all().copied().collect::<Vec<_>>(), ["new"]);
    }
}
