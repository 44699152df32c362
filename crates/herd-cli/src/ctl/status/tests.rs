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

#[test]
fn watch_redraws_a_terminal_and_separates_piped_statuses() {
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(86_400);
    assert_eq!(frame("table\n", true, at), "\x1b[H\x1b[2Jtable\n");
    assert_eq!(
        frame("table\n", false, at),
        "--- 1970-01-02T00:00:00Z\ntable\n"
    );
}
