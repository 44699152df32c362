//! The control plane: a Unix socket speaking newline-delimited JSON, through which `herd
//! status`, `scale`, `upgrade`, `stop` and `signal` talk to a running herd.

pub mod path;
pub mod protocol;
pub mod server;
