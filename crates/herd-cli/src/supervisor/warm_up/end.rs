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
    use super::WarmUpEnd::*;

    /// The `reason`s docs/logging.md names, one each.
    #[test]
    fn each_end_has_its_documented_reason() {
        let reasons: Vec<&str> = [Budget, Starved, PoolEmpty, SlotLost, WaitedFor]
            .iter()
            .map(|end| end.as_str())
            .collect();
        assert_eq!(
            reasons,
            ["budget", "starved", "pool_empty", "slot_lost", "waited_for"]
        );
    }
}
