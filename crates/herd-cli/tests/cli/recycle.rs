//! Recycling: `--max-memory` and `--max-lifetime` replace workers one step of a rolling
//! upgrade at a time, under load, without a failed connection.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::*;

/// herd running `leaky.py` workers (each request keeps `leak_kb` KiB, `start_mb` MiB at
/// start; ready once they say so) with `options` before the command.
fn leaky(options: &[&str], leak_kb: u32, start_mb: u32) -> Herd {
    let leaky = worker("leaky.py");
    let (leak, start) = (format!("LEAK_KB={leak_kb}"), format!("START_MB={start_mb}"));
    let mut args = vec!["run", "-b", "http=127.0.0.1:0", "--ready", "notify"];
    // Each worker leaks at most 24 MiB a second, however fast requests come.
    args.extend_from_slice(&["--env", &leak, "--env", &start, "--env", "LEAK_MB_PER_S=24"]);
    args.extend_from_slice(options);
    args.extend_from_slice(&["--", "python3", &leaky]);
    Herd::start(&args)
}

/// The events named `name` logged so far.
fn logged(herd: &Herd, name: &str) -> Vec<Value> {
    events(&herd.lines())
        .filter(|e| e["event"] == name)
        .cloned()
        .collect()
}

/// The most recycles under way at once, in the order herd logged them: started (`recycle`)
/// and not yet ended (the old worker exited, `worker_exited`, or `recycle_aborted`).
fn most_at_once(herd: &Herd) -> usize {
    let mut under_way = std::collections::HashSet::new();
    let mut most = 0;
    for e in events(&herd.lines()) {
        let pid = e["pid"].as_u64();
        match e["event"].as_str() {
            Some("recycle") => {
                under_way.insert(pid);
            }
            Some("worker_exited" | "recycle_aborted") => {
                under_way.remove(&pid);
            }
            _ => {}
        }
        most = most.max(under_way.len());
    }
    most
}

/// A log event's time, in seconds since midnight (UTC).
fn seconds_of_day(event: &Value) -> f64 {
    let stamp = event["timestamp"].as_str().unwrap();
    let time = stamp.split_once('T').unwrap().1.trim_end_matches('Z');
    let parts: Vec<f64> = time.split(':').map(|p| p.parse().unwrap()).collect();
    parts[0] * 3600.0 + parts[1] * 60.0 + parts[2]
}

#[test]
fn leaking_workers_are_recycled_under_load_without_a_failed_connection() {
    let herd = leaky(
        &[
            "-w",
            "3",
            "--max-surge",
            "2",
            "--max-memory",
            "40M",
            "--metrics",
            "127.0.0.1:0",
        ],
        256,
        0,
    );
    let addr = herd.address("http");
    let metrics = metrics_address(&herd);
    herd.started(3);
    let load = Load::start(&addr, 3, |b| b.starts_with("leaky pid"));
    // Four successors one after another (--max-starting 1 on this machine), each up to its
    // warm-up budget on a busy one (CI: 4 x 5 s went past the usual 20 s).
    let recycled = herd.wait_for_within("4 recycled", Duration::from_secs(60), |lines| {
        let memory = |e: &&Value| e["event"] == "recycled" && e["reason"] == "memory";
        let found: Vec<Value> = events(lines).filter(memory).cloned().collect();
        (found.len() >= 4).then_some(found)
    });
    load.finish_without_failures(100);
    for e in &recycled {
        assert!(
            e["pid"].as_u64().is_some() && e["slot"].as_u64().unwrap() < 3,
            "{e}"
        );
    }
    assert_eq!(
        logged(&herd, "recycle_held_back"),
        [] as [Value; 0],
        "a leak is no loop"
    );
    let most = most_at_once(&herd);
    assert!(
        (1..=2).contains(&most),
        "{most} recycles at once, --max-surge 2"
    );
    let started = logged(&herd, "recycle");
    let why = started[0]["why"].as_str().unwrap();
    assert!(
        why.starts_with("rss ") && why.contains("above --max-memory 40 MiB for 2 samples"),
        "{why}"
    );
    // Every recycle is a replacement: no slot was ever short of a worker, none restarted.
    assert!(logged(&herd, "worker_exited")
        .iter()
        .all(|e| e["restart_in"].is_null()));
    let status = herd.status();
    assert_eq!(status["memory_kind"], "rss");
    let recycles = status["recycles"].as_array().unwrap();
    assert!(recycles.len() >= 4, "{status:#}");
    assert!(recycles
        .iter()
        .all(|r| r["reason"] == "memory" && r["successor"].is_u64()));
    let body = get(&metrics, "/metrics").unwrap();
    let count = body
        .lines()
        .find_map(|l| l.strip_prefix("herd_worker_recycles_total{reason=\"memory\"} "))
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no recycles counted:\n{body}"));
    assert!(count >= 4, "{body}");
    assert!(
        body.contains("herd_worker_recycles_total{reason=\"lifetime\"} 0"),
        "{body}"
    );
}

