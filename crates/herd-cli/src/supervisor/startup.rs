//! The order in which a supervisor starts, as data, so that the rules that keep it from missing
//! an exit are unit tests: the signal handlers are in place before the first worker is forked
//! and before the signals a re-exec held back are let through, and an image that continues
//! from a re-exec collects, once, the workers that exited while the previous image handed over.

/// One step of the start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Install the signal handlers and open the control, notify and metrics inputs.
    Listen,
    /// Let through the signals a re-exec held back across `execve`.
    ReleaseHeldSignals,
    /// Collect the workers that exited while the previous image handed over: their SIGCHLD
    /// went to that image, which execed before reaping them.
    CollectExits,
    /// Answer the client whose `herd reexec` made this image, and tell the service manager.
    AnnounceReexec,
    /// Start the workers the pool wants.
    StartWorkers,
}

/// The steps of a start, in order; `resumed` when continuing from a re-exec.
pub fn steps(resumed: bool) -> Vec<Step> {
    let mut steps = vec![Step::Listen, Step::ReleaseHeldSignals];
    if resumed {
        steps.extend([Step::CollectExits, Step::AnnounceReexec]);
    }
    steps.push(Step::StartWorkers);
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn position(steps: &[Step], step: Step) -> usize {
        steps.iter().position(|s| *s == step).expect("step missing")
    }

    #[test]
    fn handlers_are_installed_before_the_first_fork_and_before_held_signals_arrive() {
        for resumed in [false, true] {
            let steps = steps(resumed);
            assert_eq!(steps[0], Step::Listen);
            assert!(position(&steps, Step::Listen) < position(&steps, Step::StartWorkers));
            assert!(position(&steps, Step::Listen) < position(&steps, Step::ReleaseHeldSignals));
        }
    }

    #[test]
    fn a_resumed_image_collects_exits_once_before_starting_workers() {
        let steps = steps(true);
        assert_eq!(
            steps.iter().filter(|s| **s == Step::CollectExits).count(),
            1
        );
        assert!(position(&steps, Step::CollectExits) < position(&steps, Step::StartWorkers));
        assert!(
            position(&steps, Step::ReleaseHeldSignals) < position(&steps, Step::CollectExits),
            "an exit after the look must still wake the loop"
        );
        assert!(!super::steps(false).contains(&Step::CollectExits));
        assert!(!super::steps(false).contains(&Step::AnnounceReexec));
    }
}
