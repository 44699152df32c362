//! `--max-surge N|N%`: how many workers beyond the pool upgrades and recycling may run.

use herd_core::MaxSurge;

/// Parses `--max-surge`: a number of workers (at least 1) or a percentage of the desired
/// number (at least 1%, rounded up).
pub(super) fn parse_max_surge(text: &str) -> Result<MaxSurge, String> {
    let way_out = "give a number of workers (like 1) or a percentage of the workers (like 25%)";
    let (number, unit) = match text.strip_suffix('%') {
        Some(percent) => (percent, "%"),
        None => (text, ""),
    };
    match number.parse::<u32>() {
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
    fn a_number_of_workers_or_a_share_of_the_pool() {
        assert_eq!(parse_max_surge("2"), Ok(MaxSurge::Workers(2)));
        assert_eq!(parse_max_surge("100%"), Ok(MaxSurge::Percent(100)));
        assert_eq!(parse_max_surge("25%"), Ok(MaxSurge::Percent(25)));
        for (bad, why) in [
            ("0", "at least 1:"),
            ("0%", "at least 1%:"),
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
