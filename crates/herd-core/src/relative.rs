//! Times in saved state: an [`Instant`] means nothing in another process image, so a state
//! handed over (a re-exec) keeps each time relative to one [`Epoch`], the moment it was saved,
//! and the reader rebases it on the moment it loads.

use std::time::{Duration, Instant};

/// The moment a saved state's times are measured from: when the state is saved in the image
/// that writes it, when it is loaded in the one that reads it. One epoch serves a whole state,
/// so that its times keep their order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Epoch(Instant);

/// A past time, as the milliseconds from it to the [`Epoch`] (an age).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(transparent)
)]
pub struct Ago(pub u64);

/// A future time (a deadline), as the milliseconds from the [`Epoch`] to it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(transparent)
)]
pub struct Ahead(pub u64);

impl Epoch {
    /// The epoch `now`.
    pub fn at(now: Instant) -> Epoch {
        Epoch(now)
    }

    /// The epoch's instant.
    pub fn instant(self) -> Instant {
        self.0
    }

    /// How long before the epoch `time` was (0 for a time still to come).
    pub fn ago(self, time: Instant) -> Ago {
        Ago(millis(self.0.saturating_duration_since(time)))
    }

    /// How long after the epoch `time` comes (0 for a time past).
    pub fn ahead(self, time: Instant) -> Ahead {
        Ahead(millis(time.saturating_duration_since(self.0)))
    }

    /// The instant `ago` before the epoch (the epoch itself should that be out of the clock's
    /// range).
    pub fn past(self, ago: Ago) -> Instant {
        let back = Duration::from_millis(ago.0);
        self.0.checked_sub(back).unwrap_or(self.0)
    }

    /// The instant `ahead` after the epoch (the epoch itself should that be out of the clock's
    /// range).
    pub fn future(self, ahead: Ahead) -> Instant {
        let on = Duration::from_millis(ahead.0);
        self.0.checked_add(on).unwrap_or(self.0)
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn times_keep_their_distance_to_the_epoch_in_another_image() {
        let start = Instant::now();
        let saved = Epoch::at(start + 1000 * MS);
        let (age, deadline) = (saved.ago(start + 400 * MS), saved.ahead(start + 1500 * MS));
        assert_eq!((age, deadline), (Ago(600), Ahead(500)));
        // Loaded 7 s later, in another image whose clock reads otherwise.
        let loaded = Epoch::at(start + 8000 * MS);
        assert_eq!(loaded.past(age), start + 7400 * MS);
        assert_eq!(loaded.future(deadline), start + 8500 * MS);
    }

    #[test]
    fn a_time_on_the_wrong_side_of_the_epoch_is_the_epoch() {
        let start = Instant::now();
        let epoch = Epoch::at(start + 1000 * MS);
        assert_eq!(epoch.ago(start + 1200 * MS), Ago(0), "not yet: no age");
        assert_eq!(epoch.ahead(start), Ahead(0), "overdue: due at once");
    }
}
