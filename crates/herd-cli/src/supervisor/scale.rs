//! What a `scale` request asks for: a number of workers, or a change to the current one,
//! checked against [`MAX_WORKERS`] without any arithmetic that could overflow.

use crate::cli::MAX_WORKERS;

/// The number of workers that `workers` (absolute) or `delta` (relative to `current`) asks
/// for; the error says what is out of range.
pub fn target(current: usize, workers: Option<usize>, delta: Option<i64>) -> Result<usize, String> {
    let target = match (workers, delta) {
        (Some(n), None) => n,
        (None, Some(d)) => {
            let wanted = i128::try_from(current).unwrap_or(i128::MAX) + i128::from(d);
            if wanted < 0 {
                return Err(format!(
                    "cannot remove {} of {current} workers",
                    i128::from(d).unsigned_abs()
                ));
            }
            usize::try_from(wanted).unwrap_or(usize::MAX)
        }
        _ => return Err("give exactly one of \"workers\" and \"delta\"".to_string()),
    };
    if target > MAX_WORKERS {
        return Err(format!(
            "at most {MAX_WORKERS} workers (asked for {})",
            match delta {
                Some(d) => format!("{current} {d:+}"),
                None => target.to_string(),
            }
        ));
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_and_relative() {
        assert_eq!(target(2, Some(5), None), Ok(5));
        assert_eq!(target(2, None, Some(3)), Ok(5));
        assert_eq!(target(2, None, Some(-2)), Ok(0));
        assert!(target(2, Some(1), Some(1)).is_err());
        assert!(target(2, None, None).is_err());
    }

    #[test]
    fn extremes_do_not_overflow() {
        let e = target(2, None, Some(i64::MAX)).unwrap_err();
        assert!(e.contains("at most 4096 workers"), "{e}");
        let e = target(2, None, Some(i64::MIN)).unwrap_err();
        assert_eq!(e, "cannot remove 9223372036854775808 of 2 workers");
        let e = target(2, None, Some(-3)).unwrap_err();
        assert_eq!(e, "cannot remove 3 of 2 workers");
        let e = target(usize::MAX, None, Some(i64::MAX)).unwrap_err();
        assert!(e.contains("at most"), "{e}");
        assert!(target(0, Some(usize::MAX), None).is_err());
        assert_eq!(target(4095, None, Some(1)), Ok(4096));
    }
}