/// A worker that asks (`HERD_RECYCLE=1`, after 40 requests) is recycled as one past its
/// lifetime: its successor first, then its graceful stop; never a slot without a worker, no
/// crash loop, no failed connection.
#[test]
fn workers_that_ask_are_recycled_under_load_without_a_failed_connection() {
    let herd = leaky(
        &[
            "-w",
            "2",
            "--env",
            "ASK_AFTER=40",
            "--metrics",
            "127.0.0.1:0",
        ],
        0,
        0,
    );
    let (addr, metrics) = (herd.address("http"), metrics_address(&herd));
    herd.started(2);
    let load = Load::start(&addr, 2, |b| b.starts_with("leaky pid"));
    herd.wait_for_events("recycled", 3, &[("reason", "asked".into())]);
    load.finish_without_failures(100);
    let started = logged(&herd, "recycle");
    assert_eq!(
        started[0]["why"],
        "it asked to be replaced (HERD_RECYCLE=1)"
    );
    assert!(
        started.iter().all(|e| e["reason"] == "asked"),
        "{started:?}"
    );
    assert!(logged(&herd, "worker_exited")
        .iter()
        .all(|e| e["restart_in"].is_null()));
    let body = get(&metrics, "/metrics").unwrap();
    let count = body
        .lines()
        .find_map(|l| l.strip_prefix("herd_worker_recycles_total{reason=\"asked\"} "))
        .and_then(|n| n.parse::<u64>().ok());
    assert!(count >= Some(3), "{body}");
}

#[test]
fn lifetimes_with_jitter_spread_the_recycles() {
    let herd = leaky(
        &[
            "-w",
            "4",
            "--max-surge",
            "4",
            "--max-lifetime",
            "2s,jitter=6s",
            "--min-ready",
            "0",
        ],
        0,
        0,
    );
    let first: HashSet<u32> = herd.started(4).iter().map(|s| s.1).collect();
    let recycles = herd.wait_events("the first 4 workers' recycles", 4, |e| {
        e["event"] == "recycle" && first.contains(&(e["pid"].as_u64().unwrap() as u32))
    });
    for e in &recycles {
        assert_eq!(e["reason"], "lifetime", "{e}");
        let why = e["why"].as_str().unwrap();
        assert!(
            why.contains("past --max-lifetime 2s plus its jitter"),
            "{why}"
        );
    }
    let times: Vec<f64> = recycles.iter().map(seconds_of_day).collect();
    let spread = times.iter().cloned().fold(f64::MIN, f64::max)
        - times.iter().cloned().fold(f64::MAX, f64::min);
    assert!(spread > 0.2, "all at once: {times:?}");
    herd.wait_for_events("recycled", 4, &[("reason", "lifetime".into())]);
    wait_status(&herd, "the first workers gone", |s| {
        worker_pids(s).iter().all(|pid| !first.contains(pid))
    });
}

#[test]
fn a_worker_over_the_limit_from_the_start_is_not_recycled_in_a_loop() {
    // A fresh worker needs more than the limit: its first recycle is allowed, the next held.
    let herd = leaky(&["-w", "1", "--max-memory", "pss=24M"], 0, 48);
    let recycle = herd.wait_for_event("recycle", &[]);
    let held = herd.wait_for_event("recycle_held_back", &[]);
    assert_ne!(held["pid"], recycle["pid"], "the successor is held: {held}");
    let why = held["why"].as_str().unwrap();
    assert!(why.contains("recycling it would loop"), "{why}");
    assert!(why.contains("once it has run 30s"), "{why}");
    let successor = held["pid"].as_u64().unwrap() as u32;
    wait_status(&herd, "the recycled worker gone", |s| {
        worker_pids(s) == [successor]
    });
    // Samples come every second: a few more pass without another recycle.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let status = herd.status();
        assert_eq!(worker_pids(&status), [successor]);
        assert_eq!(status["memory_kind"], "pss");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(logged(&herd, "recycle").len(), 1);
    assert_eq!(logged(&herd, "recycle_held_back").len(), 1, "said once");
}

