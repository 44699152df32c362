use super::*;
use crate::control::results::CommandResult;

/// Who hears what: (client, ok, error code).
fn heard(answers: Vec<Answer<u32>>) -> Vec<(u32, bool, Option<ErrorCode>)> {
    answers
        .into_iter()
        .map(|a| {
            let response = a.reply.response;
            (a.client, response.ok, response.error.map(|e| e.code))
        })
        .collect()
}

#[test]
fn a_stop_with_two_waiters_answers_both_once_herd_has_stopped() {
    let mut waiters = Waiters::default();
    waiters.stop_asked(1);
    waiters.stop_asked(2);
    let answers = waiters.stopped();
    assert!(answers.iter().all(|a| matches!(
        a.reply.response.result,
        Some(CommandResult::Stop(StopResult { stopped: true }))
    )));
    assert_eq!(heard(answers), vec![(1, true, None), (2, true, None)]);
    assert!(waiters.stopped().is_empty(), "each is answered once");
}

#[test]
fn an_upgrades_waiters_hear_its_outcome() {
    let mut waiters = Waiters::default();
    waiters.upgrade_started(Some(1));
    waiters.upgrade_started(None);
    waiters.upgrade_started(Some(2));
    let overridden = ["workers".to_string()];
    let answers = waiters.upgrade_ended(&UpgradeOutcome::Finished(3), &overridden);
    assert!(answers.iter().all(|a| matches!(
        &a.reply.response.result,
        Some(CommandResult::Upgrade(UpgradeResult {
            generation: 3,
            overridden: keys,
        })) if keys == &overridden
    )));
    assert_eq!(heard(answers), vec![(1, true, None), (2, true, None)]);

    waiters.upgrade_started(Some(3));
    let failed = UpgradeOutcome::Aborted("worker 0 never became ready".into());
    let answers = waiters.upgrade_ended(&failed, &[]);
    let message = answers[0].reply.response.error.as_ref().map(|e| &e.message);
    assert_eq!(message, Some(&"worker 0 never became ready".to_string()));
    assert_eq!(
        heard(answers),
        vec![(3, false, Some(ErrorCode::UpgradeFailed))]
    );
    assert!(
        waiters.upgrade_ended(&failed, &[]).is_empty(),
        "answered once"
    );
}

#[test]
fn an_upgrade_that_ends_while_stopping_was_abandoned() {
    assert_eq!(
        UpgradeOutcome::of(Err("stopping".into()), true),
        UpgradeOutcome::Abandoned
    );
    assert_eq!(
        UpgradeOutcome::of(Err("timed out".into()), false),
        UpgradeOutcome::Aborted("timed out".into())
    );
    assert_eq!(UpgradeOutcome::of(Ok(2), true), UpgradeOutcome::Finished(2));
    let mut waiters = Waiters::default();
    waiters.upgrade_started(Some(7));
    let answers = waiters.upgrade_ended(&UpgradeOutcome::Abandoned, &[]);
    assert_eq!(heard(answers), vec![(7, false, Some(ErrorCode::Stopping))]);
}

fn check(pid: u32, client: Option<u32>) -> Check<u32> {
    Check {
        pid,
        client,
        file: PathBuf::from(format!("/usr/bin/herd-{pid}")),
        version: 1,
    }
}

#[test]
fn one_reexec_is_checked_at_a_time_and_comes_back_with_the_verdict() {
    let mut waiters = Waiters::default();
    assert!(!waiters.reexec_checking());
    assert!(waiters.reexec_check_started(check(100, Some(1))).is_ok());
    assert!(waiters.reexec_checking());
    assert_eq!(
        waiters.reexec_check_started(check(101, Some(2))),
        Err(check(101, Some(2)))
    );
    // Another check's verdict (one whose client was answered already) changes nothing.
    assert_eq!(waiters.reexec_checked(99), None);
    // The re-exec runs the file that was checked.
    assert_eq!(waiters.reexec_checked(100), Some(check(100, Some(1))));
    assert!(!waiters.reexec_checking());
    assert_eq!(waiters.reexec_checked(100), None);
}

#[test]
fn a_stop_cancels_the_reexec_being_checked_and_answers_its_client() {
    let mut waiters = Waiters::default();
    assert!(waiters.reexec_cancelled().is_none());
    waiters.reexec_check_started(check(100, Some(1))).unwrap();
    let refused = waiters.reexec_cancelled().expect("a check was under way");
    assert_eq!(refused.code, ErrorCode::Stopping);
    assert_eq!(
        heard(refused.answer().into_iter().collect()),
        vec![(1, false, Some(ErrorCode::Stopping))]
    );
    // Its verdict, when it comes, is nobody's.
    assert_eq!(waiters.reexec_checked(100), None);
    // SIGUSR2's re-exec has nobody to answer, but is cancelled all the same.
    waiters.reexec_check_started(check(200, None)).unwrap();
    let refused = waiters.reexec_cancelled().expect("a check was under way");
    assert!(refused.answer().is_none());
}

#[test]
fn a_refused_reexec_answers_its_client_with_the_code_and_why() {
    let refused = ReexecRefused::new(Some(4), ErrorCode::Busy, "upgrading; try again");
    let answer = refused.answer().expect("a client");
    let error = answer.reply.response.error.expect("an error");
    assert_eq!((answer.client, error.code), (4, ErrorCode::Busy));
    assert_eq!(error.message, "upgrading; try again");
    assert!(ReexecRefused::<u32>::new(None, ErrorCode::Busy, "x")
        .answer()
        .is_none());
}
