use super::*;

fn view(stopping: bool, available: bool, ready: bool) -> PoolView {
    PoolView {
        stopping,
        all_available: available,
        all_ready: ready,
        desired: 3,
    }
}

#[test]
fn the_first_failure_of_the_first_generation_stops_herd_once_and_is_its_outcome() {
    let mut phase: Phase<()> = Phase::new(None);
    assert!(phase.first_generation_failed("cannot execute ./x".into()));
    assert!(!phase.first_generation_failed("again".into()));
    assert_eq!(phase.outcome(), Err("cannot execute ./x".to_string()));
}

#[test]
fn a_takeover_completes_once_every_worker_is_available() {
    let mut phase = Phase::new(Some("old"));
    assert!(phase
        .after_turn(view(false, false, true))
        .iter()
        .all(|s| !matches!(s, Step::CompleteTakeover(_))));
    assert!(phase.taking_over());
    let steps = phase.after_turn(view(false, true, true));
    assert!(steps.contains(&Step::CompleteTakeover("old")), "{steps:?}");
    assert!(!phase.taking_over());
    // Once only.
    assert!(phase.after_turn(view(false, true, true)).is_empty());
    assert_eq!(phase.outcome(), Ok(()));
}

#[test]
fn a_new_worker_lost_before_it_was_available_aborts_the_takeover_with_the_first_reason() {
    let mut phase = Phase::new(Some("old"));
    phase.worker_lost("worker 0 exited before it was ready".into());
    phase.worker_lost("worker 1 too".into());
    let steps = phase.after_turn(view(false, true, true));
    assert_eq!(
        steps[0],
        Step::AbortTakeover("old", "worker 0 exited before it was ready".into())
    );
    phase.fail("takeover aborted".into());
    assert!(phase.after_turn(view(true, false, false)).is_empty());
    assert!(phase.outcome().is_err());
}

#[test]
fn a_lost_worker_without_a_takeover_changes_nothing() {
    let mut phase: Phase<()> = Phase::new(None);
    phase.worker_lost("exited".into());
    assert_eq!(
        phase.after_turn(view(false, true, true)),
        vec![Step::Report(Report::Ready("3 workers ready".into()))]
    );
    assert_eq!(phase.outcome(), Ok(()));
}

#[test]
fn no_takeover_step_while_stopping_or_failed() {
    let mut phase = Phase::new(Some(1));
    assert!(phase.after_turn(view(true, true, true)).is_empty());
    let mut phase = Phase::new(Some(1));
    phase.first_generation_failed("x".into());
    assert!(phase
        .after_turn(view(false, true, true))
        .iter()
        .all(|s| !matches!(s, Step::CompleteTakeover(_) | Step::AbortTakeover(..))));
}

#[test]
fn the_service_manager_hears_ready_once_and_never_while_stopping() {
    let mut phase: Phase<()> = Phase::new(None);
    assert!(phase.after_turn(view(false, false, false)).is_empty());
    assert!(phase.after_turn(view(true, true, true)).is_empty());
    assert!(!phase.ready_reported());
    let steps = phase.after_turn(view(false, false, true));
    assert_eq!(
        steps,
        vec![Step::Report(Report::Ready("3 workers ready".into()))]
    );
    assert!(phase.after_turn(view(false, false, true)).is_empty());
    assert_eq!(
        phase.upgrade_ended(Ok(2), 3),
        Report::Ready("generation 2, 3 workers".into())
    );
}

#[test]
fn an_upgrade_that_ends_before_herd_was_ready_reports_a_status_only() {
    let phase: Phase<()> = Phase::new(None);
    assert_eq!(
        phase.upgrade_ended(Err(()), 3),
        Report::Status("upgrade aborted; the old workers serve".into())
    );
    let resumed: Phase<()> = Phase::resumed(true);
    assert!(matches!(resumed.upgrade_ended(Ok(4), 1), Report::Ready(_)));
}

#[test]
fn a_reexec_waits_for_takeovers_failures_and_a_pool_it_cannot_export() {
    let idle = view(false, true, true);
    let phase: Phase<()> = Phase::new(None);
    assert_eq!(phase.reexec_refusal(idle, true), None);
    assert_eq!(
        phase.reexec_refusal(idle, false).map(|r| r.0),
        Some(ErrorCode::Busy)
    );
    assert_eq!(
        phase
            .reexec_refusal(view(true, false, false), false)
            .map(|r| r.0),
        Some(ErrorCode::Stopping)
    );
    let taking_over = Phase::new(Some(()));
    assert!(taking_over.reexec_refusal(idle, true).is_some());
    let mut failed: Phase<()> = Phase::new(None);
    failed.fail("x".into());
    assert!(failed.reexec_refusal(idle, true).is_some());
}

