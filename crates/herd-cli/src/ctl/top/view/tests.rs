use ratatui::backend::TestBackend;
use ratatui::Terminal;

use super::*;
use crate::control::results::Status;

fn screen(model: &Model) -> String {
    screen_of(model, 100, 30)
}

fn screen_of(model: &Model, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|frame| draw(frame, model)).unwrap();
    let buffer = terminal.backend().buffer();
    let mut text = String::new();
    for y in 0..buffer.area.height {
        for x in 0..buffer.area.width {
            text.push_str(buffer[(x, y)].symbol());
        }
        text.push('\n');
    }
    text
}

#[test]
fn the_screen_shows_workers_sockets_events_and_keys() {
    let mut model = Model::default();
    let status: Status = serde_json::from_value(serde_json::json!({
        "pid": 9, "name": "web", "version": "0", "uptime_ms": 1000, "generation": 1,
        "upgrading_to": null, "stopping": false, "desired": 1, "running": 1, "ready": 1,
        "workers": [{"slot": 0, "pid": 4242, "generation": 1, "state": "ready",
                     "stopping_reason": null, "uptime_ms": 5000, "restarts": 0,
                     "last_exit": null, "status": null}],
        "waiting": [], "attached": [],
        "sockets": [{"name": "http", "address": "127.0.0.1:8080", "kind": "tcp", "fd": 3,
                     "queue": 3, "queue_limit": 128}],
        "events": [{"ago_ms": 1000, "level": "info", "event": "worker_ready",
                    "message": "worker 0 is ready"}]
    }))
    .unwrap();
    for _ in 0..3 {
        model.update(status.clone());
    }
    let text = screen(&model);
    for needle in [
        "herd 'web' pid 9",
        "4242",
        "ready",
        "http 127.0.0.1:8080 queue 3/128",
        "worker 0 is ready",
        KEYS,
    ] {
        assert!(text.contains(needle), "{needle:?} not in\n{text}");
    }
    model.note = Some("Start a rolling upgrade? y/n".to_string());
    assert!(screen(&model).contains("Start a rolling upgrade? y/n"));
}

#[test]
fn an_empty_model_draws_without_a_status() {
    assert!(screen(&Model::default()).contains("waiting for herd's status"));
}

#[test]
fn a_small_terminal_shows_workers_before_events() {
    let mut model = Model::default();
    let workers: Vec<_> = (0..3)
        .map(|slot| {
            serde_json::json!({"slot": slot, "pid": 4240 + slot, "generation": 1,
                "state": "ready", "stopping_reason": null, "uptime_ms": 5000, "restarts": 0,
                "last_exit": null, "status": null})
        })
        .collect();
    let events: Vec<_> = (0..8)
        .map(|i| {
            serde_json::json!({"ago_ms": 1000, "level": "info", "event": "worker_ready",
            "message": format!("event {i}")})
        })
        .collect();
    let status: Status = serde_json::from_value(serde_json::json!({
        "pid": 9, "name": "web", "version": "0", "uptime_ms": 1000, "generation": 1,
        "upgrading_to": null, "stopping": false, "desired": 3, "running": 3, "ready": 3,
        "workers": workers, "waiting": [], "attached": [],
        "sockets": [{"name": "http", "address": "127.0.0.1:8080", "kind": "tcp", "fd": 3,
                     "queue": 0, "queue_limit": 128}],
        "events": events,
    }))
    .unwrap();
    model.update(status);
    // 60x15 showed the table's header and no worker (the events took 10 lines).
    let text = screen_of(&model, 60, 15);
    for pid in ["4240", "4241", "4242"] {
        assert!(text.contains(pid), "{pid} not in\n{text}");
    }
    // The socket's line whole, the sparkline beside it (it was cut at 40% of the width).
    assert!(text.contains("http 127.0.0.1:8080 queue 0/128"), "{text}");
    assert!(text.contains("event 7"), "{text}");
    // Too small for the events: the workers still show.
    let text = screen_of(&model, 60, 11);
    assert!(
        text.contains("4242") && !text.contains("recent events"),
        "{text}"
    );
    // Tall: the events all show, the table takes the rest.
    let text = screen_of(&model, 100, 40);
    assert!(
        text.contains("event 0") && text.contains("event 7"),
        "{text}"
    );
}

#[test]
fn heights_give_the_first_workers_then_the_events_then_the_rest() {
    assert_eq!(heights(0, 3), (0, 0));
    assert_eq!(heights(5, 3), (5, 0));
    assert_eq!(heights(10, 3), (6, 4));
    assert_eq!(heights(8, 3), (8, 0));
    assert_eq!(heights(16, 3), (6, 10));
    assert_eq!(heights(30, 100), (20, 10));
    assert_eq!(heights(30, 0), (20, 10));
}
