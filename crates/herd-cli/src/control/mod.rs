//! The control plane: a Unix socket speaking newline-delimited JSON, through which `herd
//! status`, `scale`, `upgrade`, `stop` and `signal` talk to a running herd: the messages
//! ([`protocol`], [`results`], [`reply`]), which every platform builds, and on Unix the server
//! and the one client.

// The messages: platform-neutral, built and tested on every platform.
pub mod answer;
mod named_twice;
pub mod protocol;
pub mod reply;
pub mod results;

// The Unix socket's client and server.
#[cfg(unix)]
pub mod client;
#[cfg(unix)]
pub mod path;
#[cfg(unix)]
pub mod server;
#[cfg(unix)]
mod wait;

#[cfg(test)]
mod agreement_tests;
