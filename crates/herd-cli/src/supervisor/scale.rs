//! What a `scale` request asks for: a number of workers, a change to the current one, or
//! autoscaling bounds, checked against [`MAX_WORKERS`] without any arithmetic that could
//! overflow.

use crate::cli::MAX_WORKERS;
use crate::control::protocol::ErrorCode;

/// A valid `scale` request.
#[derive(Debug, PartialEq, Eq)]
pub enum Order {
    /// Autoscale between these bounds.
    Autoscale {
        /// The fewest workers.
        min: usize,
        /// The most workers.
        max: usize,
    },
    /// Run `target` workers; `fixed` when a number was asked for, which turns autoscaling off.
    Workers {
        /// How many.
        target: usize,
        /// Whether it was asked for as a number (not as a change).
        fixed: bool,
    },
}

/// Checks a `scale` request (`workers`, `delta`, or both `min` and `max`) against the
/// `current` number of workers and the `autoscaling` bounds in force (a change must stay
/// within them, or the autoscaler would undo it at once; a number turns autoscaling off);
/// the error is the control error code and why.
pub fn order(
    current: usize,
    workers: Option<usize>,
    delta: Option<i64>,
    bounds: (Option<usize>, Option<usize>),
    autoscaling: Option<(usize, usize)>,
    stopping: bool,
) -> Result<Order, (ErrorCode, String)> {
    let invalid = |why: String| (ErrorCode::InvalidArgument, why);
    match (workers, delta, bounds) {
        (None, None, (Some(min), Some(max))) => {
            if min == 0 || min > max || max > MAX_WORKERS {
                return Err(invalid(format!(
                    "bounds {min}..{max}: need 1 <= min <= max <= {MAX_WORKERS}"
                )));
            }
            if stopping {
                return Err((ErrorCode::Stopping, "herd is stopping".to_string()));
            }
            Ok(Order::Autoscale { min, max })
        }
        (_, _, (None, None)) => {
            // A change by some workers is first judged by the autoscaling bounds, which say
            // how far it may go (the count's own limits could name one they refuse).
            if let (Some((min, max)), None, Some(d)) = (autoscaling, workers, delta) {
                let wanted = i128::try_from(current).unwrap_or(i128::MAX) + i128::from(d);
                if wanted < min as i128 || wanted > max as i128 {
                    let keeps = autoscaling_keeps(min, max);
                    return Err(invalid(format!(
                        "{d:+} from {current} workers would leave {wanted}: {keeps}"
                    )));
                }
            }
            let target = target(current, workers, delta).map_err(invalid)?;
            Ok(Order::Workers {
                target,
                fixed: workers.is_some(),
            })
        }
        _ => Err(invalid(
            "give \"workers\", \"delta\", or both \"min\" and \"max\"".to_string(),
        )),
    }
}

/// The number of workers that `workers` (absolute) or `delta` (relative to `current`) asks
/// for; the error says what is out of range.
pub fn target(current: usize, workers: Option<usize>, delta: Option<i64>) -> Result<usize, String> {
    let target = match (workers, delta) {
        (Some(n), None) => n,
        (None, Some(d)) => {
            let wanted = i128::try_from(current).unwrap_or(i128::MAX) + i128::from(d);
            if wanted < 0 && current == 0 {
                return Err(
                    "no worker runs to remove: give the number to run (herd scale N)".to_string(),
                );
            }
            if wanted < 0 {
                return Err(format!(
                    "cannot remove {} of {current} workers: remove at most {current} \
                     (-{current}), or give the number to run (herd scale N)",
                    i128::from(d).unsigned_abs()
                ));
            }
            usize::try_from(wanted).unwrap_or(usize::MAX)
        }
        _ => return Err("give exactly one of \"workers\" and \"delta\"".to_string()),
    };
    if target > MAX_WORKERS {
        return Err(match delta {
            Some(_) if current >= MAX_WORKERS => {
                format!("herd runs the most workers already ({MAX_WORKERS})")
            }
            Some(d) => format!(
                "at most {MAX_WORKERS} workers (asked for {current} {d:+}): add at most {}",
                MAX_WORKERS.saturating_sub(current)
            ),
            None => format!("at most {MAX_WORKERS} workers (asked for {target})"),
        });
    }
    Ok(target)
}

/// The number of workers SIGTTIN (`delta` 1) or SIGTTOU (`delta` -1) asks for from `current`:
/// a signal never takes the pool below one worker (`herd scale 0` can) nor above
/// [`MAX_WORKERS`], nor out of the autoscaling `bounds` (the autoscaler would undo it); the
/// error says why it changes nothing.
pub fn by_signal(
    current: usize,
    delta: i64,
    bounds: Option<(usize, usize)>,
) -> Result<usize, String> {
    if let Some((min, max)) = bounds {
        if (delta < 0 && current <= min) || (delta > 0 && current >= max) {
            return Err(autoscaling_keeps(min, max));
        }
    }
    if delta < 0 && current <= 1 {
        return Err(format!(
            "{current} worker(s): a signal never scales below one (`herd scale 0` can)"
        ));
    }
    if delta > 0 && current >= MAX_WORKERS {
        return Err(format!("already at the most, {MAX_WORKERS} workers"));
    }
    target(current, None, Some(delta))
}

