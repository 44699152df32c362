//! The values only Unix has: signals (by name, number or real-time offset) and `setrlimit`
//! resource limits.

pub use herd_sys::process::Signal;

use super::{all_digits, minus_zero};

/// A resource limit for workers. Two are equal, and look alike (`Debug`, which a reload
/// compares), when they set the same limits, whatever their text: `nofile=1000` and
/// `nofile=1000:1000` are one.
#[derive(Clone)]
pub struct Rlimit {
    /// The option's value as given, for messages (`nofile=65536`).
    pub text: String,
    /// The `setrlimit` resource.
    pub resource: i32,
    /// The soft limit.
    pub soft: u64,
    /// The hard limit.
    pub hard: u64,
}

impl PartialEq for Rlimit {
    fn eq(&self, other: &Rlimit) -> bool {
        (self.resource, self.soft, self.hard) == (other.resource, other.soft, other.hard)
    }
}

impl Eq for Rlimit {}

impl std::fmt::Debug for Rlimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rlimit")
            .field("resource", &self.resource)
            .field("soft", &self.soft)
            .field("hard", &self.hard)
            .finish()
    }
}

impl Rlimit {
    /// The resource's name (`nofile` of `nofile=65536`).
    pub fn name(&self) -> &str {
        self.text.split('=').next().unwrap_or_default()
    }

    /// The option's value as given (`nofile=65536`).
    pub fn given(&self) -> &str {
        &self.text
    }
}

pub(in crate::cli) fn parse_rlimit(text: &str) -> Result<Rlimit, String> {
    let (name, limits) = text
        .split_once('=')
        .ok_or_else(|| format!("'{text}' is not NAME=SOFT[:HARD] (e.g. nofile=65536)"))?;
    let resource = herd_sys::spawn::resource_by_name(name).ok_or_else(|| {
        format!(
            "unknown resource '{name}'; known: nofile, nproc, core, as, data, fsize, stack, cpu, \
             memlock"
        )
    })?;
    // The largest limit this system takes below "unlimited" (rlim_t is signed on the BSDs).
    let most = herd_sys::process::RLIM_INFINITY - 1;
    let too_large = |n: &str| {
        format!("'{n}' is too large: the maximum is {most}; write 'unlimited' for no limit")
    };
    let number = |n: &str| -> Result<u64, String> {
        match n {
            "unlimited" | "infinity" => Ok(herd_sys::process::RLIM_INFINITY),
            n => match minus_zero(n).parse::<u64>() {
                Ok(value) if value > most => Err(too_large(n)),
                Ok(value) => Ok(value),
                Err(_) if all_digits(n) => Err(too_large(n)),
                Err(_) => Err(format!("'{n}' is not a number (or 'unlimited')")),
            },
        }
    };
    let (soft, hard) = match limits.split_once(':') {
        Some((soft, hard)) => (number(soft)?, number(hard)?),
        None => (number(limits)?, number(limits)?),
    };
    if soft > hard {
        return Err(format!(
            "the soft limit {} is above the hard limit {}",
            show_rlimit(soft),
            show_rlimit(hard)
        ));
    }
    if resource == libc::RLIMIT_NOFILE as i32 && soft == 0 {
        return Err(
            "nofile=0 leaves a worker unable to open any file or accept any connection; \
             give at least 1 (e.g. nofile=65536)"
                .to_string(),
        );
    }
    if let Some(why) = unworkable_limit(name, soft) {
        return Err(format!("{text}: {why}"));
    }
    Ok(Rlimit {
        text: text.to_string(),
        resource,
        soft,
        hard,
    })
}

/// A resource limit as herd shows it: `unlimited` for `RLIM_INFINITY`, else the number.
pub fn show_rlimit(value: u64) -> String {
    if value == herd_sys::process::RLIM_INFINITY {
        "unlimited".to_string()
    } else {
        value.to_string()
    }
}

/// The smallest address space (`as`) and data segment (`data`) a worker may be given: below
/// 16 MiB not even a small dynamically linked program can map its C library and allocate what
/// it needs to start.
pub const MIN_MEMORY_LIMIT: u64 = 16 << 20;

/// The smallest stack (`stack`) a worker may be given: the kernel places the arguments and the
/// environment on it, and the C library's start-up and the program's first calls need more.
pub const MIN_STACK_LIMIT: u64 = 64 << 10;

/// Why a soft limit of `soft` on resource `name` would kill every worker, if it would.
fn unworkable_limit(name: &str, soft: u64) -> Option<String> {
    let floor = |least: u64, why: &str| {
        (soft < least).then(|| {
            format!(
                "every worker would die at start (SIGSEGV or SIGKILL): {why}; give at least \
                 {least} bytes ({} KiB), or 'unlimited'",
                least >> 10
            )
        })
    };
    match name {
        "cpu" if soft == 0 => Some(
            "a worker would get no CPU time at all and be killed (SIGXCPU, SIGKILL) as soon as \
             it runs; give seconds of CPU time (e.g. cpu=3600), or 'unlimited'"
                .to_string(),
        ),
        "as" => floor(
            MIN_MEMORY_LIMIT,
            "below 16 MiB of address space not even a small program can map its C library",
        ),
        "data" => floor(
            MIN_MEMORY_LIMIT,
            "below 16 MiB of data segment not even a small program can allocate what it needs \
             to start",
        ),
        "stack" => floor(
            MIN_STACK_LIMIT,
            "below 64 KiB of stack a program cannot hold its arguments and environment and \
             start",
        ),
        _ => None,
    }
}

pub(in crate::cli) fn parse_signal(text: &str) -> Result<Signal, String> {
    Signal::from_name(text).ok_or_else(|| signal_error(text))
}

/// Why `text` is not a signal a worker may be sent (shared with the control server).
pub fn signal_error(text: &str) -> String {
    match (text.parse::<libc::c_int>(), Signal::rt_min()) {
        (Ok(n), Some(min)) if Signal::is_reserved(n) => format!(
            "signal {n} is reserved by the C library for its threads (signals 32 to {}) and \
             would kill the workers; real-time signals start at {min} (RTMIN, RTMIN+1, ...)",
            min - 1
        ),
        _ => format!(
            "'{text}' is not a signal; write e.g. TERM, INT, QUIT, USR1, a number, or a \
             real-time signal as RTMIN+N or RTMAX-N"
        ),
    }
}

/// `--stop-signal`: any signal that can end a worker. Signals whose default action is to pause
/// the process (STOP, TSTP, TTIN, TTOU) or to do nothing (CHLD, CONT, URG, WINCH) would end
/// no worker that does not handle them, so every stop would wait out the grace period and end
/// in SIGKILL: they are refused.
pub(in crate::cli) fn parse_stop_signal(text: &str) -> Result<Signal, String> {
    let signal = parse_signal(text)?;
    let why = match signal.number() {
        libc::SIGSTOP => "SIGSTOP pauses it and cannot be caught",
        libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU => {
            "by default that signal pauses it instead of ending it"
        }
        libc::SIGCHLD | libc::SIGCONT | libc::SIGURG | libc::SIGWINCH => {
            "by default that signal is ignored"
        }
        _ => return Ok(signal),
    };
    Err(format!(
        "'{text}' cannot stop a worker: {why}; use TERM, INT, QUIT or a signal the worker \
         handles"
    ))
}
