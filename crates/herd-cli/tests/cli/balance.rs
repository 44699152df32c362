//! `--balance reuseport`: one socket and accept queue per worker slot, kept across restarts,
//! upgrades and re-execs, drained before a slot is scaled away.

use std::collections::{BTreeMap, BTreeSet};

use crate::util::*;

fn reuseport_hello(workers: &str) -> Herd {
    Herd::start(&[
        "run",
        "--balance",
        "reuseport",
        "-w",
        workers,
        "--ready",
        "notify",
        "-b",
        "http=127.0.0.1:0,nonblocking",
        "--",
        "python3",
        &example("hello.py"),
    ])
}

/// Each slot's socket, as the kernel names it (`socket:[INODE]`), read from its worker's fd 3.
fn slot_sockets(status: &serde_json::Value) -> BTreeMap<u64, String> {
    status["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            let pid = w["pid"].as_u64().unwrap();
            let link = std::fs::read_link(format!("/proc/{pid}/fd/3")).unwrap();
            (w["slot"].as_u64().unwrap(), link.display().to_string())
        })
        .collect()
}

/// Which worker pids answer `n` requests.
fn answering(addr: &str, n: usize) -> BTreeSet<String> {
    (0..n)
        .map(|_| {
            let body = get(addr, "/").unwrap();
            body.split(',').next().unwrap().to_string()
        })
        .collect()
}

#[test]
fn reuseport_slots_keep_their_sockets_and_lose_nothing_under_changes() {
    let herd = reuseport_hello("4");
    let addr = herd.address("http");
    let status = wait_status(&herd, "4 ready workers", |s| settled(s, 4));
    let socket = &status["sockets"][0];
    assert_eq!(socket["balance"], "reuseport", "{socket}");
    assert_eq!(
        socket["slot_queues"].as_array().unwrap().len(),
        4,
        "{socket}"
    );
    let sockets = slot_sockets(&status);
    let distinct: BTreeSet<&String> = sockets.values().collect();
    assert_eq!(distinct.len(), 4, "one socket per slot: {sockets:?}");
    assert_eq!(
        answering(&addr, 200).len(),
        4,
        "every worker gets connections"
    );

    // A killed worker loses what it was serving, so this one is killed before the load.
    let victim = status["workers"][1]["pid"].as_u64().unwrap();
    // SAFETY: a plain kill(2) of a worker this test started.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    wait_status(&herd, "the killed worker replaced", |s| {
        settled(s, 4)
            && s["workers"]
                .as_array()
                .unwrap()
                .iter()
                .all(|w| w["pid"] != victim)
    });

    let load = Load::start(&addr, 2, |b| b.starts_with("hello from pid"));
    for workers in [1, 4] {
        herd.ctl(&["scale", &workers.to_string()]);
        wait_status(&herd, &format!("{workers} workers"), |s| {
            settled(s, workers)
        });
    }
    let (code, _, stderr) = herd.ctl(&["upgrade"]);
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = herd.ctl(&["reexec"]);
    assert_eq!(code, 0, "{stderr}");
    load.finish_without_failures(100);

    let after = wait_status(&herd, "4 ready workers", |s| settled(s, 4));
    assert_eq!(after["generation"], 2);
    assert_eq!(
        slot_sockets(&after),
        sockets,
        "each slot keeps its socket across a kill, an upgrade, scaling and a re-exec"
    );
    assert_eq!(
        answering(&addr, 200).len(),
        4,
        "every worker gets connections"
    );
}

/// Two slow workers on reuseport slots, and 40 clients whose connections wait in both slots'
/// queues; with the status that saw more than two queued in slot 1.
fn queued_in_both_slots() -> (Herd, Vec<std::net::TcpStream>, serde_json::Value) {
    queued_in_both_slots_via(std::process::Command::new(HERD))
}

/// [`queued_in_both_slots`], with herd started by `program`.
fn queued_in_both_slots_via(
    program: std::process::Command,
) -> (Herd, Vec<std::net::TcpStream>, serde_json::Value) {
    let herd = Herd::start_via(
        program,
        &[
            "run",
            "--env",
            "SLOW_MS=100",
            "--balance",
            "reuseport",
            "-w",
            "2",
            "--ready",
            "notify",
            "-b",
            "http=127.0.0.1:0,nonblocking",
            "--",
            "python3",
            &worker("slow.py"),
        ],
    );
    let addr = herd.address("http");
    wait_status(&herd, "2 ready workers", |s| settled(s, 2));
    // 40 connections at once, 100 ms of work each: both slots' queues fill up.
    let clients = requests_sent(&addr, 40);
    let queued = wait_status(&herd, "connections queued in slot 1", |s| {
        s["sockets"][0]["slot_queues"][1].as_u64().unwrap_or(0) > 2
    });
    (herd, clients, queued)
}