/// A worker that asks to be replaced at every start (`HERD_RECYCLE=1` right after `READY=1`)
/// was replaced every `--min-ready`, forever: after two such recycles in a row its slot is held
/// back, said once, and no third recycle comes while the hold lasts (30s).
#[test]
fn a_worker_that_asks_at_every_start_is_not_recycled_in_a_loop() {
    let herd = leaky(&["-w", "1", "--env", "ASK_AT_START=1"], 0, 0);
    let held = herd.wait_for_event("recycle_held_back", &[]);
    let why = held["why"].as_str().unwrap();
    assert!(why.contains("HERD_RECYCLE=1"), "{why}");
    assert!(why.contains("recycling it would loop"), "{why}");
    assert!(why.contains("once it has run 30s"), "{why}");
    assert_eq!(held["slot"], 0, "{held}");
    let recycles = logged(&herd, "recycle");
    assert_eq!(recycles.len(), 2, "{recycles:?}");
    assert!(
        recycles.iter().all(|e| e["reason"] == "asked"),
        "{recycles:?}"
    );
    let successor = held["pid"].as_u64().unwrap() as u32;
    wait_status(&herd, "the recycled worker gone", |s| {
        worker_pids(s) == [successor]
    });
    assert_eq!(logged(&herd, "recycle").len(), 2);
    assert_eq!(logged(&herd, "recycle_held_back").len(), 1, "said once");
}

