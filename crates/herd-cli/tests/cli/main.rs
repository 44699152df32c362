//! Integration tests: the real `herd` binary with real workers, on loopback and Unix sockets in
//! temporary directories. Every wait has a deadline.
#![cfg(unix)]

mod access;
mod access_user;
mod args;
mod attached;
mod autoscale;
mod balance;
mod clients;
mod config;
mod control;
mod conventions;
mod errors;
mod faults;
mod fleet;
mod handoff;
mod health;
mod help;
mod interop;
mod interop_more;
mod interop_native;
mod interop_python;
mod metrics;
mod orphans;
mod output;
mod privileges;
mod recycle;
mod reexec;
mod reexec_check;
mod reexec_state;
mod relisten;
mod resources;
mod run;
mod seeing;
mod settings;
mod shm;
mod sockets;
mod stop;
mod systemd;
mod systemd_reload;
mod takeover;
mod takeover_files;
mod takeover_stuck;
mod top;
mod util;
mod worker_output;
