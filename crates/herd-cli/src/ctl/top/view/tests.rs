use ratatui::backend::TestBackend;
use ratatui::Terminal;

use super::*;
use crate::control::results::Status;

fn screen(model: &Model) -> String {
    let mut terminal = Terminal::new(TestBackend::new(100, 30)).unwrap();
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
