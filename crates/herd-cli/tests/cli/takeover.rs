//! Takeover: one herd hands its sockets to the next, which stops the old one once its own
//! workers are ready; nothing is dropped, and a failed takeover changes nothing.

use crate::util::*;

/// Starts a herd that takes over from the one at `control`, with `args` after `run`.
pub(crate) fn takeover(control: &str, args: &[&str]) -> Herd {
    let control = control.to_string();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    Herd::start_with(move |_| {
        let mut cmd = herd_json();
        cmd.env("HERD_CONTROL", &control)
            .args(["run", "--takeover", &control])
            .args(&args);
        cmd
    })
}

/// Takes over the herd at `control` with one new worker that says READY=1 only once the file
/// `go` exists.
pub(crate) fn takeover_ready_on(control: &str, go: &str) -> Herd {
    let ready_on_go = "import os, socket, sys, time\n\
        while not os.path.exists(sys.argv[1]): time.sleep(0.01)\n\
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n\
        s.sendto(b'READY=1', os.environ['NOTIFY_SOCKET'])\n\
        time.sleep(1000)\n";
    takeover(
        control,
        &[
            "-w",
            "1",
            "--ready",
            "notify",
            "--",
            "python3",
            "-c",
            ready_on_go,
            go,
        ],
    )
}

/// Waits for the takeover `herd` to say why it aborted (its `takeover_aborted` event); returns
/// what its exit line says: "takeover aborted, WHAT SERVES: REASON".
pub(crate) fn abort_reason(herd: &Herd) -> String {
    let event = herd.wait_for_event("takeover_aborted", &[]);
    format!(
        "{}: {}",
        event["message"].as_str().unwrap_or_default(),
        event["reason"].as_str().unwrap_or_default()
    )
}

#[test]
fn ten_takeovers_under_load_lose_no_connection() {
    let hello = example("hello.py");
    let first = Herd::start(&[
        "run",
        "-w",
        "2",
        "--ready",
        "notify",
        "-b",
        "http=127.0.0.1:0,nonblocking",
        "--",
        "python3",
        &hello,
    ]);
    let addr = first.address("http");
    let control = first.control();
    first.started(2);

    let load = Load::start(&addr, 2, |_| true);

    // Keep every herd (and its temporary directory) until the end.
    let mut herds = vec![first];
    for round in 0..10 {
        let next = takeover(
            &control,
            &["-w", "2", "--ready", "notify", "--", "python3", &hello],
        );
        next.wait_for_event("takeover_complete", &[]);
        let old = herds.last_mut().unwrap();
        assert_eq!(
            old.wait_exit().code(),
            Some(0),
            "round {round}: the old herd stops cleanly"
        );
        // The control socket now reaches the new herd.
        assert_eq!(status_at(&control)["pid"], next.pid(), "round {round}");
        herds.push(next);
    }
    load.finish_without_failures(50);
    assert_eq!(
        herds.last().unwrap().address("http"),
        addr,
        "the same socket throughout"
    );
}

#[test]
fn a_failed_takeover_leaves_the_old_herd_serving() {
    let old = hello_on_http();
    let addr = old.address("http");
    let control = old.control();
    let before = old.status();

    // New workers that never say READY=1.
    let mut never = takeover(
        &control,
        &[
            "-w",
            "1",
            "--ready",
            "notify",
            "--ready-timeout",
            "500ms",
            "--",
            "sh",
            "-c",
            "PROBE_READY=0 exec python3 \"$0\"",
            &worker("probe.py"),
        ],
    );
    assert_eq!(never.wait_exit().code(), Some(1));
    let why = abort_reason(&never);
    // The reason is the timeout, not the SIGKILL that ended the worker.
    let started = never.wait_for_event("worker_started", &[("slot", 0.into())]);
    let timed_out = format!(
        "worker 0 (pid {}) was not ready within --ready-timeout (500ms): herd killed it",
        started["pid"]
    );
    assert!(
        why.contains("the old herd keeps serving") && why.ends_with(&timed_out),
        "{why}"
    );

    // New workers that exit at once.
    let mut crashing = takeover(&control, &["-w", "1", "--", "sh", "-c", "exit 3"]);
    assert_eq!(crashing.wait_exit().code(), Some(1));

    // New workers that say READY=1, then crash within --min-ready.
    let mut flaky = takeover(
        &control,
        &[
            "-w",
            "1",
            "--ready",
            "notify",
            "--min-ready",
            "2s",
            "--",
            "sh",
            "-c",
            "PROBE_DIE_AFTER_READY=0.3 exec python3 \"$0\"",
            &worker("probe.py"),
        ],
    );
    assert_eq!(flaky.wait_exit().code(), Some(1));
    let why = abort_reason(&flaky);
    assert!(
        why.contains("the old herd keeps serving")
            && why.contains("exited within --min-ready of becoming ready: exit code 1"),
        "{why}"
    );

    // The old herd never noticed: same pid behind the control socket, same workers, serving.
    let after = status_at(&control);
    assert_eq!(after["pid"], before["pid"]);
    assert_eq!(after["workers"][0]["pid"], before["workers"][0]["pid"]);
    assert!(get(&addr, "/").unwrap().starts_with("hello from pid"));
    let leftovers = takeover_files(old.dir.path());
    assert!(
        leftovers.is_empty(),
        "temporary control sockets left behind: {leftovers:?}"
    );
}

