//! Durations for messages, written as `humantime` writes them (`1s 500ms`, `2m 3s`), so that
//! the supervisors' messages read the same whichever crate formats them.

use std::fmt;
use std::time::Duration;

/// `d` as `1h 2m 3s 4ms` (units from years to nanoseconds, zeros left out; `0s` for zero),
/// the format of `humantime::format_duration`.
pub fn format_duration(d: Duration) -> impl fmt::Display {
    Formatted(d)
}

struct Formatted(Duration);

impl fmt::Display for Formatted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs();
        let nanos = self.0.subsec_nanos();
        if secs == 0 && nanos == 0 {
            return f.write_str("0s");
        }
        let years = secs / 31_557_600; // 365.25 days
        let year_rest = secs % 31_557_600;
        let months = year_rest / 2_630_016; // 30.44 days
        let month_rest = year_rest % 2_630_016;
        let days = month_rest / 86400;
        let day_secs = month_rest % 86400;
        let mut parts = Parts { f, started: false };
        parts.plural("year", years)?;
        parts.plural("month", months)?;
        parts.plural("day", days)?;
        parts.unit("h", day_secs / 3600)?;
        parts.unit("m", day_secs % 3600 / 60)?;
        parts.unit("s", day_secs % 60)?;
        parts.unit("ms", u64::from(nanos / 1_000_000))?;
        parts.unit("us", u64::from(nanos / 1000 % 1000))?;
        parts.unit("ns", u64::from(nanos % 1000))
    }
}

struct Parts<'a, 'b> {
    f: &'a mut fmt::Formatter<'b>,
    started: bool,
}

impl Parts<'_, '_> {
    fn unit(&mut self, name: &str, value: u64) -> fmt::Result {
        if value == 0 {
            return Ok(());
        }
        if self.started {
            self.f.write_str(" ")?;
        }
        self.started = true;
        write!(self.f, "{value}{name}")
    }

    fn plural(&mut self, name: &str, value: u64) -> fmt::Result {
        self.unit(name, value)?;
        if value > 1 {
            self.f.write_str("s")?;
        }
        Ok(())
    }
}

/// `d` rounded down to milliseconds, for messages.
pub(crate) fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_like_humantime() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_millis(100), "100ms"),
            (Duration::from_millis(1500), "1s 500ms"),
            (Duration::from_secs(600), "10m"),
            (Duration::from_secs(3723), "1h 2m 3s"),
            (Duration::from_secs(2 * 86400 + 1), "2days 1s"),
            (Duration::new(0, 1_001_001), "1ms 1us 1ns"),
        ];
        for (d, text) in cases {
            assert_eq!(format_duration(d).to_string(), text, "{d:?}");
        }
    }
}
