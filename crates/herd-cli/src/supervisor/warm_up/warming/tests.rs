//! The workers warming up: who is raised and when (readiness, budget, starvation), what a
//! re-exec hands over, the budget's timing.

use std::time::{Duration, Instant};

use super::*;
use crate::supervisor::pool::Readiness;
use crate::supervisor::warm_up::{SchedStat, MAX_WARM_UP, MIN_WARM_UP, STARVED_AFTER};

const IDLE: Lowered = Lowered::Idle;

#[test]
fn where_run_queue_waits_cannot_be_read_no_sample_is_taken_nor_waited_for() {
    let t0 = Instant::now();
    let mut w = Warming::default();
    w.set_sampling(false);
    w.started(10, t0, Duration::from_secs(1), IDLE);
    assert_eq!(w.next_deadline(), Some(t0 + Duration::from_secs(1)));
    let mut read = 0;
    for tick in 1..20 {
        w.starved(t0 + SAMPLE_EVERY * tick, |_| {
            read += 1;
            None
        });
    }
    assert_eq!(read, 0);
    assert_eq!(w.due(t0 + Duration::from_secs(1)), [(10, IDLE)]);
}

#[test]
fn a_cut_ends_one_warm_up_cut_short_every_one_and_both_keep_the_full_priority_timings() {
    let t0 = Instant::now();
    let mut w = Warming::default();
    w.started_at_full(1, t0);
    w.started(9, t0, Duration::from_secs(5), IDLE);
    w.started(10, t0, Duration::from_secs(5), IDLE);
    w.started(11, t0, Duration::from_secs(5), Lowered::Nice(10));
    assert_eq!((w.cut(9), w.cut(9), w.cut(1)), (Some(IDLE), None, None));
    assert_eq!(w.cut_short(), [(10, IDLE), (11, Lowered::Nice(10))]);
    assert!(w.cut_short().is_empty());
    assert_eq!((w.next_deadline(), w.ready(10, t0)), (None, None));
    // The first worker's start-up is still timed for the budget.
    w.ready(1, t0 + Duration::from_millis(300));
    let ready_within = Readiness::Notify {
        timeout: Duration::from_secs(60),
    };
    assert_eq!(
        w.budget(ready_within),
        Duration::from_millis(300) * BUDGET_FACTOR
    );
}

#[test]
fn warm_ups_end_at_their_deadlines_once() {
    let t0 = Instant::now();
    let sec = Duration::from_secs(1);
    let mut w = Warming::default();
    assert_eq!(w.next_deadline(), None);
    w.started(10, t0, 2 * sec, IDLE);
    w.started(11, t0, sec, IDLE);
    // The first sample comes first.
    assert_eq!(w.next_deadline(), Some(t0 + SAMPLE_EVERY));
    assert!(w.due(t0).is_empty());
    assert_eq!(w.due(t0 + sec), [(11, IDLE)]);
    assert!(w.starved(t0 + sec, |_| None).is_empty(), "unreadable");
    assert_eq!(w.next_deadline(), Some(t0 + sec + SAMPLE_EVERY));
    assert_eq!(w.due(t0 + 3 * sec), [(10, IDLE)]);
    assert!(w.due(t0 + 3 * sec).is_empty());
    assert_eq!(w.next_deadline(), None);
}

#[test]
fn only_a_worker_still_warming_up_is_raised_on_readiness() {
    let t0 = Instant::now();
    let mut w = Warming::default();
    w.started(10, t0, Duration::ZERO, IDLE);
    w.started(11, t0, Duration::from_secs(1), IDLE);
    assert_eq!(w.ended(11), Some(IDLE), "lowered by herd");
    assert_eq!(w.ended(11), None, "once");
    assert_eq!(w.ended(12), None, "never lowered: keeps its own priority");
    assert_eq!(w.due(t0), [(10, IDLE)]);
    assert_eq!(w.ended(10), None, "already raised at its deadline");
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
    assert_eq!(w.ready(1, t0 + ms(300)), None, "not lowered");
    assert_eq!(w.ready(2, t0 + ms(100)), None);
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
    assert_eq!(w.ended(3), None);
    assert_eq!(w.ready(3, t0 + Duration::from_secs(9)), None);
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
    before.started(10, t0, MAX_WARM_UP, IDLE);
    before.started(11, t0, MAX_WARM_UP, IDLE);
    before.started(13, t0, MAX_WARM_UP, Lowered::Nice(19));
    before.ended(11);
    let handed = before.lowered().into_iter().map(|(p, h)| (p, Some(h)));
    let mut after = Warming::default();
    after.handed_over(handed.collect(), vec![]);
    after.resume(Some(IDLE), |_| Some(t0), t0, MAX_WARM_UP);
    assert_eq!(
        after.ended(12),
        None,
        "a worker starting that herd did not lower"
    );
    assert_eq!(after.ended(11), None, "ready before the re-exec");
    assert_eq!(after.ended(10), Some(IDLE));
    assert_eq!(
        after.ended(13),
        Some(Lowered::Nice(19)),
        "as it was lowered"
    );
}

