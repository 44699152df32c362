//! `herd run`: check the arguments, bind every socket, then supervise the workers.

use std::num::NonZeroUsize;

use anyhow::Context;

use crate::cli::RunArgs;
use crate::command::WorkerCommand;
use crate::exit::Failure;
use crate::spec::{self, Listener};
use crate::supervisor::backoff::BackoffPolicy;
use crate::supervisor::pool::PoolConfig;
use crate::supervisor::Supervisor;

/// Runs `herd run` to completion.
pub fn run(args: RunArgs) -> Result<(), Failure> {
    check_names(&args)?;
    let workers = args.workers.unwrap_or_else(default_workers);

    // Everything that can be checked without touching the system has been; bind now. Any error
    // from here on drops the listeners, which closes them and removes their socket files.
    let listeners = spec::bind_all(&args.binds)?;
    let names: Vec<String> = listeners.iter().map(|l| l.name.clone()).collect();
    let command = WorkerCommand::new(&args.command, &names).map_err(Failure::Usage)?;
    command.program(0).map_err(Failure::Usage)?;
    log_listeners(&listeners);

    let config = PoolConfig {
        workers,
        grace: args.grace,
        stop_signal: args.stop_signal,
        backoff: BackoffPolicy::default(),
    };
    tracing::info!(
        workers,
        grace = %humantime::format_duration(args.grace),
        "herd {} starting (pid {})",
        env!("CARGO_PKG_VERSION"),
        std::process::id()
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the event loop")?;
    let supervisor = Supervisor::new(listeners, command, config)?;
    runtime.block_on(supervisor.run())?;
    Ok(())
}

/// Explicit socket names must be unique: `{fd:NAME}` and `take_*("NAME")` must mean one socket.
fn check_names(args: &RunArgs) -> Result<(), Failure> {
    let mut seen: Vec<&str> = Vec::new();
    for name in args.binds.iter().filter_map(|b| b.name.as_deref()) {
        if seen.contains(&name) {
            return Err(Failure::Usage(format!(
                "socket name '{name}' is given to more than one --bind; names must be unique"
            )));
        }
        seen.push(name);
    }
    Ok(())
}

fn log_listeners(listeners: &[Listener]) {
    for (i, l) in listeners.iter().enumerate() {
        tracing::info!(
            name = %l.name,
            address = %l.address,
            kind = %l.kind,
            fd = herd::LISTEN_FDS_START + i as i32,
            "listening on {}",
            l.address
        );
    }
}

/// The number of CPUs herd may run on (affinity and cgroup quota included).
fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, NonZeroUsize::get)
}
