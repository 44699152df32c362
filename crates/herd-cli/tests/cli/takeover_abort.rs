//! An aborted takeover: the new herd's workers that already serve finish what they took, and
//! the abort says truthfully what still serves.

use crate::takeover::{abort_reason, takeover, takeover_ready_on};
use crate::util::*;

/// A worker for a takeover, started as `python3 -c WORKER DIR EXAMPLES`: slot 1 exits with
/// status 3 once `DIR/fail` exists, before it is ever ready; every other slot is ready at once,
/// says `taken PID` on stderr as it takes a request, and answers it once `DIR/release` exists.
const WORKER: &str = "import os, sys, time\n\
    sys.path.insert(0, sys.argv[2])\n\
    from hello import listen_sockets, serve\n\
    def wait_for(name):\n\
    \x20   while not os.path.exists(os.path.join(sys.argv[1], name)): time.sleep(0.01)\n\
    if os.environ['HERD_WORKER'] == '1':\n\
    \x20   wait_for('fail')\n\
    \x20   sys.exit(3)\n\
    def respond(conn, request_line):\n\
    \x20   os.write(2, b'taken %d\\n' % os.getpid())\n\
    \x20   wait_for('release')\n\
    \x20   conn.sendall(b'HTTP/1.0 200 OK\\r\\nContent-Length: 8\\r\\n\\r\\nanswered')\n\
    serve(next(iter(listen_sockets().values())), respond, ready=True)\n";

#[test]
fn an_aborted_takeover_lets_its_serving_workers_finish_what_they_took() {
    // The old herd's worker never accepts: whatever connects is the new herd's.
    let old = sleeper_on_http();
    let addr = old.address("http");
    let control = old.control();
    let before = old.status();
    let dir = old.dir.path().to_str().unwrap().to_string();
    let examples = repo().join("examples");
    let mut new = takeover(
        &control,
        &[
            "-w",
            "2",
            "--ready",
            "notify",
            "--",
            "python3",
            "-c",
            WORKER,
            &dir,
            examples.to_str().unwrap(),
        ],
    );
    let ready = new.wait_for_event("worker_ready", &[("slot", 0.into())]);
    let serving = ready["pid"].as_u64().unwrap() as u32;
    let client = std::thread::spawn(move || get(&addr, "/"));
    new.wait_text(&format!("taken {serving}"));

    // Slot 1 fails: the takeover is aborted while slot 0 holds a client's connection.
    std::fs::write(old.path("fail"), "").unwrap();
    let why = abort_reason(&new);
    assert!(why.contains("the old herd keeps serving"), "{why}");
    let stop = new.wait_event("the stop", |e| {
        e["event"] == "stopping" || e["event"] == "stopping_at_once"
    });
    assert_eq!(
        stop["event"],
        "stopping",
        "the workers are stopped gracefully:{}",
        last_lines(&new.lines())
    );
    assert!(alive(serving), "worker {serving} was killed mid-request");
    std::fs::write(old.path("release"), "").unwrap();
    let answer = client.join().unwrap();
    assert_eq!(
        answer.as_deref().ok(),
        Some("answered"),
        "{answer:?}{}",
        last_lines(&new.lines())
    );
    assert_eq!(new.wait_exit().code(), Some(FAILURE));
    wait_gone(&[serving]);
    // The old herd holds the sockets, as it should: no "stays in use" about it.
    let lines = new.lines();
    assert!(
        !events(&lines).any(|e| e["event"] == "socket_still_held"),
        "{}",
        last_lines(&lines)
    );

    // The old herd never noticed.
    let after = status_at(&control);
    assert_eq!(after["pid"], before["pid"]);
    assert_eq!(after["workers"][0]["pid"], before["workers"][0]["pid"]);
}

/// An old herd whose worker ignores SIGTERM and whose grace is long: once asked to stop, it
/// is stopping for as long as a test needs.
fn slow_to_stop() -> Herd {
    let old = Herd::start(&[
        "run",
        "-w",
        "1",
        "--grace",
        "1h",
        "-b",
        "http=127.0.0.1:0",
        "--",
        "sh",
        "-c",
        "trap '' TERM; exec sleep 1000",
    ]);
    old.started(1);
    old
}

/// Takes over the herd at `control` with one new worker that never says READY=1, and exits
/// with status 3 once the file `fail` exists.
fn failing_takeover(control: &str, fail: &str) -> Herd {
    takeover(
        control,
        &[
            "-w",
            "1",
            "--ready",
            "notify",
            "--",
            "sh",
            "-c",
            "while [ ! -e \"$0\" ]; do sleep 0.01; done; exit 3",
            fail,
        ],
    )
}

