use super::*;

fn status(queue: u32, ready: usize) -> Status {
    // Slot 1's worker is the second ready one.
    let second = if ready >= 2 { "ready" } else { "starting" };
    serde_json::from_value(serde_json::json!({
        "pid": 9, "name": "web", "version": "0", "uptime_ms": 61000, "generation": 2,
        "upgrading_to": null, "stopping": false, "desired": 2, "running": 2, "ready": ready,
        "workers": [
            {"slot": 0, "pid": 100, "generation": 2, "state": "ready", "stopping_reason": null,
             "uptime_ms": 5000, "restarts": 1, "last_exit": null, "status": null,
             "cpu_percent": 12.25, "memory_bytes": 3145728},
            {"slot": 1, "pid": 101, "generation": 2, "state": second, "stopping_reason": null,
             "uptime_ms": 300, "restarts": 0, "last_exit": null, "status": null}
        ],
        "waiting": [{"slot": 2, "restart_in_ms": 4000, "restarts": 3, "last_exit": "exit 1"}],
        "attached": [],
        "sockets": [{"name": "http", "address": "127.0.0.1:80", "kind": "tcp", "fd": 3,
                     "queue": queue, "queue_limit": 128}],
        "autoscale": {"min": 1, "max": 4,
                      "last_decision": {"workers": 2, "reason": "queue 5", "ago_ms": 2000}},
        "events": [
            {"ago_ms": 9000, "level": "info", "event": "worker_started", "message": "old"},
            {"ago_ms": 1000, "level": "warn", "event": "worker_exited", "message": "bad\u{1b}[2J"}
        ]
    }))
    .unwrap()
}

#[test]
fn workers_show_state_cpu_memory_restarts_and_uptime_and_waiting_slots() {
    let mut model = Model::default();
    model.update(status(0, 1));
    let rows = model.workers();
    assert_eq!(
        rows[0].cells,
        ["0", "100", "2", "ready", "12.2%", "3 MiB", "1", "5s"].map(String::from)
    );
    assert_eq!(rows[1].cells[4..6], ["-".to_string(), "-".to_string()]);
    assert_eq!(rows[2].cells[3], "restarting in 4s");
    let healthy: Vec<bool> = rows.iter().map(|r| r.healthy).collect();
    assert_eq!(healthy, [true, false, false]);
    // The counts say what is degraded: the title repeated them and was cut at 80 columns.
    let (title, degraded) = model.title();
    assert!(title.ends_with("1 of 2 ready (degraded)"), "{title}");
    assert!(degraded);
}

/// A paused worker serves nothing: its state says so, and it is not healthy.
#[test]
fn a_paused_worker_says_so() {
    let mut status = status(0, 2);
    status.workers[0].paused = true;
    let mut model = Model::default();
    model.update(status);
    let rows = model.workers();
    assert_eq!(rows[0].cells[3], "ready, paused");
    assert!(!rows[0].healthy);
    // Counted apart from the ready ones: the title read "2 of 2 ready".
    let (title, degraded) = model.title();
    assert!(
        degraded && title.ends_with("1 of 2 ready, 1 paused (degraded)"),
        "{title}"
    );
}

#[test]
fn each_socket_keeps_the_last_minute_of_its_queue() {
    let mut model = Model::default();
    for q in 0..(HISTORY as u32 + 5) {
        model.update(status(q, 2));
    }
    let sockets = model.sockets();
    assert_eq!(sockets[0].text, "http 127.0.0.1:80 queue 64/128");
    assert_eq!(sockets[0].history.len(), HISTORY);
    assert_eq!(sockets[0].history.first(), Some(&5));
    assert_eq!(sockets[0].history.last(), Some(&64));
    assert!(!model.title().1);
}

/// A stopping herd's title says so once, and stays highlighted: it read "stopping: 2 of 2
/// ready (stopping: 2 of 2 workers ready)".
#[test]
fn a_stopping_herd_is_said_to_stop_once() {
    let mut model = Model::default();
    let mut stopping = status(0, 2);
    stopping.stopping = true;
    model.update(stopping);
    let (title, highlighted) = model.title();
    assert!(
        title.ends_with("generation 2, stopping: 2 of 2 ready"),
        "{title}"
    );
    assert_eq!(title.matches("stopping").count(), 1, "{title}");
    assert!(highlighted, "{title}");
}

/// In its --drain-delay, the title says draining once (herd status says it is stopping).
#[test]
fn a_draining_herd_is_said_to_drain_once() {
    let mut model = Model::default();
    let mut draining = status(0, 2);
    draining.draining_ms = Some(5000);
    model.update(draining);
    let (title, highlighted) = model.title();
    assert!(
        title.ends_with("generation 2, draining: 2 of 2 ready"),
        "{title}"
    );
    assert!(highlighted, "{title}");
}

#[test]
fn events_come_newest_first_and_escaped_with_autoscaling_s_decision() {
    let mut model = Model::default();
    assert!(model.events().is_empty() && model.autoscale().is_none());
    model.update(status(0, 2));
    let events = model.events();
    assert_eq!(events[0], "    1s ago  warn  bad\\x1b[2J");
    assert!(events[1].ends_with("info  old"), "{events:?}");
    assert_eq!(
        model.autoscale().as_deref(),
        Some("autoscaling 1..4, last decision: 2 workers 2s ago: queue 5")
    );
}
