use std::time::{Duration, SystemTime};

use super::*;

fn status(desired: usize, ready: usize) -> Status {
    serde_json::from_value(serde_json::json!({
        "pid": 1, "name": "web", "version": "0", "uptime_ms": 1, "generation": 1,
        "upgrading_to": null, "stopping": false, "desired": desired, "running": ready,
        "ready": ready, "workers": [], "waiting": [], "sockets": [], "attached": []
    }))
    .unwrap()
}

#[test]
fn a_pool_is_degraded_when_fewer_workers_are_ready_than_wanted() {
    assert_eq!(
        degraded(&status(3, 2)).as_deref(),
        Some("degraded: 2 of 3 workers ready")
    );
    assert_eq!(degraded(&status(2, 2)), None);
    // A rolling upgrade's surge: more ready than wanted is healthy.
    assert_eq!(degraded(&status(2, 3)), None);
}

/// A herd stopping gracefully, its workers finishing their requests, is stopping, not
/// degraded (it said `degraded: 0 of 2 workers ready`); still exit 3, as a herd to send no
/// work to.
#[test]
fn a_stopping_herd_is_said_to_be_stopping() {
    let mut stopping = status(2, 0);
    stopping.stopping = true;
    assert_eq!(
        degraded(&stopping).as_deref(),
        Some("stopping: 0 of 2 workers ready")
    );
    let mut at_first = status(2, 2);
    at_first.stopping = true;
    assert_eq!(
        degraded(&at_first).as_deref(),
        Some("stopping: 2 of 2 workers ready")
    );
    // In its --drain-delay, before the workers are told to stop: /readyz says 503 already.
    let mut draining = status(2, 2);
    draining.draining_ms = Some(2500);
    let said = degraded(&draining).unwrap();
    assert!(said.starts_with("stopping: draining for 2s more"), "{said}");
}

#[test]
fn a_slot_with_no_ready_worker_is_not_hidden_by_one_with_two() {
    let worker = |slot: usize, pid: u32, state: &str| {
        serde_json::json!({"slot": slot, "pid": pid, "generation": 1, "state": state,
            "stopping_reason": null, "uptime_ms": 1, "restarts": 0, "last_exit": null,
            "status": null})
    };
    let pool = |workers: Vec<serde_json::Value>| -> Status {
        let mut status = serde_json::to_value(status(2, 2)).unwrap();
        status["workers"] = serde_json::Value::Array(workers);
        serde_json::from_value(status).unwrap()
    };
    // Slot 0 recycled (its old and new workers both ready within --min-ready), slot 1
    // crash-looping: 2 of 2 ready by process, and herd status said healthy (exit 0).
    let hidden = pool(vec![
        worker(0, 7, "ready"),
        worker(0, 8, "ready"),
        worker(1, 9, "starting"),
    ]);
    assert_eq!(
        degraded(&hidden).as_deref(),
        Some("degraded: slot 1 has no ready worker (1 of 2 slots have one)")
    );
    let whole = pool(vec![
        worker(0, 7, "ready"),
        worker(0, 8, "ready"),
        worker(1, 9, "ready"),
    ]);
    assert_eq!(degraded(&whole), None);
}

/// Ready workers that are paused (`kill -STOP`) serve nothing: `herd status` said "2 of 2
/// workers ready (2 of them paused, serving nothing)" and exited 0.
#[test]
fn paused_workers_leave_the_pool_degraded() {
    let worker = |slot: usize, pid: u32, paused: bool| {
        serde_json::json!({"slot": slot, "pid": pid, "generation": 1, "state": "ready",
            "stopping_reason": null, "uptime_ms": 1, "restarts": 0, "last_exit": null,
            "status": null, "paused": paused})
    };
    let mut pool = serde_json::to_value(status(2, 2)).unwrap();
    pool["workers"] = serde_json::json!([worker(0, 7, true), worker(1, 8, false)]);
    let pool: Status = serde_json::from_value(pool).unwrap();
    assert_eq!(
        degraded(&pool).as_deref(),
        Some(
            "degraded: 1 of 2 workers ready and not paused (1 paused, serving nothing: \
             kill -CONT resumes them, or the debugger that holds them)"
        )
    );
}

#[test]
fn watch_redraws_a_terminal_and_separates_piped_statuses() {
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(86_400);
    assert_eq!(frame("table\n", true, at), "\x1b[H\x1b[2Jtable\n");
    assert_eq!(
        frame("table\n", false, at),
        "--- 1970-01-02T00:00:00Z\ntable\n"
    );
}

#[test]
fn a_status_is_shown_as_it_came_pretty_printed_in_herds_order() {
    let text = r#"{"version":"0.1.0","workers":[{"slot":0,"pid":7,"state":"ready"}],"a":{}}"#;
    let object: RawObject = serde_json::from_str(text).unwrap();
    let shown = object.pretty().unwrap();
    let reread: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(
        reread,
        serde_json::from_str::<serde_json::Value>(text).unwrap()
    );
    assert!(
        shown.ends_with("}\n") && shown.contains("\n  \"workers\": [\n"),
        "{shown}"
    );
    // Not sorted: `version` stays first, `a` last.
    assert!(shown.find("version") < shown.find("\"a\""), "{shown}");
}

#[test]
fn json_that_is_not_an_object_is_no_status() {
    for text in ["[1,2]", "null", "\"x\"", "3"] {
        let error = serde_json::from_str::<RawObject>(text).err().unwrap();
        assert!(
            error.to_string().contains("not an object"),
            "{text}: {error}"
        );
    }
}

#[test]
fn a_status_that_cannot_be_copied_is_an_error_not_half_printed() {
    let object: RawObject = serde_json::from_str(r#"{"a":1e400,"b":2}"#).unwrap();
    let why = object.pretty().unwrap_err();
    assert!(why.contains("out of range"), "{why}");
}
