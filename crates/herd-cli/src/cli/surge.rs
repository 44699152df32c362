//! `--max-surge N|N%`: how many workers beyond the pool upgrades and recycling may run.

use herd_core::MaxSurge;

use super::parse::parse_number;

/// Parses `--max-surge`: a number of workers (at least 1) or a percentage of the desired
/// number (at least 1%, rounded up).
pub(super) fn parse_max_surge(text: &str) -> Result<MaxSurge, String> {
    match text.strip_suffix('%') {
        Some(percent) => parse_number::<u32>(percent, 1, "--max-surge")
            .map(MaxSurge::Percent)
            .map_err(|e| {
                let e = e.replacen(&format!("'{percent}'"), &format!("'{text}'"), 1);
                format!("{e} (a percentage of the workers, like 25%)")
            }),
        None => parse_number::<u32>(text, 1, "--max-surge")
            .map(|n| MaxSurge::Workers(n as usize))
            .map_err(|e| format!("{e} (or a percentage of the workers, like 25%)")),
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
            ("0", "at least 1"),
            ("0%", "at least 1"),
            ("-1", "must be positive"),
            ("x%", "not a whole number"),
            ("%", "not a whole number"),
            ("1.5", "not a whole number"),
        ] {
            let e = parse_max_surge(bad).unwrap_err();
            assert!(e.contains(why) && !e.contains('\n'), "{bad}: {e}");
            assert!(e.starts_with(&format!("--max-surge '{bad}'")), "{e}");
        }
    }
}
