//! herd's own socket files (notify, control) removed while it runs are bound again at their
//! paths, in the directory herd bound them in only, and handed over by a re-exec.

use std::path::Path;

use crate::access::{herd_as, mode, root, shared_tmp};
use crate::takeover::takeover_ready_on;
use crate::util::*;

/// Waits until herd says it bound its socket `socket` (`notify`, `einhorn`, `control`) again.
pub(crate) fn wait_bound_again(herd: &Herd, socket: &str) {
    let removed = herd.wait_for_event("socket_file_removed", &[("socket", socket.into())]);
    assert!(
        removed["message"]
            .as_str()
            .unwrap()
            .contains("bound it again"),
        "{removed}"
    );
}

/// The notify socket's file removed (by an operator's clean-up of the runtime directory), the
/// next upgrade's workers still say READY=1: herd binds it again at its path (it only said so,
/// and every upgrade then failed: nobody heard the new workers' READY=1).
#[test]
fn an_upgrade_after_the_notify_sockets_file_was_removed_succeeds() {
    let probe = worker("probe.py");
    let mut herd = Herd::start(&[
        "run",
        "-w",
        "1",
        "--ready",
        "notify",
        "--ready-timeout",
        "10s",
        "-b",
        "web=127.0.0.1:0",
        "--",
        "python3",
        &probe,
    ]);
    wait_status(&herd, "a ready worker", |s| settled(s, 1));
    std::fs::remove_file(herd.notify_path()).unwrap();
    wait_bound_again(&herd, "notify");
    let (code, _, stderr) = herd.ctl(&["upgrade"]);
    assert_eq!(code, 0, "{stderr}");
    wait_status(&herd, "the new worker ready", |s| settled(s, 1));
    // A re-exec hands the new socket over, and removes its file when herd stops.
    let (code, _, stderr) = herd.ctl(&["reexec"]);
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = herd.ctl(&["upgrade"]);
    assert_eq!(code, 0, "{stderr}");
    let notify = herd.notify_path();
    let (code, _, stderr) = herd.ctl(&["stop"]);
    assert_eq!(code, 0, "{stderr}");
    herd.wait_exit();
    assert!(
        !std::path::Path::new(&notify).exists(),
        "{notify} left behind"
    );
}

