//! What each signal asks of herd: the intents, platform-neutral, and what herd does for each.
//! Which system event carries which intent is the platform's table (on Unix,
//! `platform::unix::signals::TABLE`, the one place a signal's meaning is written; the README's
//! signal table says the same):
//!
//! | signal  | intent                                                             |
//! |---------|--------------------------------------------------------------------|
//! | SIGTERM | stop gracefully (after `--drain-delay`; a second one skips it)     |
//! | SIGINT  | stop gracefully; a second one (draining or stopping) stops at once |
//! | SIGQUIT | stop at once: every worker is killed                               |
//! | SIGHUP  | rolling upgrade to a new generation                                |
//! | SIGUSR2 | re-execute herd's binary from disk, keeping every socket           |
//! | SIGTTIN | one more worker                                                    |
//! | SIGTTOU | one worker fewer (never below one)                                 |
//! | SIGCHLD | a child exited: collect it                                         |
//! | SIGUSR1 | nothing: logged and ignored (by default it would end herd)         |

/// What a signal asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Intent {
    /// Stop gracefully.
    Stop,
    /// Stop gracefully, or at once when a stop is already under way (a second Ctrl-C).
    Interrupt,
    /// Stop at once.
    StopNow,
    /// Start a rolling upgrade.
    Upgrade,
    /// Re-execute herd's binary.
    Reexec,
    /// Add a worker.
    AddWorker,
    /// Remove a worker, keeping at least one.
    RemoveWorker,
    /// Collect exited children.
    Reap,
    /// Nothing: a signal other programs give a meaning (SIGUSR1, gunicorn's and nginx's
    /// "reopen your log files", which logrotate scripts send) that would end herd by default,
    /// and with it every worker. It is logged and ignored.
    Ignore,
}

/// What herd does for an intent, given whether it is stopping already.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Stop; `graceful` false kills every worker at once.
    Stop {
        /// Whether workers get the stop signal and the grace period.
        graceful: bool,
    },
    /// Start a rolling upgrade.
    Upgrade,
    /// Check the binary on disk and re-execute it.
    Reexec,
    /// Change the number of workers by this much, never below one.
    ScaleBy(i64),
    /// Collect exited children.
    Reap,
    /// Log that the signal means nothing to herd.
    Ignore,
}

impl Intent {
    /// The order this intent gives when herd `stopping` already or not.
    pub fn order(self, stopping: bool) -> Order {
        match self {
            Intent::Stop => Order::Stop { graceful: true },
            Intent::Interrupt => Order::Stop {
                graceful: !stopping,
            },
            Intent::StopNow => Order::Stop { graceful: false },
            Intent::Upgrade => Order::Upgrade,
            Intent::Reexec => Order::Reexec,
            Intent::AddWorker => Order::ScaleBy(1),
            Intent::RemoveWorker => Order::ScaleBy(-1),
            Intent::Reap => Order::Reap,
            Intent::Ignore => Order::Ignore,
        }
    }

    /// What the platform calls the event that carries this intent (`SIGHUP`), which the log
    /// gives as the trigger.
    pub fn signal_name(self) -> String {
        super::platform::signal_name(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_interrupt_stops_at_once() {
        assert_eq!(
            Intent::Interrupt.order(false),
            Order::Stop { graceful: true }
        );
        assert_eq!(
            Intent::Interrupt.order(true),
            Order::Stop { graceful: false }
        );
        // SIGTERM stays graceful: a second one is only logged.
        assert_eq!(Intent::Stop.order(true), Order::Stop { graceful: true });
        assert_eq!(
            Intent::StopNow.order(false),
            Order::Stop { graceful: false }
        );
    }
}
