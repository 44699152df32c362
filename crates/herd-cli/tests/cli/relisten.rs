//! Sockets a worker shut down (`shutdown(2)` on a shared socket stops it for every holder):
//! herd makes them listen again, suspects the worker that keeps doing it, and upgrades survive
//! it.

use serde_json::Value;

use crate::util::*;

/// Starts herd with two `shutdown_socket.py` workers (given `extra` arguments) that say
/// READY=1, on a socket named http on 127.0.0.1.
fn shutdown_socket_herd(extra: &[&str]) -> Herd {
    let script = worker("shutdown_socket.py");
    let mut args = vec![
        "run",
        "-w",
        "2",
        "--ready",
        "notify",
        "-b",
        "http=127.0.0.1:0",
        "--",
        "python3",
        &script,
    ];
    args.extend_from_slice(extra);
    Herd::start(&args)
}

/// Waits for herd to report that it made a shut-down socket listen again; returns that event.
fn wait_repair(herd: &Herd, what: &str) -> Value {
    herd.wait_event(what, |e| e["event"] == "socket_restored")
}

/// The pid (as text) of the worker that says it shut the socket down.
fn culprit_pid(herd: &Herd) -> String {
    herd.wait_text(SHUT_DOWN)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string()
}

/// What the culprit says each time it shuts the socket down.
const SHUT_DOWN: &str = "shut the socket down";

/// How many times the culprit has said it shut the socket down.
fn shutdowns(lines: &[Line]) -> usize {
    lines
        .iter()
        .filter(|l| matches!(l, Line::Text(t) if t.contains(SHUT_DOWN)))
        .count()
}

/// The pid in hello.py's answer ("hello from pid X, worker Y").
fn hello_pid(body: &str) -> Option<u32> {
    let rest = body.trim().strip_prefix("hello from pid ")?;
    rest.split(',').next()?.parse().ok()
}

/// The pid of the worker that answers on `addr`: a victim (the culprit does not serve).
fn serving_victim(addr: &str) -> u32 {
    let body = wait_until("a victim to answer", || get(addr, "/"));
    hello_pid(&body).unwrap_or_else(|| panic!("not hello.py's answer: {body:?}"))
}

/// After a shutdown of the socket: the exit of `victim` if it crashed, `None` if it survived
/// and answers again (a victim that gets the CPU only once herd has made the socket listen
/// again never sees the shutdown: the kernel puts it back to sleep in `accept()`).
fn crash_of(herd: &Herd, addr: &str, victim: u32) -> Option<Value> {
    wait_until("the victim to crash or to answer again", || {
        let lines = herd.lines();
        if let Some(exit) = events(&lines).find(|e| is_exit(e) && e["pid"] == victim) {
            return Ok(Some(exit.clone()));
        }
        match get(addr, "/") {
            Ok(body) if hello_pid(&body) == Some(victim) => Ok(None),
            seen => Err(format!("{seen:?}")),
        }
    })
}

#[test]
fn a_socket_shut_down_by_a_worker_listens_again() {
    let marker = tempfile::tempdir().unwrap();
    let marker = marker.path().join("shut-down");
    let herd = Herd::start(&[
        "run",
        "-w",
        "2",
        "--ready",
        "notify",
        "--metrics",
        "127.0.0.1:0",
        "-b",
        "http=127.0.0.1:0",
        "--",
        "python3",
        &worker("shutdown_socket.py"),
        marker.to_str().unwrap(),
    ]);
    let addr = herd.address("http");
    let metrics = metrics_address(&herd);
    // One worker shuts the shared socket down and exits: herd names it and repairs the socket.
    let culprit = culprit_pid(&herd);
    let event = wait_repair(&herd, "the repair");
    assert_eq!(event["socket"], "http", "{event}");
    assert_eq!(event["address"], addr.as_str(), "{event}");
    let named = event["culprit"].as_str().unwrap();
    assert!(named.contains(&format!("(pid {culprit})")), "{event}");
    // The port answers again, on the same address, and the workers settle.
    wait_until("the port to answer", || get(&addr, "/"));
    wait_status(&herd, "2 ready workers", |s| settled(s, 2));
    for _ in 0..20 {
        get(&addr, "/").expect("every request is answered once repaired");
    }
    let text = get(&metrics, "/metrics").unwrap();
    assert!(text.contains("herd_sockets_restored_total 1"), "{text}");
    // Logged once.
    let repairs = events(&herd.lines())
        .filter(|e| e["event"] == "socket_restored")
        .count();
    assert_eq!(repairs, 1);
}

