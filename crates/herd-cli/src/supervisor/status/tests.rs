use super::super::pool::{test_config, Action};
use super::*;

fn pool(workers: usize) -> Pool {
    Pool::new(test_config(workers, None))
}

#[test]
fn a_snapshot_tells_the_pool_with_the_platforms_sockets() {
    let now = Instant::now();
    let mut pool = pool(2);
    for action in pool.due(now) {
        if let Action::Spawn { slot, generation } = action {
            assert!(pool.spawned(slot, generation, 100 + slot as u32, now));
        }
    }
    let socket = SocketStatus {
        name: "http".to_string(),
        address: "127.0.0.1:8080".to_string(),
        kind: SocketKind::Tcp,
        fd: 3,
        queue: None,
        queue_limit: None,
        backlog_set: None,
        balance: Balance::default(),
        slot_queues: Vec::new(),
        file: None,
    };
    let attached = AttachedStatus {
        pid: 7,
        uptime_ms: 1,
        sockets: vec!["http".to_string()],
    };
    let status = snapshot(&pool, vec![socket], vec![attached], "web", now);
    assert_eq!((status.name.as_str(), status.desired), ("web", 2));
    assert_eq!((status.running, status.generation), (2, 1));
    let pids: Vec<u32> = status.workers.iter().map(|w| w.pid).collect();
    assert_eq!(pids, [100, 101]);
    assert!(status.workers.iter().all(|w| w.state == "starting"));
    assert_eq!(status.sockets[0].name, "http");
    assert_eq!(status.attached[0].pid, 7);
    assert_eq!(status.grace_ms, Some(5000));
    assert!(status.waiting.is_empty() && !status.stopping);
}

#[test]
fn workers_are_listed_by_slot_a_restarted_one_too() {
    let now = Instant::now();
    let mut pool = pool(3);
    let spawn_due = |pool: &mut Pool, pid: u32, at: Instant| {
        for action in pool.due(at) {
            if let Action::Spawn { slot, generation } = action {
                assert!(pool.spawned(slot, generation, pid + slot as u32, at));
            }
        }
    };
    spawn_due(&mut pool, 100, now);
    let killed = herd_core::WorkerExit {
        success: false,
        killed: true,
        description: "killed by SIGKILL".to_string(),
        raw: 9,
    };
    assert!(pool.exited(100, killed, now).is_some());
    spawn_due(&mut pool, 200, now);
    let status = snapshot(&pool, Vec::new(), Vec::new(), "web", now);
    let rows: Vec<(usize, u32)> = status.workers.iter().map(|w| (w.slot, w.pid)).collect();
    assert_eq!(rows, [(0, 200), (1, 101), (2, 102)]);
}

/// A scale-up beside a serving worker starts one slot at a time: the others are listed
/// as queued, and no longer once they start.
#[test]
fn slots_a_scale_up_added_are_queued_until_they_start() {
    let now = Instant::now();
    let mut pool = pool(1);
    for action in pool.due(now) {
        if let Action::Spawn { slot, generation } = action {
            assert!(pool.spawned(slot, generation, 100, now));
        }
    }
    assert!(pool
        .due(now)
        .iter()
        .any(|a| matches!(a, Action::Ready { .. })));
    for action in pool.scale(3, now).unwrap() {
        if let Action::Spawn { slot, generation } = action {
            assert!(pool.spawned(slot, generation, 101, now));
        }
    }
    let status = snapshot(&pool, Vec::new(), Vec::new(), "web", now);
    assert_eq!(status.queued, [2]);
    let json = serde_json::to_value(&status).unwrap();
    assert_eq!(json["queued"], serde_json::json!([2]));
    let status = snapshot(
        &Pool::new(test_config(1, None)),
        Vec::new(),
        Vec::new(),
        "",
        now,
    );
    let json = serde_json::to_value(&status).unwrap();
    assert!(json.get("queued").is_none(), "left out when none: {json}");
}

/// The status says the bounds that hold slots queued to start: `--max-starting`, and
/// `--max-surge` for the pool as it is (a percentage resolved).
#[test]
fn a_snapshot_says_the_start_and_surge_bounds_in_force() {
    let now = Instant::now();
    let config = herd_core::PoolConfig {
        max_surge: herd_core::MaxSurge::Percent(25),
        max_starting: 3,
        ..test_config(8, None)
    };
    let status = snapshot(&Pool::new(config), Vec::new(), Vec::new(), "web", now);
    assert_eq!((status.max_starting, status.max_surge), (Some(3), Some(2)));
    let json = serde_json::to_value(&status).unwrap();
    assert_eq!(
        (&json["max_starting"], &json["max_surge"]),
        (&3.into(), &2.into())
    );
    // A herd that predates the fields: the client reads them as unknown.
    let mut older = json;
    let members = older.as_object_mut().unwrap();
    members.remove("max_starting");
    members.remove("max_surge");
    let back: Status = serde_json::from_value(older).unwrap();
    assert_eq!((back.max_starting, back.max_surge), (None, None));
}