#[test]
fn a_takeover_that_loses_a_race_names_the_herd_that_won() {
    let old = slow_to_stop();
    let control = old.control();
    let (go, fail) = (old.path("go"), old.path("fail"));
    let winner = takeover_ready_on(&control, &go);
    let mut loser = failing_takeover(&control, &fail);
    // Both have the sockets.
    winner.wait_event("the winner's worker", is_start);
    loser.wait_event("the loser's worker", is_start);

    std::fs::write(&go, "").unwrap();
    winner.wait_for_event("takeover_complete", &[]);
    old.wait_for_event("stopping", &[]);
    std::fs::write(&fail, "").unwrap();

    assert_eq!(loser.wait_exit().code(), Some(FAILURE));
    let why = abort_reason(&loser);
    let won = format!(
        "another herd (pid {}) took over at {control} first and serves; it stops the old herd \
         (pid {})",
        winner.pid(),
        old.pid()
    );
    assert!(why.contains(&won), "{why}");
    assert_eq!(status_at(&control)["pid"], winner.pid());
}

#[test]
fn a_takeover_aborted_while_the_old_herd_stops_says_so() {
    let old = slow_to_stop();
    let control = old.control();
    let fail = old.path("fail");
    let mut new = failing_takeover(&control, &fail);
    new.wait_event("the new worker", is_start);

    old.signal(libc::SIGTERM);
    old.wait_for_event("stopping", &[]);
    std::fs::write(&fail, "").unwrap();

    assert_eq!(new.wait_exit().code(), Some(FAILURE));
    let why = abort_reason(&new);
    let stopping = format!("and the old herd (pid {}) is stopping too", old.pid());
    assert!(why.contains(&stopping), "{why}");
}

/// Two takeovers race: the winner completes and the old herd exits before the loser (started
/// by `loser` with the control path and a file) goes on, once that file exists. The loser must
/// not serve beside the winner: it exits 1 in one line naming the winner, its workers stopped
/// gracefully, and the winner serves on at the control path.
fn lose_to_a_takeover_that_ended_the_old_herd(loser: impl FnOnce(&str, &str) -> Herd) {
    let mut old = sleeper_on_http();
    let control = old.control();
    let (go, go_on) = (old.path("go"), old.path("go on"));
    let winner = takeover_ready_on(&control, &go);
    let mut loser = loser(&control, &go_on);
    winner.wait_event("the winner's worker", is_start);
    loser.wait_event("the loser's worker", is_start);

    std::fs::write(&go, "").unwrap();
    winner.wait_for_event("takeover_complete", &[]);
    assert_eq!(old.wait_exit().code(), Some(0));
    std::fs::write(&go_on, "").unwrap();

    assert_eq!(loser.wait_exit().code(), Some(FAILURE));
    let won = format!(
        "another herd (pid {}) took over at {control} first and serves; the old herd (pid {}) \
         has exited",
        winner.pid(),
        old.pid()
    );
    let why = abort_reason(&loser);
    assert!(why.contains(&won), "{why}");
    let lines = loser.lines();
    let said = texts(&lines, |_| true);
    assert_eq!(said.len(), 1, "one line: {said:?}");
    assert!(said[0].starts_with("herd: error: takeover aborted, another herd"));
    assert!(!events(&lines).any(|e| e["event"] == "stopping_at_once"));
    assert!(events(&lines).any(|e| e["event"] == "stopping"));
    assert_eq!(status_at(&control)["pid"], winner.pid());
}

#[test]
fn a_takeover_outrun_as_its_workers_start_gives_up_once_they_are_ready() {
    lose_to_a_takeover_that_ended_the_old_herd(takeover_ready_on);
}

#[test]
fn a_takeover_outrun_as_its_workers_start_gives_up_when_one_fails() {
    lose_to_a_takeover_that_ended_the_old_herd(failing_takeover);
}

/// An old herd whose one worker ignores SIGTERM: once asked to stop, it stays stopping until
/// `--grace` (3 s) ends, as a drain would keep it.
fn old_herd_slow_to_stop() -> Herd {
    let old = Herd::start(&[
        "run",
        "-w",
        "1",
        "--grace",
        "3s",
        "-b",
        "127.0.0.1:0",
        "--",
        "sh",
        "-c",
        "trap '' TERM; exec sleep 1000",
    ]);
    old.wait_for_event("worker_ready", &[]);
    old
}

