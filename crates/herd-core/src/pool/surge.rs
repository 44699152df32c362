//! The surge: workers beyond one per wanted slot, which a replacement (an upgrade step or a
//! recycle) adds from the moment its new worker starts until its old worker has exited, grace
//! period included. Upgrades and recycling count it the same way and share two bounds:
//! `max_surge`, on the surge (so memory stays bounded at `desired + max_surge` workers), and
//! `max_starting`, on new workers starting at once, restarts aside (start-ups take the CPU).

use super::{Pool, WorkerState};

#[cfg(test)]
thread_local! {
    /// How many times a pool of this thread counted its surge, a walk of every worker: what
    /// the tests measure a turn's cost by.
    pub(crate) static SURGES_COUNTED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The bound on the surge (`--max-surge`): a number of workers, or a share of the desired
/// number, rounded up (like Kubernetes' `maxSurge`). Never below 1, so that a replacement
/// can always run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum MaxSurge {
    /// At most this many workers beyond the desired number.
    Workers(usize),
    /// At most this percentage of the desired number beyond it (100: up to twice the pool).
    Percent(u32),
}

impl MaxSurge {
    /// The bound for a pool of `desired` workers.
    pub fn limit(self, desired: usize) -> usize {
        let limit = match self {
            MaxSurge::Workers(n) => n,
            MaxSurge::Percent(p) => {
                let scaled = desired as u128 * u128::from(p);
                usize::try_from((scaled + 99) / 100).unwrap_or(usize::MAX)
            }
        };
        limit.max(1)
    }
}

impl std::fmt::Display for MaxSurge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MaxSurge::Workers(n) => write!(f, "{n}"),
            MaxSurge::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl Pool {
    /// Worker processes beyond one per wanted slot, a worker being started into an occupied
    /// slot and old workers in their grace period included: the processes replacements add.
    /// Workers scaled away (slots at or above the desired number) are not counted.
    pub fn surge(&self) -> usize {
        #[cfg(test)]
        SURGES_COUNTED.with(|n| n.set(n.get() + 1));
        let mut processes = vec![0usize; self.desired];
        for w in &self.workers {
            if let Some(n) = processes.get_mut(w.slot) {
                *n += 1;
            }
        }
        processes
            .iter()
            .zip(&self.slots)
            .map(|(n, s)| (n + usize::from(s.spawning)).saturating_sub(1))
            .sum()
    }

    /// The start-ups `max_starting` counts, for upgrades, recycling and scale-ups alike: new
    /// workers being spawned, or started and not ready yet (first starts, scale-ups, replacements),
    /// except restarts ([`Worker::restart`](super::Worker::restart)) and the start-ups of
    /// a generation an upgrade replaces. A slot in a crash loop restarts for as long as the
    /// loop lasts, paced by its backoff, and a worker of the old build may hang in its
    /// start-up until `--ready-timeout`: counted, either would hold back every upgrade step
    /// and recycle, a fix deployed by upgrade included.
    pub fn start_ups(&self) -> usize {
        let rolling_out = self.upgrade.map_or(0, |u| u.generation);
        let spawning = (self.slots.iter())
            .filter(|s| s.spawning && !s.spawning_restart)
            .count();
        let started = (self.workers.iter())
            .filter(|w| {
                w.state == WorkerState::Starting && !w.restart && w.generation >= rolling_out
            })
            .count();
        spawning + started
    }

    /// How many more replacements may start now, for new workers of `generation`'s settings:
    /// room under both `max_surge` and `max_starting`.
    pub(super) fn replacement_room(&self, generation: u64) -> usize {
        let settings = self.settings(generation);
        let surge = settings.max_surge.limit(self.desired);
        let starting = settings.max_starting.max(1);
        let surge_room = surge.saturating_sub(self.surge());
        surge_room.min(starting.saturating_sub(self.start_ups()))
    }
}