/// A worker that asked to be replaced (`HERD_RECYCLE=1`) and waits (not available yet,
/// `--min-ready`) is still replaced after a re-exec: the new image forgot the request, and the
/// worker served on, never replaced.
#[test]
fn a_request_to_be_replaced_survives_a_reexec() {
    let herd = leaky(
        &["-w", "1", "--min-ready", "8s", "--env", "ASK_AT_START=1"],
        0,
        0,
    );
    let deferred = herd.wait_for_event("recycle_deferred", &[("reason", "asked".into())]);
    let pid = deferred["pid"].as_u64().unwrap();
    let (code, _, stderr) = herd.ctl(&["reexec"]);
    assert_eq!(code, 0, "{stderr}");
    let recycle = herd.wait_for_event("recycle", &[("pid", pid.into())]);
    assert_eq!(recycle["reason"], "asked", "{recycle}");
    let order: Vec<String> = events(&herd.lines())
        .filter(|e| e["event"] == "reexecuted" || e["event"] == "recycle")
        .map(|e| e["event"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        order[..2],
        ["reexecuted", "recycle"],
        "asked before the re-exec"
    );
}

/// A slot held back because its workers ask at every start stays held across a re-exec (it
/// was released at once, and the loop went on), and the held worker, which asked before the
/// re-exec, is recycled once its hold ends (it was never replaced: the request was lost).
#[test]
fn a_held_slot_stays_held_across_a_reexec() {
    let herd = leaky(&["-w", "1", "--env", "ASK_AT_START=1"], 0, 0);
    let held = herd.wait_for_event("recycle_held_back", &[]);
    let pid = held["pid"].as_u64().unwrap();
    let (code, _, stderr) = herd.ctl(&["reexec"]);
    assert_eq!(code, 0, "{stderr}");
    let recycled = |e: &Value| e["event"] == "recycle" && e["pid"] == pid;
    // 30s from its start, the held back event's moment.
    let recycle = wait_until_within("the held worker recycled", Duration::from_secs(50), || {
        events(&herd.lines()).find(|e| recycled(e)).cloned()
    });
    let waited = seconds_of_day(&recycle) - seconds_of_day(&held);
    assert!(
        waited > 25.0,
        "recycled {waited:.1}s after it was held back, not 30s"
    );
    let recycles = logged(&herd, "recycle");
    assert_eq!(
        recycles.len(),
        3,
        "two before the hold, then this one: {recycles:?}"
    );
    let held_back = logged(&herd, "recycle_held_back");
    let told = held_back.iter().filter(|e| e["pid"] == pid).count();
    assert_eq!(told, 1, "said once, in either image: {held_back:?}");
}

/// A slot held back from recycling shows in `herd status` (it did not: only the log's
/// `recycle_held_back` said so), in the table and `--json`, with the time left, and still does
/// after a re-exec, its time running on.
#[test]
fn status_shows_a_slot_held_back_from_recycling() {
    let herd = leaky(&["-w", "1", "--env", "ASK_AT_START=1"], 0, 0);
    let held = herd.wait_for_event("recycle_held_back", &[]);
    let pid = held["pid"].as_u64().unwrap();
    let status = herd.status();
    let holds = status["recycle_holds"].as_array().unwrap();
    assert_eq!(holds.len(), 1, "{status:#}");
    let hold = &holds[0];
    assert_eq!(
        (&hold["slot"], &hold["pid"]),
        (&0.into(), &pid.into()),
        "{hold}"
    );
    assert_eq!(hold["reason"], "asked_at_start", "{hold}");
    assert!(
        hold["why"].as_str().unwrap().contains("at every start"),
        "{hold}"
    );
    let left = hold["left_ms"].as_u64().unwrap();
    assert!(left > 0 && left <= 30_000, "{hold}");
    let (code, table, _) = herd.ctl(&["status"]);
    assert_eq!(code, 0);
    let line = table
        .lines()
        .find(|l| l.starts_with("recycling held back in slot 0 for "))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(line.contains(&format!("(pid {pid} waits): ")), "{table}");
    let (code, _, stderr) = herd.ctl(&["reexec"]);
    assert_eq!(code, 0, "{stderr}");
    let status = herd.status();
    let after = status["recycle_holds"][0]["left_ms"].as_u64();
    assert!(
        after.is_some_and(|after| after > 0 && after <= left),
        "held on, its time running: {status:#}"
    );
}

/// A recycle whose successor dies before it is available failed: the old worker serves on,
/// and `herd status` says so (it listed it as `pid A -> pid B`, as one that was done).
#[test]
fn status_shows_a_recycle_that_failed_as_failed() {
    // The first worker asks to be replaced at once; every later one exits before it is ready.
    let herd = Herd::start_with(|dir| {
        let mark = dir.join("started");
        let script = format!(
            "[ -e '{mark}' ] && exit 1; touch '{mark}'; exec python3 '{leaky}'",
            mark = mark.display(),
            leaky = worker("leaky.py")
        );
        let mut cmd = herd_json();
        cmd.args([
            "run",
            "-b",
            "http=127.0.0.1:0",
            "--ready",
            "notify",
            "-w",
            "1",
        ])
        .args(["--env", "ASK_AT_START=1", "--", "sh", "-c", &script]);
        cmd
    });
    let aborted = herd.wait_for_event("recycle_aborted", &[]);
    let pid = aborted["pid"].as_u64().unwrap() as u32;
    let status = herd.status();
    assert_eq!(worker_pids(&status), [pid], "it serves on: {status}");
    let recycles = status["recycles"].as_array().unwrap();
    assert_eq!(recycles.len(), 1, "{status}");
    assert_eq!(recycles[0]["pid"], pid, "{status}");
    assert_eq!(recycles[0]["aborted"], true, "{status}");
    let (code, table, _) = herd.ctl(&["status"]);
    assert_eq!(code, 0);
    let line = table.lines().find(|l| l.contains("ago: worker 0")).unwrap();
    assert!(line.starts_with("recycle failed "), "{table}");
    assert!(
        line.contains(&format!("(pid {pid} kept serving: ")),
        "{table}"
    );
    assert!(!line.contains("->"), "{table}");
}

#[test]
fn status_shows_each_workers_memory_and_cpu() {
    let herd = leaky(&["-w", "2"], 0, 0);
    let status = wait_status(&herd, "two samples of each worker", |s| {
        settled(s, 2)
            && s["workers"]
                .as_array()
                .unwrap()
                .iter()
                .all(|w| w["cpu_percent"].is_number())
    });
    for w in status["workers"].as_array().unwrap() {
        let bytes = w["memory_bytes"].as_u64().unwrap();
        assert!(bytes > 1 << 20, "{w}");
        assert!(w["recycling"].is_null(), "{w}");
    }
    assert_eq!(status["recycles"], serde_json::json!([]));
    let (code, table, _) = herd.ctl(&["status"]);
    assert_eq!(code, 0);
    let head = table.lines().nth(1).unwrap();
    assert!(
        head.contains("UPTIME  CPU") && head.contains("MEM"),
        "{table}"
    );
    assert!(table.contains(" MiB "), "{table}");
}

/// A worker due for recycling while herd drains before a stop (`--drain-delay`) is left to
/// the stop: a successor started then was killed in its start-up moments later (a lifetime of
/// 1s recycled every worker during a 5s drain).
#[test]
fn nothing_is_recycled_while_herd_drains_before_a_stop() {
    let mut herd = sleepers(&[
        "-w",
        "2",
        "--ready",
        "delay=100ms",
        "--min-ready",
        "0",
        "--max-lifetime",
        "1s",
        "--drain-delay",
        "3s",
    ]);
    // Recycling is under way before the drain.
    herd.wait_for_event("recycled", &[("reason", "lifetime".into())]);
    herd.signal(libc::SIGTERM);
    herd.wait_for_event("draining", &[]);
    herd.wait_for_event("stopping", &[]);
    assert_eq!(herd.wait_exit().code(), Some(0));
    let lines = herd.lines();
    let mut drained = false;
    for e in events(&lines) {
        match e["event"].as_str() {
            Some("draining") => drained = true,
            Some("recycle") if drained => panic!("recycled while draining: {e}"),
            Some("worker_started") if drained => panic!("started while draining: {e}"),
            _ => {}
        }
    }
    assert!(drained, "{}", last_lines(&lines));
}
