//! The `herd` binary's library: everything but `main`. Public so that the fuzz targets and
//! the binary share it; not a stable API.
//!
//! Each module owns one concept:
//!
//! - [`cli`]: the command line;
//! - [`spec`]: socket specs (`--bind`) and binding;
//! - [`command`]: the worker command, its templates and its environment;
//! - [`supervisor`]: the worker pool state machine and the async driver around it;
//! - [`control`]: the control socket's protocol, server and path handling;
//! - [`ctl`]: the client commands (`status`, `scale`, `upgrade`, `stop`, `signal`);
//! - [`exit`]: one-line errors and exit codes;
//! - [`fdlimit`]: herd's own open-file limit and its endpoints' connection caps;
//! - [`logging`]: herd's own log, never blocking on stderr;
//! - [`text`]: escaping text from workers before it reaches a terminal.

#![allow(missing_docs)]
// Every unsafe call lives in herd-sys, behind a safe API.
#![forbid(unsafe_code)]
// The Unix supervisor; on Windows the binary is src/windows.rs alone.
#![cfg(unix)]

pub mod cli;
pub mod command;
pub mod control;
pub mod ctl;
pub mod exit;
pub mod fdlimit;
pub mod logging;
pub mod run;
pub mod spec;
pub mod supervisor;
pub mod text;
