//! The Unix signals and their intents: the one table where a signal's meaning is written. The
//! loop listens to exactly these signals, a re-exec holds exactly these back across `execve`
//! ([`held`]).

use std::future::poll_fn;
use std::task::Poll;

use herd_sys::process::Signal;
use tokio::signal::unix::{signal, SignalKind};

use crate::supervisor::signals::Intent;

/// Every signal herd handles, with its intent.
pub const TABLE: [(Signal, Intent); 9] = [
    (Signal::TERM, Intent::Stop),
    (Signal::INT, Intent::Interrupt),
    (Signal::QUIT, Intent::StopNow),
    (Signal::HUP, Intent::Upgrade),
    (Signal::USR2, Intent::Reexec),
    (Signal::TTIN, Intent::AddWorker),
    (Signal::TTOU, Intent::RemoveWorker),
    (Signal::CHLD, Intent::Reap),
    (Signal::USR1, Intent::Ignore),
];

/// The signals a re-exec holds back across `execve`: all of [`TABLE`], so that none is lost or
/// takes its default action (which for most of them kills herd) before the new image listens.
pub fn held() -> [Signal; TABLE.len()] {
    TABLE.map(|(signal, _)| signal)
}

/// The name of the signal that carries `intent` (`SIGHUP`).
pub fn signal_name(intent: Intent) -> String {
    TABLE
        .iter()
        .find(|(_, i)| *i == intent)
        .map_or_else(|| "a signal".to_string(), |(signal, _)| signal.to_string())
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
