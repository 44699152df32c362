//! The options' value parsers: numbers, durations, signals, users, limits, each refusing what
//! no worker could run with, with a message that says what to write instead. Signals and
//! resource limits are Unix's ([`unix`]); on Windows their options parse into stand-ins
//! ([`windows`]) and are refused after parsing, so the command line is the same on both.

use std::ffi::OsString;
use std::time::Duration;

use super::{ReadyMode, ScaleTarget, Workers, MAX_DURATION, MAX_WORKERS};
use crate::spec::BindSpec;

/// `text` read as a whole number written without a sign: `-0` (or `-00`) is 0, as `+1` is 1,
/// not a number below 0; any other text as it is. Every option that takes a number reads it
/// so: where 0 is too small, `-0` is refused as 0 is, not as a negative number.
pub(super) fn minus_zero(text: &str) -> &str {
    match text.strip_prefix('-') {
        Some(zeros) if !zeros.is_empty() && zeros.bytes().all(|b| b == b'0') => zeros,
        _ => text,
    }
}

fn parse_count(text: &str, least: usize) -> Result<usize, String> {
    let text = minus_zero(text);
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
    // `-0` and `-0s` are zero (as `+0` is), not a negative duration.
    if let Some(Ok(Duration::ZERO)) = text
        .strip_prefix('-')
        .filter(|rest| !rest.starts_with(['-', '+']))
        .map(parse_duration)
    {
        return Ok(Duration::ZERO);
    }
    if text.starts_with('-') {
        return Err(format!(
            "'{text}' is not a duration: it cannot be negative; write e.g. 30s, 1m30s or 500ms"
        ));
    }
    let too_long = || {
        // humantime's year is 365.25 days and month 30.44: `1y` and `12M` are past the bound.
        let calendar = ["y", "year", "years", "M", "month", "months"];
        let mut units = text.split(|c: char| c.is_ascii_digit() || c.is_whitespace());
        let year = match units.any(|unit| calendar.contains(&unit)) {
            true => " (a year counts 365.25 days and a month 30.44: write 365d)",
            false => "",
        };
        format!(
            "'{text}' is too long: durations are at most {} days{year}",
            MAX_DURATION.as_secs() / 86400
        )
    };
    let duration = match text.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs.min(MAX_DURATION.as_secs() + 1)),
        Err(_) if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => {
            return Err(too_long())
        }
        // A fraction of a second (`1.5`, `0.5s`): humantime's "time unit needed" or "expected
        // number" would not say what to write instead.
        Err(_)
            if text.contains('.')
                && text
                    .trim_end_matches(char::is_alphabetic)
                    .parse::<f64>()
                    .is_ok() =>
        {
            return Err(format!(
                "'{text}' is not a duration: fractions are not taken; write whole units, e.g. \
                 1500ms for 1.5s"
            ))
        }
        Err(_) => humantime::parse_duration(text).map_err(|e| match e {
            humantime::DurationError::NumberOverflow => too_long(),
            humantime::DurationError::InvalidCharacter(_)
            | humantime::DurationError::NumberExpected(_) => {
                format!("'{text}' is not a duration; write e.g. 30s, 1m30s or 500ms")
            }
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

/// The shortest `--watchdog`: 100ms. A worker pings at half its `WATCHDOG_USEC`, as
/// sd_watchdog_enabled(3) advises (herd_gunicorn.py and the test workers ping more often
/// still), so below it a single delay of tens of milliseconds (the scheduler on a busy host,
/// a garbage-collection pause, herd's own loop turn, which reads the notify socket among its
/// other work) makes a healthy worker miss its deadline; at 1ms every worker was killed as
/// soon as it was ready. (Below 1us `WATCHDOG_USEC` would be 0, which sd_notify libraries take
/// for no watchdog at all.)
const MIN_WATCHDOG: Duration = Duration::from_millis(100);

/// `--watchdog`: a positive duration of at least [`MIN_WATCHDOG`].
pub(super) fn parse_watchdog(text: &str) -> Result<Duration, String> {
    match parse_positive_duration(text)? {
        d if d < MIN_WATCHDOG => Err(format!(
            "'{text}' is too short: a worker pings at half the interval, and a delay of tens of \
             milliseconds would get a healthy one killed; give at least 100ms (e.g. 30s)"
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
    match minus_zero(text).parse::<T>() {
        Ok(n) if n >= least => Ok(n),
        Ok(_) => Err(format!(
            "{option} '{text}': the value must be at least {least}"
        )),
        Err(_) if text.starts_with('-') => Err(format!(
            "{option} '{text}': the value must be positive (at least {least})"
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

/// `herd logs -n`: how many of the last lines, 0 or more (`-0` too: it is 0, as `+1` is 1,
/// not a number below 0); a message that says what is wrong with another value and what to
/// give instead (clap names the option and the value before it).
pub(super) fn parse_lines(text: &str) -> Result<u32, String> {
    match minus_zero(text).parse::<u32>() {
        Ok(n) => Ok(n),
        Err(_) if all_digits(text) => Err(format!(
            "the number of lines is at most {}; leave -n out for every line herd keeps",
            u32::MAX
        )),
        Err(_) if text.starts_with('-') && all_digits(&text[1..]) => Err(
            "the number of lines must be 0 or more; leave -n out for every line herd keeps"
                .to_string(),
        ),
        Err(_) => Err(
            "the number of lines is a whole number, 0 or more (as in -n 20); leave -n out for \
             every line herd keeps"
                .to_string(),
        ),
    }
}

/// Whether `text` is a run of decimal digits (so a failed parse means it is too large).
fn all_digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

pub(super) fn parse_slot(text: &str) -> Result<usize, String> {
    let text = minus_zero(text);
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
    let text = minus_zero(text);
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
    let text = minus_zero(text);
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

/// `--metrics`: a TCP address in any form `--bind` takes, without a name or options.
pub(super) fn parse_metrics(text: &str) -> Result<BindSpec, String> {
    parse_http_address(text, "--metrics")
}

pub(super) fn parse_health(text: &str) -> Result<BindSpec, String> {
    parse_http_address(text, "--health")
}

/// A TCP address to serve HTTP on, for `option`.
fn parse_http_address(text: &str, option: &str) -> Result<BindSpec, String> {
    let bad = || {
        format!(
            "'{text}' is not a TCP address for {option}; write HOST:PORT, :PORT or \
             [V6ADDR]:PORT (e.g. 127.0.0.1:9100)"
        )
    };
    if text.contains([',', '=']) {
        return Err(bad());
    }
    // What looks like a TCP address keeps the parser's reason (`port 70000 is out of range`);
    // anything else is said to be no TCP address, with what this option takes.
    let looks_tcp = text.contains(':') && !text.contains('/') && !text.starts_with("unix:");
    let spec: BindSpec = text.parse().map_err(|e| match looks_tcp {
        true => format!("{option} '{text}': {e}"),
        false => bad(),
    })?;
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
    if let Some((min, max)) = text.split_once("..") {
        // `herd scale 0` stops serving; a range whose bound is 0 asks autoscaling for that.
        if [min, max].iter().any(|n| minus_zero(n).parse() == Ok(0u64)) {
            let bound = |n: &str| minus_zero(n).parse::<usize>().unwrap_or(0);
            let most = bound(min).max(bound(max)).clamp(1, MAX_WORKERS);
            return Err(format!(
                "{text}: autoscaling keeps at least 1 worker, so neither bound can be 0 (write \
                 e.g. 1..{most}; `herd scale 0` stops serving)"
            ));
        }
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

#[cfg(unix)]
mod unix;
#[cfg(windows)]
mod windows;

#[cfg(unix)]
pub use unix::*;
#[cfg(windows)]
pub use windows::*;

#[cfg(all(test, unix))]
mod tests;