/// The files in `dir` whose names say they belong to a takeover (its temporary control socket).
fn takeover_files(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.contains("takeover"))
        .collect()
}

#[test]
fn takeover_refuses_conflicting_binds() {
    let old = sleeper_on_http();
    let control = old.control();
    let port: u16 = old
        .address("http")
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    for (spec, needle) in [
        (
            format!("http=127.0.0.1:{}", port + 1),
            "conflicts with the inherited socket \"http\"",
        ),
        ("http=127.0.0.1:0,nonblocking".to_string(), "it is blocking"),
    ] {
        let mut new = takeover(&control, &["-b", &spec, "--", "sleep", "1000"]);
        assert_eq!(new.wait_exit().code(), Some(1), "{spec}");
        assert!(
            new.lines()
                .iter()
                .any(|l| matches!(l, Line::Text(t) if t.contains(needle))),
            "{spec}: {:?}",
            new.lines()
        );
    }
    assert_eq!(old.status()["pid"], old.pid(), "the old herd is untouched");
}

/// Starts a herd with `--name api` whose control socket is `XDG_RUNTIME_DIR/herd/api.sock`,
/// with `args` after `--name api`.
fn named_api(runtime: &std::path::Path, args: &[&str]) -> Herd {
    let runtime = runtime.to_path_buf();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    Herd::start_with(move |_| {
        let mut cmd = herd_json();
        cmd.env("XDG_RUNTIME_DIR", &runtime)
            // Set so that the test harness leaves the environment alone, and empty so that
            // herd ignores it.
            .env("HERD_CONTROL", "")
            .args(["--name", "api"])
            .args(&args);
        cmd
    })
}

#[test]
fn a_takeover_ends_at_the_old_herds_control_socket_not_its_own_name() {
    let runtime = tempfile::tempdir().unwrap();
    let api_control = runtime.path().join("herd/api.sock");
    let api_control = api_control.to_str().unwrap();
    let api = named_api(
        runtime.path(),
        &["run", "-w", "1", "-b", "127.0.0.1:0", "--", "sleep", "1000"],
    );
    api.wait_for_event("control_ready", &[]);
    let api_pid = status_at(api_control)["pid"].clone();

    let old = sleepers(&["-w", "1"]);
    old.started(1);
    let control = old.control();
    let mut old = old;

    // `--name api` names the new herd, not where its control socket goes.
    let new = named_api(
        runtime.path(),
        &[
            "run",
            "--takeover",
            &control,
            "-w",
            "1",
            "--",
            "sleep",
            "1000",
        ],
    );
    new.wait_for_event("takeover_complete", &[]);
    assert_eq!(old.wait_exit().code(), Some(0));
    assert_eq!(
        status_at(&control)["pid"],
        new.pid(),
        "the new herd is at {control}"
    );
    assert_eq!(
        status_at(api_control)["pid"],
        api_pid,
        "the unrelated api herd keeps its control socket"
    );

    // A --control elsewhere is a usage error, not a place to move to.
    assert_fails(
        &[
            "--control",
            api_control,
            "run",
            "--takeover",
            &control,
            "--",
            "sleep",
            "1",
        ],
        2,
        "ends at the old herd's control socket",
    );
    assert_eq!(status_at(api_control)["pid"], api_pid);
}