#[test]
fn a_worker_that_keeps_shutting_the_socket_down_is_suspected_and_its_victims_do_not_back_off() {
    let marker = tempfile::tempdir().unwrap();
    let marker = marker.path().join("shut-down");
    let herd = shutdown_socket_herd(&["--stay", marker.to_str().unwrap()]);
    let addr = herd.address("http");
    let culprit: u32 = culprit_pid(&herd).parse().unwrap();
    // Nobody exited cleanly: herd does not blame a crashed victim, it names the workers that
    // still run, the culprit among them.
    let event = wait_repair(&herd, "the first repair");
    let named = event["culprit"].as_str().unwrap();
    assert!(
        named.contains("likely one that still runs, one of: ")
            && named.contains(&format!("(pid {culprit})")),
        "{event}"
    );
    // The other slot's workers crash on each shut-down socket (accept() fails): restarted at
    // once every time, no crash-loop backoff. Each round, once a victim serves, the culprit
    // shuts the socket down again, until two victims have crashed.
    let mut crashes = Vec::new();
    for round in 1..=10 {
        let victim = serving_victim(&addr);
        assert!(alive(culprit));
        // SAFETY: kill with a valid signal, to herd's worker, alive: its pid is not reused.
        assert_eq!(unsafe { libc::kill(culprit as i32, libc::SIGUSR1) }, 0);
        herd.wait_for(&format!("shutdown {}", round + 1), |lines| {
            (shutdowns(lines) > round).then_some(())
        });
        crashes.extend(crash_of(&herd, &addr, victim));
        if crashes.len() == 2 {
            break;
        }
    }
    assert_eq!(crashes.len(), 2, "the victims survived 10 shutdowns");
    assert!(alive(culprit));
    for exit in &crashes {
        let message = exit["message"].as_str().unwrap();
        assert!(
            message.ends_with("; restarting it") && !message.contains("backoff"),
            "{exit}"
        );
    }
    wait_until("the port to answer", || get(&addr, "/"));
}

