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
    };
    assert_eq!(w.for_start(false), None);
    assert_eq!(w.for_start(true), Some(Lowered::Idle));
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
fn warm_ups_end_at_their_deadlines_once() {
    let t0 = Instant::now();
    let sec = Duration::from_secs(1);
    let mut w = Warming::default();
    assert_eq!(w.next_deadline(), None);
    w.started(10, t0, 2 * sec);
    w.started(11, t0, sec);
    // The first sample comes first.
    assert_eq!(w.next_deadline(), Some(t0 + SAMPLE_EVERY));
    assert!(w.due(t0).is_empty());
    assert_eq!(w.due(t0 + sec), [11]);
    assert!(w.starved(t0 + sec, |_| None).is_empty(), "unreadable");
    assert_eq!(w.next_deadline(), Some(t0 + sec + SAMPLE_EVERY));
    assert_eq!(w.due(t0 + 3 * sec), [10]);
    assert!(w.due(t0 + 3 * sec).is_empty());
    assert_eq!(w.next_deadline(), None);
}

#[test]
fn only_a_worker_still_warming_up_is_raised_on_readiness() {
    let t0 = Instant::now();
    let mut w = Warming::default();
    w.started(10, t0, Duration::ZERO);
    w.started(11, t0, Duration::from_secs(1));
    assert!(w.ended(11), "lowered by herd");
    assert!(!w.ended(11), "once");
    assert!(!w.ended(12), "never lowered: keeps its own priority");
    assert_eq!(w.due(t0), [10]);
    assert!(!w.ended(10), "already raised at its deadline");
}

#[test]
fn the_budget_is_a_few_times_the_slowest_recent_start_up_at_full_priority() {
    let t0 = Instant::now();
    let ms = Duration::from_millis;
    let notify = Readiness::Notify {
        timeout: Duration::from_secs(60),
    };
    let mut w = Warming::default();
    assert_eq!(w.budget(notify), MAX_WARM_UP, "nothing timed yet");
    w.started_at_full(1, t0);
    w.started_at_full(2, t0);
    assert!(!w.ready(1, t0 + ms(300)), "not lowered");
    assert!(!w.ready(2, t0 + ms(100)));
    assert_eq!(w.budget(notify), ms(600));
    // Never below the floor, never above half the ready time.
    let mut quick = Warming::default();
    quick.started_at_full(1, t0);
    quick.ready(1, t0 + ms(10));
    assert_eq!(quick.budget(notify), MIN_WARM_UP);
    let short = Readiness::Notify { timeout: ms(800) };
    assert_eq!(w.budget(short), ms(400));
    // A worker that exits before it is ready is not timed.
    w.started_at_full(3, t0);
    assert!(!w.ended(3));
    assert!(!w.ready(3, t0 + Duration::from_secs(9)));
    assert_eq!(w.budget(notify), ms(600));
}

#[test]
fn the_budget_forgets_old_start_ups() {
    let t0 = Instant::now();
    let ms = Duration::from_millis;
    let notify = Readiness::Notify {
        timeout: Duration::from_secs(60),
    };
    let mut w = Warming::default();
    w.started_at_full(1, t0);
    w.ready(1, t0 + ms(1000));
    for pid in 2..(2 + TIMED as u32) {
        w.started_at_full(pid, t0);
        w.ready(pid, t0 + ms(200));
    }
    assert_eq!(w.budget(notify), ms(400));
}

#[test]
fn a_reexec_carries_which_workers_herd_lowered_and_no_others() {
    let t0 = Instant::now();
    let mut before = Warming::default();
    before.started(10, t0, MAX_WARM_UP);
    before.started(11, t0, MAX_WARM_UP);
    before.ended(11);
    let mut after = Warming::default();
    after.resume(&before.pids(), t0, MAX_WARM_UP);
    assert!(
        !after.ended(12),
        "a worker starting that herd did not lower"
    );
    assert!(!after.ended(11), "ready before the re-exec");
    assert!(after.ended(10));
}

