//! The warm-up's policy: the option resolved, who is lowered and raised, the budget.

use super::*;

fn resolve(option: StartingNice, own: i32, may: bool) -> Result<Option<WarmUp>, String> {
    let may_raise = |own| match may {
        true => Ok(()),
        false => Err(raise_way_out(own, false)),
    };
    option.resolve(own, SchedIdle::Missing, may_raise)
}

fn resolve_idle(option: StartingNice, own: i32, other_user: bool, may: bool) -> String {
    let may_raise = |own| match may {
        true => Ok(()),
        false => Err(raise_way_out(own, other_user)),
    };
    format!("{:?}", option.resolve(own, SchedIdle::Available, may_raise))
}

#[test]
fn auto_is_sched_idle_where_there_is_one_and_herd_may_raise_back() {
    let idle = WarmUp {
        starting: Lowered::Idle,
        serving: 0,
        class: 0,
    };
    let may = |_| Ok(());
    assert_eq!(
        StartingNice::Auto.resolve(0, SchedIdle::Available, may),
        Ok(Some(idle))
    );
    // herd at nice 19 can still start workers lower: in the idle class.
    let at_19 = StartingNice::Auto
        .resolve(19, SchedIdle::Available, may)
        .unwrap()
        .unwrap();
    assert_eq!(at_19.starting, Lowered::Idle);
    assert_eq!(
        resolve_idle(StartingNice::Auto, 0, false, false),
        "Ok(None)"
    );
    let explicit = resolve_idle(StartingNice::Idle, 0, false, false);
    assert!(
        explicit.contains("back from SCHED_IDLE") && explicit.contains("LimitNICE=20"),
        "{explicit}"
    );
    let elsewhere = resolve(StartingNice::Idle, 0, true).unwrap_err();
    assert!(elsewhere.contains("SCHED_IDLE is Linux's"), "{elsewhere}");
}

#[test]
fn a_herd_in_another_class_than_sched_other_lowers_the_nice_value_instead() {
    let may = |_| Ok(());
    for policy in [1, 2, 3, 5, 6] {
        let idle = SchedIdle::on_linux_in(policy);
        assert!(matches!(idle, SchedIdle::HerdIn(_)), "{policy}");
        let auto = StartingNice::Auto.resolve(0, idle, may).unwrap().unwrap();
        assert_eq!(auto.starting, Lowered::Nice(LOWEST), "{policy}");
        let e = StartingNice::Idle.resolve(0, idle, may).unwrap_err();
        assert!(
            e.contains("herd runs in SCHED_") && !e.contains('\n'),
            "{e}"
        );
    }
    assert!(StartingNice::Idle
        .resolve(0, SchedIdle::on_linux_in(3), may)
        .unwrap_err()
        .contains("SCHED_BATCH"));
    // SCHED_OTHER, or any class with SCHED_RESET_ON_FORK: workers start in SCHED_OTHER.
    assert_eq!(SchedIdle::on_linux_in(0), SchedIdle::Available);
    assert_eq!(
        SchedIdle::on_linux_in(1 | 0x4000_0000),
        SchedIdle::Available
    );
    let auto = StartingNice::Auto.resolve(0, SchedIdle::Available, may);
    assert_eq!(auto.unwrap().unwrap().starting, Lowered::Idle);
}

#[test]
fn workers_of_another_user_need_cap_sys_nice_and_the_refusal_says_so() {
    let e = resolve_idle(StartingNice::Idle, 0, true, false);
    assert!(
        e.contains("another user (--user)")
            && e.contains("CAP_SYS_NICE")
            && !e.contains("LimitNICE"),
        "{e}"
    );
    assert_eq!(resolve_idle(StartingNice::Auto, 0, true, false), "Ok(None)");
}

#[test]
fn auto_lowers_to_19_only_when_herd_may_raise_back() {
    let on = WarmUp {
        starting: Lowered::Nice(19),
        serving: 0,
        class: 0,
    };
    assert_eq!(resolve(StartingNice::Auto, 0, true), Ok(Some(on)));
    assert_eq!(resolve(StartingNice::Auto, 0, false), Ok(None));
    assert_eq!(resolve(StartingNice::Auto, 19, true), Ok(None));
    let at_5 = resolve(StartingNice::Auto, 5, true).unwrap().unwrap();
    assert_eq!((at_5.starting, at_5.serving), (Lowered::Nice(19), 5));
}

#[test]
fn off_never_lowers() {
    assert_eq!(resolve(StartingNice::Off, 0, true), Ok(None));
    assert_eq!(resolve_idle(StartingNice::Off, 0, false, true), "Ok(None)");
}

