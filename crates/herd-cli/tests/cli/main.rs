//! Integration tests: the real `herd` binary with real workers, on loopback and Unix sockets in
//! temporary directories. Every wait has a deadline.
#![cfg(unix)]

mod access;
mod access_user;
mod args;
mod attached;
mod autoscale;
mod backlog;
mod balance;
mod clients;
mod config;
#[cfg(target_os = "linux")]
mod config_hung;
mod config_refusals;
mod config_reload;
mod control;
mod control_crowds;
mod control_dir;
mod control_spare;
mod conventions;
mod errors;
mod faults;
mod fdstore;
mod fdstore_replaced;
mod fleet;
mod fork_server;
mod fork_server_hostile;
mod fork_server_replies;
mod handoff;
mod health;
mod help;
mod interop;
mod interop_gunicorn;
mod interop_herd_gunicorn;
mod interop_more;
mod interop_native;
mod interop_python;
mod logs_faults;
mod metrics;
#[cfg(target_os = "linux")]
mod notify_fds;
mod orphans;
mod output;
mod pause;
mod pid1;
mod privileges;
mod rebind;
mod recycle;
mod reexec;
mod reexec_check;
mod reexec_state;

mod relisten;
mod resources;
mod run;
mod scale;
mod seeing;
mod settings;
mod shm;
mod sockets;
mod stop;
mod systemd;
mod systemd_hostile;
mod systemd_reload;
mod takeover;
mod takeover_abort;
mod takeover_files;
mod takeover_stuck;
mod top;
mod user_rebind;
mod util;
mod warm_up;
mod warm_up_own;
mod warm_up_sites;
mod warm_up_trickle;
mod worker_output;
