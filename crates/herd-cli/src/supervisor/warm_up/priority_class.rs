//! `--starting-nice` on Windows, which has priority classes where Unix has nice values and
//! scheduling classes. A successor starts in a lower class than the one herd's workers start
//! in and gets that back once ready: `auto` and `idle` are `IDLE_PRIORITY_CLASS` (the nearest
//! to Linux's `SCHED_IDLE`: its threads run only when no thread of a higher class is ready to),
//! a nice value from 1 to 9 `BELOW_NORMAL_PRIORITY_CLASS`, from 10 to 19
//! `IDLE_PRIORITY_CLASS`. Windows starts the children of an `IDLE` or `BELOW_NORMAL` process in
//! its class and any other process's in `NORMAL`, so the workers of a herd in `NORMAL` or
//! above start and are raised back to `NORMAL`, those of a herd in `BELOW_NORMAL` to that.
//! Raising a process back to at most `NORMAL` needs no privilege, only a handle herd has.
//! Pure: herd's class in, the setting out.

use super::{Lowered, StartingNice, WarmUp};

/// A Windows process priority class, lowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PriorityClass {
    /// `IDLE_PRIORITY_CLASS`.
    Idle,
    /// `BELOW_NORMAL_PRIORITY_CLASS`.
    BelowNormal,
    /// `NORMAL_PRIORITY_CLASS`.
    Normal,
    /// `ABOVE_NORMAL_PRIORITY_CLASS`.
    AboveNormal,
    /// `HIGH_PRIORITY_CLASS`.
    High,
    /// `REALTIME_PRIORITY_CLASS`.
    Realtime,
}

/// Each class and its value (`GetPriorityClass`, `SetPriorityClass`, a creation flag).
const VALUES: [(PriorityClass, u32); 6] = [
    (PriorityClass::Idle, 0x40),
    (PriorityClass::BelowNormal, 0x4000),
    (PriorityClass::Normal, 0x20),
    (PriorityClass::AboveNormal, 0x8000),
    (PriorityClass::High, 0x80),
    (PriorityClass::Realtime, 0x100),
];

impl PriorityClass {
    /// The class of value `raw`, as `GetPriorityClass` returns it; `None` for no class.
    pub fn from_raw(raw: u32) -> Option<PriorityClass> {
        VALUES.iter().find(|&&(_, v)| v == raw).map(|&(c, _)| c)
    }

    /// Its value, as `SetPriorityClass` takes it.
    pub fn raw(self) -> u32 {
        VALUES
            .iter()
            .find(|&&(c, _)| c == self)
            .map_or(0x20, |&(_, v)| v)
    }

    /// Its name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            PriorityClass::Idle => "IDLE_PRIORITY_CLASS",
            PriorityClass::BelowNormal => "BELOW_NORMAL_PRIORITY_CLASS",
            PriorityClass::Normal => "NORMAL_PRIORITY_CLASS",
            PriorityClass::AboveNormal => "ABOVE_NORMAL_PRIORITY_CLASS",
            PriorityClass::High => "HIGH_PRIORITY_CLASS",
            PriorityClass::Realtime => "REALTIME_PRIORITY_CLASS",
        }
    }

    /// The class the children of a process in this class start in: this one for `IDLE` and
    /// `BELOW_NORMAL`, else `NORMAL`.
    pub fn of_children(self) -> PriorityClass {
        self.min(PriorityClass::Normal)
    }

    /// The class a successor lowered as `how` starts in: `IDLE` for `idle` (what `auto` is
    /// on Windows) and nice 10 to 19, `BELOW_NORMAL` for nice 1 to 9.
    pub fn starting(how: Lowered) -> PriorityClass {
        match how {
            Lowered::Nice(n) if n < 10 => PriorityClass::BelowNormal,
            Lowered::Idle | Lowered::Nice(_) => PriorityClass::Idle,
        }
    }
}

