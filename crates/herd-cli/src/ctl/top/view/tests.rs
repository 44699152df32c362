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
    // 60x15 showed the table's header and no worker (the events took 10 lines); the title
    // takes two lines at 60 columns.
    let text = screen_of(&model, 60, 16);
    for pid in ["4240", "4241", "4242"] {
        assert!(text.contains(pid), "{pid} not in\n{text}");
    }
    // The socket's line whole, the sparkline beside it (it was cut at 40% of the width).
    assert!(text.contains("http 127.0.0.1:8080 queue 0/128"), "{text}");
    assert!(text.contains("event 7"), "{text}");
    // 60x15, the size that showed no worker: every worker shows.
    let text = screen_of(&model, 60, 15);
    for pid in ["4240", "4241", "4242"] {
        assert!(text.contains(pid), "{pid} not in\n{text}");
    }
    // Too small for the events: the workers still show.
    let text = screen_of(&model, 60, 12);
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

/// herd with `ready` ready workers in slots 0.., then `starting` starting ones and `waiting`
/// slots waiting to restart, as a pool whose last slots crash-loop shows them.
fn crash_looping(ready: usize, starting: usize, waiting: usize) -> Model {
    let worker = |slot: usize, state: &str| {
        serde_json::json!({"slot": slot, "pid": 24160 + slot, "generation": 1, "state": state,
            "stopping_reason": null, "uptime_ms": 17000, "restarts": 12 * (state != "ready") as u32,
            "last_exit": null, "status": null, "cpu_percent": 0.5, "memory_bytes": 14260633})
    };
    let mut workers: Vec<_> = (0..ready).map(|slot| worker(slot, "ready")).collect();
    workers.extend((ready..ready + starting).map(|slot| worker(slot, "starting")));
    let desired = ready + starting + waiting;
    let waiting: Vec<_> = (ready + starting..desired)
        .map(|slot| {
            serde_json::json!({"slot": slot, "restart_in_ms": 4000, "restarts": 12,
                                       "last_exit": "exit 1"})
        })
        .collect();
    let events: Vec<_> = (0..8)
        .map(|i| {
            serde_json::json!({"ago_ms": 1000, "level": "warn", "event": "worker_exited",
                                    "message": format!("event {i}")})
        })
        .collect();
    let status: Status = serde_json::from_value(serde_json::json!({
        "pid": 24155, "name": "default", "version": "0", "uptime_ms": 65000, "generation": 1,
        "upgrading_to": null, "stopping": false, "desired": desired, "running": ready + starting,
        "ready": ready, "workers": workers, "waiting": waiting, "attached": [],
        "sockets": [{"name": "tcp-44673", "address": "127.0.0.1:44673", "kind": "tcp", "fd": 3,
                     "queue": 0, "queue_limit": 4096}],
        "events": events,
    }))
    .unwrap();
    let mut model = Model::default();
    model.update(status);
    model
}

/// At 80x24 with 8 workers the table showed slots 0-5 and no count, the crash-looping 6 and 7
/// hidden, while the events took 8 lines; the title was cut ("(degraded: 6 of 8 wo").
#[test]
fn every_worker_shows_before_the_events_and_the_title_whole() {
    let model = crash_looping(6, 1, 1);
    let text = screen_of(&model, 80, 24);
    for slot in 0..7 {
        assert!(text.contains(&format!("{}", 24160 + slot)), "{text}");
    }
    assert!(text.contains("restarting in 4s"), "{text}");
    let title = "herd 'default' pid 24155, up 1m5s, generation 1: 6 of 8 ready (degraded)";
    assert!(text.starts_with(title), "{text}");
    // The events have what is left.
    assert!(
        text.contains("event 7") && text.contains("event 3"),
        "{text}"
    );
}

/// Too few lines for every worker: those in trouble show, and the last line counts the rest.
#[test]
fn a_short_terminal_shows_the_workers_in_trouble_and_counts_the_others() {
    let model = crash_looping(6, 1, 1);
    let text = screen_of(&model, 80, 10);
    assert!(
        text.contains("24166") && text.contains("restarting in 4s"),
        "{text}"
    );
    assert!(text.contains("+4 more (not shown, all ready)"), "{text}");
    assert!(
        !text.contains("recent events") && !text.contains("sockets"),
        "{text}"
    );
}

/// The title wraps at spaces rather than being cut mid-word.
#[test]
fn a_narrow_title_wraps_between_words() {
    let text = screen_of(&crash_looping(6, 1, 1), 40, 24);
    let lines: Vec<&str> = text.lines().take(2).map(str::trim_end).collect();
    assert_eq!(
        lines,
        [
            "herd 'default' pid 24155, up 1m5s,",
            "generation 1: 6 of 8 ready (degraded)"
        ],
        "{text}"
    );
}

/// At 60, 50 and 40 columns PIDs 24166 and 24169 both showed as `2416`, MEM as `13.6 Mi`,
/// UPTIME as `17`: columns now go whole, and only a state is shortened.
#[test]
fn a_narrow_table_never_cuts_a_number() {
    let model = crash_looping(6, 2, 0);
    for width in [80, 60, 50, 40, 30] {
        let text = screen_of(&model, width, 24);
        let table = workers_box(&text);
        for pid in 24160..24168 {
            assert!(
                table.contains(&format!(" {pid} ")),
                "{pid} at {width}:\n{text}"
            );
        }
        for (cut, whole) in [("13", "13.6 MiB"), ("17", "17s"), ("0.5", "0.5%")] {
            let cuts = table.matches(cut).count();
            assert_eq!(
                cuts,
                table.matches(whole).count(),
                "{cut} at {width}:\n{text}"
            );
        }
    }
    assert!(screen_of(&model, 80, 24).contains("13.6 MiB"));
    let text = screen_of(&model, 20, 24);
    assert!(text.contains("24166 starti…"), "{text}");
}

/// The lines of the workers' box in a screen's `text`.
fn workers_box(text: &str) -> String {
    let lines = text.lines().skip_while(|l| !l.contains(" workers "));
    let lines = lines.take_while(|l| !l.starts_with('└'));
    lines.collect::<Vec<_>>().join("\n")
}
