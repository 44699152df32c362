//! A takeover and the old herd's Unix socket files: moved with the sockets, adopted wherever
//! each herd runs, never adopted once another file replaced them, and removed for a socket
//! the new herd does not take; the control socket a
//! killed takeover left is removed by the next herd on that path.

use crate::takeover::{takeover, takeover_ready_on};
use crate::util::*;

#[test]
fn a_takeover_moves_the_unix_socket_file_with_it() {
    let old = Herd::start_with(|dir| {
        let mut cmd = herd_json();
        cmd.args(["run", "-w", "1", "-b"])
            .arg(format!("app=unix:{}", dir.join("app.sock").display()))
            .args(["--", "sleep", "1000"]);
        cmd
    });
    old.started(1);
    let socket = old.path("app.sock");
    let control = old.control();

    // A takeover that fails leaves the file to the old herd.
    let mut failed = takeover(&control, &["-w", "1", "--", "sh", "-c", "exit 3"]);
    assert_eq!(failed.wait_exit().code(), Some(1));
    assert!(
        std::os::unix::net::UnixStream::connect(&socket).is_ok(),
        "{socket} stays after a failed takeover"
    );

    let mut new = takeover(&control, &["-w", "1", "--", "sleep", "1000"]);
    new.wait_for_event("takeover_complete", &[]);
    let mut old = old;
    assert_eq!(
        old.wait_exit().code(),
        Some(0),
        "the old herd stops cleanly"
    );
    assert!(
        std::os::unix::net::UnixStream::connect(&socket).is_ok(),
        "{socket} still reaches the socket once the old herd is gone"
    );

    // The file is the new herd's now: it goes when that herd stops.
    let (code, output) = herd_output(&["--control", &control, "stop"]);
    assert_eq!(code, 0, "{output}");
    assert_eq!(new.wait_exit().code(), Some(0));
    assert!(
        !std::path::Path::new(&socket).exists(),
        "the herd that took over removes {socket} when it stops"
    );
}

/// A socket of the old herd's that the new one does not take (no `--bind` names it) stops with
/// the old herd: its file goes too, rather than stay behind for good (the old herd leaves its
/// files to the new one); the file of one taken stays.
#[test]
fn a_takeover_removes_the_file_of_a_unix_socket_it_does_not_take() {
    let old = Herd::start_with(|dir| {
        let mut cmd = herd_json();
        cmd.args(["run", "-w", "1", "-b"])
            .arg(format!("kept=unix:{}", dir.join("kept.sock").display()))
            .arg("-b")
            .arg(format!(
                "dropped=unix:{}",
                dir.join("dropped.sock").display()
            ))
            .args(["--", "sleep", "1000"]);
        cmd
    });
    old.started(1);
    let (kept, dropped) = (old.path("kept.sock"), old.path("dropped.sock"));
    let control = old.control();
    let mut new = takeover(
        &control,
        &[
            "-w",
            "1",
            "-b",
            &format!("kept=unix:{kept}"),
            "--",
            "sleep",
            "1000",
        ],
    );
    new.wait_for_event("socket_not_taken", &[("name", "dropped".into())]);
    new.wait_for_event("old_herd_stopped", &[]);
    let removed = new.wait_for_event("untaken_socket_file_removed", &[("name", "dropped".into())]);
    assert_eq!(removed["path"], dropped.as_str(), "{removed}");
    let mut old = old;
    assert_eq!(old.wait_exit().code(), Some(0));
    assert!(
        !std::path::Path::new(&dropped).exists(),
        "{dropped}, which nothing serves, is removed"
    );
    assert!(
        std::os::unix::net::UnixStream::connect(&kept).is_ok(),
        "{kept} still reaches the socket taken over"
    );
    let (code, output) = herd_output(&["--control", &control, "stop"]);
    assert_eq!(code, 0, "{output}");
    assert_eq!(new.wait_exit().code(), Some(0));
    assert!(!std::path::Path::new(&kept).exists());
}

#[test]
fn a_takeover_adopts_the_old_herds_socket_file_wherever_each_herd_runs() {
    // The old herd binds a relative path in its own directory; the new one runs elsewhere.
    let old = Herd::start_with(|dir| {
        let mut cmd = herd_json();
        cmd.current_dir(dir).args([
            "run",
            "-w",
            "1",
            "-b",
            "app=unix:app.sock",
            "--",
            "sleep",
            "1000",
        ]);
        cmd
    });
    old.started(1);
    let socket = old.path("app.sock");
    let control = old.control();
    let elsewhere = tempfile::tempdir().unwrap();
    let mut new = Herd::start_with(|_| {
        let mut cmd = herd_json();
        cmd.current_dir(elsewhere.path())
            .env("HERD_CONTROL", &control)
            .args([
                "run",
                "--takeover",
                &control,
                "-w",
                "1",
                "--",
                "sleep",
                "1000",
            ]);
        cmd
    });
    new.wait_for_event("old_herd_stopped", &[]);
    let mut old = old;
    assert_eq!(old.wait_exit().code(), Some(0));
    assert!(
        std::os::unix::net::UnixStream::connect(&socket).is_ok(),
        "{socket} reaches the socket once the old herd is gone"
    );
    let (code, output) = herd_output(&["--control", &control, "stop"]);
    assert_eq!(code, 0, "{output}");
    assert_eq!(new.wait_exit().code(), Some(0));
    assert!(
        !std::path::Path::new(&socket).exists(),
        "the herd that took over removes {socket} when it stops"
    );
    assert!(
        !new.lines().iter().any(|l| matches!(l, Line::Event(e)
            if matches!(e["event"].as_str(), Some("socket_file_not_taken" | "socket_files_lost"))
                || e["message"].as_str().unwrap_or("").contains("socket file"))),
        "no warning about the socket file"
    );
}

