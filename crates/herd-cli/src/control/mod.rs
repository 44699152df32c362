//! The control plane: a Unix socket speaking newline-delimited JSON, through which `herd
//! status`, `scale`, `upgrade`, `stop` and `signal` talk to a running herd: the messages
//! ([`protocol`], [`results`]), the server, and the one client.

pub mod client;
mod named_twice;
pub mod path;
pub mod protocol;
pub mod results;
pub mod server;
mod wait;

#[cfg(test)]
mod agreement_tests;