/// The stop that ends a takeover, as a herd taking over sends it.
const TAKEOVER_STOP: &str = r#"{"version":1,"command":"stop","takeover":true}"#;

/// Sends the stop that ends a takeover to the herd at `control` from a process of its own, as
/// another herd would, which prints the answer once it comes.
fn takeover_stop_from_another_process(control: &str) -> std::process::Child {
    let send = "import socket, sys\n\
        s = socket.socket(socket.AF_UNIX)\n\
        s.connect(sys.argv[1])\n\
        s.sendall(sys.argv[2].encode() + b'\\n')\n\
        sys.stdout.write(s.makefile().readline())\n";
    std::process::Command::new("python3")
        .args(["-c", send, control, TAKEOVER_STOP])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// The answer that process printed, as JSON.
fn answer_printed(child: std::process::Child) -> serde_json::Value {
    let out = child.wait_with_output().unwrap();
    let line = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

#[test]
fn a_second_takeover_stop_is_refused_so_the_loser_of_a_race_gives_up() {
    use std::io::{BufRead, Write};
    let mut old = old_herd_slow_to_stop();
    let control = old.control();
    let first = takeover_stop_from_another_process(&control);
    old.wait_for_event("taken_over", &[]);
    let mut second = std::os::unix::net::UnixStream::connect(&control).unwrap();
    second.set_read_timeout(Some(TIMEOUT)).unwrap();
    writeln!(second, "{TAKEOVER_STOP}").unwrap();
    let mut line = String::new();
    std::io::BufReader::new(second)
        .read_line(&mut line)
        .unwrap();
    let answer: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(answer["error"]["code"], "taken_over", "{line}");
    let by = format!("herd {} has taken this herd over already", first.id());
    assert_eq!(answer["error"]["message"], by.as_str(), "{line}");
    old.wait_for_event("takeover_refused", &[]);
    // The first is answered once the old herd has stopped.
    assert_eq!(answer_printed(first)["result"]["stopped"], true);
    assert_eq!(old.wait_exit().code(), Some(0));
}

#[test]
fn a_takeover_whose_stop_is_refused_taken_over_gives_up() {
    let mut old = old_herd_slow_to_stop();
    let control = old.control();
    let go = old.path("go");
    let mut new = takeover_ready_on(&control, &go);
    new.wait_for_event("takeover_sockets_fetched", &[]);
    // Another herd's takeover stop reaches the old herd first.
    let first = takeover_stop_from_another_process(&control);
    old.wait_for_event("taken_over", &[]);
    std::fs::write(&go, "").unwrap();
    let why = abort_reason(&new);
    assert!(
        why.contains("the herd that took over first serves"),
        "{why}"
    );
    let by = format!("herd {} has taken this herd over already", first.id());
    assert!(why.contains(&by), "{why}");
    assert_eq!(new.wait_exit().code(), Some(1));
    assert_eq!(answer_printed(first)["result"]["stopped"], true);
    assert_eq!(old.wait_exit().code(), Some(0));
    // Neither herd leaves a control socket behind.
    let left: Vec<_> = std::fs::read_dir(old.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["go"]);
}

/// A herd asked to stop, draining first (`--drain-delay`), is not taken over: the takeover cut
/// its drain short and its service ran on under the new herd while `herd stop` said
/// `stopped`. The new herd gives up, and the stop stands.
#[test]
fn a_herd_draining_for_a_stop_is_not_taken_over() {
    let old = Herd::start(&[
        "run",
        "-w",
        "1",
        "--drain-delay",
        "60s",
        "-b",
        "http=127.0.0.1:0",
        "--",
        "sleep",
        "1000",
    ]);
    old.started(1);
    let control = old.control();
    let asked = control.clone();
    let stop = std::thread::spawn(move || ctl_at(&asked, &["stop"]));
    old.wait_for_event("draining", &[]);
    let mut new = takeover(&control, &["-w", "1", "--", "sleep", "1000"]);
    let reason = abort_reason(&new);
    assert!(
        reason.contains("it is stopping, as it was asked to"),
        "{reason}"
    );
    assert_eq!(new.wait_exit().code(), Some(FAILURE));
    // A second stop skips the rest of the drain.
    old.signal(libc::SIGTERM);
    let (code, stdout, stderr) = stop.join().unwrap();
    assert_eq!(code, 0, "{stdout}{stderr}");
    let mut old = old;
    assert_eq!(old.wait_exit().code(), Some(0));
    assert!(
        std::net::TcpStream::connect(old.address("http")).is_err(),
        "nothing serves after the stop"
    );
}