#[test]
fn a_graceful_stop_while_stopping_changes_nothing_but_a_fast_one_does() {
    let now = Instant::now();
    let grace = Duration::from_secs(30);
    let graceful = stop_plan(true, false, grace, now).unwrap();
    assert_eq!(graceful.deadline, now + grace);
    assert!(graceful.graceful);
    assert_eq!(stop_plan(true, true, grace, now), None, "a second SIGTERM");
    let fast = stop_plan(false, true, grace, now).unwrap();
    assert!(!fast.graceful);
    assert_eq!(fast.deadline, now, "what is left is killed at once");
    assert!(
        stop_plan(true, false, Duration::MAX, now).is_some(),
        "no overflow panic"
    );
}

#[test]
fn the_service_manager_hears_each_turn_of_herds_course() {
    let mut phase: Phase<()> = Phase::new(None);
    // Never ready: herd is still starting to the service manager, so neither a re-exec nor an
    // upgrade is a reload, and a failed re-exec has nothing to take back.
    assert_eq!(phase.reexecuting(), None);
    assert_eq!(phase.upgrade_started(2), None);
    assert_eq!(phase.reexec_failed(), None);
    let steps = phase.after_turn(view(false, false, true));
    assert_eq!(
        steps,
        vec![Step::Report(Report::Ready("3 workers ready".into()))]
    );
    assert_eq!(
        phase.upgrade_started(2),
        Some(Report::Reloading("upgrading to generation 2".into()))
    );
    assert_eq!(
        phase.upgrade_ended(Ok(2), 3),
        Report::Ready("generation 2, 3 workers".into())
    );
    // Ready before the re-exec: ready again when it fails.
    assert_eq!(
        phase.reexecuting(),
        Some(Report::Reloading("re-executing".into()))
    );
    assert_eq!(
        phase.reexec_failed(),
        Some(Report::Ready(
            "re-exec failed; the old program runs on".into()
        ))
    );
    assert_eq!(phase.stopping(), Some(Report::Stopping));
    // Once (a drain, then the stop), and no READY=1 after it: an upgrade that ends as herd
    // stops says so in a status only.
    assert_eq!(phase.stopping(), None);
    assert_eq!(
        phase.upgrade_ended(Err(()), 3),
        Report::Status("upgrade abandoned: herd is stopping".into())
    );
    let resumed: Phase<()> = Phase::resumed(true);
    assert_eq!(
        resumed.resumed_report(),
        Some(Report::Ready("re-executed".into()))
    );
    assert!(resumed.reexecuted());
    assert!(!Phase::<()>::new(None).reexecuted());
    assert!(resumed.reexec_failed().is_some());
}

#[test]
fn an_image_resumed_before_herd_was_ready_reports_ready_when_the_workers_are() {
    let mut resumed: Phase<()> = Phase::resumed(false);
    assert_eq!(resumed.resumed_report(), None);
    assert!(resumed.after_turn(view(false, false, false)).is_empty());
    assert_eq!(
        resumed.after_turn(view(false, false, true)),
        vec![Step::Report(Report::Ready("3 workers ready".into()))]
    );
}

fn exit(slot: usize, ready: bool, available: bool, stopped_for: Option<Reason>) -> Exit {
    Exit {
        slot,
        generation: 1,
        uptime: Duration::from_millis(5),
        stopped_for,
        restart_in: None,
        lost: false,
        was_ready: ready,
        was_available: available,
    }
}

#[test]
fn a_takeover_fails_on_a_new_worker_that_exits_before_it_is_available_unless_shut_down() {
    let mut phase = Phase::new(Some("old"));
    // Available workers, and workers herd shut down (a stop), do not doom it.
    let delay = Readiness::Delay(Duration::ZERO);
    phase.worker_exited(&exit(0, true, true, None), 10, "exit code 1", delay);
    let shut_down = exit(1, false, false, Some(Reason::Shutdown));
    phase.worker_exited(&shut_down, 11, "x", delay);
    assert!(phase.after_turn(view(false, false, false)).is_empty());
    assert!(phase.taking_over());
    phase.worker_exited(&exit(2, true, false, None), 12, "killed by SIGSEGV", delay);
    // The first loss is the reason.
    phase.worker_exited(&exit(3, false, false, None), 13, "exit code 2", delay);
    assert_eq!(
        phase.after_turn(view(false, false, true))[0],
        Step::AbortTakeover(
            "old",
            "worker 2 (pid 12) exited within --min-ready of becoming ready: killed by SIGSEGV"
                .into()
        )
    );
}

#[test]
fn a_takeover_failed_by_the_ready_timeout_says_so() {
    let mut phase = Phase::new(Some("old"));
    let notify = Readiness::Notify {
        timeout: Duration::from_millis(500),
    };
    let not_ready = exit(3, false, false, Some(Reason::NotReady));
    phase.worker_exited(&not_ready, 13, "killed by SIGKILL", notify);
    assert_eq!(
        phase.after_turn(view(false, false, false)),
        vec![Step::AbortTakeover(
            "old",
            "worker 3 (pid 13) was not ready within --ready-timeout (500ms): herd killed it".into()
        )]
    );
}

