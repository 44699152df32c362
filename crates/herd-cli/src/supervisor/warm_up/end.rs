//! Why a warm-up ended before its worker (or fork server) was ready: the `reason` of herd's
//! `warm_up_over` event and the words of its message.

/// Why a worker still starting at `--starting-nice` gets herd's priority back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WarmUpEnd {
    /// Its warm-up budget is spent.
    Budget,
    /// It was starved of CPU and could not trickle.
    Starved,
    /// No worker of the pool serves any more: it starts beside no one.
    PoolEmpty,
    /// The serving worker of its slot was lost: it is the slot's restart now.
    SlotLost,
    /// A fork server loading lowered, which a start at herd's priority waits for.
    WaitedFor,
}

impl WarmUpEnd {
    /// The event's `reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            WarmUpEnd::Budget => "budget",
            WarmUpEnd::Starved => "starved",
            WarmUpEnd::PoolEmpty => "pool_empty",
            WarmUpEnd::SlotLost => "slot_lost",
            WarmUpEnd::WaitedFor => "waited_for",
        }
    }

    /// What the message says of a worker whose warm-up ends so.
    pub fn says(self) -> &'static str {
        match self {
            WarmUpEnd::Budget => "past its warm-up budget",
            WarmUpEnd::Starved => "starved of CPU",
            WarmUpEnd::PoolEmpty => "beside no serving worker any more",
            WarmUpEnd::SlotLost => "its slot's restart now (the worker it was to replace was lost)",
            WarmUpEnd::WaitedFor => "waited for by a start at herd's priority",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::WarmUpEnd::{self, *};

    /// Every end, once: a variant added later fails to compile here until it is listed.
    const ALL: [WarmUpEnd; 5] = [Budget, Starved, PoolEmpty, SlotLost, WaitedFor];

    /// The `reason`s of herd's log, each named in docs/logging.md's `warm_up_over` row.
    #[test]
    fn each_end_is_a_reason_docs_logging_names() {
        for end in ALL {
            match end {
                Budget | Starved | PoolEmpty | SlotLost | WaitedFor => {}
            }
        }
        let docs = include_str!("../../../../../docs/logging.md");
        let row = docs
            .lines()
            .find(|l| l.starts_with("| `warm_up_over`"))
            .expect("docs/logging.md has a warm_up_over row");
        for end in ALL {
            let named = format!("`{}`", end.as_str());
            assert!(row.contains(&named), "{end:?}: {named} is not in the row");
        }
        let reasons: std::collections::HashSet<_> = ALL.iter().map(|e| e.as_str()).collect();
        assert_eq!(reasons.len(), ALL.len(), "each its own reason");
    }
}