/// `n` connections to `addr`, each with a request sent, waiting for its answer.
fn requests_sent(addr: &str, n: usize) -> Vec<std::net::TcpStream> {
    (0..n)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(TIMEOUT)).unwrap();
            std::io::Write::write_all(&mut s, b"GET / HTTP/1.0\r\n\r\n").unwrap();
            s
        })
        .collect()
}

/// Every client is answered, those queued in the slot scaled away too.
fn all_answered(clients: Vec<std::net::TcpStream>, queued: &serde_json::Value) {
    for mut c in clients {
        let mut answer = String::new();
        std::io::Read::read_to_string(&mut c, &mut answer)
            .unwrap_or_else(|e| panic!("a queued client was not answered ({e}); {queued}"));
        assert!(answer.contains("slow pid"), "{answer:?}");
    }
}

#[test]
fn scaling_down_a_reuseport_slot_first_serves_what_waits_in_its_queue() {
    let (herd, clients, queued) = queued_in_both_slots();
    herd.ctl(&["scale", "1"]);
    // Slot 1's worker gets the stop signal only once its queue is empty.
    all_answered(clients, &queued);
    wait_status(&herd, "1 worker", |s| settled(s, 1));
}

/// Connections made while no worker runs (`herd scale 0`) wait in slot 0's queue and are
/// served by the next scale-up: spread over every slot, those in slots it did not grow back
/// to waited until herd stopped.
#[test]
fn connections_made_at_zero_workers_are_served_by_a_smaller_scale_up() {
    let herd = reuseport_hello("4");
    let addr = herd.address("http");
    wait_status(&herd, "4 ready workers", |s| settled(s, 4));
    let (code, _, stderr) = herd.ctl(&["scale", "0"]);
    assert_eq!(code, 0, "{stderr}");
    wait_status(&herd, "no worker", |s| {
        s["workers"].as_array().is_some_and(Vec::is_empty)
    });
    let clients = requests_sent(&addr, 12);
    let queued = wait_status(&herd, "12 connections queued", |s| {
        s["sockets"][0]["queue"].as_u64() == Some(12)
    });
    herd.ctl(&["scale", "1"]);
    for mut c in clients {
        let mut answer = String::new();
        std::io::Read::read_to_string(&mut c, &mut answer).unwrap_or_else(|e| {
            panic!("a client made at 0 workers was not answered ({e}); {queued}")
        });
        assert!(answer.contains("pid"), "{answer:?}");
    }
}

/// The drain is the pool's state: a re-exec carries it on instead of waiting for it.
#[test]
fn a_reexec_while_a_slot_drains_carries_the_drain_on() {
    let (herd, clients, queued) = queued_in_both_slots();
    herd.ctl(&["scale", "1"]);
    let (code, _, stderr) = herd.ctl(&["reexec"]);
    assert_eq!(code, 0, "{stderr}");
    all_answered(clients, &queued);
    wait_status(&herd, "1 worker", |s| settled(s, 1));
}

/// A herd that reads only version-1 re-exec state (one that predates drains) would take a
/// draining worker for one already told to stop: a re-exec onto it waits while a slot drains,
/// and goes ahead once the drain is over.
#[test]
fn a_reexec_onto_a_herd_that_predates_drains_waits_for_the_drain() {
    let (_dir, copy) = herd_copy();
    let (herd, clients, queued) = queued_in_both_slots_via(std::process::Command::new(&copy));
    let older = format!(
        "#!/bin/sh\nif [ \"$1\" = __reexec-check ] && [ \"$2\" != 1 ]; then\n  \
         echo \"this herd reads re-exec state versions 1..=1, not $2\" >&2; exit 1\nfi\n\
         exec '{HERD}' \"$@\"\n"
    );
    crate::reexec::replace_binary(&copy, older.as_bytes());
    herd.ctl(&["scale", "1"]);
    let (code, said) = crate::reexec::reexec(&herd);
    assert_eq!(code, 1, "{said}");
    assert!(
        said.contains("writes state version 2 because a worker is draining its reuseport slot"),
        "{said}"
    );
    all_answered(clients, &queued);
    wait_status(&herd, "1 worker", |s| settled(s, 1));
    let (code, said) = crate::reexec::reexec(&herd);
    assert_eq!(code, 0, "{said}");
    assert_eq!(herd.status()["pid"], herd.pid());
}

