use super::*;

const TIMEOUT: Duration = Duration::from_secs(60);

fn servers() -> ForkServers<&'static str, &'static str> {
    ForkServers::default()
}

/// Fork server `pid` said `READY=1`, and the older generations' are closed, as the loop does:
/// its generation, and those closed.
fn said_ready(
    f: &mut ForkServers<&'static str, &'static str>,
    pid: u32,
) -> Option<(u64, Vec<(u32, &'static str)>)> {
    let generation = f.said_ready(pid)?;
    Some((generation, f.close_before(generation)))
}

/// `servers` with generation 1's fork server (pid 100) ready, started at `now`.
fn ready_one(now: Instant) -> ForkServers<&'static str, &'static str> {
    let mut f = servers();
    f.started(1, 100, "one", now, TIMEOUT);
    said_ready(&mut f, 100);
    f
}

#[test]
fn a_start_starts_the_fork_server_waits_while_it_loads_and_forks_once_it_is_ready() {
    let (mut f, now) = (servers(), Instant::now());
    assert_eq!(f.gate(1), Gate::Missing);
    f.started(1, 100, "one", now, TIMEOUT);
    assert_eq!(f.gate(1), Gate::Loading);
    assert_eq!(f.ready(1), None);
    assert_eq!(said_ready(&mut f, 100), Some((1, vec![])));
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
    assert_eq!(said_ready(&mut f, 100), None);
    assert_eq!(said_ready(&mut f, 999), None);
}

#[test]
fn a_newer_generation_ready_closes_the_older_ones() {
    let (mut f, now) = (servers(), Instant::now());
    f.started(1, 100, "one", now, TIMEOUT);
    said_ready(&mut f, 100);
    f.started(2, 200, "two", now, TIMEOUT);
    // Loading beside the ready older one: the older one stays.
    assert_eq!(f.gate(1), Gate::Ready);
    assert_eq!(said_ready(&mut f, 200), Some((2, vec![(100, "one")])));
    assert_eq!(f.gate(1), Gate::Missing);
    assert_eq!(f.pids().collect::<Vec<_>>(), vec![200]);
    // A restart of generation 1 starts one anew; its readiness closes nothing newer.
    f.started(1, 101, "one again", now, TIMEOUT);
    assert_eq!(said_ready(&mut f, 101), Some((1, vec![])));
    assert_eq!(f.gate(2), Gate::Ready);
}

#[test]
fn an_older_generations_started_during_an_upgrade_is_closed_once_it_has_ended() {
    let (mut f, now) = (servers(), Instant::now());
    f.started(2, 200, "two", now, TIMEOUT);
    said_ready(&mut f, 200);
    // A restart of generation 1 during the upgrade: its fork server is ready after 2's.
    f.started(1, 101, "one again", now, TIMEOUT);
    assert_eq!(said_ready(&mut f, 101), Some((1, vec![])));
    assert_eq!(f.close_before(2), vec![(101, "one again")]);
    assert_eq!(f.pids().collect::<Vec<_>>(), vec![200]);
    assert_eq!(f.close_before(2), vec![], "nothing newer is closed");
    // One still loading is closed too (the caller kills it: it reads no socket while loading).
    f.started(1, 102, "loading", now, TIMEOUT);
    assert_eq!(f.loading(|g| g < 2), vec![102]);
    assert_eq!(f.close_before(2), vec![(102, "loading")]);
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
    said_ready(&mut f, 101);
    assert_eq!(
        f.exited(101, "was killed by SIGKILL"),
        Some(Ended::WasReady { generation: 1 })
    );
    assert_eq!(f.gate(1), Gate::Missing);
    assert_eq!(f.exited(101, "again"), None);
}

#[test]
fn one_loading_at_a_low_priority_is_said_slow_only_after_loading_at_herds() {
    let (mut f, now) = (servers(), Instant::now());
    f.started(1, 100, "one", now, TIMEOUT);
    // Starved at --starting-nice for 4 s, then raised: its slow clock starts then.
    let raised = now + Duration::from_secs(4);
    f.raised(100, raised);
    assert!(f.slow(now + SLOW_LOAD).is_empty());
    assert_eq!(f.next_deadline(), Some(raised + SLOW_LOAD));
    let loaded = raised + SLOW_LOAD - now;
    assert_eq!(f.slow(raised + SLOW_LOAD), vec![(100, 1, TIMEOUT, loaded)]);
    // The time it has to load still counts from its start.
    assert_eq!(f.next_deadline(), Some(now + TIMEOUT));
}

#[test]
fn one_loading_lowered_is_never_said_slow_before_it_is_raised() {
    // Its trickle ends with a budget as long as SLOW_LOAD: were the slow clock running from its
    // start, a turn that woke late would say it slow just before raising it.
    let (mut f, now) = (servers(), Instant::now());
    f.started(1, 100, "one", now, TIMEOUT);
    f.lowered(100);
    assert_eq!(f.next_deadline(), Some(now + TIMEOUT));
    assert!(f.slow(now + SLOW_LOAD * 3).is_empty());
    // Raised a second before its timeout: the timeout comes first.
    let raised = now + TIMEOUT - Duration::from_secs(1);
    f.raised(100, raised);
    assert_eq!(f.next_deadline(), Some(now + TIMEOUT));
    assert!(f.slow(raised).is_empty());
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
    said_ready(&mut f, 100);
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
    assert_eq!(f.slow(now + SLOW_LOAD), vec![(100, 1, TIMEOUT, SLOW_LOAD)]);
    assert!(f.slow(now + SLOW_LOAD * 2).is_empty());
    assert_eq!(f.timed_out(now + SLOW_LOAD), vec![200]);
    assert_eq!(f.next_deadline(), Some(now + TIMEOUT));
    said_ready(&mut f, 100);
    assert!(f.slow(now + TIMEOUT).is_empty());
}

#[test]
fn an_aborted_upgrade_closes_the_newer_generations_but_one_killed() {
    let (mut f, now) = (servers(), Instant::now());
    f.started(1, 100, "one", now, TIMEOUT);
    f.started(2, 200, "two", now, TIMEOUT);
    said_ready(&mut f, 200);
    f.started(3, 300, "three", now, Duration::from_secs(1));
    // Generation 3's ran out of time: killed, its exit on its way (and still expected).
    assert_eq!(f.timed_out(now + Duration::from_secs(2)), vec![300]);
    f.started(3, 301, "three again", now, TIMEOUT);
    let (closed, cancelled) = f.close_after(1);
    assert_eq!(closed, vec![(200, "two"), (301, "three again")]);
    assert!(cancelled.is_empty());
    assert_eq!(f.pids().collect::<Vec<_>>(), vec![300]);
    assert_eq!(f.gate(2), Gate::Missing);
    assert!(matches!(
        f.exited(300, "killed"),
        Some(Ended::Failed { generation: 3, .. })
    ));
}

#[test]
fn a_start_that_asked_holds_the_next_back_until_the_reply_which_completes_it() {
    let now = Instant::now();
    let mut f = ready_one(now);
    f.ask(100, 3, "slot 3's start", now);
    // The fork server answers one request at a time: the next start waits.
    assert_eq!(f.gate(1), Gate::Busy);
    assert_eq!(f.ready(1), None);
    assert!(f.awaiting());
    assert_eq!(f.awaited().collect::<Vec<_>>(), vec![(100, &"one")]);
    assert_eq!(f.next_deadline(), Some(now + REPLY_TIMEOUT));
    assert_eq!(
        f.answered(100),
        Answered::Wanted {
            slot: 3,
            request: "slot 3's start"
        }
    );
    assert_eq!(f.gate(1), Gate::Ready);
    assert!(!f.awaiting());
    assert_eq!(f.next_deadline(), None);
    // A second reply answers nothing herd asked.
    assert_eq!(f.answered(100), Answered::Unasked);
    assert_eq!(f.answered(999), Answered::Unasked);
}

#[test]
fn a_reply_is_awaited_for_five_seconds_or_the_ready_timeout_if_shorter() {
    assert_eq!(reply_timeout(TIMEOUT), Duration::from_secs(5));
    assert_eq!(
        reply_timeout(Duration::from_secs(2)),
        Duration::from_secs(2)
    );
    let now = Instant::now();
    let mut f = servers();
    f.started(1, 100, "one", now, Duration::from_secs(2));
    said_ready(&mut f, 100);
    f.ask(100, 0, "start", now);
    assert_eq!(f.next_deadline(), Some(now + Duration::from_secs(2)));
}

#[test]
fn no_reply_in_time_fails_the_start_and_the_fork_server_is_given_up() {
    let now = Instant::now();
    let mut f = ready_one(now);
    f.ask(100, 3, "start", now);
    assert!(f
        .overdue(now + REPLY_TIMEOUT - Duration::from_millis(1))
        .is_empty());
    let overdue = f.overdue(now + REPLY_TIMEOUT);
    let [(
        100,
        Unanswered {
            slot: 3,
            generation: 1,
            request: Some("start"),
            why,
        },
    )] = &overdue[..]
    else {
        panic!("{overdue:?}")
    };
    assert_eq!(
        why,
        "its fork server (pid 100) did not answer within 5s; herd killed it"
    );
    // Forgotten: the next start starts another, and its exit says nothing more.
    assert_eq!(f.gate(1), Gate::Missing);
    assert_eq!(f.exited(100, "was killed by SIGKILL"), None);
}

#[test]
fn an_exit_while_a_start_awaits_the_reply_fails_it_with_the_exit() {
    let now = Instant::now();
    let mut f = ready_one(now);
    f.ask(100, 3, "start", now);
    let unanswered = f.unanswered(100, "exit code 1");
    assert_eq!(
        unanswered,
        Some(Unanswered {
            slot: 3,
            generation: 1,
            request: Some("start"),
            why: "its fork server (pid 100) ended (exit code 1) before it answered".to_string(),
        })
    );
    assert_eq!(
        f.exited(100, "exit code 1"),
        Some(Ended::WasReady { generation: 1 })
    );
    // One whose socket closed first is killed; its exit says it closed it.
    let mut f = ready_one(now);
    f.ask(100, 3, "start", now);
    assert!(f.closed_socket(100));
    assert!(
        f.awaited().next().is_none(),
        "an ended socket is not waited on"
    );
    assert!(f.awaiting(), "herd waits for its exit");
    let why = f.unanswered(100, "killed by SIGKILL").unwrap().why;
    assert_eq!(
        why,
        "its fork server (pid 100) closed its socket and ended (killed by SIGKILL) before it \
         answered"
    );
    assert!(!f.closed_socket(100));
    assert_eq!(f.unanswered(100, "again"), None);
}

#[test]
fn a_fork_server_closed_while_a_start_awaits_its_reply_goes_once_it_has_answered() {
    let now = Instant::now();
    // herd stops: the start is no longer wanted, and its worker is to be stopped.
    let mut f = ready_one(now);
    f.started(2, 200, "two", now, TIMEOUT);
    f.ask(100, 3, "start", now);
    assert_eq!(f.close_all(), vec![(200, "two")]);
    assert_eq!(f.statuses(), vec![]);
    assert_eq!(f.pids().collect::<Vec<_>>(), vec![100]);
    assert!(f.awaiting());
    assert_eq!(f.gate(1), Gate::Missing);
    assert_eq!(f.answered(100), Answered::Unwanted { slot: 3 });
    assert_eq!(f.pids().count(), 0);
    assert!(!f.awaiting());
    // An upgrade aborted: the same for its generation's starts, which the loop fails.
    let mut f = ready_one(now);
    f.started(2, 200, "two", now, TIMEOUT);
    said_ready(&mut f, 200);
    f.ask(200, 4, "new", now);
    assert_eq!(f.close_after(1), (vec![], vec![4]));
    assert_eq!(f.close_after(1), (vec![], vec![]), "cancelled once");
    assert_eq!(f.gate(2), Gate::Missing);
    // Its exit before it answered fails nothing more.
    let unanswered = f.unanswered(200, "exit code 0").unwrap();
    assert_eq!(unanswered.request, None);
    // A newer generation ready closes an older one that a wanted start awaits: still wanted.
    let mut f = ready_one(now);
    f.ask(100, 5, "old", now);
    f.started(2, 200, "two", now, TIMEOUT);
    assert_eq!(said_ready(&mut f, 200), Some((2, vec![])));
    assert_eq!(f.gate(1), Gate::Missing);
    assert_eq!(
        f.answered(100),
        Answered::Wanted {
            slot: 5,
            request: "old"
        }
    );
    assert_eq!(f.pids().collect::<Vec<_>>(), vec![200]);
}

#[test]
fn a_stall_of_herd_counts_against_no_fork_server() {
    let stall = Duration::from_secs(30);
    let (mut f, now) = (servers(), Instant::now());
    f.started(1, 100, "loading", now, TIMEOUT);
    let mut ready = ready_one(now);
    ready.ask(100, 0, "slot 0's start", now);
    // herd could not act for 30 s from its start: the load and the reply have that much more.
    f.resumed_after(stall);
    ready.resumed_after(stall);
    assert_eq!(f.next_deadline(), Some(now + stall + SLOW_LOAD));
    assert!(f.timed_out(now + TIMEOUT).is_empty());
    assert_eq!(f.timed_out(now + stall + TIMEOUT), vec![100]);
    assert_eq!(ready.next_deadline(), Some(now + stall + REPLY_TIMEOUT));
    assert!(ready.overdue(now + stall).is_empty());
    assert_eq!(ready.overdue(now + stall + REPLY_TIMEOUT).len(), 1);
}

/// Those still loading are the ones a close alone would not end: neither a ready one nor one
/// already killed for loading too long.
#[test]
fn the_loading_fork_servers_are_told_apart_by_generation() {
    let now = Instant::now();
    let mut f = ready_one(now);
    f.started(2, 200, "two", now, TIMEOUT);
    f.started(3, 300, "three", now, Duration::from_millis(1));
    assert_eq!(f.loading(|_| true).len(), 2);
    assert_eq!(f.loading(|g| g > 2), vec![300]);
    assert_eq!(f.timed_out(now + Duration::from_secs(1)), vec![300]);
    assert_eq!(f.loading(|g| g > 1), vec![200]);
}