#[test]
fn a_reexec_raises_each_worker_as_it_was_lowered_whatever_the_new_image_resolves() {
    let t0 = Instant::now();
    let handed = vec![(10, Some(Lowered::Nice(19))), (11, Some(IDLE)), (12, None)];
    // The new image resolves the option off: what was lowered is still raised, as it was.
    let mut off = Warming::default();
    off.handed_over(handed.clone(), vec![]);
    off.resume(None, |_| Some(t0), t0, MAX_WARM_UP);
    assert_eq!(off.ended(10), Some(Lowered::Nice(19)));
    assert_eq!(off.ended(11), Some(IDLE));
    assert_eq!(off.ended(12), None, "unknown, and nothing to assume");
    // An older image did not say how: taken as this image would lower it.
    let mut nice = Warming::default();
    nice.handed_over(handed, vec![]);
    nice.resume(
        Some(Lowered::Nice(10)),
        |pid| (pid != 11).then_some(t0),
        t0,
        MAX_WARM_UP,
    );
    assert_eq!(
        nice.ended(10),
        Some(Lowered::Nice(19)),
        "not the new image's 10"
    );
    assert_eq!(nice.ended(11), None, "ready meanwhile");
    assert_eq!(nice.ended(12), Some(Lowered::Nice(10)));
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
        assert!(starved.is_empty() || starved == [(10, IDLE)], "{starved:?}");
        !starved.is_empty()
    })
}

/// Samples worker 10 of `w`, waiting all the time from `t0`: it is starved once it waited
/// [`STARVED_AFTER`]; the tick at which it was.
fn starved_waiting_all_the_time(w: &mut Warming, t0: Instant) -> u32 {
    let ticks = (STARVED_AFTER.as_millis() / SAMPLE_EVERY.as_millis()) as u32;
    assert_eq!(
        starved_at(w, t0, busy_waiting(SAMPLE_EVERY), 100),
        Some(ticks)
    );
    ticks
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
    w.started(10, t0, Duration::from_secs(2), IDLE);
    // Waiting a fifth of the time, as beside serving workers with CPU to spare.
    assert_eq!(
        starved_at(&mut w, t0, busy_waiting(SAMPLE_EVERY / 5), 39),
        None
    );
    assert_eq!(w.due(t0 + Duration::from_secs(2)), [(10, IDLE)]);
}

#[test]
fn at_saturation_a_worker_is_starved_after_its_allowance() {
    let t0 = Instant::now();
    let mut w = Warming::default();
    w.started(10, t0, MAX_WARM_UP, IDLE);
    // Waiting all the time: starved once it waited STARVED_AFTER, long before the budget.
    let ticks = starved_waiting_all_the_time(&mut w, t0);
    // Still warming up: the caller makes it trickle, or raises it and forgets it.
    assert_eq!(w.ended(10), Some(IDLE));
    assert_eq!(w.ended(10), None, "forgotten once raised");
    // The kernel counts a wait only once the task runs: one that never does counts none,
    // but is runnable and runs nothing.
    let mut w = Warming::default();
    w.started(10, t0, MAX_WARM_UP, IDLE);
    let never_runs = counted(Duration::ZERO, true);
    assert_eq!(starved_at(&mut w, t0, never_runs, 100), Some(ticks));
    // A wait now and then does not add up: only waits in a row count.
    let mut w = Warming::default();
    w.started(10, t0, MAX_WARM_UP, IDLE);
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
    w.started(10, t0, MAX_WARM_UP, IDLE);
    assert_eq!(
        starved_at(&mut w, t0, counted(Duration::ZERO, false), 99),
        None
    );
}

