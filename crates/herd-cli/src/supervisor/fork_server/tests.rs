use super::*;

const TIMEOUT: Duration = Duration::from_secs(60);

fn servers() -> ForkServers<&'static str> {
    ForkServers::default()
}

#[test]
fn a_start_starts_the_fork_server_waits_while_it_loads_and_forks_once_it_is_ready() {
    let (mut f, now) = (servers(), Instant::now());
    assert_eq!(f.gate(1), Gate::Missing);
    f.started(1, 100, "one", now, TIMEOUT);
    assert_eq!(f.gate(1), Gate::Loading);
    assert_eq!(f.ready(1), None);
    assert_eq!(f.said_ready(100), Some((1, vec![])));
    assert_eq!(f.gate(1), Gate::Ready);
    assert_eq!(f.ready(1), Some((100, &"one")));
    let shown = ForkServerStatus {
        pid: 100,
        generation: 1,
        ready: true,
    };
    assert_eq!(f.statuses(), vec![shown]);
    // Another generation has none yet.
    assert_eq!(f.gate(2), Gate::Missing);
    // A second READY=1 is no news.
    assert_eq!(f.said_ready(100), None);
    assert_eq!(f.said_ready(999), None);
}

#[test]
fn a_newer_generation_ready_closes_the_older_ones() {
    let (mut f, now) = (servers(), Instant::now());
    f.started(1, 100, "one", now, TIMEOUT);
    f.said_ready(100);
    f.started(2, 200, "two", now, TIMEOUT);
    // Loading beside the ready older one: the older one stays.
    assert_eq!(f.gate(1), Gate::Ready);
    assert_eq!(f.said_ready(200), Some((2, vec![(100, "one")])));
    assert_eq!(f.gate(1), Gate::Missing);
    assert_eq!(f.pids().collect::<Vec<_>>(), vec![200]);
    // A restart of generation 1 starts one anew; its readiness closes nothing newer.
    f.started(1, 101, "one again", now, TIMEOUT);
    assert_eq!(f.said_ready(101), Some((1, vec![])));
    assert_eq!(f.gate(2), Gate::Ready);
}

#[test]
fn an_exit_before_ready_fails_its_generation_and_after_ready_starts_anew() {
    let (mut f, now) = (servers(), Instant::now());
    f.started(1, 100, "one", now, TIMEOUT);
    let ended = f.exited(100, "exited with status 1");
    let Some(Ended::Failed { generation: 1, why }) = ended else {
        panic!("{ended:?}")
    };
    assert!(
        why.contains("(pid 100) ended (exited with status 1) before it said READY=1"),
        "{why}"
    );
    assert_eq!(f.gate(1), Gate::Missing);
    f.started(1, 101, "one", now, TIMEOUT);
    f.said_ready(101);
    assert_eq!(
        f.exited(101, "was killed by SIGKILL"),
        Some(Ended::WasReady { generation: 1 })
    );
    assert_eq!(f.gate(1), Gate::Missing);
    assert_eq!(f.exited(101, "again"), None);
}

#[test]
fn one_that_loads_too_long_is_killed_and_its_exit_says_why() {
    let (mut f, now) = (servers(), Instant::now());
    f.started(1, 100, "one", now, TIMEOUT);
    assert_eq!(f.next_deadline(), Some(now + SLOW_LOAD));
    f.slow(now + SLOW_LOAD);
    assert_eq!(f.next_deadline(), Some(now + TIMEOUT));
    assert!(f
        .timed_out(now + TIMEOUT - Duration::from_millis(1))
        .is_empty());
    assert_eq!(f.timed_out(now + TIMEOUT), vec![100]);
    assert_eq!(f.next_deadline(), None);
    // Killed and not yet gone: the next start starts another rather than wait for it.
    assert_eq!(f.gate(1), Gate::Missing);
    assert!(f.timed_out(now + TIMEOUT * 2).is_empty());
    let ended = f.exited(100, "was killed by SIGKILL");
    let Some(Ended::Failed { why, .. }) = ended else {
        panic!("{ended:?}")
    };
    assert!(why.contains("did not say READY=1 within 1m"), "{why}");
}

#[test]
fn one_herd_gave_up_on_is_forgotten_and_all_close_at_the_stop() {
    let (mut f, now) = (servers(), Instant::now());
    f.started(1, 100, "one", now, TIMEOUT);
    f.said_ready(100);
    assert_eq!(f.forget(100), Some("one"));
    assert_eq!(f.gate(1), Gate::Missing);
    assert_eq!(f.exited(100, "was killed"), None);
    f.started(1, 101, "a", now, TIMEOUT);
    f.started(2, 201, "b", now, TIMEOUT);
    assert_eq!(f.pids().collect::<Vec<_>>(), vec![101, 201]);
    assert_eq!(f.close_all(), vec![(101, "a"), (201, "b")]);
    assert_eq!(f.pids().count(), 0);
}

#[test]
fn the_exit_of_one_killed_for_loading_too_long_spares_the_starts_waiting_for_its_successor() {
    let (mut f, now) = (servers(), Instant::now());
    f.started(1, 100, "slow", now, TIMEOUT);
    assert_eq!(f.timed_out(now + TIMEOUT), vec![100]);
    // A start meanwhile started another; the first one's exit fails nothing.
    f.started(1, 101, "next", now + TIMEOUT, TIMEOUT);
    assert_eq!(
        f.exited(100, "was killed by SIGKILL"),
        Some(Ended::Superseded { generation: 1 })
    );
    assert_eq!(f.gate(1), Gate::Loading);
}

#[test]
fn one_still_loading_after_five_seconds_is_said_slow_once_before_its_timeout() {
    let (mut f, now) = (servers(), Instant::now());
    f.started(1, 100, "slow", now, TIMEOUT);
    f.started(2, 200, "short", now, SLOW_LOAD);
    assert_eq!(f.next_deadline(), Some(now + SLOW_LOAD));
    assert!(f
        .slow(now + SLOW_LOAD - Duration::from_millis(1))
        .is_empty());
    // The one whose timeout is no later than SLOW_LOAD is never said slow: its timeout speaks.
    assert_eq!(f.slow(now + SLOW_LOAD), vec![(100, 1, TIMEOUT)]);
    assert!(f.slow(now + SLOW_LOAD * 2).is_empty());
    assert_eq!(f.timed_out(now + SLOW_LOAD), vec![200]);
    assert_eq!(f.next_deadline(), Some(now + TIMEOUT));
    f.said_ready(100);
    assert!(f.slow(now + TIMEOUT).is_empty());
}

#[test]
fn an_aborted_upgrade_closes_the_newer_generations_but_one_killed() {
    let (mut f, now) = (servers(), Instant::now());
    f.started(1, 100, "one", now, TIMEOUT);
    f.started(2, 200, "two", now, TIMEOUT);
    f.said_ready(200);
    f.started(3, 300, "three", now, Duration::from_secs(1));
    // Generation 3's ran out of time: killed, its exit on its way (and still expected).
    assert_eq!(f.timed_out(now + Duration::from_secs(2)), vec![300]);
    f.started(3, 301, "three again", now, TIMEOUT);
    assert_eq!(f.close_after(1), vec![(200, "two"), (301, "three again")]);
    assert_eq!(f.pids().collect::<Vec<_>>(), vec![300]);
    assert_eq!(f.gate(2), Gate::Missing);
    assert!(matches!(
        f.exited(300, "killed"),
        Some(Ended::Failed { generation: 3, .. })
    ));
}