#[test]
fn reuseport_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let unix = format!("unix:{}", dir.path().join("s.sock").display());
    assert_fails(
        &["run", "--balance", "reuseport", "-b", &unix, "--", "true"],
        2,
        "applies to TCP sockets",
    );
    assert!(!dir.path().join("s.sock").exists());
    assert_fails(
        &[
            "run",
            "--balance",
            "reuseport",
            "--takeover",
            "/nonexistent",
            "--",
            "true",
        ],
        2,
        "cannot be combined with --takeover",
    );
    assert_fails(
        &["run", "--balance", "spread", "-b", ":0", "--", "true"],
        2,
        "invalid value 'spread'",
    );
}

#[test]
fn a_reuseport_herd_refuses_a_takeover_and_keeps_serving() {
    let old = reuseport_hello("1");
    let addr = old.address("http");
    wait_status(&old, "1 ready worker", |s| settled(s, 1));
    let control = old.control();
    let mut new = Herd::start_with(|_| {
        let mut cmd = herd_json();
        cmd.env("HERD_CONTROL", &control).args([
            "run",
            "--takeover",
            &control,
            "--",
            "sleep",
            "1000",
        ]);
        cmd
    });
    assert_eq!(new.wait_exit().code(), Some(1));
    assert!(
        new.lines()
            .iter()
            .any(|l| matches!(l, Line::Text(t) if t.contains("herd reexec"))),
        "{:?}",
        new.lines()
    );
    assert_eq!(old.status()["pid"], old.pid(), "the old herd is untouched");
    assert!(get(&addr, "/").unwrap().starts_with("hello from pid"));
}

#[test]
fn an_attached_process_shares_slot_0s_reuseport_socket() {
    let herd = Herd::start(&[
        "run",
        "--balance",
        "reuseport",
        "-w",
        "2",
        "--ready",
        "delay=10ms",
        "-b",
        "http=127.0.0.1:0",
        "--",
        "sleep",
        "1000",
    ]);
    let status = wait_status(&herd, "2 ready workers", |s| settled(s, 2));
    let slot0 = slot_sockets(&status)[&0].clone();
    let mut attached = std::process::Command::new(HERD)
        .env("HERD_CONTROL", herd.control())
        .args(["attach", "--", "sleep", "1000"])
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = attached.id();
    let link = wait_until("the attached process's socket", || {
        // Once `herd attach` has become the command: before that, its fd 3 may be its
        // connection to herd.
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() != "sleep" {
            return Err(format!("command {comm:?}"));
        }
        let link = std::fs::read_link(format!("/proc/{pid}/fd/3"))
            .map(|l| l.display().to_string())
            .unwrap_or_default();
        if link.starts_with("socket:") {
            Ok(link)
        } else {
            Err(format!("fd 3 is {link:?}"))
        }
    });
    assert_eq!(link, slot0, "attach hands over slot 0's socket");
    let _ = attached.kill();
    let _ = attached.wait();
}

