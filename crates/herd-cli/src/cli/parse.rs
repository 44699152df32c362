//! The options' value parsers: numbers, durations, signals, users, limits, each refusing what
//! no worker could run with, with a message that says what to write instead.

use std::ffi::OsString;
use std::time::Duration;

use herd_sys::process::Signal;

use super::{ReadyMode, Rlimit, ScaleTarget, Workers, MAX_DURATION, MAX_WORKERS};
use crate::spec::BindSpec;

fn parse_count(text: &str, least: usize) -> Result<usize, String> {
    if text.starts_with('-') {
        return Err(format!(
            "'{text}' is not a number of workers: it must be positive (at least {least})"
        ));
    }
    let n: usize = match text.parse() {
        Ok(n) => n,
        Err(_) if all_digits(text) => {
            return Err(format!(
                "'{text}' is too large: at most {MAX_WORKERS} workers"
            ))
        }
        Err(_) => return Err(format!("'{text}' is not a number of workers")),
    };
    match n {
        n if n < least => Err(format!("a herd needs at least {least} worker")),
        n if n > MAX_WORKERS => Err(format!(
            "'{text}' is too large: at most {MAX_WORKERS} workers"
        )),
        n => Ok(n),
    }
}

pub(super) fn parse_workers(text: &str) -> Result<Workers, String> {
    match text.split_once("..") {
        None => parse_count(text, 1).map(Workers::Fixed),
        Some((min, max)) => {
            let (min, max) = (parse_count(min, 1)?, parse_count(max, 1)?);
            if min > max {
                return Err(format!("{min}..{max}: the minimum is above the maximum"));
            }
            Ok(Workers::Auto(min, max))
        }
    }
}

/// Parses `30s`, `1m30s`, `500ms`, or a plain number of seconds, up to [`MAX_DURATION`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    if text.starts_with('-') {
        return Err(format!(
            "'{text}' is not a duration: it cannot be negative; write e.g. 30s, 1m30s or 500ms"
        ));
    }
    let too_long = || {
        format!(
            "'{text}' is too long: durations are at most {} days",
            MAX_DURATION.as_secs() / 86400
        )
    };
    let duration = match text.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs.min(MAX_DURATION.as_secs() + 1)),
        Err(_) if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => {
            return Err(too_long())
        }
        Err(_) => humantime::parse_duration(text).map_err(|e| match e {
            humantime::DurationError::NumberOverflow => too_long(),
            e => format!("'{text}' is not a duration ({e}); write e.g. 30s, 1m30s or 500ms"),
        })?,
    };
    if duration > MAX_DURATION {
        return Err(too_long());
    }
    Ok(duration)
}

/// [`parse_duration`], for a period that must not be zero (a timeout, a watchdog interval).
pub(super) fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        d if d.is_zero() => Err(format!(
            "'{text}' is zero: the duration must be positive (e.g. 30s or 500ms)"
        )),
        d => Ok(d),
    }
}

/// A whole number of at least `least`, for `option`; a negative one is named as such (clap
/// would otherwise take `-1` for a flag), and so is one too large for the option's type.
pub(super) fn parse_number<T>(text: &str, least: T, option: &str) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy + Bounded,
{
    match text.parse::<T>() {
        Ok(n) if n >= least => Ok(n),
        _ if text.starts_with('-') => Err(format!(
            "{option} '{text}': the value must be positive (at least {least})"
        )),
        Ok(_) => Err(format!(
            "{option} '{text}': the value must be at least {least}"
        )),
        Err(_) if all_digits(text) => Err(format!(
            "{option} '{text}' is too large: the maximum is {}",
            T::MAX
        )),
        Err(_) => Err(format!(
            "{option} '{text}' is not a whole number (at least {least})"
        )),
    }
}

/// The largest value of a number type, for "too large" messages.
pub(super) trait Bounded {
    const MAX: Self;
}

impl Bounded for u32 {
    const MAX: u32 = u32::MAX;
}

impl Bounded for u64 {
    const MAX: u64 = u64::MAX;
}

/// Whether `text` is a run of decimal digits (so a failed parse means it is too large).
fn all_digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

pub(super) fn parse_slot(text: &str) -> Result<usize, String> {
    if text.starts_with('-') {
        return Err(format!(
            "'{text}' is not a slot: slots are numbered from 0 (see 'herd status')"
        ));
    }
    match text.parse::<usize>() {
        Ok(slot) if slot < MAX_WORKERS => Ok(slot),
        Ok(_) => Err(slot_too_large(text)),
        Err(_) if all_digits(text) => Err(slot_too_large(text)),
        Err(_) => Err(format!(
            "'{text}' is not a slot number (0, 1, ...; see 'herd status')"
        )),
    }
}

fn slot_too_large(text: &str) -> String {
    format!(
        "slot {text} is too large: a herd has at most {MAX_WORKERS} workers, slots 0 to {}",
        MAX_WORKERS - 1
    )
}

