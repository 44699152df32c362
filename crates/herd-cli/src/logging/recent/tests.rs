use std::time::Duration;

use super::*;

fn event(name: &str) -> RecentEvent {
    RecentEvent {
        ago_ms: 0,
        level: "info".to_string(),
        event: name.to_string(),
        message: format!("{name} happened"),
    }
}

#[test]
fn the_ring_keeps_the_last_events_oldest_first_with_their_age() {
    let start = Instant::now();
    let mut ring = Ring::new(2);
    for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
        ring.push(start + Duration::from_secs(i as u64), event(name));
    }
    let seen = ring.snapshot(start + Duration::from_secs(5));
    let names: Vec<&str> = seen.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(names, ["b", "c"]);
    assert_eq!((seen[0].ago_ms, seen[1].ago_ms), (4000, 3000));
    assert_eq!(seen[1].message, "c happened");
}

#[test]
fn a_ring_of_nothing_keeps_nothing() {
    let mut ring = Ring::new(0);
    ring.push(Instant::now(), event("a"));
    assert!(ring.snapshot(Instant::now()).is_empty());
}

#[test]
fn the_recorder_keeps_events_with_a_name_at_info_and_above() {
    use tracing_subscriber::layer::SubscriberExt;
    let subscriber = tracing_subscriber::registry().with(Recorder);
    tracing::subscriber::with_default(subscriber, || {
        tracing::info!(event = "recorder_test_kept", slot = 3, "kept {}", 1);
        tracing::info!("recorder_test: no event name");
        tracing::debug!(event = "recorder_test_debug", "too verbose");
    });
    let ours: Vec<RecentEvent> = events()
        .into_iter()
        .filter(|e| e.event.starts_with("recorder_test"))
        .collect();
    assert_eq!(ours.len(), 1, "{ours:?}");
    assert_eq!(
        (ours[0].level.as_str(), ours[0].message.as_str()),
        ("info", "kept 1 slot=3")
    );
}