/// More workers than their reuseport sockets leave herd fds for are refused, by `herd run -w`
/// and by `herd scale`, in one line: `herd scale 4096` under a limit of 1024 with two sockets
/// started 497 workers, the others failed at every retry (thousands of log lines a round) and
/// herd answered the `herd scale` or `herd stop` that would undo it "at its open-file limit".
#[test]
fn more_reuseport_workers_than_the_open_file_limit_allows_are_refused() {
    let run_under = |limit: &str, workers: &str| {
        let two_sockets = [
            "--balance",
            "reuseport",
            "-b",
            "127.0.0.1:0",
            "-b",
            "127.0.0.1:0",
        ];
        herd_under_nofile(limit, workers, &two_sockets)
    };
    let run = |workers: &str| run_under("1024", workers);
    let mut refused = run("4096");
    assert_eq!(refused.wait_exit().code(), Some(2));
    let said = last_lines(&refused.lines());
    assert!(
        said.contains(
            "4096 workers do not fit herd's open-file limit of 1024: for each worker, herd holds 2"
        ) && said.contains("(--balance reuseport)")
            && said.contains("at most 350;"),
        "{said}"
    );
    let mut refused = run("1..400");
    assert_eq!(refused.wait_exit().code(), Some(2));

    let herd = run("1");
    wait_status(&herd, "1 ready worker", |s| settled(s, 1));
    for asked in ["4096", "+400", "2..4096"] {
        let (code, _, stderr) = herd.ctl(&["scale", asked]);
        assert_eq!(code, 1, "{asked}: {stderr}");
        assert!(stderr.contains("at most 350;"), "{asked}: {stderr}");
    }
    let (code, out, stderr) = herd.ctl(&["scale", "3"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(out.contains("scaled from 1 to 3 workers"), "{out}");
    assert_eq!(herd.status()["desired"], 3);

    // SIGTTIN, one at a time, stops at the same bound: (160 - 160/4 - 64 - 2 * 2) / 2 = 26
    // (herd holds each of its 2 sockets twice while a worker starts).
    let full = run_under("160", "26");
    wait_status(&full, "26 ready workers", |s| settled(s, 26));
    full.signal(libc::SIGTTIN);
    let refused = full.wait_for_event("scale_refused", &[]);
    let said = refused["message"].as_str().unwrap_or_default();
    assert!(
        said.contains("SIGTTIN ignored") && said.contains("at most 26;"),
        "{refused}"
    );
    assert_eq!(full.status()["desired"], 26);
}

/// The same for the pipes herd reads each worker's output from (`--worker-output prefix`), an
/// upgrade's successors' too (`--max-surge 100%`, the default: half as many workers fit):
/// `herd scale 1000` under a limit of 1024 started the workers that fit and failed the others
/// at every retry, a line each.
#[test]
fn more_workers_than_their_output_pipes_leave_fds_for_are_refused() {
    let prefix = ["--worker-output", "prefix", "-b", "127.0.0.1:0"];
    let run = |workers: &str| herd_under_nofile("1024", workers, &prefix);
    let mut refused = run("1000");
    assert_eq!(refused.wait_exit().code(), Some(2));
    let said = last_lines(&refused.lines());
    assert!(
        said.contains("1000 workers do not fit herd's open-file limit of 1024: for each worker, herd holds 2 pipes")
            && said.contains("at most 175;")
            && said.contains("--worker-output inherit"),
        "{said}"
    );
    let herd = run("1");
    wait_status(&herd, "1 ready worker", |s| settled(s, 1));
    let (code, _, stderr) = herd.ctl(&["scale", "1000"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("at most 175;"), "{stderr}");
    assert_eq!(herd.status()["desired"], 1);
}

/// A herd of `workers` sleepers with `options`, at an open-file limit of `limit` (`prlimit`).
fn herd_under_nofile(limit: &str, workers: &str, options: &[&str]) -> Herd {
    let mut prlimit = std::process::Command::new("prlimit");
    prlimit.arg(format!("--nofile={limit}:{limit}")).arg(HERD);
    let args = [&["run", "-w", workers], options, &["--", "sleep", "1000"]].concat();
    Herd::start_via(prlimit, &args)
}

/// A reloaded config file's `workers` the open-file limit cannot hold. `"MIN..MAX"` was taken,
/// and the autoscaler grew the pool past the limit under load, each failed start a line at
/// every retry (230 lines in 20 s with 100 connections waiting); a number was refused in the
/// log only, once the upgrade had finished, `herd upgrade --reload-config` answering success.
/// Both are refused in the reply, before anything changes, as `herd scale` refuses them.
#[test]
fn a_reloaded_workers_past_the_open_file_limit_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("herd.toml");
    let text = "command = [\"sleep\", \"1000\"]\nworkers = 1\nbind = [\"127.0.0.1:0\"]\n\
                worker-output = \"prefix\"\n";
    std::fs::write(&config, text).unwrap();
    let mut prlimit = std::process::Command::new("prlimit");
    prlimit.arg("--nofile=1024:1024").arg(HERD);
    let herd = Herd::start_via(prlimit, &["run", "--config", config.to_str().unwrap()]);
    wait_status(&herd, "1 ready worker", |s| settled(s, 1));
    for (workers, said) in [("\"1..1000\"", "1000 workers"), ("500", "500 workers")] {
        std::fs::write(
            &config,
            text.replace("workers = 1\n", &format!("workers = {workers}\n")),
        )
        .unwrap();
        let (code, _, stderr) = herd.ctl(&["upgrade", "--reload-config"]);
        assert_eq!(code, FAILURE, "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains(&format!("the config file's workers: {said} do not fit"))
                && stderr.contains("at most 175;")
                && stderr.contains("nothing was changed")
                && stderr.contains("(config_invalid)"),
            "{stderr}"
        );
        let status = herd.status();
        assert!(status["autoscale"].is_null(), "{status}");
        assert_eq!(status["desired"], 1);
        assert_eq!(status["generation"], 1, "no upgrade: {status}");
    }
    // What fits is taken.
    std::fs::write(
        &config,
        text.replace("workers = 1\n", "workers = \"1..150\"\n"),
    )
    .unwrap();
    let (code, _, stderr) = herd.ctl(&["upgrade", "--reload-config"]);
    assert_eq!(code, 0, "{stderr}");
    wait_status(&herd, "autoscaling 1..150", |s| {
        s["autoscale"]["max"] == 150
    });
}
