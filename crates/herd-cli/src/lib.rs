//! The `herd` binary's library: everything but `main`. Public so that the fuzz targets and
//! the binary share it; not a stable API.
//!
//! Each module owns one concept:
//!
//! - [`cli`]: the command line (the same on every platform) and its config file;
//! - [`check`]: `herd check`, a config file checked without starting anything;
//! - [`spec`]: socket specs (`--bind`) and binding;
//! - [`command`]: the worker command, its templates and its environment;
//! - [`supervisor`]: the worker pool state machine and the async driver around it;
//! - [`control`]: the control socket's protocol, server and path handling;
//! - [`ctl`]: the client commands (`status`, `scale`, `upgrade`, `stop`, `signal`);
//! - [`exit`]: one-line errors and exit codes;
//! - [`fdlimit`]: herd's own open-file (Windows: handle) limit and its endpoints' connection
//!   caps;
//! - [`logging`]: herd's own log, never blocking on stderr;
//! - [`output`]: the workers' output, read through pipes and passed on line by line;
//! - [`text`]: escaping text from workers before it reaches a terminal;
//! - [`worker_env`]: the variables herd adds to its workers' environment.
//!
//! On Windows the platform-neutral modules are built: `cli`, `exit`, `fdlimit`, `logging`, the parsing
//! half of `spec`, `text`, the control protocol's messages, the control pipe's client and
//! server, `ctl` and the supervisor's cores (see `supervisor::platform`); `herd run` there is
//! the binary's own `windows` module. The control socket's server, `command` and `run` are
//! `cfg(unix)`.

#![allow(missing_docs)]
// Every unsafe call lives in herd-sys, behind a safe API.
#![forbid(unsafe_code)]

pub mod check;
pub mod cli;
#[cfg(unix)]
pub mod command;
#[cfg(windows)]
#[path = "command/windows.rs"]
pub mod command;
pub mod control;
pub mod ctl;
pub mod endpoints;
pub mod exit;
pub mod fdlimit;
#[cfg(unix)]
pub mod fdstore;
pub mod logging;
// Windows' takeover, control pipe and attached runs use it; built and tested everywhere.
#[cfg_attr(unix, allow(dead_code))]
mod off_loop;
pub mod output;
#[cfg(unix)]
pub mod replaceable;
#[cfg(unix)]
pub mod run;
pub mod spec;
// On Windows, what only a re-exec (its saved state) and `--metrics` use is not called yet.
#[cfg_attr(not(unix), allow(dead_code, unused_imports))]
pub mod supervisor;
pub mod template;
pub mod text;
pub mod worker_env;