/// Samples `w` every [`SAMPLE_EVERY`] from `t0` for `ticks` ticks, worker 10 running `ran`
/// and counted as waiting `waited` more each tick, `runnable` at each sample; the tick at
/// which it was starved, if it was.
fn starved_at(
    w: &mut Warming,
    t0: Instant,
    (ran, waited, runnable): (Duration, Duration, bool),
    ticks: u32,
) -> Option<u32> {
    (1..=ticks).find(|&tick| {
        let now = stat(ran * tick, waited * tick, runnable);
        let starved = w.starved(t0 + SAMPLE_EVERY * tick, |_| Some(now));
        assert!(starved.is_empty() || starved == [10], "{starved:?}");
        !starved.is_empty()
    })
}

/// A task waiting `waited` of each [`SAMPLE_EVERY`] and running the rest, runnable.
fn busy_waiting(waited: Duration) -> (Duration, Duration, bool) {
    (SAMPLE_EVERY - waited, waited, true)
}

/// A task that never runs, counted as waiting `waited` each [`SAMPLE_EVERY`] (the kernel
/// counts a wait once the task runs), with `runnable` at every sample.
fn counted(waited: Duration, runnable: bool) -> (Duration, Duration, bool) {
    (Duration::ZERO, waited, runnable)
}

fn stat(ran: Duration, waited: Duration, runnable: bool) -> SchedStat {
    SchedStat {
        ran,
        waited,
        runnable,
    }
}

#[test]
fn with_cpu_to_spare_a_worker_warms_up_until_its_budget_ends() {
    let t0 = Instant::now();
    let mut w = Warming::default();
    w.started(10, t0, Duration::from_secs(2));
    // Waiting a fifth of the time, as beside serving workers with CPU to spare.
    assert_eq!(
        starved_at(&mut w, t0, busy_waiting(SAMPLE_EVERY / 5), 39),
        None
    );
    assert_eq!(w.due(t0 + Duration::from_secs(2)), [10]);
}

#[test]
fn at_saturation_a_worker_is_starved_after_its_allowance() {
    let t0 = Instant::now();
    let mut w = Warming::default();
    w.started(10, t0, MAX_WARM_UP);
    // Waiting all the time: starved once it waited STARVED_AFTER, long before the budget.
    let ticks = (STARVED_AFTER.as_millis() / SAMPLE_EVERY.as_millis()) as u32;
    assert_eq!(
        starved_at(&mut w, t0, busy_waiting(SAMPLE_EVERY), 100),
        Some(ticks)
    );
    assert!(!w.ended(10), "forgotten once raised");
    // The kernel counts a wait only once the task runs: one that never does counts none,
    // but is runnable and runs nothing.
    let mut w = Warming::default();
    w.started(10, t0, MAX_WARM_UP);
    let never_runs = counted(Duration::ZERO, true);
    assert_eq!(starved_at(&mut w, t0, never_runs, 100), Some(ticks));
    // A wait now and then does not add up: only waits in a row count.
    let mut w = Warming::default();
    w.started(10, t0, MAX_WARM_UP);
    let mut total = Duration::ZERO;
    for tick in 1..100u32 {
        total += if tick % 2 == 0 {
            SAMPLE_EVERY
        } else {
            Duration::ZERO
        };
        let ran = SAMPLE_EVERY * tick - total;
        let starved = w.starved(t0 + SAMPLE_EVERY * tick, |_| Some(stat(ran, total, true)));
        assert!(starved.is_empty(), "tick {tick}");
    }
}

#[test]
fn a_worker_blocked_on_io_is_not_starved() {
    let t0 = Instant::now();
    let mut w = Warming::default();
    w.started(10, t0, MAX_WARM_UP);
    assert_eq!(
        starved_at(&mut w, t0, counted(Duration::ZERO, false), 99),
        None
    );
}

