//! The control plane: a Unix socket (on Windows a named pipe) speaking newline-delimited JSON,
//! through which `herd status`, `scale`, `upgrade`, `stop` and `signal` talk to a running herd
//! (with the same client API, [`client`], on both):
//! the messages ([`protocol`], [`results`], [`reply`]) and how a connection is read
//! ([`lines`]), which every platform builds, and each platform's transport.

// The messages and the pipe's name: platform-neutral, built and tested on every platform.
pub mod answer;
pub mod budget;
pub mod held;
pub mod lines;
pub mod logs;
pub mod name;
mod named_twice;
pub(crate) mod objects;
pub mod pipe_name;
pub mod protocol;
pub mod reply;
pub mod request;
pub mod results;
pub mod retry;
mod room;
mod waiting;

// The Windows named pipe's client and server.
#[cfg(windows)]
#[path = "client_windows.rs"]
pub mod client;
#[cfg(windows)]
pub mod pipe_server;
#[cfg(all(windows, test))]
mod pipe_tests;

mod hung_up;

// The Unix socket's client and server.
#[cfg(unix)]
mod accept;
#[cfg(unix)]
pub mod client;
#[cfg(unix)]
pub mod path;
#[cfg(unix)]
pub mod server;
#[cfg(unix)]
mod spare;
#[cfg(unix)]
mod turn_away;
#[cfg(unix)]
mod wait;

#[cfg(test)]
mod agreement_tests;
