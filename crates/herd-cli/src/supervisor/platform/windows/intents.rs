//! The events that carry an intent on Windows, as today's Windows `herd run` understands them:
//! Ctrl-C (a second one, while stopping, stops at once) and a `stop` line on standard input.
//! Windows has no other signal; the other intents come as control commands. A worker's exit
//! is one too, as SIGCHLD is on Unix: collect it.

use std::io::BufRead;

use tokio::signal::windows::CtrlC;
use tokio::sync::mpsc;

use crate::supervisor::signals::Intent;

/// herd's listeners for Ctrl-C and for standard input, installed at once.
pub struct Intents {
    ctrl_c: CtrlC,
    /// Intents read from standard input by a thread of their own (reading a console blocks).
    stdin: mpsc::UnboundedReceiver<Intent>,
}

impl Intents {
    /// Installs the Ctrl-C handler and starts reading standard input. Call inside the runtime.
    pub fn install() -> std::io::Result<Intents> {
        let ctrl_c = tokio::signal::windows::ctrl_c()?;
        let (sender, stdin) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("herd-stdin".to_string())
            .spawn(move || {
                for line in std::io::stdin().lock().lines() {
                    let Ok(line) = line else { return };
                    if let Some(intent) = line_intent(&line) {
                        if sender.send(intent).is_err() {
                            return;
                        }
                    }
                }
            })?;
        Ok(Intents { ctrl_c, stdin })
    }

    /// The intent of the next event. End of file on standard input is not one (a service
    /// wrapper may give herd none); Ctrl-C keeps being listened for.
    pub async fn recv(&mut self) -> Intent {
        tokio::select! {
            _ = super::children::exited() => Intent::Reap,
            _ = self.ctrl_c.recv() => Intent::Interrupt,
            Some(intent) = self.stdin.recv() => intent,
        }
    }
}

/// The intent one line of standard input carries, if any.
pub fn line_intent(line: &str) -> Option<Intent> {
    (line.trim() == "stop").then_some(Intent::Stop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_line_stops_and_nothing_else_does() {
        assert_eq!(line_intent("stop"), Some(Intent::Stop));
        assert_eq!(line_intent("  stop\r"), Some(Intent::Stop));
        assert_eq!(line_intent("stop now"), None);
        assert_eq!(line_intent(""), None);
    }

    #[test]
    fn the_listeners_install_inside_a_runtime() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async { Intents::install().unwrap() });
    }
}
