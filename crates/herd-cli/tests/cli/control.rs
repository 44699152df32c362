//! The control plane: status and scaling round trips, rolling upgrades under load, aborted
//! upgrades, readiness, the watchdog, access control, and hostile clients.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::util::*;

/// hello.py workers that report READY=1, on a non-blocking socket so that stopping one can
/// never reset a connection (see hello.py).
fn hello_notify(workers: &str) -> Herd {
    Herd::start(&[
        "run",
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

#[test]
fn status_and_scale_round_trips() {
    let herd = hello_notify("2");
    let addr = herd.address("http");
    let status = wait_status(&herd, "2 ready workers", |s| settled(s, 2));
    assert_eq!(status["generation"], 1);
    assert_eq!(status["pid"], herd.pid());
    let socket = &status["sockets"][0];
    assert_eq!(socket["name"], "http");
    assert_eq!(socket["address"], addr.as_str());
    assert_eq!(socket["fd"], 3);
    assert_eq!(socket["queue"], 0);
    assert!(socket["queue_limit"].as_u64().unwrap() > 0, "{socket}");
    let slots = BTreeSet::from_iter(worker_slots(&status));
    assert_eq!(slots, BTreeSet::from([0, 1]));

    let (code, table, _) = herd.ctl(&["status"]);
    assert_eq!(code, 0);
    for needle in [
        "2 of 2 workers ready",
        "SLOT",
        "ready",
        "SOCKET",
        "http",
        addr.as_str(),
    ] {
        assert!(table.contains(needle), "{needle:?} missing from:\n{table}");
    }

    for (arg, from, to) in [("4", 2, 4), ("-3", 4, 1), ("+1", 1, 2)] {
        let (code, stdout, stderr) = herd.ctl(&["scale", arg]);
        assert_eq!(code, 0, "{stderr}");
        let noun = if to == 1 { "worker" } else { "workers" };
        assert_eq!(stdout.trim(), format!("scaled from {from} to {to} {noun}"));
        let status = wait_status(&herd, &format!("{to} workers"), |s| settled(s, to));
        let slots = worker_slots(&status);
        assert_eq!(
            slots,
            (0..to).collect::<Vec<_>>(),
            "scale-down keeps the lowest slots"
        );
        assert!(get(&addr, "/").unwrap().starts_with("hello from pid"));
    }
    let (code, _, stderr) = herd.ctl(&["scale", "-5"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("cannot remove 5 of 2 workers"), "{stderr}");
}

#[test]
fn upgrades_and_scaling_under_load_lose_no_connection() {
    let herd = hello_notify("2");
    let addr = herd.address("http");
    wait_status(&herd, "2 ready workers", |s| settled(s, 2));

    let load = Load::start(&addr, 2, |b| b.starts_with("hello from pid"));

    for generation in 2..=11 {
        let (code, stdout, stderr) = herd.ctl(&["upgrade"]);
        assert_eq!(code, 0, "upgrade failed: {stderr}");
        assert!(
            stdout.contains(&format!("generation {generation}")),
            "{stdout}"
        );
    }
    for workers in [8, 1, 4] {
        herd.ctl(&["scale", &workers.to_string()]);
        wait_status(&herd, &format!("{workers} workers"), |s| {
            settled(s, workers)
        });
    }
    load.finish_without_failures(100);
    let status = herd.status();
    assert_eq!(status["generation"], 11);
    assert!(status["workers"]
        .as_array()
        .unwrap()
        .iter()
        .all(|w| w["generation"] == 11));
    // Every worker knows its generation.
    for w in status["workers"].as_array().unwrap() {
        let env = environ(w["pid"].as_u64().unwrap() as u32);
        assert!(env.contains(&"HERD_GENERATION=11".to_string()), "{env:?}");
    }
}

/// A herd of 2 workers (`--ready notify`, a socket named web) with `extra` options, whose
/// worker command is the script `text` writes for herd's directory (`worker.sh` there).
fn herd_running_script(extra: &[&str], text: impl FnOnce(&std::path::Path) -> String) -> Herd {
    Herd::start_with(|dir| {
        let script = dir.join("worker.sh");
        write_executable(&script, text(dir));
        let mut cmd = herd_json();
        cmd.args(["run", "-w", "2", "--ready", "notify"])
            .args(["-b", "web=127.0.0.1:0,nonblocking"])
            .args(extra)
            .arg("--")
            .arg(script);
        cmd
    })
}

/// A herd whose worker command is a script the test rewrites between upgrades.
fn herd_with_script(extra: &[&str]) -> Herd {
    let probe = worker("probe.py");
    let herd = herd_running_script(extra, |_| format!("#!/bin/sh\nexec python3 {probe}\n"));
    wait_status(&herd, "2 ready workers", |s| settled(s, 2));
    herd
}

fn pids(status: &Value) -> BTreeSet<u64> {
    status["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["pid"].as_u64().unwrap())
        .collect()
}

#[test]
fn a_failing_upgrade_aborts_and_the_old_workers_keep_serving() {
    let herd = herd_with_script(&["--ready-timeout", "1s"]);
    let addr = herd.address("web");
    let before = pids(&herd.status());
    let script = herd.path("worker.sh");

    // A new generation that exits at once.
    std::fs::write(&script, "#!/bin/sh\nexit 3\n").unwrap();
    let (code, _, stderr) = herd.ctl(&["upgrade"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("upgrade failed")
            && stderr.contains("exited before it was ready: exit code 3"),
        "{stderr}"
    );
    let after = wait_status(&herd, "the old workers alone", |s| settled(s, 2));
    assert_eq!(pids(&after), before);
    assert_eq!(after["generation"], 1);

    // A new generation that never says READY=1.
    let probe = worker("probe.py");
    std::fs::write(
        &script,
        format!("#!/bin/sh\nPROBE_READY=0 exec python3 {probe}\n"),
    )
    .unwrap();
    let (code, _, stderr) = herd.ctl(&["upgrade"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("did not send READY=1 within 1s"),
        "{stderr}"
    );
    let after = wait_status(&herd, "the old workers alone", |s| settled(s, 2));
    assert_eq!(pids(&after), before);
    for _ in 0..10 {
        let reply: Value = serde_json::from_str(&get(&addr, "/").unwrap()).unwrap();
        assert!(before.contains(&reply["pid"].as_u64().unwrap()));
    }
}

/// An upgrade whose program can no longer be executed (made not executable) fails at once,
/// and nothing is retried: the old workers serve on. Before, the failed start left a restart
/// due in the old worker's slot, which herd never started (the slot is held) nor cleared, so
/// its loop turned without pause from then on, and the log promised a retry (`retry_in`).
#[test]
fn an_upgrade_whose_program_cannot_be_executed_fails_and_retries_nothing() {
    let herd = herd_with_script(&[]);
    let before = pids(&herd.status());
    let script = herd.path("worker.sh");
    let not_executable = std::os::unix::fs::PermissionsExt::from_mode(0o644);
    std::fs::set_permissions(&script, not_executable).unwrap();
    let (code, _, stderr) = herd.ctl(&["upgrade"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("is not executable"), "{stderr}");
    let failed = herd.wait_for_event("worker_start_failed", &[]);
    assert_eq!(failed.get("retry_in"), None, "{failed}");
    let message = failed["message"].as_str().unwrap();
    assert!(
        message.ends_with("the worker of its slot serves on"),
        "{message}"
    );
    let after = wait_status(&herd, "the old workers alone", |s| settled(s, 2));
    assert_eq!(pids(&after), before);
}

/// A fix deployed by upgrade (generation 2) to a slot in a crash loop whose restarts hang
/// (never ready): the upgrade does not wait for them (restarts do not count against
/// --max-starting), and the hung worker is replaced, not killed for --ready-timeout. Before,
/// the upgrade waited for it and timed out.
#[test]
fn an_upgrade_is_not_held_back_by_a_slot_restarting_in_a_crash_loop() {
    let probe = worker("probe.py");
    let extra = ["--ready-timeout", "120s", "--min-ready", "0"];
    let herd = herd_running_script(&extra, |dir| {
        format!(
            "#!/bin/sh\n\
             if [ \"$HERD_WORKER\" = 1 ] && [ \"$HERD_GENERATION\" = 1 ]; then\n\
             [ -e {crashed} ] && PROBE_READY=0 exec python3 {probe}\n\
             touch {crashed}; exit 3\n\
             fi\n\
             exec python3 {probe}\n",
            crashed = dir.join("crashed").display()
        )
    });
    herd.wait_for_event("worker_ready", &[("slot", 0.into())]);
    let slot1 = herd.wait_for_events("worker_started", 2, &[("slot", 1.into())]);
    let hung = slot1[1]["pid"].as_u64().unwrap();
    let (code, _, stderr) = herd.ctl(&["upgrade", "--timeout", "15s"]);
    assert_eq!(code, 0, "{stderr}");
    let exit = herd.wait_for_event("worker_exited", &[("pid", hung.into())]);
    let message = exit["message"].as_str().unwrap();
    assert!(message.contains("replaced"), "{message}");
}

#[test]
fn an_upgrade_is_not_held_back_by_old_workers_hung_in_their_start_up() {
    let probe = worker("probe.py");
    let herd = herd_running_script(&["--ready-timeout", "120s", "--min-ready", "0"], |_| {
        format!(
            "#!/bin/sh\n[ \"$HERD_GENERATION\" = 1 ] && PROBE_READY=0 exec python3 {probe}\n\
             exec python3 {probe}\n"
        )
    });
    herd.wait_for_events("worker_started", 2, &[("generation", 1.into())]);
    // Before, they took --max-starting's room until --ready-timeout killed them.
    let (code, _, stderr) = herd.ctl(&["upgrade", "--timeout", "15s"]);
    assert_eq!(code, 0, "{stderr}");
    wait_status(&herd, "2 ready workers", |s| settled(s, 2));
}

#[test]
fn an_upgrade_onto_workers_that_die_soon_after_ready_aborts() {
    // The default --min-ready (1s) applies.
    let herd = herd_with_script(&[]);
    let addr = herd.address("web");
    let before = pids(&herd.status());
    let script = herd.path("worker.sh");
    let probe = worker("probe.py");

    // A new generation that says READY=1, then crashes 300ms later.
    std::fs::write(
        &script,
        format!("#!/bin/sh\nPROBE_DIE_AFTER_READY=0.3 exec python3 {probe}\n"),
    )
    .unwrap();
    let (code, stdout, stderr) = herd.ctl(&["upgrade"]);
    assert_eq!(code, 1, "the upgrade must fail: {stdout}{stderr}");
    assert!(
        stderr.contains("upgrade failed")
            && stderr.contains("after it was ready, within --min-ready 1s: exit code 1"),
        "{stderr}"
    );
    let replaced = herd.lines().iter().any(|l| {
        matches!(l, Line::Event(e) if is_exit(e) && e["message"]
            .as_str()
            .unwrap_or("")
            .contains("replaced by a newer generation"))
    });
    assert!(!replaced, "an old worker was replaced");
    let after = wait_status(&herd, "the old workers alone", |s| settled(s, 2));
    assert_eq!(pids(&after), before, "the old workers keep serving");
    assert_eq!(after["generation"], 1);
    for _ in 0..10 {
        let reply: Value = serde_json::from_str(&get(&addr, "/").unwrap()).unwrap();
        assert!(before.contains(&reply["pid"].as_u64().unwrap()));
    }

    // A sound generation upgrades, each new worker having been ready for 1s.
    std::fs::write(&script, format!("#!/bin/sh\nexec python3 {probe}\n")).unwrap();
    let (code, stdout, stderr) = herd.ctl(&["upgrade"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let status = wait_status(&herd, "generation 3", |s| settled(s, 2));
    assert_eq!(status["generation"], 3, "generation 2 was the aborted one");
    assert_eq!(status["min_ready_ms"], 1000);
}

#[test]
fn a_worker_that_stops_pinging_the_watchdog_is_replaced() {
    let herd = Herd::start_with(|_| {
        let mut cmd = herd_json();
        cmd.args([
            "run",
            "-w",
            "2",
            "--ready",
            "notify",
            "--watchdog",
            "500ms",
            "-b",
            "127.0.0.1:0",
            "--",
        ])
        .args([
            "sh",
            "-c",
            "[ \"$HERD_WORKER\" = 1 ] && export PROBE_WATCHDOG=0; exec python3 \"$0\"",
        ])
        .arg(worker("probe.py"));
        cmd
    });
    let killed = herd.wait_for_event("worker_killed", &[]);
    assert_eq!(killed["message"], "killing worker: watchdog timeout");
    assert_eq!(
        killed["slot"], 1,
        "only the silent worker is killed: {killed}"
    );
    herd.wait_events("a replacement in slot 1", 2, |e| {
        is_start(e) && e["slot"] == 1
    });
    let status = herd.status();
    let healthy = status["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["slot"] == 0)
        .unwrap();
    assert_eq!(
        healthy["restarts"], 0,
        "the pinging worker lives on: {status}"
    );
    assert_eq!(healthy["status"], "serving", "STATUS= is shown: {status}");
}

#[test]
fn signals_and_stop_through_the_control_socket() {
    let mut herd = sleepers(&["-w", "2"]);
    let started = herd.started(2);
    let (code, stdout, _) = herd.ctl(&["signal", "USR1", "--worker", "1"]);
    assert_eq!((code, stdout.trim()), (0, "sent SIGUSR1 to 1 worker"));
    // The log names the slot as a number, like every other event's slot.
    herd.wait_for_event("workers_signalled", &[("slot", 1.into())]);
    let victim = started.iter().find(|(slot, _)| *slot == 1).unwrap().1;
    let exit = herd.wait_event("the signalled exit", |e| is_exit(e) && e["pid"] == victim);
    assert!(
        exit["message"]
            .as_str()
            .unwrap()
            .contains("killed by SIGUSR1"),
        "{exit}"
    );
    let (code, _, stderr) = herd.ctl(&["signal", "USR1", "--worker", "9"]);
    assert_eq!(code, 1);
    // Which slots have one (1's may be restarting after the signal).
    assert!(
        stderr.contains("no worker runs in slot 9; one runs in slot 0")
            || stderr.contains("no worker runs in slot 9; workers run in slots 0-1"),
        "{stderr}"
    );

    let (code, stdout, stderr) = herd.ctl(&["stop", "--grace", "5s"]);
    assert_eq!((code, stdout.trim()), (0, "stopped"), "{stderr}");
    assert_eq!(herd.wait_exit().code(), Some(0));
    assert!(
        !std::path::Path::new(&herd.control()).exists(),
        "control socket left behind"
    );
}

#[test]
fn supervisor_signals_upgrade_and_scale() {
    let herd = hello_notify("1");
    wait_status(&herd, "1 ready worker", |s| settled(s, 1));
    herd.signal(libc::SIGTTIN);
    wait_status(&herd, "2 workers", |s| settled(s, 2));
    herd.signal(libc::SIGTTOU);
    wait_status(&herd, "1 worker", |s| settled(s, 1));
    // Never below one: refused, not a scale to 1 again.
    herd.signal(libc::SIGTTOU);
    herd.wait_for_event("scale_refused", &[]);
    assert_eq!(herd.status()["desired"], 1);
    herd.signal(libc::SIGHUP);
    herd.wait_for_event("upgrade_finished", &[("generation", 2.into())]);
    assert_eq!(herd.status()["generation"], 2);
}

#[test]
fn sigusr1_is_ignored_not_the_end_of_herd() {
    // gunicorn's and nginx's "reopen your log files", which logrotate scripts send: by default
    // it ended herd, and every worker with it (PR_SET_PDEATHSIG).
    let mut herd = hello_notify("1");
    wait_status(&herd, "1 ready worker", |s| settled(s, 1));
    let pid = herd.status()["workers"][0]["pid"].clone();
    herd.signal(libc::SIGUSR1);
    let ignored = herd.wait_for_event("signal_ignored", &[("signal", "SIGUSR1".into())]);
    let message = ignored["message"].as_str().unwrap();
    assert!(message.contains("herd signal USR1"), "{message}");
    let status = herd.status();
    assert_eq!(status["workers"][0]["pid"], pid, "{status}");
    let (code, stdout, stderr) = herd.ctl(&["stop"]);
    assert_eq!((code, stdout.trim()), (0, "stopped"), "{stderr}");
    assert_eq!(herd.wait_exit().code(), Some(0));
}

#[test]
fn a_relative_control_path_reaches_workers_that_run_elsewhere() {
    // Workers in another directory (--chdir) report ready through NOTIFY_SOCKET and ask herd
    // for its status through HERD_CONTROL: both must name herd's sockets from anywhere.
    let worker = "import os, socket, sys, time\n\
                  n = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n\
                  n.sendto(b'READY=1', os.environ['NOTIFY_SOCKET'])\n\
                  c = socket.socket(socket.AF_UNIX)\n\
                  c.connect(os.environ['HERD_CONTROL'])\n\
                  c.sendall(b'{{\"version\":1,\"command\":\"status\"}}\\n')\n\
                  ok = b'\"ok\":true' in c.recv(65536)\n\
                  os.write(2, b'control answered\\n' if ok else b'control refused\\n')\n\
                  time.sleep(1000)\n";
    let herd = Herd::start_with(|dir| {
        std::fs::create_dir(dir.join("work")).unwrap();
        std::fs::create_dir(dir.join("c")).unwrap();
        let mut cmd = herd_json();
        cmd.current_dir(dir)
            .env("HERD_CONTROL", dir.join("control.sock"))
            .args(["run", "--control", "./c/rel.sock", "--chdir", "work"])
            .args(["-w", "1", "--ready", "notify", "--ready-timeout", "20s"])
            .args(["-b", "127.0.0.1:0", "--", "python3", "-c", worker]);
        cmd
    });
    let pid = herd.started(1)[0].1;
    herd.wait_for_event("worker_ready", &[("pid", pid.into())]);
    herd.wait_text("control answered");
    let dir = herd.dir.path().canonicalize().unwrap();
    let control = dir.join("c/rel.sock").display().to_string();
    let env = environ(pid);
    assert!(env.contains(&format!("HERD_CONTROL={control}")), "{env:?}");
    let notify = format!("NOTIFY_SOCKET={}", dir.join("c/rel.").display());
    assert!(env.iter().any(|v| v.starts_with(&notify)), "{env:?}");
    let (code, _, stderr) = ctl_at(&control, &["stop"]);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn an_upgrade_timeout_shorter_than_min_ready_is_refused_without_using_a_generation() {
    let herd = sleepers(&["-w", "2", "--min-ready", "1h"]);
    herd.started(2);
    let (code, _, stderr) = herd.ctl(&["upgrade", "--timeout", "0"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("must be positive"), "{stderr}");
    let (code, _, stderr) = herd.ctl(&["upgrade", "--timeout", "3s"]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("an upgrade timeout of 3s is too short")
            && stderr.contains("--min-ready 1h"),
        "{stderr}"
    );
    let refused = herd.wait_for_event("upgrade_refused", &[]);
    assert!(
        refused["message"]
            .as_str()
            .unwrap_or("")
            .contains("cannot upgrade: an upgrade timeout of 3s is too short"),
        "{refused}"
    );
    // Less than the protocol's millisecond is not zero: it was sent as 0 and refused as not
    // positive.
    let (code, _, stderr) = herd.ctl(&["upgrade", "--timeout", "1ns"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("an upgrade timeout of 1ms is too short"),
        "{stderr}"
    );
    let started = events(&herd.lines()).any(|e| e["event"] == "upgrade_started");
    assert!(!started, "no upgrade started, no generation was used");
    let status = herd.status();
    assert_eq!(status["generation"], 1, "{status}");
    let generations: Vec<&Value> = status["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| &w["generation"])
        .collect();
    assert_eq!(generations, [1, 1], "{status}");
}
