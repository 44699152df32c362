use super::*;

#[test]
fn columns_are_as_wide_as_their_widest_cell_in_characters() {
    let rows = vec![
        ["SLOT", "STATE", "STATUS"].map(str::to_string),
        ["0", "ready", "héllo  "].map(str::to_string),
        ["10", "é", ""].map(str::to_string),
        ["1", "tab\there", "x\u{1b}"].map(str::to_string),
    ];
    let mut out = String::from("above\n");
    table(&mut out, rows);
    // Padded by characters, not bytes; trailing blanks trimmed, the last cell's too;
    // control characters escaped before widths are counted.
    assert_eq!(
        out,
        "above\n\
         SLOT  STATE      STATUS\n\
         0     ready      héllo\n\
         10    é\n\
         1     tab\\there  x\\x1b\n"
    );
}

#[test]
fn a_workers_control_characters_never_reach_the_terminal() {
    let status: Status = serde_json::from_value(serde_json::json!({
        "pid": 1, "name": "default", "version": "0", "uptime_ms": 0, "generation": 1,
        "upgrading_to": null, "stopping": false, "desired": 1, "running": 1, "ready": 1,
        "workers": [{
            "slot": 0, "pid": 2, "generation": 1, "state": "ready",
            "stopping_reason": null, "uptime_ms": 5, "restarts": 0, "last_exit": null,
            "status": "ok\u{1b}[2J\u{1b}]0;owned\u{7}\rfake line\u{9b}31m"
        }],
        "waiting": [], "sockets": [], "attached": []
    }))
    .unwrap();
    let table = render(&status, None);
    assert!(
        !table.chars().any(|c| c.is_control() && c != '\n'),
        "{table:?}"
    );
    assert!(
        table.contains("ok\\x1b[2J\\x1b]0;owned\\x07\\rfake line\\u{9b}31m"),
        "{table}"
    );
}

#[test]
fn a_drain_shows_its_time_left_until_the_stop() {
    let status = |stopping: bool, draining_ms: Option<u64>| -> String {
        let status: Status = serde_json::from_value(serde_json::json!({
            "pid": 1, "name": "web", "version": "0", "uptime_ms": 0, "generation": 1,
            "upgrading_to": null, "stopping": stopping, "draining_ms": draining_ms,
            "desired": 1, "running": 1, "ready": 1,
            "workers": [], "waiting": [], "sockets": [], "attached": []
        }))
        .unwrap();
        render(&status, None).lines().next().unwrap().to_string()
    };
    let seen = |pid_here| {
        let status: Status = serde_json::from_value(serde_json::json!({
            "pid": 1, "name": "web", "version": "0", "uptime_ms": 0, "generation": 1,
            "upgrading_to": null, "stopping": false, "draining_ms": null,
            "desired": 1, "running": 1, "ready": 1,
            "workers": [], "waiting": [], "sockets": [], "attached": []
        }))
        .unwrap();
        render(&status, pid_here)
            .lines()
            .next()
            .unwrap()
            .to_string()
    };
    assert!(seen(None).starts_with("herd 'web' pid 1, up "));
    assert!(seen(Some(4242))
        .starts_with("herd 'web' pid 1 (4242 here: the pids below are in its PID namespace), "));
    assert!(seen(Some(0)).contains("pid 1 (in another PID namespace: the pids below are"));
    let draining = status(false, Some(12_500));
    assert!(
        draining.contains("generation 1, draining (12s left): "),
        "{draining}"
    );
    assert!(status(true, None).contains("generation 1, stopping: "));
    assert!(status(false, None).contains("generation 1: 1 of 1"));
}

#[test]
fn a_slot_held_back_from_recycling_gets_a_line() {
    let status: Status = serde_json::from_value(serde_json::json!({
        "pid": 1, "name": "default", "version": "0", "uptime_ms": 0, "generation": 1,
        "upgrading_to": null, "stopping": false, "desired": 2, "running": 2, "ready": 2,
        "workers": [], "waiting": [], "sockets": [], "attached": [],
        "recycle_holds": [
            {"slot": 0, "pid": 42, "reason": "asked_at_start", "left_ms": 28_400,
             "why": "its workers ask to be replaced (HERD_RECYCLE=1) at every start"},
            {"slot": 1, "pid": null, "reason": "recycle_failed", "left_ms": 61_000,
             "why": "its last recycle failed"}
        ]
    }))
    .unwrap();
    let table = render(&status, None);
    assert!(
        table.contains(
            "recycling held back in slot 0 for 28s (pid 42 waits): its workers ask to be \
             replaced (HERD_RECYCLE=1) at every start\n"
        ),
        "{table}"
    );
    assert!(
        table.contains("recycling held back in slot 1 for 1m1s: its last recycle failed\n"),
        "{table}"
    );
}

