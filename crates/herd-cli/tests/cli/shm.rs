//! Shared memory (`--shm`): passed like a socket, shared by every worker, kept across restarts,
//! upgrades and re-execs.

use std::collections::BTreeSet;

use crate::util::*;

/// Sends `clients * each` requests from concurrent clients; returns every hit number and pid.
fn hits(addr: &str, clients: usize, each: usize) -> (Vec<u64>, BTreeSet<u64>) {
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let addr = addr.to_string();
            std::thread::spawn(move || {
                (0..each)
                    .map(|_| {
                        let body = get(&addr, "/").unwrap();
                        let n = body
                            .strip_prefix("hit ")
                            .unwrap()
                            .split(' ')
                            .next()
                            .unwrap()
                            .parse::<u64>()
                            .unwrap();
                        let pid = body
                            .split("pid ")
                            .nth(1)
                            .unwrap()
                            .split(',')
                            .next()
                            .unwrap()
                            .parse::<u64>()
                            .unwrap();
                        (n, pid)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut numbers = Vec::new();
    let mut pids = BTreeSet::new();
    for t in threads {
        for (n, pid) in t.join().unwrap() {
            numbers.push(n);
            pids.insert(pid);
        }
    }
    numbers.sort();
    (numbers, pids)
}

/// 40 concurrent hits: each number counted exactly once. Returns the new count.
fn check_counter(addr: &str, from: u64) -> u64 {
    let (numbers, _) = hits(addr, 4, 10);
    let expected: Vec<u64> = (from + 1..=from + 40).collect();
    assert_eq!(
        numbers, expected,
        "every hit counted exactly once, across workers"
    );
    from + 40
}

/// Rounds of hits until two different workers have counted (within the test timeout):
/// which worker takes a connection is the kernel's choice, so no fixed count is enough.
/// Returns the new count.
fn several_count(addr: &str, mut from: u64) -> u64 {
    let mut pids = BTreeSet::new();
    wait_until("two workers to share the counter", || {
        let (numbers, seen) = hits(addr, 4, 5);
        assert_eq!(numbers, (from + 1..=from + 20).collect::<Vec<u64>>());
        from += 20;
        pids.extend(seen);
        if pids.len() >= 2 {
            Ok(())
        } else {
            Err(format!("only {pids:?}"))
        }
    });
    from
}

#[test]
fn python_workers_share_a_counter_that_survives_restarts_upgrades_and_reexecs() {
    let herd = Herd::start(&[
        "run",
        "-w",
        "3",
        "--ready",
        "notify",
        "-b",
        "http=127.0.0.1:0,nonblocking",
        "--shm",
        "counter=4096",
        "--",
        "python3",
        &example("counter.py"),
    ]);
    let addr = herd.address("http");
    let status = wait_status(&herd, "3 ready workers", |s| s["ready"] == 3);
    assert_eq!(status["sockets"][1]["name"], "counter");
    assert_eq!(status["sockets"][1]["kind"], "shm");
    assert_eq!(status["sockets"][1]["fd"], 4);
    let mut count = several_count(&addr, 0);
    count = check_counter(&addr, count);

    // A killed worker's successor maps the same memory.
    let victim = herd.started(3)[0].1;
    // SAFETY: kill with a worker's pid.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    herd.wait_events("the successor", 4, is_start);
    count = check_counter(&addr, count);

    let (code, _, stderr) = herd.ctl(&["upgrade"]);
    assert_eq!(code, 0, "{stderr}");
    count = check_counter(&addr, count);

    let (code, _, stderr) = herd.ctl(&["reexec"]);
    assert_eq!(code, 0, "{stderr}");
    check_counter(&addr, count);
}

#[test]
fn rust_workers_count_with_atomics() {
    let counter = rust_example("counter");
    let herd = Herd::start(&[
        "run",
        "-w",
        "3",
        "--ready",
        "notify",
        "-b",
        "http=127.0.0.1:0",
        "--shm",
        "counter=8",
        "--",
        &counter,
    ]);
    let addr = herd.address("http");
    wait_status(&herd, "3 ready workers", |s| s["ready"] == 3);
    let count = several_count(&addr, 0);
    check_counter(&addr, count);
}

#[test]
fn shm_errors() {
    assert_fails(
        &["run", "-b", ":0", "--shm", "x=0", "--", "true"],
        2,
        "from 1 byte",
    );
    assert_fails(
        &["run", "-b", "x=127.0.0.1:0", "--shm", "x=4K", "--", "true"],
        2,
        "'x' is given to more than one --bind or --shm",
    );
}

#[test]
fn a_takeover_hands_the_shared_memory_over() {
    let counter = example("counter.py");
    let mut old = Herd::start(&[
        "run",
        "-w",
        "2",
        "--ready",
        "notify",
        "-b",
        "http=127.0.0.1:0,nonblocking",
        "--shm",
        "counter=4096",
        "--",
        "python3",
        &counter,
    ]);
    let addr = old.address("http");
    wait_status(&old, "2 ready workers", |s| s["ready"] == 2);
    let count = check_counter(&addr, 0);
    let control = old.control();
    let new = Herd::start_with(|_| {
        let mut cmd = herd_json();
        cmd.env("HERD_CONTROL", &control)
            .args([
                "run",
                "--takeover",
                &control,
                "-w",
                "2",
                "--ready",
                "notify",
                "--",
                "python3",
            ])
            .arg(&counter);
        cmd
    });
    new.wait_for_event("takeover_complete", &[]);
    assert_eq!(old.wait_exit().code(), Some(0));
    check_counter(&addr, count);
    drop(new);
}
