//! Takeover: one herd hands its sockets to the next, which stops the old one once its own
//! workers are ready; nothing is dropped, and a failed takeover changes nothing.

use crate::util::*;

/// Starts a herd that takes over from the one at `control`, with `args` after `run`.
fn takeover(control: &str, args: &[&str]) -> Herd {
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
        next.wait_event("the takeover", |e| {
            e["message"]
                .as_str()
                .unwrap_or("")
                .starts_with("takeover complete")
        });
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
    let old = Herd::start(&[
        "run",
        "-w",
        "1",
        "-b",
        "http=127.0.0.1:0",
        "--",
        "python3",
        &example("hello.py"),
    ]);
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
    let why = never.wait_for("the reason", |lines| {
        lines.iter().find_map(|l| match l {
            Line::Text(t) if t.starts_with("herd: error: takeover aborted") => Some(t.clone()),
            _ => None,
        })
    });
    assert!(
        why.contains("the old herd keeps serving") && why.contains("before it was ready"),
        "{why}"
    );

    // New workers that exit at once.
    let mut crashing = takeover(&control, &["-w", "1", "--", "sh", "-c", "exit 3"]);
    assert_eq!(crashing.wait_exit().code(), Some(1));

    // The old herd never noticed: same pid behind the control socket, same workers, serving.
    let after = status_at(&control);
    assert_eq!(after["pid"], before["pid"]);
    assert_eq!(after["workers"][0]["pid"], before["workers"][0]["pid"]);
    assert!(get(&addr, "/").unwrap().starts_with("hello from pid"));
    let leftovers: Vec<_> = std::fs::read_dir(old.dir.path())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.contains("takeover"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary control sockets left behind: {leftovers:?}"
    );
}

#[test]
fn takeover_refuses_conflicting_binds() {
    let old = Herd::start(&[
        "run",
        "-w",
        "1",
        "-b",
        "http=127.0.0.1:0",
        "--",
        "sleep",
        "1000",
    ]);
    old.started(1);
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