#[test]
fn a_worker_whose_wait_cannot_be_read_warms_up_until_its_budget_ends() {
    let t0 = Instant::now();
    let mut w = Warming::default();
    w.started(10, t0, MAX_WARM_UP, IDLE);
    for tick in 1..100u32 {
        // Readable now and then: counting starts again after each gap.
        let waited = stat(Duration::ZERO, SAMPLE_EVERY * tick, true);
        let read = (tick % 3 == 0).then_some(waited);
        assert!(w.starved(t0 + SAMPLE_EVERY * tick, |_| read).is_empty());
    }
    assert_eq!(w.due(t0 + MAX_WARM_UP), [(10, IDLE)]);
}

#[test]
fn a_worker_handed_over_by_a_reexec_counts_its_wait_from_its_first_sample() {
    let t0 = Instant::now();
    let mut w = Warming::default();
    w.handed_over(vec![(10, Some(IDLE))], vec![]);
    w.resume(None, |_| Some(t0), t0, MAX_WARM_UP);
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
        w.started(pid, t0, MAX_WARM_UP, IDLE);
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
fn a_wait_the_kernel_books_late_counts_once() {
    let t0 = Instant::now();
    let mut w = Warming::default();
    w.started(10, t0, MAX_WARM_UP, IDLE);
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
    assert_eq!(w.starved(at(3 + ticks), |_| Some(again)), [(10, IDLE)]);
}

#[test]
fn a_trickling_worker_is_not_sampled_again_and_is_raised_from_its_nice_value() {
    let t0 = Instant::now();
    let mut w = Warming::default();
    w.started(10, t0, MAX_WARM_UP, IDLE);
    let ticks = starved_waiting_all_the_time(&mut w, t0);
    let at = t0 + SAMPLE_EVERY * ticks;
    let until = w.trickle_until(10, MAX_WARM_UP, at).unwrap();
    w.trickle(10, 10, until);
    // Starved still (a trickle waits most of the time), but never found so again: no sample
    // is even due.
    assert_eq!(w.next_deadline(), Some(until));
    let mut read = 0;
    for tick in 1..200 {
        let starved = w.starved(at + SAMPLE_EVERY * tick, |_| {
            read += 1;
            Some(stat(Duration::ZERO, SAMPLE_EVERY * tick, true))
        });
        assert!(starved.is_empty(), "tick {tick}");
    }
    assert_eq!(read, 0);
    // Ready, or its longest budget over: raised from the nice value it trickles at.
    assert_eq!(w.due(until), [(10, Lowered::Nice(10))]);
    w.started(11, at, MAX_WARM_UP, IDLE);
    w.trickle(11, 10, at + MAX_WARM_UP);
    assert_eq!(w.ready(11, at), Some(Lowered::Nice(10)));
    assert_eq!(w.ended(11), None, "once");
    assert_eq!(w.trickle_until(11, MAX_WARM_UP, at), None, "not warming up");
}

#[test]
fn a_trickle_ends_with_the_longest_warm_up_counted_from_the_start_not_from_the_starvation() {
    let t0 = Instant::now();
    let secs = Duration::from_secs;
    let mut w = Warming::default();
    // Its budget is 4 s; starved only at 3.5 s (CPU to spare until then), it may trickle
    // until 5 s after it started, not 5 s after it was starved: the other half of its ready
    // time is herd's priority's.
    w.started(10, t0, secs(4), IDLE);
    let starved = t0 + Duration::from_millis(3500);
    assert_eq!(
        w.trickle_until(10, MAX_WARM_UP, starved),
        Some(t0 + MAX_WARM_UP)
    );
    w.trickle(10, 10, t0 + MAX_WARM_UP);
    assert!(w.due(t0 + secs(5) - SAMPLE_EVERY).is_empty());
    assert_eq!(w.due(t0 + secs(5)), [(10, Lowered::Nice(10))]);
    // After a re-exec, a warm-up (and so its longest) counts from the new image's start.
    w.handed_over(vec![(11, Some(IDLE))], vec![]);
    w.resume(None, |_| Some(t0 + secs(6)), t0 + secs(7), secs(4));
    assert_eq!(
        w.trickle_until(11, MAX_WARM_UP, t0 + secs(8)),
        Some(t0 + secs(12))
    );
}

#[test]
fn a_reexec_carries_a_trickle_which_goes_on_unsampled_until_its_new_budget_ends() {
    let t0 = Instant::now();
    let mut before = Warming::default();
    before.started(10, t0, MAX_WARM_UP, IDLE);
    let ticks = starved_waiting_all_the_time(&mut before, t0);
    let at = t0 + SAMPLE_EVERY * ticks;
    before.trickle(10, 10, before.trickle_until(10, MAX_WARM_UP, at).unwrap());
    before.started(11, at, MAX_WARM_UP, IDLE);
    assert_eq!(before.trickling(), [10]);
    let handed = before.lowered().into_iter().map(|(p, h)| (p, Some(h)));
    let mut after = Warming::default();
    after.handed_over(handed.collect(), before.trickling());
    let resumed = at + SAMPLE_EVERY;
    after.resume(Some(IDLE), |_| Some(t0), resumed, MAX_WARM_UP);
    assert_eq!(after.trickling(), [10]);
    // Waiting all the time, as a trickle does: only the one still in SCHED_IDLE is read,
    // and found starved.
    let mut read = Vec::new();
    let starved = (1..100u32).find_map(|tick| {
        let starved = after.starved(resumed + SAMPLE_EVERY * tick, |pid| {
            read.push(pid);
            Some(stat(Duration::ZERO, SAMPLE_EVERY * tick, true))
        });
        (!starved.is_empty()).then_some(starved)
    });
    assert_eq!(starved.unwrap(), [(11, IDLE)]);
    assert!(!read.contains(&10), "{read:?}");
    // Raised from the nice value it trickles once its longest warm-up from its start is over
    // (the new image's for the one in SCHED_IDLE).
    assert_eq!(
        after.due(resumed + MAX_WARM_UP),
        [(10, Lowered::Nice(10)), (11, IDLE)]
    );
    // An older image's state says nothing of a trickle: sampled, as before.
    let mut older = Warming::default();
    older.handed_over(vec![(10, Some(Lowered::Nice(10)))], vec![]);
    older.resume(Some(IDLE), |_| Some(t0), resumed, MAX_WARM_UP);
    assert!(older.trickling().is_empty());
    // A trickle handed over for a worker lowered to SCHED_IDLE (or unknown) is not trusted.
    let mut odd = Warming::default();
    odd.handed_over(vec![(10, Some(IDLE)), (11, None)], vec![10, 11]);
    odd.resume(Some(IDLE), |_| Some(t0), resumed, MAX_WARM_UP);
    assert!(odd.trickling().is_empty());
}

#[test]
fn a_reexec_does_not_lengthen_a_trickle_past_the_longest_warm_up_from_the_workers_start() {
    let t0 = Instant::now();
    let secs = Duration::from_secs;
    let handed = || vec![(10, Some(Lowered::Nice(10)))];
    // Worker 10 started at t0 and trickles until its longest warm-up, 4 s, is over; re-executed
    // at 3 s, it trickles on until 4 s, not 7 s (re-executed every second, it trickled on
    // into its --ready-timeout).
    let mut w = Warming::default();
    w.handed_over(handed(), vec![10]);
    w.resume(Some(IDLE), |_| Some(t0), t0 + secs(3), secs(4));
    assert_eq!(w.trickling(), [10]);
    assert!(w.due(t0 + secs(4) - Duration::from_millis(1)).is_empty());
    assert_eq!(w.due(t0 + secs(4)), [(10, Lowered::Nice(10))]);
    // Re-executed after that: herd's priority at once.
    let mut late = Warming::default();
    late.handed_over(handed(), vec![10]);
    late.resume(Some(IDLE), |_| Some(t0), t0 + secs(5), secs(4));
    assert_eq!(late.due(t0 + secs(5)), [(10, Lowered::Nice(10))]);
}