pub(super) fn parse_user(text: &str) -> Result<String, String> {
    parse_id(text, "user", "uid")
}

pub(super) fn parse_group(text: &str) -> Result<String, String> {
    parse_id(text, "group", "gid")
}

/// A user or group (`what`) by name or number (`number`: uid or gid): not empty, not negative.
fn parse_id(text: &str, what: &str, number: &str) -> Result<String, String> {
    if text.starts_with('-') {
        return Err(format!(
            "'{text}' is not a {what}: give a {what} name or a {number}, which must be positive \
             (0 or more)"
        ));
    }
    if text.is_empty() {
        return Err(format!(
            "the {what} is empty: give a {what} name or a {number}"
        ));
    }
    Ok(text.to_string())
}

pub(super) fn parse_umask(text: &str) -> Result<u32, String> {
    if text.starts_with('-') {
        return Err(format!(
            "'{text}' is not a umask: it must be positive, an octal number from 0 to 777 (e.g. 027)"
        ));
    }
    u32::from_str_radix(text, 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("'{text}' is not an octal umask from 0 to 777 (e.g. 027)"))
}

pub(super) fn parse_rlimit(text: &str) -> Result<Rlimit, String> {
    let (name, limits) = text
        .split_once('=')
        .ok_or_else(|| format!("'{text}' is not NAME=SOFT[:HARD] (e.g. nofile=65536)"))?;
    let resource = herd_sys::spawn::resource_by_name(name).ok_or_else(|| {
        format!(
            "unknown resource '{name}'; known: nofile, nproc, core, as, data, fsize, stack, cpu, \
             memlock"
        )
    })?;
    let number = |n: &str| -> Result<u64, String> {
        match n {
            "unlimited" | "infinity" => Ok(libc::RLIM_INFINITY),
            n => n.parse().map_err(|_| match all_digits(n) {
                true => format!(
                    "'{n}' is too large: the maximum is {}; write 'unlimited' for no limit",
                    u64::MAX - 1
                ),
                false => format!("'{n}' is not a number (or 'unlimited')"),
            }),
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
    if value == libc::RLIM_INFINITY {
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

/// `--metrics`: a TCP address in any form `--bind` takes, without a name or options.
pub(super) fn parse_metrics(text: &str) -> Result<BindSpec, String> {
    let bad = || {
        format!(
            "'{text}' is not a TCP address for --metrics; write HOST:PORT, :PORT or \
             [V6ADDR]:PORT (e.g. 127.0.0.1:9100)"
        )
    };
    if text.contains([',', '=']) {
        return Err(bad());
    }
    let spec: BindSpec = text
        .parse()
        .map_err(|e| format!("--metrics '{text}': {e}"))?;
    match spec.address {
        crate::spec::Address::Tcp(_) => Ok(spec),
        _ => Err(bad()),
    }
}

pub(super) fn parse_env(text: &str) -> Result<(OsString, OsString), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.into(), value.into())),
        _ => Err(format!("'{text}' is not KEY=VALUE")),
    }
}

pub(super) fn parse_ready(text: &str) -> Result<ReadyMode, String> {
    match text.split_once('=') {
        None if text == "notify" => Ok(ReadyMode::Notify),
        Some(("delay", d)) => parse_duration(d).map(ReadyMode::Delay),
        _ => Err(format!(
            "'{text}' is not a readiness mode; write 'notify' or 'delay=DURATION' (e.g. delay=1s)"
        )),
    }
}

pub(super) fn parse_scale(text: &str) -> Result<ScaleTarget, String> {
    if text.contains("..") {
        return match parse_workers(text)? {
            Workers::Auto(min, max) => Ok(ScaleTarget::Bounds(min, max)),
            Workers::Fixed(n) => Ok(ScaleTarget::Set(n)),
        };
    }
    let bad = || format!("'{text}' is not a number of workers; write N, +N or -N");
    let (sign, digits) = match text.strip_prefix('+') {
        Some(rest) => (1, rest),
        None => match text.strip_prefix('-') {
            Some(rest) => (-1, rest),
            None => (0, text),
        },
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    // Any change beyond MAX_WORKERS is out of range whatever the current count: say so
    // rather than overflow.
    let n = digits
        .parse::<usize>()
        .ok()
        .filter(|n| *n <= MAX_WORKERS)
        .ok_or_else(|| format!("'{text}': at most {MAX_WORKERS} workers"))?;
    Ok(match sign {
        0 => ScaleTarget::Set(n),
        s => ScaleTarget::Delta(s * n as i64),
    })
}

pub(super) fn parse_signal(text: &str) -> Result<Signal, String> {
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
pub(super) fn parse_stop_signal(text: &str) -> Result<Signal, String> {
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

#[cfg(test)]
mod tests;