#[test]
fn what_an_exited_worker_left_is_listed() {
    let status: Status = serde_json::from_value(serde_json::json!({
        "pid": 1, "name": "default", "version": "0", "uptime_ms": 0, "generation": 1,
        "upgrading_to": null, "stopping": true, "desired": 1, "running": 0, "ready": 0,
        "workers": [], "waiting": [], "sockets": [], "attached": [],
        "leftovers": [{"pid": 42, "slot": 3, "kill_in_ms": 12000}]
    }))
    .unwrap();
    let table = render(&status, None);
    assert!(
        table.contains("exited; its processes get SIGKILL in 12s"),
        "{table}"
    );
}

#[test]
fn orphans_get_a_row_each_while_few_and_a_count_when_many() {
    let orphan = |pid| serde_json::json!({"pid": pid, "name": "sleep", "known_ms": 3000});
    let status = |n: u32| -> Status {
        serde_json::from_value(serde_json::json!({
            "pid": 1, "name": "default", "version": "0", "uptime_ms": 0, "generation": 1,
            "upgrading_to": null, "stopping": false, "desired": 1, "running": 0, "ready": 0,
            "workers": [], "waiting": [], "sockets": [], "attached": [],
            "orphans": (0..n).map(|i| orphan(100 + i)).collect::<Vec<_>>()
        }))
        .unwrap()
    };
    let few = render(&status(2), None);
    let row = few
        .lines()
        .find(|l| l.contains(" 101 "))
        .unwrap_or_default();
    assert!(
        row.contains("orphan") && row.contains("3s") && row.contains("sleep"),
        "{few}"
    );
    let many = render(&status(6), None);
    assert!(!many.contains(" 101 "), "{many}");
    assert!(
        many.contains("6 orphans: processes workers left behind"),
        "{many}"
    );
}

#[test]
fn the_headline_counts_the_paused_workers_among_the_ready_ones() {
    let worker = |pid: u32, state: &str, paused: bool| {
        serde_json::json!({
            "slot": 0, "pid": pid, "generation": 1, "state": state,
            "stopping_reason": null, "uptime_ms": 5, "restarts": 0, "last_exit": null,
            "status": null, "paused": paused
        })
    };
    let headline = |workers: Vec<serde_json::Value>, ready: u32| -> String {
        let status: Status = serde_json::from_value(serde_json::json!({
            "pid": 1, "name": "web", "version": "0", "uptime_ms": 0, "generation": 1,
            "upgrading_to": null, "stopping": false, "desired": 2, "running": 3,
            "ready": ready, "workers": workers, "waiting": [], "sockets": [],
            "attached": []
        }))
        .unwrap();
        render(&status, None).lines().next().unwrap().to_string()
    };
    let one = headline(vec![worker(2, "ready", true), worker(3, "ready", false)], 2);
    assert!(
        one.ends_with("2 of 2 workers ready (1 of them paused, serving nothing)"),
        "{one}"
    );
    // A paused worker that is starting, or stopping, is not one of the ready ones.
    let none = headline(
        vec![
            worker(2, "starting", true),
            worker(3, "stopping", true),
            worker(4, "ready", false),
        ],
        1,
    );
    assert!(none.ends_with("1 of 2 workers ready"), "{none}");
}

#[test]
fn short_durations() {
    assert_eq!(short(350), "350ms");
    assert_eq!(short(12_000), "12s");
    assert_eq!(short(303_000), "5m3s");
    assert_eq!(short(7_800_000), "2h10m");
    assert_eq!(short(273_600_000), "3d4h");
}

/// `herd scale 4` beside serving workers: the slots still waiting to start have a row each,
/// which says the bound that holds them (a herd that predates `max_starting` does not).
#[test]
fn slots_waiting_to_start_have_a_row_each() {
    let status = |max_starting: serde_json::Value| -> Status {
        serde_json::from_value(serde_json::json!({
            "pid": 1, "name": "web", "version": "0", "uptime_ms": 0, "generation": 1,
            "upgrading_to": null, "stopping": false, "desired": 4, "running": 2, "ready": 1,
            "workers": [], "waiting": [], "queued": [2, 3], "sockets": [], "attached": [],
            "max_starting": max_starting, "max_surge": 1
        }))
        .unwrap()
    };
    let table = render(&status(1.into()), None);
    let rows: Vec<&str> = table.lines().filter(|l| l.contains(QUEUED)).collect();
    assert_eq!(rows.len(), 2, "{table}");
    assert!(
        rows[0].starts_with("2 ") && rows[1].starts_with("3 "),
        "{table}"
    );
    assert!(
        rows.iter()
            .all(|r| r.contains("queued to start (--max-starting 1)")),
        "{table}"
    );
    let older = render(&status(serde_json::Value::Null), None);
    assert!(
        older.contains(QUEUED) && !older.contains("--max-starting"),
        "{older}"
    );
}