#[test]
fn a_worker_whose_wait_cannot_be_read_warms_up_until_its_budget_ends() {
    let t0 = Instant::now();
    let mut w = Warming::default();
    w.started(10, t0, MAX_WARM_UP);
    for tick in 1..100u32 {
        // Readable now and then: counting starts again after each gap.
        let waited = stat(Duration::ZERO, SAMPLE_EVERY * tick, true);
        let read = (tick % 3 == 0).then_some(waited);
        assert!(w.starved(t0 + SAMPLE_EVERY * tick, |_| read).is_empty());
    }
    assert_eq!(w.due(t0 + MAX_WARM_UP), [10]);
}

#[test]
fn a_worker_handed_over_by_a_reexec_counts_its_wait_from_its_first_sample() {
    let t0 = Instant::now();
    let mut w = Warming::default();
    w.resume(&[10], t0, MAX_WARM_UP);
    // It had waited 10 s before: that is not this warm-up's.
    let ten = Duration::from_secs(10);
    let before = stat(Duration::ZERO, ten, false);
    assert!(w.starved(t0 + SAMPLE_EVERY, |_| Some(before)).is_empty());
    let waited = |tick: u32| Some(stat(Duration::ZERO, ten + SAMPLE_EVERY * (tick - 1), false));
    let starved = (2..100).find(|&tick| {
        !w.starved(t0 + SAMPLE_EVERY * tick, |_| waited(tick))
            .is_empty()
    });
    let ticks = (STARVED_AFTER.as_millis() / SAMPLE_EVERY.as_millis()) as u32;
    assert_eq!(starved, Some(1 + ticks));
}

#[test]
fn samples_come_at_most_every_interval_and_read_a_bounded_number_in_turn() {
    let t0 = Instant::now();
    let mut w = Warming::default();
    let n = SAMPLED_PER_TICK as u32 * 2 + 1;
    for pid in 0..n {
        w.started(pid, t0, MAX_WARM_UP);
    }
    let mut read = Vec::new();
    w.starved(t0 + SAMPLE_EVERY / 2, |pid| {
        read.push(pid);
        None
    });
    assert!(read.is_empty(), "not due yet");
    for tick in 1..=3 {
        w.starved(t0 + SAMPLE_EVERY * tick, |pid| {
            read.push(pid);
            None
        });
        assert_eq!(read.len(), SAMPLED_PER_TICK * tick as usize);
    }
    // Every worker read before any is read twice.
    let mut first_round = read[..n as usize].to_vec();
    first_round.sort_unstable();
    assert_eq!(first_round, (0..n).collect::<Vec<_>>());
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
fn a_wait_the_kernel_books_late_counts_once() {
    let t0 = Instant::now();
    let mut w = Warming::default();
    w.started(10, t0, MAX_WARM_UP);
    let at = |tick: u32| t0 + SAMPLE_EVERY * tick;
    // Two intervals runnable without running: counted as waits, not yet in run_delay.
    for tick in 1..=2 {
        let starved = w.starved(at(tick), |_| {
            Some(stat(Duration::ZERO, Duration::ZERO, true))
        });
        assert!(starved.is_empty(), "tick {tick}");
    }
    // Then it runs the whole interval, and the kernel books those 100 ms of wait: already
    // counted, they do not make it starved (it gets the CPU again).
    let ran_all = stat(SAMPLE_EVERY, SAMPLE_EVERY * 2, true);
    assert!(w.starved(at(3), |_| Some(ran_all)).is_empty());
    // And it starts afresh: waiting again, it is starved only after STARVED_AFTER more.
    let ticks = (STARVED_AFTER.as_millis() / SAMPLE_EVERY.as_millis()) as u32;
    for tick in 4..3 + ticks {
        let again = stat(SAMPLE_EVERY, SAMPLE_EVERY * 2, true);
        assert!(
            w.starved(at(tick), |_| Some(again)).is_empty(),
            "tick {tick}"
        );
    }
    let again = stat(SAMPLE_EVERY, SAMPLE_EVERY * 2, true);
    assert_eq!(w.starved(at(3 + ticks), |_| Some(again)), [10]);
}