#[test]
fn an_explicit_value_that_cannot_work_is_refused_with_the_way_out() {
    let e = resolve(StartingNice::Nice(10), 0, false).unwrap_err();
    assert!(
        e.contains("CAP_SYS_NICE") && e.contains("LimitNICE=20"),
        "{e}"
    );
    let e = resolve(StartingNice::Nice(3), 5, true).unwrap_err();
    assert!(e.contains("from 6 to 19"), "{e}");
    // herd at nice 19: no range to offer ('from 20 to 19').
    let e = resolve(StartingNice::Nice(19), 19, true).unwrap_err();
    assert!(e.contains("lowest priority") && e.contains("off"), "{e}");
    let ok = resolve(StartingNice::Nice(10), 0, true).unwrap().unwrap();
    assert_eq!((ok.starting, ok.serving), (Lowered::Nice(10), 0));
}

#[test]
fn herd_s_first_workers_start_at_its_own_priority() {
    let w = WarmUp {
        starting: Lowered::Idle,
        serving: 0,
        class: 0,
    };
    assert_eq!(w.for_start(false), None);
    assert_eq!(w.for_start(true).map(|l| l.to), Some(Lowered::Idle));
}

#[test]
fn a_start_is_lowered_beside_serving_workers_its_own_slots_where_slots_have_queues() {
    let site = |first_fill, slot_serves, pool_serves, per_slot_queues| StartSite {
        first_fill,
        restart: false,
        slot_serves,
        pool_serves,
        per_slot_queues,
    };
    // One queue for all: any ready worker serves what the start-up would take CPU from.
    assert!(site(false, false, true, false).beside_servers());
    assert!(site(false, true, true, false).beside_servers());
    assert!(!site(false, false, false, false).beside_servers());
    // herd's first fill, whose first ready worker serves already: at herd's priority; a
    // successor beside its slot's ready worker (an upgrade before the fill ended) is lowered.
    assert!(!site(true, false, true, false).beside_servers());
    assert!(site(true, true, true, false).beside_servers());
    // A queue per slot (--balance reuseport): a restart's queue waits for it alone.
    assert!(!site(false, false, true, true).beside_servers());
    assert!(site(false, true, true, true).beside_servers());
    // A restart beside serving workers: at herd's priority, the pool is short of it.
    let restart = StartSite {
        restart: true,
        ..site(false, false, true, false)
    };
    assert!(!restart.beside_servers());
}

#[test]
fn only_a_worker_still_at_herds_class_and_nice_value_is_lowered() {
    let w = WarmUp {
        starting: Lowered::Nice(19),
        serving: 2,
        class: 3,
    };
    let lowering = w.for_start(true).unwrap();
    assert!(lowering.applies_to(Priority { class: 3, nice: 2 }));
    // It chose its own first: `nice -n 5 prog`, `chrt -b 0 prog` under a SCHED_OTHER herd.
    assert!(!lowering.applies_to(Priority { class: 3, nice: 7 }));
    assert!(!lowering.applies_to(Priority { class: 0, nice: 2 }));
    assert!(!lowering.applies_to(Priority {
        class: 3 | 0x4000_0000,
        nice: 2
    }));
}

#[test]
fn workers_start_in_herds_class_less_reset_on_fork() {
    const RESET: i32 = 0x4000_0000;
    let born_in = |policy| born_with(policy, 0).class;
    assert_eq!(born_in(0), 0);
    assert_eq!(born_in(3), 3);
    assert_eq!(born_in(3 | RESET), 3, "SCHED_BATCH is kept");
    assert_eq!(born_in(5 | RESET), 5, "SCHED_IDLE is kept");
    for real_time in [1, 2, 6] {
        assert_eq!(born_in(real_time), real_time);
        assert_eq!(born_in(real_time | RESET), 0, "{real_time}");
    }
    // Raising from SCHED_IDLE to SCHED_OTHER would move a worker born in SCHED_BATCH.
    assert_eq!(SchedIdle::on_linux_in(3 | RESET), SchedIdle::HerdIn(3));
    let auto = StartingNice::Auto.resolve(0, SchedIdle::on_linux_in(3), |_| Ok(()));
    assert_eq!(auto.unwrap().unwrap().class, 3);
}

/// With `SCHED_RESET_ON_FORK`, herd's workers start at nice 0 rather than at a negative nice
/// value of herd's (and a real-time herd's at nice 0 whatever its own): herd lowers a worker
/// only if it still runs at what it started with, and raises it back to that, not to herd's.
#[test]
fn workers_start_at_nice_0_at_the_highest_under_reset_on_fork() {
    const RESET: i32 = 0x4000_0000;
    let at = |class, nice| Priority { class, nice };
    assert_eq!(born_with(0, -5), at(0, -5), "inherited without the flag");
    assert_eq!(born_with(RESET, -5), at(0, 0));
    assert_eq!(
        born_with(RESET, 5),
        at(0, 5),
        "a positive nice value is kept"
    );
    assert_eq!(born_with(3 | RESET, -5), at(3, 0));
    assert_eq!(
        born_with(1 | RESET, 5),
        at(0, 0),
        "real-time: SCHED_OTHER at nice 0"
    );
    assert_eq!(born_with(1, 5), at(1, 5));
}