#[test]
fn a_takeover_never_adopts_a_socket_file_that_replaced_the_old_herds() {
    // Old workers that ignore the stop signal keep the old herd stopping for its grace period,
    // while the socket file is replaced.
    let old = Herd::start_with(|dir| {
        let mut cmd = herd_json();
        cmd.args(["run", "-w", "1", "--grace", "3s", "-b"])
            .arg(format!("app=unix:{}", dir.join("app.sock").display()))
            .args(["--", "sh", "-c", "trap '' TERM; exec sleep 1000"]);
        cmd
    });
    old.started(1);
    let socket = old.path("app.sock");
    let control = old.control();
    let mut new = takeover(&control, &["-w", "1", "--", "sleep", "1000"]);
    new.wait_for_event("takeover_complete", &[]);
    let other_path = old.path("other.sock");
    let _other = std::os::unix::net::UnixListener::bind(&other_path).unwrap();
    std::fs::rename(&other_path, &socket).unwrap();
    let kept = new.wait_for_event("socket_file_not_taken", &[]);
    assert!(
        kept["message"]
            .as_str()
            .unwrap_or("")
            .contains("another file has replaced the old herd's"),
        "{kept}"
    );
    let mut old = old;
    assert_eq!(old.wait_exit().code(), Some(0));
    let (code, output) = herd_output(&["--control", &control, "stop"]);
    assert_eq!(code, 0, "{output}");
    assert_eq!(new.wait_exit().code(), Some(0));
    assert!(
        std::path::Path::new(&socket).exists(),
        "the file that replaced the old herd's stays"
    );
}

/// Once taken over, the old herd (still stopping its workers) leaves the control socket's path
/// to the new one: its file removed meanwhile, the old herd bound its own control socket
/// there again, so `herd` commands reached the old herd, and the path went with it.
#[test]
fn a_herd_taken_over_does_not_bind_the_control_socket_again() {
    let ignores_term = "import signal, time\n\
        signal.signal(signal.SIGTERM, signal.SIG_IGN)\n\
        time.sleep(1000)\n";
    let old = Herd::start(&[
        "run",
        "-w",
        "1",
        "--grace",
        "10s",
        "-b",
        "127.0.0.1:0",
        "--",
        "python3",
        "-c",
        ignores_term,
    ]);
    old.started(1);
    let control = old.control();
    let mut new = takeover(&control, &["-w", "1", "--", "sleep", "1000"]);
    new.wait_for_event("takeover_complete", &[]);
    old.wait_for_event("taken_over", &[]);
    // Only the old herd looks while the new one is stopped.
    new.signal(libc::SIGSTOP);
    std::fs::remove_file(&control).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1000));
    let exists = std::path::Path::new(&control).exists();
    new.signal(libc::SIGCONT);
    assert!(!exists, "the old herd bound {control} again");
    new.wait_for_event("socket_file_removed", &[("socket", "control".into())]);
    let status = status_at(&control);
    assert_eq!(status["pid"], new.pid(), "{status}");
    let said = old.lines();
    assert!(
        events(&said)
            .all(|e| !is_event(e, "socket_file_removed", &[]) && !is_event(e, "system_error", &[])),
        "{}",
        last_lines(&said)
    );
    let (code, output) = herd_output(&["--control", &control, "stop"]);
    assert_eq!(code, 0, "{output}");
    assert_eq!(new.wait_exit().code(), Some(0));
}

/// A pid that no process has now: a child's, once it is reaped.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    child.wait().unwrap();
    child.id()
}

#[test]
fn a_takeover_killed_meanwhile_leaves_its_control_socket_to_the_next_herd_to_remove() {
    let old = sleepers(&["-w", "1"]);
    old.started(1);
    let control = old.control();
    let never = old.path("never");
    let takeover_socket = |pid: u32| old.path(&format!("control.takeover.{pid}"));
    // Started first: a herd that starts later removes what a killed one left.
    let live = takeover_ready_on(&control, &never);
    live.wait_event("the live herd's worker", is_start);
    let mut killed = takeover_ready_on(&control, &never);
    killed.wait_event("the killed herd's worker", is_start);
    killed.signal(libc::SIGKILL);
    killed.wait_exit();
    let stale = takeover_socket(killed.pid());
    assert!(std::path::Path::new(&stale).exists(), "{stale} left behind");

    // What the next herd must leave beside a live takeover's: a file that is not a socket and
    // a socket something listens on, each named after a pid that is not a herd's.
    let not_a_socket = takeover_socket(dead_pid());
    std::fs::write(&not_a_socket, "").unwrap();
    let listened_on = takeover_socket(dead_pid());
    let _listener = std::os::unix::net::UnixListener::bind(&listened_on).unwrap();

    let next = takeover_ready_on(&control, &never);
    next.wait_for_event("stale_socket_removed", &[("path", stale.as_str().into())]);
    assert!(!std::path::Path::new(&stale).exists());
    for kept in [takeover_socket(live.pid()), not_a_socket, listened_on] {
        assert!(std::path::Path::new(&kept).exists(), "{kept} was removed");
    }
    assert_eq!(old.status()["pid"], old.pid(), "the old herd is untouched");
}
