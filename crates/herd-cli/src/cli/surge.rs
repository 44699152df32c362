//! `--max-surge N|N%`: how many workers beyond the pool upgrades and recycling may run;
//! `--max-starting N|auto`: how many of them may be starting at once.

use herd_core::MaxSurge;

use super::cpus::{auto_max_starting, cpus};
use super::parse::{minus_zero, parse_number};

/// Parses `--max-starting`: a number of workers (at least 1), or `auto` for
/// [`auto_max_starting`] of this machine's [`cpus`].
pub(super) fn parse_max_starting(text: &str) -> Result<u32, String> {
    if text == "auto" {
        return Ok(auto_max_starting(cpus()));
    }
    parse_number::<u32>(text, 1, "--max-starting")
        .map_err(|e| format!("{e}: give a number of workers, or auto"))
}

/// Parses `--max-surge`: a number of workers (at least 1) or a percentage of the desired
/// number (at least 1%, rounded up).
pub(super) fn parse_max_surge(text: &str) -> Result<MaxSurge, String> {
    let way_out = "give a number of workers (like 1) or a percentage of the workers (like 25%)";
    let (number, unit) = match text.strip_suffix('%') {
        Some(percent) => (percent, "%"),
        None => (text, ""),
    };
    match minus_zero(number).parse::<u32>() {
        Ok(n) if n >= 1 && unit == "%" => Ok(MaxSurge::Percent(n)),
        Ok(n) if n >= 1 => Ok(MaxSurge::Workers(n as usize)),
        Ok(_) => Err(format!(
            "--max-surge '{text}': the value must be at least 1{unit}: {way_out}"
        )),
        Err(_) if !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()) => Err(format!(
            "--max-surge '{text}' is too large: the maximum is {}{unit}",
            u32::MAX
        )),
        Err(_) if number.starts_with('-') => Err(format!(
            "--max-surge '{text}': the value must be positive: {way_out}"
        )),
        Err(_) => Err(format!("--max-surge '{text}' is not valid: {way_out}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_starts_one_worker_per_four_cpus() {
        for (cpus, starting) in [
            (0, 1),
            (1, 1),
            (2, 1),
            (7, 1),
            (8, 2),
            (64, 16),
            (usize::MAX, u32::MAX),
        ] {
            assert_eq!(auto_max_starting(cpus), starting, "{cpus} CPUs");
        }
        assert_eq!(parse_max_starting("auto"), Ok(auto_max_starting(cpus())));
        assert_eq!(parse_max_starting("3"), Ok(3));
        for (bad, why) in [
            ("0", "at least 1"),
            // `-0` is 0: it was told to be positive (at least 1), which 0 is not either.
            ("-0", "': the value must be at least 1:"),
            ("-2", "positive"),
            ("x", "not a whole number"),
            ("Auto", "not a whole"),
        ] {
            let e = parse_max_starting(bad).unwrap_err();
            assert!(
                e.contains(why) && e.ends_with(": give a number of workers, or auto"),
                "{bad}: {e}"
            );
            assert!(
                e.starts_with(&format!("--max-starting '{bad}'")) && !e.contains('\n'),
                "{e}"
            );
        }
    }

    #[test]
    fn a_number_of_workers_or_a_share_of_the_pool() {
        assert_eq!(parse_max_surge("2"), Ok(MaxSurge::Workers(2)));
        assert_eq!(parse_max_surge("100%"), Ok(MaxSurge::Percent(100)));
        assert_eq!(parse_max_surge("25%"), Ok(MaxSurge::Percent(25)));
        for (bad, why) in [
            ("0", "at least 1:"),
            ("0%", "at least 1%:"),
            ("-0", "at least 1:"),
            ("-0%", "at least 1%:"),
            ("-1", "must be positive: give a number"),
            ("x%", "not valid"),
            ("%", "not valid"),
            ("1.5", "not valid"),
            ("99999999999%", "maximum is 4294967295%"),
        ] {
            let e = parse_max_surge(bad).unwrap_err();
            assert!(e.contains(why) && !e.contains('\n'), "{bad}: {e}");
            assert!(!e.contains(") ("), "one parenthesis at a time: {e}");
            assert!(e.starts_with(&format!("--max-surge '{bad}'")), "{e}");
        }
    }
}
