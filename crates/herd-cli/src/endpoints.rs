//! `herd run`'s HTTP endpoints, the same on every platform: `--metrics` and `--health` bound
//! (or handed over by a re-exec), and `--ready-min` checked against the pool.

use std::net::TcpListener;

use crate::cli::{RunArgs, Workers};
use crate::exit::Failure;
use crate::spec::{self, BindSpec};
use crate::supervisor::Supervisor;

/// `--ready-min`, checked: at most the pool's maximum (`--workers N`, or MAX of MIN..MAX, or
/// `default_workers` without it); 1 unless given (0 with a pool of 0).
pub fn ready_min(args: &RunArgs, default_workers: usize) -> Result<usize, Failure> {
    let max = match args.workers {
        Some(Workers::Fixed(n)) => n,
        Some(Workers::Auto(_, max)) => max,
        None => default_workers,
    };
    let Some(given) = args.ready_min else {
        return Ok(max.min(1));
    };
    let given = given as usize;
    if given > max {
        return Err(Failure::Usage(format!(
            "--ready-min {given}: the pool has at most {max} workers, so /readyz could never \
             answer 200; give at most {max}, or more --workers"
        )));
    }
    Ok(given)
}

/// Serves `--metrics` and `--health` (bound now unless a re-exec handed them over: `metrics`,
/// `health`) and sets `--ready-min` (see [`ready_min`]) and `--drain-delay`.
pub fn serve(
    args: &RunArgs,
    supervisor: &mut Supervisor,
    default_workers: usize,
    (metrics, health): (Option<TcpListener>, Option<TcpListener>),
) -> Result<(), Failure> {
    let ready_min = ready_min(args, default_workers)?;
    let metrics = match (metrics, &args.metrics) {
        (Some(listener), _) => Some(listener),
        (None, Some(spec)) => Some(bind(spec, "--metrics", "metrics")?),
        (None, None) => None,
    };
    let health = match (health, &args.health) {
        (Some(listener), _) => Some(listener),
        (None, Some(spec)) => Some(bind(spec, "--health", "health")?),
        (None, None) => None,
    };
    if let Some(listener) = metrics {
        supervisor.set_metrics(listener);
    }
    if let Some(listener) = health {
        supervisor.set_health(listener);
    }
    supervisor.set_readiness(ready_min, args.drain_delay);
    Ok(())
}

/// Binds `spec` for `option`, to serve `what`; where it serves is logged once it does
/// ([`http::start`](crate::supervisor::http::start)).
fn bind(spec: &BindSpec, option: &str, what: &str) -> Result<TcpListener, Failure> {
    spec::bind_tcp(spec).map_err(|e| {
        Failure::Runtime(anyhow::anyhow!(
            "cannot serve {what} on {} ({option}): {e:#}; choose another address",
            spec.text
        ))
    })
}