#[test]
fn only_the_first_takeover_stop_is_carried_out_while_its_herd_runs() {
    let runs = |_| true;
    let mut phase: Phase<()> = Phase::new(None);
    assert_eq!(phase.taken_over(Some(41), false, runs), Ok(()));
    let refused = Err((
        ErrorCode::TakenOver,
        "herd 41 has taken this herd over already".into(),
    ));
    assert_eq!(phase.taken_over(Some(42), false, runs), refused);
    assert_eq!(phase.taken_over(None, false, runs), refused);
    // The first herd asking again is the same takeover.
    assert_eq!(phase.taken_over(Some(41), false, runs), Ok(()));
    // Once it is gone, the next herd takes its place (and is the one that counts).
    assert_eq!(phase.taken_over(Some(42), false, |pid| pid != 41), Ok(()));
    let (_, why) = phase.taken_over(Some(43), false, runs).unwrap_err();
    assert_eq!(why, "herd 42 has taken this herd over already");
    // A first herd whose pid the system did not say cannot be told gone.
    let mut phase: Phase<()> = Phase::new(None);
    assert_eq!(phase.taken_over(None, false, runs), Ok(()));
    let (_, why) = phase.taken_over(Some(42), false, |_| false).unwrap_err();
    assert_eq!(why, "another herd has taken this herd over already");
}

/// A herd asked to stop (draining first, say) is not taken over: its service would run on
/// under the new herd after the stop; a takeover that came first is carried out again.
#[test]
fn a_stopping_herd_is_not_taken_over() {
    let mut phase: Phase<()> = Phase::new(None);
    let (code, why) = phase.taken_over(Some(41), true, |_| true).unwrap_err();
    assert_eq!(code, ErrorCode::Stopping);
    assert!(
        why.starts_with("it is stopping, as it was asked to"),
        "{why}"
    );
    assert_eq!(phase.taken_over(Some(42), false, |_| true), Ok(()));
    assert_eq!(phase.taken_over(Some(42), true, |_| true), Ok(()));
}

/// A herd still taking over another (its workers not yet available) is not taken over in turn:
/// it stopped, and the herd it was replacing served on beside the newest, unseen.
#[test]
fn a_herd_still_taking_over_is_not_taken_over() {
    let mut phase = Phase::new(Some("old"));
    let (code, why) = phase.taken_over(Some(41), false, |_| true).unwrap_err();
    assert_eq!(code, ErrorCode::Busy);
    assert!(why.contains("still taking over another herd"), "{why}");
}

#[test]
fn a_takeover_failed_by_the_watchdog_says_so() {
    let mut phase = Phase::new(Some("old"));
    let ready = Readiness::Notify {
        timeout: Duration::from_secs(60),
    };
    let starved = exit(1, true, false, Some(Reason::Watchdog));
    phase.worker_exited(&starved, 11, "killed by SIGKILL", ready);
    assert_eq!(
        phase.after_turn(view(false, false, false)),
        vec![Step::AbortTakeover(
            "old",
            "worker 1 (pid 11) sent no WATCHDOG=1 within --watchdog: herd killed it".into()
        )]
    );
}

#[test]
fn an_exit_without_a_takeover_dooms_nothing() {
    let mut phase: Phase<()> = Phase::new(None);
    let delay = Readiness::Delay(Duration::ZERO);
    phase.worker_exited(&exit(0, false, false, None), 10, "exit code 1", delay);
    assert_eq!(
        phase.after_turn(view(false, true, true)),
        vec![Step::Report(Report::Ready("3 workers ready".into()))]
    );
}

#[test]
fn a_refused_reload_still_ends_with_ready() {
    let mut phase: Phase<()> = Phase::new(None);
    assert!(phase.upgrade_refused("x", false, false).is_empty());
    phase.after_turn(view(false, false, true));
    assert_eq!(
        phase.upgrade_refused("too short", false, false),
        vec![
            Report::Reloading("upgrade requested".into()),
            Report::Ready("upgrade refused: too short; the workers serve unchanged".into()),
        ]
    );
    // The upgrade under way ends systemd's reload with its own READY=1.
    let status = Report::Status("upgrade refused: busy".into());
    assert_eq!(phase.upgrade_refused("busy", true, false), vec![status]);
    assert_eq!(phase.upgrade_refused("busy", false, true).len(), 1);
}

/// A stop asked for before the first generation is ready (a drain, during which the pool has
/// not begun to stop) says STOPPING=1, and READY=1 never follows when the workers become ready.
#[test]
fn workers_ready_during_a_drain_send_no_ready_after_stopping() {
    let mut phase: Phase<()> = Phase::new(None);
    assert_eq!(phase.stopping(), Some(Report::Stopping));
    assert_eq!(phase.after_turn(view(false, true, true)), vec![]);
    assert_eq!(phase.upgrade_started(2), None);
}