impl StartingNice {
    /// The setting on Windows, for a herd in priority class `herd`: `Ok(None)`, starting
    /// workers keep the class they are born in; `Err`, an explicit value that would not lower
    /// them, with what to give instead. The [`WarmUp`]'s `serving` is the class's
    /// [`raw`](PriorityClass::raw) value (there is no nice value to give back), `class` 0.
    pub fn resolve_on_windows(self, herd: PriorityClass) -> Result<Option<WarmUp>, String> {
        let born = herd.of_children();
        let starting = match self {
            StartingNice::Off => return Ok(None),
            StartingNice::Auto | StartingNice::Idle => Lowered::Idle,
            StartingNice::Nice(n) => Lowered::Nice(n),
        };
        let lowered = PriorityClass::starting(starting);
        if lowered < born {
            return Ok(Some(WarmUp {
                starting,
                serving: born.raw() as i32,
                class: 0,
            }));
        }
        let given = match self {
            StartingNice::Auto => return Ok(None),
            StartingNice::Nice(n) => n.to_string(),
            _ => "idle".to_string(),
        };
        Err(match born {
            PriorityClass::Idle => format!(
                "--starting-nice {given}: herd runs in IDLE_PRIORITY_CLASS, the lowest, which \
                 its workers inherit, so they cannot start lower: use --starting-nice off"
            ),
            _ => format!(
                "--starting-nice {given} is {} on Windows, which herd's workers start in \
                 already (herd runs in {}): give idle or a value from 10 to 19 \
                 (IDLE_PRIORITY_CLASS), or off",
                lowered.name(),
                herd.name()
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_names_go_both_ways() {
        for (class, raw) in VALUES {
            assert_eq!(PriorityClass::from_raw(raw), Some(class));
            assert_eq!(class.raw(), raw);
            assert!(class.name().ends_with("_PRIORITY_CLASS"));
        }
        assert_eq!(PriorityClass::from_raw(0), None);
        assert_eq!(PriorityClass::from_raw(0x41), None);
    }

    #[test]
    fn nice_1_to_9_is_below_normal_and_10_to_19_and_idle_are_idle() {
        for n in 1..=9 {
            let class = PriorityClass::starting(Lowered::Nice(n));
            assert_eq!(class, PriorityClass::BelowNormal, "{n}");
        }
        for n in 10..=19 {
            assert_eq!(
                PriorityClass::starting(Lowered::Nice(n)),
                PriorityClass::Idle
            );
        }
        assert_eq!(PriorityClass::starting(Lowered::Idle), PriorityClass::Idle);
    }

    #[test]
    fn children_inherit_only_idle_and_below_normal() {
        use PriorityClass::*;
        let born: Vec<_> = [Idle, BelowNormal, Normal, AboveNormal, High, Realtime]
            .iter()
            .map(|c| c.of_children())
            .collect();
        assert_eq!(born, [Idle, BelowNormal, Normal, Normal, Normal, Normal]);
    }

    fn resolved(option: StartingNice, herd: PriorityClass) -> Option<(PriorityClass, u32)> {
        let warm_up = option.resolve_on_windows(herd).unwrap()?;
        let serving = PriorityClass::from_raw(warm_up.serving as u32).unwrap();
        Some((PriorityClass::starting(warm_up.starting), serving.raw()))
    }

    #[test]
    fn auto_and_idle_start_idle_and_give_back_the_class_workers_are_born_in() {
        use PriorityClass::*;
        for herd in [Normal, AboveNormal, High, Realtime] {
            for option in [StartingNice::Auto, StartingNice::Idle] {
                assert_eq!(resolved(option, herd), Some((Idle, 0x20)), "{herd:?}");
            }
        }
        assert_eq!(
            resolved(StartingNice::Auto, BelowNormal),
            Some((Idle, 0x4000))
        );
        assert_eq!(
            resolved(StartingNice::Nice(5), Normal),
            Some((BelowNormal, 0x20))
        );
        assert_eq!(
            resolved(StartingNice::Nice(12), BelowNormal),
            Some((Idle, 0x4000))
        );
    }

    #[test]
    fn off_never_lowers_and_auto_is_off_for_an_idle_herd() {
        for herd in VALUES.map(|(c, _)| c) {
            assert_eq!(resolved(StartingNice::Off, herd), None);
        }
        assert_eq!(resolved(StartingNice::Auto, PriorityClass::Idle), None);
    }

    #[test]
    fn a_value_that_would_not_lower_is_refused_with_what_to_give() {
        let e = StartingNice::Nice(5)
            .resolve_on_windows(PriorityClass::BelowNormal)
            .unwrap_err();
        assert!(
            e.contains("--starting-nice 5 is BELOW_NORMAL_PRIORITY_CLASS")
                && e.contains("from 10 to 19")
                && !e.contains('\n'),
            "{e}"
        );
        for option in [StartingNice::Idle, StartingNice::Nice(15)] {
            let e = option.resolve_on_windows(PriorityClass::Idle).unwrap_err();
            assert!(
                e.contains("IDLE_PRIORITY_CLASS, the lowest") && e.contains("off"),
                "{e}"
            );
        }
    }
}
