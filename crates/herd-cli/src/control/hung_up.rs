//! Requests from clients that hung up before their answer was made. A client may send a
//! command and close at once (a flood of them did, and kept herd busy making `status` answers
//! nobody could read, while a real `herd status` waited its turn behind them). So before an
//! answer that only tells something is made, the server looks whether the client is still
//! there; a command that changes something is carried out all the same, as its client asked.
//! A client that only closed its writing side (`shutdown(SHUT_WR)`) has not hung up: it reads
//! its answer. The server reads on after a skipped answer (or one it could not write because
//! the client hung up): a `stop` sent after a `status` by a client gone since is carried out.
//! The Windows pipe learns that its client left when an answer cannot be written, and then
//! reads on by the same rule.

use super::protocol::Command;

/// Whether to carry out `command` for a client that has `hung_up` (or is still there).
pub fn carry_out(command: &Command, hung_up: bool) -> bool {
    !hung_up || changes_something(command)
}

/// Whether `command` does more than answer: scaling, upgrading, stopping, signalling and
/// re-executing take effect whether or not their client reads the answer.
fn changes_something(command: &Command) -> bool {
    match command {
        // `sockets` with `attach` registers its client, which can no longer take the sockets.
        Command::Status | Command::Sockets { .. } | Command::Logs { .. } => false,
        Command::Scale { .. }
        | Command::Upgrade { .. }
        | Command::Stop { .. }
        | Command::Reexec
        | Command::Signal { .. } => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::protocol::parse_request;

    fn command(line: &str) -> Command {
        parse_request(line.as_bytes()).unwrap().command
    }

    #[test]
    fn answers_only_are_skipped_for_a_client_that_hung_up() {
        for only_answers in [
            r#"{"version":1,"command":"status"}"#,
            r#"{"version":1,"command":"sockets","attach":true}"#,
            r#"{"version":1,"command":"logs","lines":10}"#,
        ] {
            let command = command(only_answers);
            assert!(!carry_out(&command, true), "{command:?}");
            assert!(carry_out(&command, false), "{command:?}");
        }
    }

    #[test]
    fn what_changes_something_is_carried_out_all_the_same() {
        for changes in [
            r#"{"version":1,"command":"scale","workers":2}"#,
            r#"{"version":1,"command":"upgrade"}"#,
            r#"{"version":1,"command":"stop"}"#,
            r#"{"version":1,"command":"reexec"}"#,
            r#"{"version":1,"command":"signal","signal":"HUP"}"#,
        ] {
            let command = command(changes);
            assert!(carry_out(&command, true), "{command:?}");
            assert!(carry_out(&command, false), "{command:?}");
        }
    }
}
