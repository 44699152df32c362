//! What the supervisor counts for `--metrics`, each count on its metric and label.

use crate::supervisor::metrics;
use herd_core::RecycleCause;

/// Something counted for `--metrics`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Count {
    /// A worker exited, and why.
    Exit(ExitCause),
    /// A worker is restarted after an exit herd did not ask for.
    Restart,
    /// A rolling upgrade ended, well or not.
    Upgrade { ok: bool },
    /// The autoscaler decided to scale, up or down.
    Autoscale { up: bool },
    /// Shared sockets a worker shut down were made to listen again: how many.
    SocketsRestored(u64),
    /// A worker is recycled, for this cause.
    Recycle(RecycleCause),
}

impl Count {
    /// Adds this to its counter, with its label.
    pub(super) fn add_to(self, counters: &metrics::Counters) {
        match self {
            Count::Exit(cause) => {
                let cause = match cause {
                    ExitCause::Exit => "exit",
                    ExitCause::Signal => "signal",
                    ExitCause::Stopped => "stopped",
                };
                metrics::bump(&counters.exits, cause);
            }
            Count::Restart => {
                counters.restarts.inc();
            }
            Count::Upgrade { ok } => {
                metrics::bump(&counters.upgrades, if ok { "ok" } else { "failed" })
            }
            Count::Autoscale { up } => {
                metrics::bump(&counters.autoscale, if up { "up" } else { "down" })
            }
            Count::SocketsRestored(n) => {
                counters.sockets_restored.inc_by(n);
            }
            Count::Recycle(cause) => metrics::bump(&counters.recycles, cause.as_str()),
        }
    }
}

/// Why a worker exited, as `herd_worker_exits_total` labels it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitCause {
    /// On its own, with an exit code.
    Exit,
    /// Killed by a signal herd did not send.
    Signal,
    /// herd stopped it.
    Stopped,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_count_lands_on_its_metric_and_label() {
        let counters = metrics::Counters::default();
        for count in [
            Count::Exit(ExitCause::Exit),
            Count::Exit(ExitCause::Signal),
            Count::Exit(ExitCause::Signal),
            Count::Exit(ExitCause::Stopped),
            Count::Restart,
            Count::Upgrade { ok: true },
            Count::Upgrade { ok: false },
            Count::Upgrade { ok: false },
            Count::Autoscale { up: true },
            Count::Autoscale { up: false },
            Count::SocketsRestored(3),
            Count::Recycle(RecycleCause::Memory),
            Count::Recycle(RecycleCause::Memory),
            Count::Recycle(RecycleCause::Lifetime),
        ] {
            count.add_to(&counters);
        }
        let text = metrics::render(&counters, &metrics::Snapshot::default()).unwrap();
        for line in [
            "herd_worker_exits_total{cause=\"exit\"} 1",
            "herd_worker_exits_total{cause=\"signal\"} 2",
            "herd_worker_exits_total{cause=\"stopped\"} 1",
            "herd_worker_restarts_total 1",
            "herd_upgrades_total{result=\"ok\"} 1",
            "herd_upgrades_total{result=\"failed\"} 2",
            "herd_autoscale_decisions_total{direction=\"up\"} 1",
            "herd_autoscale_decisions_total{direction=\"down\"} 1",
            "herd_sockets_restored_total 3",
            "herd_worker_recycles_total{reason=\"memory\"} 2",
            "herd_worker_recycles_total{reason=\"lifetime\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line:?} missing from:\n{text}"
            );
        }
    }
}