#[test]
fn an_upgrade_survives_workers_that_shut_the_socket_down_on_stop() {
    // Old workers shut the shared socket down as they stop (Sanic's way): the new generation
    // must keep serving, and the upgrade must finish instead of waiting for its timeout.
    let herd = shutdown_socket_herd(&["--on-stop"]);
    let addr = herd.address("http");
    wait_status(&herd, "2 ready workers", |s| settled(s, 2));
    let (code, stdout, stderr) = herd.ctl(&["upgrade", "--timeout", "15s"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    wait_repair(&herd, "the repair");
    wait_status(&herd, "2 ready workers of generation 2", |s| {
        settled(s, 2) && s["generation"] == 2
    });
    for _ in 0..20 {
        get(&addr, "/").expect("the new generation answers");
    }
}

/// A worker that turns the blocking mode of the socket it inherited (fd 3) the other way.
const FLIPS_THE_MODE: &str = "import os, time; os.set_blocking(3, not os.get_blocking(3)); \
                              time.sleep(1000)";

#[test]
fn a_worker_that_changes_the_shared_blocking_mode_is_reported_across_a_reexec() {
    for (bind, nonblocking) in [
        ("http=127.0.0.1:0", true),
        ("http=127.0.0.1:0,nonblocking", false),
    ] {
        let herd = Herd::start(&[
            "run",
            "-w",
            "1",
            "-b",
            bind,
            "--",
            "python3",
            "-c",
            FLIPS_THE_MODE,
        ]);
        let fields = [
            ("socket", "http".into()),
            ("nonblocking", nonblocking.into()),
        ];
        let said = herd.wait_for_event("blocking_mode_changed", &fields);
        assert!(
            said["message"]
                .as_str()
                .unwrap()
                .contains("shared by every worker"),
            "{said}"
        );
        // The new image knows the mode herd set, not the one it finds.
        let (code, _, stderr) = herd.ctl(&["reexec"]);
        assert_eq!(code, 0, "{stderr}");
        herd.wait_for_event("reexecuted", &[]);
        herd.wait_for_events("blocking_mode_changed", 2, &fields);
    }
}

#[test]
fn a_reuseport_slot_socket_whose_mode_its_worker_changes_is_not_reported() {
    // Under --balance reuseport each slot's TCP socket is its worker's own; a Unix socket is
    // still shared, and its report shows that a check ran after both changes (one worker
    // changes the TCP socket first).
    let herd = Herd::start_with(|dir| {
        let mut cmd = herd_json();
        cmd.args([
            "run",
            "-w",
            "2",
            "--balance",
            "reuseport",
            "-b",
            "http=127.0.0.1:0",
        ])
        .args(["-b", &format!("local=unix:{}/local.sock", dir.display())])
        .args(["--", "python3", "-c"])
        .arg("import os, time; [os.set_blocking(fd, False) for fd in (3, 4)]; time.sleep(1000)");
        cmd
    });
    herd.wait_for_event("blocking_mode_changed", &[("socket", "local".into())]);
    let lines = herd.lines();
    let said: Vec<_> = events(&lines)
        .filter(|e| e["event"] == "blocking_mode_changed")
        .map(|e| e["socket"].clone())
        .collect();
    assert_eq!(said, ["local"]);
}

#[test]
fn a_unix_socket_shut_down_by_a_worker_is_said_lost() {
    // Linux keeps a Unix listener's shutdown across listen(): it refuses every connection.
    let herd = Herd::start_with(|dir| {
        let mut cmd = herd_json();
        cmd.args(["run", "-w", "2", "-b"])
            .arg(format!("web=unix:{}/app.sock", dir.display()))
            .args(["--", "python3", "-c"])
            .arg(
                "import os, socket, time\n\
                 if os.environ['HERD_WORKER'] == '0':\n    \
                     socket.socket(fileno=3).shutdown(socket.SHUT_RD)\n\
                 time.sleep(1000)",
            );
        cmd
    });
    let lost = herd.wait_for_event("socket_lost", &[("socket", "web".into())]);
    assert_eq!(lost["level"], "ERROR", "{lost}");
    let said = lost["message"].as_str().unwrap();
    assert!(said.contains("restart herd"), "{lost}");
    assert!(std::os::unix::net::UnixStream::connect(herd.path("app.sock")).is_err());
}

#[test]
fn a_worker_that_sets_linger_on_the_shared_socket_is_reported() {
    let herd = Herd::start(&[
        "run",
        "-w",
        "2",
        "-b",
        "http=127.0.0.1:0",
        "--",
        "python3",
        "-c",
        "import os, socket, struct, time\n\
         if os.environ['HERD_WORKER'] == '0':\n    \
             socket.socket(fileno=3).setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, \
             struct.pack('ii', 1, 0))\n\
         time.sleep(1000)",
    ]);
    let said = herd.wait_for_event(
        "shared_linger_set",
        &[("socket", "http".into()), ("timeout_ms", 0.into())],
    );
    let message = said["message"].as_str().unwrap();
    assert!(message.contains("is reset (RST)"), "{said}");
}
