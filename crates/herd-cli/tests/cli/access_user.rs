//! `--control-allow-user`: a user let in on the control socket by name, and a name that is
//! nobody's refused before anything starts.

use crate::access::{herd_as, root, shared_tmp};
use crate::util::*;

#[test]
fn control_allow_user_admits_that_user_by_name() {
    if !root() {
        return;
    }
    let tmp = shared_tmp();
    let herd = Herd::start_with(|_| {
        let mut cmd = herd_json();
        cmd.env("TMPDIR", tmp.path())
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("HERD_CONTROL")
            .args([
                "run",
                "--name",
                "web",
                "-w",
                "1",
                "--control-allow-user",
                "nobody",
            ])
            .args(["-b", "127.0.0.1:0", "--", "sleep", "1000"]);
        cmd
    });
    herd.started(1);
    // Ready, so that `herd status` exits 0 rather than 3 (degraded).
    herd.wait_for_event("worker_ready", &[]);
    herd.wait_for_event("control_ready", &[]);
    let sock = tmp.path().join("herd-0").join("web.sock");
    let sock = sock.to_str().unwrap();
    let (code, stdout, stderr) = herd_as(65534, 65534, &[], &["--control", sock, "status"]);
    assert_eq!(code, 0, "nobody (65534) is admitted: {stderr}");
    assert!(stdout.contains("workers"), "{stdout}");
    let (code, _, stderr) = herd_as(4000, 4000, &[], &["--control", sock, "status"]);
    assert_ne!(code, 0, "uid 4000 is not: {stderr}");
    assert!(stderr.contains("permission denied"), "{stderr}");
}

#[test]
fn a_control_allow_user_that_names_nobody_is_a_usage_error() {
    assert_fails(
        &[
            "run",
            "--control-allow-user",
            "no-such-user-herd",
            "-b",
            "127.0.0.1:0",
            "--",
            "true",
        ],
        2,
        "--control-allow-user: no user named 'no-such-user-herd'",
    );
}
