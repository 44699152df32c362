//! What herd says of orphans: bursts held back and counted, stops, re-execs.
use super::*;

/// How many of `log`'s lines are event `event`.
fn count(log: &str, event: &str) -> usize {
    log.lines()
        .filter(|l| {
            l.contains(&format!("event=\"{event}\"")) || l.contains(&format!("event={event} "))
        })
        .count()
}

#[test]
fn a_storm_of_orphans_writes_a_burst_of_lines_then_one_that_counts_the_rest() {
    let (mut fake, mut orphans, t0) = (Fake::default(), Orphans::default(), Instant::now());
    let storm = 200u32;
    let ((), log) = crate::logging::captured::logged(|| {
        for pid in 100..100 + storm {
            fake.child(pid, pid);
        }
        orphans.look(&mut fake, &HashSet::new(), NONE, t0);
        for pid in 100..100 + storm {
            fake.exit(pid, 0);
        }
        orphans.look(&mut fake, &HashSet::new(), NONE, t0 + SEC);
        // Was: 400 lines, 2 per orphan.
        orphans.look(&mut fake, &HashSet::new(), NONE, t0 + lines::WINDOW);
    });
    assert_eq!(
        fake.reaped.len(),
        storm as usize,
        "every one reaped all the same"
    );
    assert_eq!(
        count(&log, "orphan_adopted"),
        lines::BURST as usize,
        "{log}"
    );
    assert_eq!(count(&log, "orphan_exited"), 0);
    assert_eq!(count(&log, "orphan_lines_held"), 1, "{log}");
    assert!(
        log.contains("390 more lines about orphans held back")
            && log.contains("190 adopted, 200 exited, 0 given herd's priority"),
        "{log}"
    );
}

#[test]
fn a_stop_names_a_few_orphans_and_counts_the_rest() {
    let (mut fake, mut orphans, t0) = (Fake::default(), Orphans::default(), Instant::now());
    for pid in 100..130 {
        fake.child(pid, pid);
    }
    orphans.look(&mut fake, &HashSet::new(), NONE, t0);
    let ((), log) = crate::logging::captured::logged(|| {
        orphans.stop(&mut fake, Signal::TERM, SEC, t0);
        orphans.look(&mut fake, &HashSet::new(), NONE, t0 + SEC);
        orphans.look(&mut fake, &HashSet::new(), NONE, t0 + SEC + KILL_WAIT);
    });
    assert_eq!(fake.signals.len(), 60, "each one signalled, then killed");
    // What the storm's look held back is said first.
    assert!(
        log.contains("20 more lines about orphans held back"),
        "{log}"
    );
    // The table of `herd status` counts orphans; its --json lists them.
    assert!(
        log.contains("sending SIGTERM to 20 more orphans (`herd status --json` lists them)")
            && log.contains("`herd status --json` lists the living"),
        "{log}"
    );
    assert!(log.contains("killing 20 more orphans"), "{log}");
    assert!(log.contains("20 more orphans still there"), "{log}");
    for event in ["orphan_signalled", "orphan_killed", "orphan_stuck"] {
        assert_eq!(
            count(&log, event),
            lines::NAMED_AT_STOP + 1,
            "{event}: {log}"
        );
    }
}

/// What a stop's window held back is said once the last orphan is gone: herd exits then,
/// long before the window would end.
#[test]
fn what_is_held_back_during_a_stop_is_said_once_every_orphan_is_gone() {
    let (mut fake, mut orphans, t0) = (Fake::default(), Orphans::default(), Instant::now());
    for pid in 100..130 {
        fake.child(pid, pid);
    }
    orphans.look(&mut fake, &HashSet::new(), NONE, t0);
    orphans.stop(&mut fake, Signal::TERM, 5 * SEC, t0);
    let ((), log) = crate::logging::captured::logged(|| {
        for pid in 100..130 {
            fake.exit(pid, 0);
        }
        orphans.look(&mut fake, &HashSet::new(), NONE, t0 + MS);
    });
    assert!(orphans.finished());
    assert_eq!(
        count(&log, "orphan_exited"),
        0,
        "the stop's window had its burst: {log}"
    );
    assert!(
        log.contains("30 more lines about orphans held back"),
        "{log}"
    );
    assert!(log.contains("0 adopted, 30 exited"), "{log}");
}

/// An orphan that holds herd's sockets is always named: `herd status` does not say which
/// sockets an orphan holds, and it may serve clients with old code.
#[test]
fn an_orphan_holding_herds_sockets_is_named_past_the_burst_and_held_adoptions_warn() {
    let (mut fake, mut orphans, t0) = (Fake::default(), Orphans::default(), Instant::now());
    for pid in 100..120 {
        fake.child(pid, pid);
    }
    fake.child(500, 500);
    fake.holding.insert(500);
    let ((), log) = crate::logging::captured::logged(|| {
        orphans.look(&mut fake, &HashSet::new(), NONE, t0);
        orphans.look(&mut fake, &HashSet::new(), NONE, t0 + lines::WINDOW);
    });
    assert!(
        log.contains("process 500 (p500)") && log.contains("it holds socket web"),
        "{log}"
    );
    let summary = log
        .lines()
        .find(|l| l.contains("orphan_lines_held"))
        .unwrap_or_default();
    assert!(
        summary.trim_start().starts_with("WARN") && summary.contains("10 adopted"),
        "{log}"
    );
}

/// After a re-exec the new image finds the old one's orphans again: one line counts them (was:
/// each announced anew as "left behind by a worker"); one holding herd's sockets is named still,
/// and orphans left later are new ones.
#[test]
fn orphans_found_again_after_a_reexec_are_counted_in_one_line() {
    let (mut fake, mut orphans, t0) = (Fake::default(), Orphans::default(), Instant::now());
    for pid in 100..105 {
        fake.child(pid, pid);
    }
    fake.child(500, 500);
    fake.holding.insert(500);
    orphans.after_reexec();
    let ((), log) = crate::logging::captured::logged(|| {
        orphans.look(&mut fake, &HashSet::new(), NONE, t0);
        fake.child(106, 106);
        orphans.look(&mut fake, &HashSet::new(), NONE, t0 + SEC);
    });
    assert_eq!(pids(&orphans, t0 + SEC).len(), 7, "every one adopted");
    assert!(log.contains("found after the re-exec: 5 orphans"), "{log}");
    assert!(
        log.contains("process 500 (p500)") && log.contains("process 106 (p106)"),
        "{log}"
    );
    assert_eq!(count(&log, "orphan_adopted"), 3, "{log}");
}

/// A look that holds adoptions (`--fork-server`: a start awaits its fork server's reply)
/// adopts none, so the finding after a re-exec goes on to the next look (was: it ended there,
/// and the next look announced each orphan anew).
#[test]
fn a_look_holding_adoptions_does_not_end_the_finding_after_a_reexec() {
    let (mut fake, mut orphans, t0) = (Fake::default(), Orphans::default(), Instant::now());
    for pid in 100..105 {
        fake.child(pid, pid);
    }
    orphans.after_reexec();
    let ((), log) = crate::logging::captured::logged(|| {
        orphans.hold_adoptions(true);
        orphans.look(&mut fake, &HashSet::new(), NONE, t0);
        orphans.hold_adoptions(false);
        orphans.look(&mut fake, &HashSet::new(), NONE, t0 + SEC);
    });
    assert_eq!(pids(&orphans, t0 + SEC).len(), 5);
    assert!(log.contains("found after the re-exec: 5 orphans"), "{log}");
    assert_eq!(count(&log, "orphan_adopted"), 1, "{log}");
}
