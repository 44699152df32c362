//! Workers paused by a signal or a debugger (`SIGSTOP`; seen by the sampler, on Linux): they
//! serve nothing, so the pool does not count them as available until they run again.

use std::collections::HashSet;

use crate::logging::LogEvent;

use super::Supervisor;

impl Supervisor {
    /// Tells the pool which workers were paused or resumed since the last round
    /// (`was_paused`): a paused worker is not available, so it replaces no older one.
    pub(super) fn pauses_seen(&mut self, was_paused: &HashSet<u32>) {
        let now = std::time::Instant::now();
        let paused = &self.recycling.paused;
        let changed: Vec<(u32, bool)> = (paused.difference(was_paused).map(|&p| (p, true)))
            .chain(was_paused.difference(paused).map(|&p| (p, false)))
            .collect();
        for (pid, paused) in changed {
            if self.pool.worker(pid).is_none() {
                continue;
            }
            self.pool.set_paused(pid, paused, now);
            match paused {
                true => tracing::warn!(
                    event = LogEvent::WorkerPaused.as_str(),
                    pid,
                    "worker {pid} is paused (stopped by a signal or a debugger): it serves \
                     nothing, and replaces no older worker until it runs again; kill -CONT \
                     {pid} resumes it"
                ),
                false => tracing::info!(
                    event = LogEvent::WorkerResumed.as_str(),
                    pid,
                    "worker {pid} runs again"
                ),
            }
        }
    }
}