/// Why a change outside the autoscaling bounds `min..max` is refused, and what to do instead.
fn autoscaling_keeps(min: usize, max: usize) -> String {
    format!(
        "autoscaling keeps {min}..{max} workers (`herd scale N` turns it off, \
         `herd scale MIN..MAX` changes the bounds)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signal_scales_by_one_within_one_and_the_most() {
        assert_eq!(by_signal(2, 1, None), Ok(3));
        assert_eq!(by_signal(2, -1, None), Ok(1));
        assert!(by_signal(1, -1, None).is_err(), "never below one");
        assert!(
            by_signal(0, -1, None).is_err(),
            "SIGTTOU at zero adds nothing"
        );
        assert_eq!(by_signal(0, 1, None), Ok(1));
        assert!(by_signal(MAX_WORKERS, 1, None)
            .unwrap_err()
            .contains("4096"));
    }

    #[test]
    fn a_signal_stays_within_the_autoscaling_bounds() {
        let bounds = Some((2, 4));
        assert!(by_signal(2, -1, bounds).unwrap_err().contains("2..4"));
        assert!(by_signal(4, 1, bounds).is_err());
        assert_eq!(by_signal(3, -1, bounds), Ok(2));
        assert_eq!(by_signal(3, 1, bounds), Ok(4));
    }

    #[test]
    fn a_request_is_a_number_a_change_or_bounds_never_a_mix() {
        assert_eq!(
            order(2, Some(5), None, (None, None), None, false),
            Ok(Order::Workers {
                target: 5,
                fixed: true
            })
        );
        assert_eq!(
            order(2, None, Some(-1), (None, None), None, false),
            Ok(Order::Workers {
                target: 1,
                fixed: false
            })
        );
        assert_eq!(
            order(2, None, None, (Some(1), Some(4)), None, false),
            Ok(Order::Autoscale { min: 1, max: 4 })
        );
        for mixed in [
            order(2, Some(3), None, (Some(1), Some(4)), None, false),
            order(2, None, None, (Some(1), None), None, false),
            order(2, None, Some(1), (None, Some(4)), None, false),
            order(2, Some(1), Some(1), (None, None), None, false),
            order(2, None, None, (None, None), None, false),
        ] {
            assert_eq!(mixed.map_err(|e| e.0), Err(ErrorCode::InvalidArgument));
        }
    }

    #[test]
    fn a_change_stays_within_the_autoscaling_bounds_and_a_number_turns_them_off() {
        let bounds = Some((2, 3));
        let (code, why) = order(2, None, Some(5), (None, None), bounds, false).unwrap_err();
        assert_eq!(code, ErrorCode::InvalidArgument);
        assert!(
            why.contains("+5 from 2 workers would leave 7: autoscaling keeps 2..3"),
            "{why}"
        );
        assert!(order(2, None, Some(-1), (None, None), bounds, false).is_err());
        // Below no worker too: the bounds are named, not "remove at most 1 (-1)", which
        // they would refuse as well.
        let (_, why) = order(1, None, Some(-2), (None, None), Some((1, 3)), false).unwrap_err();
        assert!(
            why.starts_with("-2 from 1 workers would leave -1: autoscaling keeps 1..3"),
            "{why}"
        );
        assert_eq!(
            order(2, None, Some(1), (None, None), bounds, false),
            Ok(Order::Workers {
                target: 3,
                fixed: false
            })
        );
        assert_eq!(
            order(2, Some(7), None, (None, None), bounds, false),
            Ok(Order::Workers {
                target: 7,
                fixed: true
            })
        );
    }

    #[test]
    fn bounds_must_hold_at_least_one_worker_and_at_most_the_limit() {
        for (min, max) in [
            (0, 4),
            (5, 4),
            (1, MAX_WORKERS + 1),
            (usize::MAX, usize::MAX),
        ] {
            let (code, why) =
                order(2, None, None, (Some(min), Some(max)), None, false).unwrap_err();
            assert_eq!(code, ErrorCode::InvalidArgument);
            assert!(why.contains("need 1 <= min <= max <= 4096"), "{why}");
        }
        assert!(order(
            2,
            None,
            None,
            (Some(MAX_WORKERS), Some(MAX_WORKERS)),
            None,
            false
        )
        .is_ok());
    }

    #[test]
    fn bounds_are_refused_while_stopping_after_they_are_checked() {
        let refused = order(2, None, None, (Some(1), Some(4)), None, true).unwrap_err();
        assert_eq!(refused.0, ErrorCode::Stopping);
        let invalid = order(2, None, None, (Some(0), Some(4)), None, true).unwrap_err();
        assert_eq!(invalid.0, ErrorCode::InvalidArgument);
    }

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
        assert_eq!(
            e,
            "cannot remove 9223372036854775808 of 2 workers: remove at most 2 (-2), or give \
             the number to run (herd scale N)"
        );
        let e = target(2, None, Some(-3)).unwrap_err();
        assert!(
            e.starts_with("cannot remove 3 of 2 workers: remove at most 2"),
            "{e}"
        );
        let e = target(4000, None, Some(100)).unwrap_err();
        assert!(e.ends_with("(asked for 4000 +100): add at most 96"), "{e}");
        let e = target(usize::MAX, None, Some(i64::MAX)).unwrap_err();
        assert_eq!(e, "herd runs the most workers already (4096)");
        assert!(target(0, Some(usize::MAX), None).is_err());
        assert_eq!(target(4095, None, Some(1)), Ok(4096));
        // At the edges, no "remove at most 0 (-0)" nor "add at most 0".
        assert_eq!(
            target(0, None, Some(-1)).unwrap_err(),
            "no worker runs to remove: give the number to run (herd scale N)"
        );
        assert_eq!(
            target(4096, None, Some(1)).unwrap_err(),
            "herd runs the most workers already (4096)"
        );
    }
}
