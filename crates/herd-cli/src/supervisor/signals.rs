//! What each signal asks of herd: the one table where a signal's meaning is written. The loop
//! listens to exactly these signals, a re-exec holds exactly these back across `execve`
//! ([`held`]), and the README's signal table says the same.
//!
//! | signal  | intent                                                            |
//! |---------|-------------------------------------------------------------------|
//! | SIGTERM | stop gracefully                                                   |
//! | SIGINT  | stop gracefully; a second one, while stopping, stops at once      |
//! | SIGQUIT | stop at once: every worker is killed                              |
//! | SIGHUP  | rolling upgrade to a new generation                               |
//! | SIGUSR2 | re-execute herd's binary from disk, keeping every socket          |
//! | SIGTTIN | one more worker                                                   |
//! | SIGTTOU | one worker fewer (never below one)                                |
//! | SIGCHLD | a child exited: collect it                                        |

use std::future::poll_fn;
use std::task::Poll;

use herd_sys::process::Signal;
use tokio::signal::unix::{signal, SignalKind};

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
}

/// Every signal herd handles, with its intent.
pub const TABLE: [(Signal, Intent); 8] = [
    (Signal::TERM, Intent::Stop),
    (Signal::INT, Intent::Interrupt),
    (Signal::QUIT, Intent::StopNow),
    (Signal::HUP, Intent::Upgrade),
    (Signal::USR2, Intent::Reexec),
    (Signal::TTIN, Intent::AddWorker),
    (Signal::TTOU, Intent::RemoveWorker),
    (Signal::CHLD, Intent::Reap),
];

/// The signals a re-exec holds back across `execve`: all of [`TABLE`], so that none is lost or
/// takes its default action (which for most of them kills herd) before the new image listens.
pub fn held() -> [Signal; TABLE.len()] {
    TABLE.map(|(signal, _)| signal)
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
        }
    }

    /// The signal's name (`SIGHUP`), which the log gives as the trigger.
    pub fn signal_name(self) -> String {
        TABLE
            .iter()
            .find(|(_, intent)| *intent == self)
            .map_or_else(|| "a signal".to_string(), |(signal, _)| signal.to_string())
    }
}

/// herd's handlers for every signal in [`TABLE`], installed at once.
pub struct Signals {
    streams: Vec<(Intent, tokio::signal::unix::Signal)>,
    /// Where the next poll starts, so that a signal that keeps arriving cannot starve the others.
    next: usize,
}

impl Signals {
    /// Installs a handler for every signal in [`TABLE`]. Call before the first fork, so that no
    /// child's exit and no signal is missed.
    pub fn install() -> std::io::Result<Signals> {
        let streams = TABLE
            .iter()
            .map(|&(sig, intent)| Ok((intent, signal(SignalKind::from_raw(sig.number()))?)))
            .collect::<std::io::Result<_>>()?;
        Ok(Signals { streams, next: 0 })
    }

    /// The intent of the next signal that arrives.
    pub async fn recv(&mut self) -> Intent {
        poll_fn(|cx| {
            let count = self.streams.len();
            for i in 0..count {
                let index = (self.next + i) % count;
                let (intent, stream) = &mut self.streams[index];
                if stream.poll_recv(cx).is_ready() {
                    self.next = (index + 1) % count;
                    return Poll::Ready(*intent);
                }
            }
            Poll::Pending
        })
        .await
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

    #[test]
    fn every_handled_signal_is_held_across_a_reexec() {
        let held = held();
        for (signal, _) in TABLE {
            assert!(held.contains(&signal), "{signal} not held");
        }
        assert!(held.contains(&Signal::CHLD));
        assert_eq!(Intent::Reexec.signal_name(), "SIGUSR2");
    }

    #[test]
    fn each_signal_has_one_meaning() {
        for (i, (a, _)) in TABLE.iter().enumerate() {
            assert!(TABLE[i + 1..].iter().all(|(b, _)| b != a), "{a} twice");
        }
        for (sig, intent) in TABLE {
            assert_eq!(intent.signal_name(), sig.to_string());
        }
    }
}