#[test]
fn a_warm_up_takes_half_the_ready_time_at_most_5s() {
    let sec = Duration::from_secs(1);
    assert_eq!(warm_up_budget(4 * sec), 2 * sec);
    assert_eq!(warm_up_budget(60 * sec), MAX_WARM_UP);
    assert_eq!(warm_up_budget(Duration::ZERO), Duration::ZERO);
    let notify = Readiness::Notify { timeout: 4 * sec };
    assert_eq!(budget_for(notify), 2 * sec);
    assert_eq!(budget_for(Readiness::Delay(sec)), sec / 2);
}

#[test]
fn refusals_are_one_clean_line_with_a_value_the_parser_takes() {
    let at_19 = resolve(StartingNice::Nice(10), 19, true).unwrap_err();
    assert!(!at_19.contains("  ") && !at_19.contains('\n'), "{at_19}");
    let below = resolve(StartingNice::Nice(1), 1, true).unwrap_err();
    assert!(below.contains("from 2 to 19"), "{below}");
    for e in [
        resolve(StartingNice::Idle, 0, true).unwrap_err(),
        resolve_idle(StartingNice::Idle, 0, true, false),
        resolve_idle(StartingNice::Idle, 0, false, false),
    ] {
        assert!(!e.contains("  ") && !e.contains('\n'), "{e}");
    }
}

#[test]
fn parsing() {
    assert_eq!(parse_starting_nice("auto"), Ok(StartingNice::Auto));
    assert_eq!(parse_starting_nice("off"), Ok(StartingNice::Off));
    assert_eq!(parse_starting_nice("idle"), Ok(StartingNice::Idle));
    assert_eq!(parse_starting_nice("19"), Ok(StartingNice::Nice(19)));
    for bad in ["0", "20", "-5", "low", ""] {
        assert!(parse_starting_nice(bad)
            .unwrap_err()
            .contains("auto, off, idle, or a number from 1 to 19"));
    }
}

#[test]
fn a_starved_sched_idle_start_up_trickles_ten_nice_values_below_the_serving_workers() {
    let serving = |nice| move || vec![nice];
    assert_eq!(on_starvation(Lowered::Idle, 0, serving(0)), Some(10));
    assert_eq!(on_starvation(Lowered::Idle, 5, serving(5)), Some(15));
    assert_eq!(on_starvation(Lowered::Idle, 9, serving(9)), Some(LOWEST));
    // No nice value is low enough: herd's priority back, as a worker lowered to a nice value
    // (which gets its small share already) gets it.
    assert_eq!(on_starvation(Lowered::Idle, 10, serving(10)), None);
    let unread = || -> Vec<i32> { panic!("a worker lowered to a nice value is not read") };
    assert_eq!(on_starvation(Lowered::Nice(19), 0, unread), None);
    assert_eq!(on_starvation(Lowered::Nice(5), 0, unread), None);
}

#[test]
fn a_trickle_takes_no_nice_value_a_thread_of_the_worker_chose_itself() {
    // A child started with `nice` (10) while the worker warmed up: the trickle takes 11, so
    // that its end, which raises every thread at the trickle's value, leaves that child at 10.
    assert_eq!(on_starvation(Lowered::Idle, 0, || vec![0, 10]), Some(11));
    assert_eq!(
        on_starvation(Lowered::Idle, 0, || vec![10, 5, 11, 0]),
        Some(12)
    );
    // Below the trickle's range, or herd's own: no matter.
    assert_eq!(on_starvation(Lowered::Idle, 2, || vec![9, 2, -3]), Some(12));
    // Every value left is taken: herd's priority back at once.
    assert_eq!(on_starvation(Lowered::Idle, 8, || vec![18, 19]), None);
    assert_eq!(
        on_starvation(Lowered::Idle, 0, Vec::new),
        Some(10),
        "gone meanwhile"
    );
}

#[test]
fn a_trickle_ends_with_the_longest_warm_up_from_the_start() {
    let t0 = std::time::Instant::now();
    let longest = Duration::from_secs(5);
    let at = |ms| t0 + Duration::from_millis(ms);
    assert_eq!(trickle_until(t0, longest, at(150)), Some(at(5000)));
    // Starved late: it trickles only what is left of its longest warm-up, and keeps the
    // other half of its ready time at herd's priority.
    assert_eq!(trickle_until(t0, longest, at(4500)), Some(at(5000)));
    assert_eq!(
        trickle_until(t0, longest, at(5000)),
        None,
        "over: raised at once"
    );
    assert_eq!(trickle_until(t0, longest, at(9000)), None);
}
