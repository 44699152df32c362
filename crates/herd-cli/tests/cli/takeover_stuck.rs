//! Takeover from an old herd that cannot answer: one that hangs on the stop, one stopped
//! (SIGSTOP) before or while the new herd takes over. A stopped old herd keeps everything:
//! the new herd exits 1 naming it and how to resume it, its own workers gone.

use crate::takeover::{takeover, takeover_ready_on};
use crate::util::*;

/// Stops (SIGSTOP) a herd until dropped, even when a test fails: SIGCONT then.
struct Stopped<'a>(&'a Herd);

impl Stopped<'_> {
    fn stop(herd: &Herd) -> Stopped<'_> {
        herd.signal(libc::SIGSTOP);
        wait_until("the old herd to be stopped", || {
            match proc_state(herd.pid()) {
                Some('T') => Ok(()),
                state => Err(format!("state {state:?}")),
            }
        });
        Stopped(herd)
    }
}

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        self.0.signal(libc::SIGCONT);
    }
}

/// What a takeover must leave of `old` once it runs again: the same herd behind the same
/// control socket file, with the same workers, serving.
fn assert_untouched(old: &Herd, before: &serde_json::Value, socket_file: (u64, u64)) {
    let control = old.control();
    assert_eq!(identity(&control), socket_file, "the same control socket");
    let after = status_at(&control);
    assert_eq!(after["pid"], old.pid());
    assert_eq!(worker_pids(&after), worker_pids(before));
    assert!(get(&old.address("http"), "/")
        .unwrap()
        .starts_with("hello from pid"));
}

fn identity(path: &str) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path).unwrap();
    (meta.dev(), meta.ino())
}

#[test]
fn a_takeover_from_a_stopped_herd_fails_at_once_naming_it() {
    let old = hello_on_http();
    let before = old.status();
    let socket_file = identity(&old.control());
    let stopped = Stopped::stop(&old);
    let mut new = takeover(&old.control(), &["-w", "1", "--", "sleep", "1000"]);
    assert_eq!(new.wait_exit().code(), Some(FAILURE));
    let error = format!(
        "herd: error: cannot take over from {}: the herd at {} (pid {}) is stopped",
        old.control(),
        old.control(),
        old.pid()
    );
    let lines = new.lines();
    let said: Vec<&String> = (lines.iter())
        .filter_map(|l| match l {
            Line::Text(t) => Some(t),
            Line::Event(_) => None,
        })
        .collect();
    assert_eq!(said.len(), 1, "one line: {said:?}");
    assert!(said[0].starts_with(&error), "{said:?}");
    assert!(
        said[0].contains(&format!("kill -CONT {}", old.pid())),
        "{said:?}"
    );
    assert!(!events(&lines).any(is_start), "no worker started");
    drop(stopped);
    assert_untouched(&old, &before, socket_file);
}

#[test]
fn a_takeover_whose_old_herd_is_stopped_as_it_completes_leaves_it_everything() {
    let old = hello_on_http();
    let before = old.status();
    let socket_file = identity(&old.control());
    let go = old.path("go");
    let mut new = takeover_ready_on(&old.control(), &go);
    let started = new.wait_for_event("worker_started", &[]);
    let worker = started["pid"].as_u64().unwrap() as u32;
    let stopped = Stopped::stop(&old);
    std::fs::write(&go, "").unwrap();
    // The new herd gives up at once, names the old herd and how to resume it, and exits 1
    // with no worker left behind.
    let aborted = new.wait_for_event("takeover_aborted", &[]);
    let reason = aborted["reason"].as_str().unwrap();
    let stopped_herd = format!("(pid {}) is stopped", old.pid());
    assert!(
        reason.contains(&stopped_herd)
            && reason.contains(&format!("kill -CONT {}", old.pid()))
            && reason.contains("then take over again"),
        "{aborted}"
    );
    assert_eq!(new.wait_exit().code(), Some(FAILURE));
    assert!(!alive(worker), "the new herd's worker {worker} is gone");
    // Resumed, the old herd has everything it had.
    drop(stopped);
    assert_untouched(&old, &before, socket_file);
}

#[test]
fn a_takeover_whose_old_herd_never_answers_the_stop_serves_on() {
    let dir = tempfile::tempdir().unwrap();
    let control = dir.path().join("old.sock");
    let old = FakeHerd::start("--silent-stop", &control);
    let control = control.to_str().unwrap();
    let mut new = takeover(
        control,
        &[
            "-w",
            "1",
            "--ready",
            "notify",
            "--",
            "python3",
            &example("hello.py"),
        ],
    );
    new.wait_for_event("takeover_complete", &[]);
    // The fake's grace is 0: the bound is the margin alone.
    let silent = new.wait_for_event("old_herd_silent", &[]);
    assert_eq!(silent["waited"], "5s", "{silent}");
    assert_eq!(silent["level"], "WARN", "{silent}");
    // This herd serves on, at the old herd's control socket and on the socket it took.
    let status = status_at(control);
    assert_eq!(status["pid"], new.pid());
    let worker = worker_pids(&status)[0];
    let answer = get(&old.serves, "/").unwrap();
    assert!(answer.contains(&format!("pid {worker}")), "{answer}");
    new.signal(libc::SIGTERM);
    assert_eq!(new.wait_exit().code(), Some(0));
}

/// A config file edited while herd starts (here while it takes the old herd's sockets, before
/// its workers run): `herd upgrade --reload-config` compares the file with what herd read and
/// its workers run, not with what the file held once herd had bound (it was read again then:
/// the edit went unseen, a changed `workers` the command line gives was not named, a changed
/// `bind` not refused).
#[test]
fn a_config_file_edited_while_herd_starts_is_compared_with_what_it_read() {
    let dir = tempfile::tempdir().unwrap();
    let control = dir.path().join("old.sock");
    let config = dir.path().join("herd.toml");
    std::fs::write(&config, "grace = \"2s\"\n").unwrap();
    let _old = FakeHerd::start_editing(&control, &config, "workers = 3");
    let control = control.to_str().unwrap();
    let new = takeover(
        control,
        &[
            "--config",
            config.to_str().unwrap(),
            "-w",
            "1",
            "--",
            "python3",
            &example("hello.py"),
        ],
    );
    new.wait_for_event("old_herd_silent", &[]);
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("workers = 3"), "the fake edited it: {text}");
    let (code, _, stderr) = ctl_at(control, &["upgrade", "--reload-config"]);
    assert_eq!(code, 0, "{stderr}");
    let overridden = events(&new.lines())
        .find(|e| is_event(e, "config_overridden", &[]))
        .cloned();
    let overridden = overridden.expect("the file's new workers, which -w gives, are named");
    assert_eq!(overridden["keys"], "workers", "{overridden}");
    new.signal(libc::SIGTERM);
}