#[test]
fn a_takeover_never_replaces_a_control_socket_that_changed_meanwhile() {
    let old = sleepers(&["-w", "1"]);
    old.started(1);
    let control = old.control();
    let go = old.path("go");
    // New workers that become ready once the test says so.
    let mut new = takeover_ready_on(&control, &go);
    new.wait_event("the new worker", is_start);

    // Meanwhile another server's socket replaces the old herd's at its path.
    use std::os::unix::fs::MetadataExt;
    let other_path = old.path("other.sock");
    let _other = std::os::unix::net::UnixListener::bind(&other_path).unwrap();
    let other_inode = std::fs::symlink_metadata(&other_path).unwrap().ino();
    std::fs::rename(&other_path, &control).unwrap();
    std::fs::write(&go, "").unwrap();

    assert_eq!(new.wait_exit().code(), Some(1));
    let why = abort_reason(&new);
    assert!(
        why.contains("never replaces a socket it does not own"),
        "{why}"
    );
    assert_eq!(
        std::fs::symlink_metadata(&control).unwrap().ino(),
        other_inode,
        "the other server's socket is still at {control}"
    );
    assert!(alive(old.pid()), "the old herd keeps running");
}

#[test]
fn a_takeover_whose_old_herd_stops_meanwhile_serves_on_and_takes_its_control_path() {
    let old = Herd::start_with(|dir| {
        let mut cmd = herd_json();
        cmd.args(["run", "-w", "1", "-b", "web=127.0.0.1:0", "-b"])
            .arg(format!("app=unix:{}", dir.join("app.sock").display()))
            .args(["--", "sleep", "1000"]);
        cmd
    });
    old.started(1);
    let control = old.control();
    let web = old.address("web");
    let socket = old.path("app.sock");
    let go = old.path("go");
    // New workers that become ready once the test says so.
    let mut new = takeover_ready_on(&control, &go);
    new.wait_event("the new worker", is_start);

    // The old herd is stopped while the takeover runs: it removes its socket files.
    let (code, _, stderr) = ctl_at(&control, &["stop"]);
    assert_eq!(code, 0, "{stderr}");
    let mut old = old;
    assert_eq!(old.wait_exit().code(), Some(0));
    assert!(!std::path::Path::new(&control).exists());
    std::fs::write(&go, "").unwrap();

    // The new herd, which holds the sockets, says so and serves on.
    new.wait_for_event("old_herd_gone", &[]);
    let lost = new.wait_for_event("socket_files_lost", &[]);
    assert!(
        lost["message"].as_str().unwrap().contains(&socket),
        "{lost}"
    );
    // Its control socket is at the old herd's path, which was free.
    let status = status_at(&control);
    assert_eq!(status["pid"], new.pid(), "{status}");
    std::net::TcpStream::connect(&web).expect("the TCP socket still listens");
    let (code, _, stderr) = ctl_at(&control, &["stop"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(new.wait_exit().code(), Some(0));
    assert!(
        !std::path::Path::new(&control).exists(),
        "removed as the new herd stops"
    );
}

#[test]
fn a_takeover_whose_old_herd_stops_and_whose_path_is_taken_meanwhile_serves_on() {
    let old = Herd::start(&[
        "run",
        "-w",
        "1",
        "-b",
        "web=127.0.0.1:0",
        "--",
        "sleep",
        "1000",
    ]);
    old.started(1);
    let control = old.control();
    let web = old.address("web");
    let go = old.path("go");
    let new = takeover_ready_on(&control, &go);
    new.wait_event("the new worker", is_start);

    // The old herd stops while the takeover runs, and another server takes its control path
    // (its file may well get the old one's inode number).
    let (code, _, stderr) = ctl_at(&control, &["stop"]);
    assert_eq!(code, 0, "{stderr}");
    let mut old = old;
    assert_eq!(old.wait_exit().code(), Some(0));
    let _other = std::os::unix::net::UnixListener::bind(&control).unwrap();
    use std::os::unix::fs::MetadataExt;
    let other_inode = std::fs::symlink_metadata(&control).unwrap().ino();
    std::fs::write(&go, "").unwrap();

    // The new herd holds the only copy of the sockets: it serves on, its control socket where
    // it was, and leaves the other server's path alone.
    new.wait_for_event("old_herd_gone", &[]);
    let kept = new.wait_for_event("control_not_moved", &[]);
    let lines = new.lines();
    assert!(
        !events(&lines).any(|e| is_event(e, "takeover_aborted", &[])),
        "{}",
        last_lines(&lines)
    );
    std::net::TcpStream::connect(&web).expect("the taken-over socket still listens");
    let own_control = kept["path"].as_str().unwrap();
    assert_eq!(status_at(own_control)["pid"], new.pid());
    let other = std::fs::symlink_metadata(&control).map(|m| m.ino());
    assert_eq!(
        other.ok(),
        Some(other_inode),
        "the other server's socket is left alone"
    );
}