/// The notify socket's directory removed and made again (by anyone: a symlink or another
/// user's directory in its place) is not herd's private one: herd binds nothing there, and
/// says once that it cannot.
#[test]
fn the_notify_socket_is_not_bound_again_in_a_directory_made_anew() {
    let herd = one_sleeping_worker();
    let notify = herd.notify_path();
    let dir = Path::new(&notify).parent().unwrap().to_path_buf();
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::create_dir(&dir).unwrap();
    for socket in ["notify", "control"] {
        let failed = herd.wait_event(&format!("the {socket} socket not bound again"), |e| {
            is_event(e, "system_error", &[])
                && e["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(&format!("cannot bind the {socket} socket again")))
        });
        let said = failed["message"].as_str().unwrap();
        assert!(
            said.contains("is not the directory herd bound it in"),
            "{failed}"
        );
        herd.wait_for_event("socket_file_removed", &[("socket", socket.into())]);
    }
    assert!(!Path::new(&notify).exists(), "bound in the new directory");
    assert!(
        !Path::new(&herd.control()).exists(),
        "bound in the new directory"
    );
}

/// The control socket's file removed (an operator's clean-up of the runtime directory, a
/// worker's `rm`), herd commands reach herd again: it binds the socket again at its path, in
/// the same directory (it only said so, and nothing but signals could reach it until it was
/// restarted). A re-exec hands the new one over; a stop removes its file.
#[test]
fn herd_commands_reach_herd_after_its_control_sockets_file_was_removed() {
    let mut herd = one_sleeping_worker();
    std::fs::remove_file(herd.control()).unwrap();
    let again = herd.wait_for_event("socket_file_removed", &[("socket", "control".into())]);
    assert!(
        again["message"]
            .as_str()
            .unwrap()
            .contains("bound it again"),
        "{again}"
    );
    for command in [&["upgrade"][..], &["reexec"], &["status"]] {
        let (code, _, stderr) = herd.ctl(command);
        assert_eq!(code, 0, "{command:?}: {stderr}");
    }
    // Removed again, after the re-exec: the new image binds it again too.
    std::fs::remove_file(herd.control()).unwrap();
    herd.wait_for_events("socket_file_removed", 2, &[("socket", "control".into())]);
    let (code, _, stderr) = herd.ctl(&["stop"]);
    assert_eq!(code, 0, "{stderr}");
    herd.wait_exit();
    assert!(
        !Path::new(&herd.control()).exists(),
        "the control socket's file left behind"
    );
}

/// The control socket's file of a herd with `--control-allow-uid` removed, the socket bound
/// again is open to the allowed user as the first was (mode 0666): it reaches herd again.
#[test]
fn an_allowed_user_reaches_a_control_socket_bound_again() {
    if !root() {
        return;
    }
    let tmp = shared_tmp();
    let herd = Herd::start_with(|_| {
        let mut cmd = herd_json();
        cmd.env("TMPDIR", tmp.path())
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("HERD_CONTROL")
            .args(["run", "--name", "web", "-w", "1"])
            .args(["--control-allow-uid", "65534", "-b", "127.0.0.1:0"])
            .args(["--", "sleep", "1000"]);
        cmd
    });
    herd.started(1);
    herd.wait_for_event("worker_ready", &[]);
    herd.wait_for_event("control_ready", &[]);
    let sock = tmp.path().join("herd-0").join("web.sock");
    std::fs::remove_file(&sock).unwrap();
    let again = herd.wait_for_event("socket_file_removed", &[("socket", "control".into())]);
    let said = again["message"].as_str().unwrap();
    assert!(said.contains("bound it again"), "{again}");
    assert_eq!(mode(&sock), 0o666);
    let shown = sock.to_str().unwrap();
    let (code, _, stderr) = herd_as(65534, 65534, &[], &["--control", shown, "status"]);
    assert_eq!(
        code, 0,
        "--control-allow-uid 65534 is admitted again: {stderr}"
    );
}

/// Each time the notify and control sockets cannot be bound again, it is said (ERROR): their
/// directory moved away, back (both bound again, or found), then away again. The second time
/// was not said: the first was remembered while they were bound again.
#[test]
fn a_socket_file_that_cannot_be_bound_again_is_said_each_time() {
    let herd = one_sleeping_worker();
    let notify = herd.notify_path();
    let dir = Path::new(&notify).parent().unwrap().to_path_buf();
    let away = dir.with_extension("away");
    let unbound = |socket: &'static str| {
        move |e: &serde_json::Value| {
            is_event(e, "socket_file_removed", &[("socket", socket.into())])
                && e["level"] == "ERROR"
        }
    };
    std::fs::rename(&dir, &away).unwrap();
    std::fs::remove_file(away.join(Path::new(&notify).file_name().unwrap())).unwrap();
    for socket in ["notify", "control"] {
        herd.wait_events(
            &format!("the {socket} socket not bound"),
            1,
            unbound(socket),
        );
    }
    std::fs::rename(&away, &dir).unwrap();
    herd.wait_event("the notify socket bound again", |e| {
        is_event(e, "socket_file_removed", &[("socket", "notify".into())]) && e["level"] == "WARN"
    });
    assert!(Path::new(&notify).exists());
    // Looked at both again (every 250 ms), found there.
    std::thread::sleep(std::time::Duration::from_millis(600));
    std::fs::rename(&dir, &away).unwrap();
    for socket in ["notify", "control"] {
        herd.wait_events(
            &format!("the {socket} socket not bound, again"),
            2,
            unbound(socket),
        );
    }
    std::fs::rename(&away, &dir).unwrap();
}

/// The control socket's directory made anew (by anyone), a file put at its path for a moment
/// is not herd's socket: herd binds nothing there once it is removed. It took any file at the
/// path as a sign that the directory was the one it bound in, and bound its socket in
/// whatever directory was there.
#[test]
fn the_control_socket_is_not_bound_again_in_a_directory_made_anew_with_a_file_at_its_path() {
    let herd = sleepers(&["-w", "1"]);
    wait_status(&herd, "a running worker", |s| settled(s, 1));
    let control = herd.control();
    let dir = Path::new(&control).parent().unwrap().to_path_buf();
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(&control, b"").unwrap();
    // Looked at (every 250 ms) while the file is there, then once it is gone.
    std::thread::sleep(std::time::Duration::from_millis(600));
    std::fs::remove_file(&control).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(600));
    assert!(!Path::new(&control).exists(), "bound in the new directory");
    assert!(
        events(&herd.lines()).all(|e| !e["message"]
            .as_str()
            .is_some_and(|m| m.contains("control socket's file") && m.contains("bound it again"))),
        "{}",
        last_lines(&herd.lines())
    );
}

