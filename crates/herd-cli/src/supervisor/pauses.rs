//! Workers paused by a signal or a debugger (`SIGSTOP`; seen by the sampler, on Linux): they
//! serve nothing, so the pool does not count them as available until they run again.

use crate::logging::LogEvent;

use super::Supervisor;

impl Supervisor {
    /// Tells the pool which of its workers a round of samples found paused or running again
    /// (`stopped`: each sampled pid, and whether it was stopped): a paused worker does not
    /// count as available, so it replaces no older one.
    pub(super) fn pauses_seen(&mut self, stopped: &[(u32, bool)]) {
        let now = std::time::Instant::now();
        for &(pid, paused) in stopped {
            if self.pool.worker(pid).is_none_or(|w| w.paused == paused) {
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
