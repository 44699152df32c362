//! The recycler's state as plain data, for a re-exec: the workers' requests to be replaced and
//! the slots' holds, their times relative to one [`Epoch`] as the pool's are. Memory samples
//! are not kept (the next image samples anew), only which workers were seen under the limit
//! while ready: one over it in the next image did not start over it.

use crate::relative::{Ago, Ahead, Epoch};

use super::{MemoryTrack, Recycler, SlotTrack};

/// What the recycler knows that sampling cannot find again. Every part is left out of the
/// serde form when empty, so that the state stays what herds before it wrote, and they read
/// it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SavedRecycler {
    /// The seed of the workers' lifetime jitter, so that each keeps its lifetime; saved only
    /// under a lifetime with jitter.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub seed: Option<u64>,
    /// The workers that asked to be replaced (`HERD_RECYCLE=1`) and still wait.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Vec::is_empty")
    )]
    pub asked: Vec<SavedAsk>,
    /// The slots whose recent recycles went wrong, or that are held back.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Vec::is_empty")
    )]
    pub slots: Vec<SavedSlotHold>,
    /// The workers whose deferral or hold was already said, by pid.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Vec::is_empty")
    )]
    pub told: Vec<u32>,
    /// The workers seen under the memory limit while ready.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Vec::is_empty")
    )]
    pub under_while_ready: Vec<SavedUnder>,
}

impl SavedRecycler {
    /// Whether there is nothing to carry.
    pub fn is_empty(&self) -> bool {
        *self == SavedRecycler::default()
    }
}

/// A worker's request to be replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SavedAsk {
    /// Its pid.
    pub pid: u32,
    /// When it started (a pid taken again by a later worker is not that worker).
    pub age_ms: Ago,
    /// Whether it asked within its first moments.
    pub soon: bool,
}

/// A worker seen under the memory limit while it was ready: over it later, it did not start
/// over it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SavedUnder {
    /// Its pid.
    pub pid: u32,
    /// When it started (a pid taken again by a later worker is not that worker).
    pub age_ms: Ago,
}

/// A slot's recent recycles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SavedSlotHold {
    /// The slot.
    pub slot: usize,
    /// Recycles in a row of workers that looped (over the memory limit from the start, asked
    /// within the first moments).
    pub quick: u32,
    /// Recycles that aborted since the slot was last calm; absent (0) from an older herd's
    /// state.
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "is_zero"))]
    pub failed: u32,
    /// Until when no recycle starts in the slot (after one aborted); absent when none waits.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub not_before_ms: Option<Ahead>,
    /// The last time its worker was seen not running normally; absent from an older herd's
    /// state, which then counts from the re-exec.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub normal_since_ms: Option<Ago>,
    /// The worker whose recycle last counted in `quick` (tried again, it counts no more).
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub counted: Option<u32>,
}

/// Whether a count is zero, to leave it out of the serde form.
#[cfg(feature = "serde")]
fn is_zero(count: &u32) -> bool {
    *count == 0
}

impl Recycler {
    /// What a re-exec carries of this recycler, at `epoch`. Every field is named, so that one
    /// added later does not compile until it is saved or said to need no saving.
    pub fn save(&self, epoch: Epoch) -> SavedRecycler {
        let Recycler {
            policy,
            seed,
            memory,
            slots,
            told,
            asked,
        } = self;
        let jitter = policy.max_lifetime.is_some() && !policy.jitter.is_zero();
        let mut asked: Vec<SavedAsk> = asked
            .iter()
            .map(|(&pid, &(started, soon))| SavedAsk {
                pid,
                age_ms: epoch.ago(started),
                soon,
            })
            .collect();
        asked.sort_by_key(|a| a.pid);
        let mut slots: Vec<SavedSlotHold> = slots
            .iter()
            .filter(|(_, t)| t.quick > 0 || t.failed > 0 || t.not_before.is_some())
            .map(|(&slot, t)| SavedSlotHold {
                slot,
                quick: t.quick,
                failed: t.failed,
                not_before_ms: t.not_before.map(|at| epoch.ahead(at)),
                normal_since_ms: t.normal_since.map(|at| epoch.ago(at)),
                counted: t.counted,
            })
            .collect();
        slots.sort_by_key(|s| s.slot);
        let mut told: Vec<u32> = told.iter().copied().collect();
        told.sort_unstable();
        // The samples are taken anew by the next image; only whether each was under the
        // limit while ready is not found again.
        let mut under_while_ready: Vec<SavedUnder> = memory
            .iter()
            .filter(|(_, t)| t.under_while_ready)
            .filter_map(|(&pid, t)| {
                Some(SavedUnder {
                    pid,
                    age_ms: epoch.ago(t.started?),
                })
            })
            .collect();
        under_while_ready.sort_by_key(|u| u.pid);
        SavedRecycler {
            seed: if jitter { Some(*seed) } else { None },
            asked,
            slots,
            told,
            under_while_ready,
        }
    }

    /// Continues from `saved` at `epoch` (the pool's epoch, so that a request still names the
    /// worker that made it), keeping this recycler's policy.
    pub fn restore(&mut self, saved: SavedRecycler, epoch: Epoch) {
        let SavedRecycler {
            seed,
            asked,
            slots,
            told,
            under_while_ready,
        } = saved;
        if let Some(seed) = seed {
            self.seed = seed;
        }
        for a in asked {
            self.asked.insert(a.pid, (epoch.past(a.age_ms), a.soon));
        }
        for s in slots {
            let track = SlotTrack {
                quick: s.quick,
                failed: s.failed,
                not_before: s.not_before_ms.map(|t| epoch.future(t)),
                // Absent from an older herd's state: counted from the re-exec.
                normal_since: Some(s.normal_since_ms.map_or(epoch.instant(), |t| epoch.past(t))),
                counted: s.counted,
            };
            self.slots.insert(s.slot, track);
        }
        self.told.extend(told);
        for u in under_while_ready {
            let track = MemoryTrack {
                under_while_ready: true,
                started: Some(epoch.past(u.age_ms)),
                ..MemoryTrack::default()
            };
            self.memory.insert(u.pid, track);
        }
    }
}