/// The control socket's file removed before herd first looked at it (in the first 250 ms
/// after it started; here while herd waits for the lock of its listener's directory): herd
/// binds it again. It learnt the directory at the first look, found nothing there, and only
/// said the removal, herd commands never reaching it again; then (CI, once) it learnt it
/// just after binding, from the file, which a removal at that moment left unknown.
#[test]
fn a_control_socket_removed_before_herds_first_look_is_bound_again() {
    let listeners = tempfile::tempdir().unwrap();
    let lock = std::fs::File::open(listeners.path()).unwrap();
    lock.lock().unwrap();
    let app = listeners.path().join("app.sock");
    let herd = Herd::start_with(|_| {
        let mut cmd = herd_json();
        cmd.args(["run", "-w", "1", "-b"])
            .arg(format!("app=unix:{}", app.display()))
            .args(["--", "sleep", "1000"]);
        cmd
    });
    let control = herd.control();
    // Listening (bound, its mode set): herd has bound it and gone on to its listeners.
    wait_until("the control socket listening", || {
        std::os::unix::net::UnixStream::connect(&control).ok()
    });
    std::fs::remove_file(&control).unwrap();
    drop(lock);
    let again = herd.wait_for_event("socket_file_removed", &[("socket", "control".into())]);
    let said = again["message"].as_str().unwrap();
    assert!(said.contains("bound it again"), "{again}");
    // herd commands reach it.
    wait_status(&herd, "a running worker", |s| settled(s, 1));
}

/// The old herd's control socket's file removed during a takeover (an operator's clean-up),
/// and bound again by the old herd before the new herd's workers are ready: the takeover
/// completes. The new herd took the socket bound again for another herd's and aborted, the
/// old herd serving on.
#[test]
fn a_takeover_completes_after_the_old_herd_bound_its_control_socket_again() {
    let (mut old, mut new, go) = takeover_under_way();
    std::fs::remove_file(old.control()).unwrap();
    old.wait_for_event("socket_file_removed", &[("socket", "control".into())]);
    std::fs::write(&go, "").unwrap();
    the_takeover_completes(&mut old, &mut new);
}

/// The old herd's control socket's file removed just before the takeover completes, before
/// the old herd binds it again: the takeover still completes. The new herd took the old herd
/// for gone, took its path, and left it running unstopped, its workers with it.
#[test]
fn a_takeover_completes_when_the_old_herds_control_socket_file_is_removed_at_its_end() {
    let (mut old, mut new, go) = takeover_under_way();
    std::fs::remove_file(old.control()).unwrap();
    std::fs::write(&go, "").unwrap();
    the_takeover_completes(&mut old, &mut new);
}

/// A herd with one sleeping worker, and a takeover of it whose worker is started, ready once
/// the file returned exists.
fn takeover_under_way() -> (Herd, Herd, String) {
    let old = one_sleeping_worker();
    let go = old.path("go");
    let new = takeover_ready_on(&old.control(), &go);
    new.wait_event("the new worker", is_start);
    (old, new, go)
}

/// The takeover of `old` by `new` completes: the old herd stops, and the new one answers at
/// the old one's control path.
fn the_takeover_completes(old: &mut Herd, new: &mut Herd) {
    new.wait_for_event("old_herd_stopped", &[]);
    assert_eq!(old.wait_exit().code(), Some(0), "the old herd stops");
    let status = status_at(&old.control());
    assert_eq!(status["pid"], new.pid(), "{status}");
}

/// A herd with one worker that sleeps, running.
fn one_sleeping_worker() -> Herd {
    let herd = Herd::start(&[
        "run",
        "-w",
        "1",
        "-b",
        "web=127.0.0.1:0",
        "--",
        "sleep",
        "1000",
    ]);
    wait_status(&herd, "a running worker", |s| settled(s, 1));
    herd
}
