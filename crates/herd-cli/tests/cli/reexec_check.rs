//! The re-exec check: a new binary that cannot run, fails its check, or hangs in it is refused
//! (and what it started is killed), and herd keeps serving with the old one.

use std::os::unix::fs::PermissionsExt;

use crate::reexec::{reexec, replace_binary, two_hello_workers, workers};
use crate::util::*;

#[test]
fn a_binary_that_cannot_run_leaves_the_old_one_running() {
    // herd runs from a copy that the test then replaces.
    let (_copy_dir, copy) = herd_copy();
    let herd = Herd::start_via(std::process::Command::new(&copy), &ONE_SLEEPER);
    herd.started(1);
    let before = herd.status();

    // Not executable at all.
    std::fs::remove_file(&copy).unwrap();
    std::fs::write(&copy, "not a program").unwrap();
    let (code, _, stderr) = herd.ctl(&["reexec"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("not an executable file; herd keeps running (reexec_check_failed)"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");

    // Executable, but not a valid program: execve itself fails.
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (code, _, stderr) = herd.ctl(&["reexec"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("Exec format error")
            && stderr.contains("herd keeps running (reexec_check_failed)"),
        "{stderr}"
    );

    let after = herd.status();
    assert_eq!(after["pid"], before["pid"]);
    assert_eq!(workers(&after), workers(&before));
}

#[test]
fn a_binary_that_starts_but_fails_its_check_is_refused_and_herd_keeps_serving() {
    let (_copy_dir, copy) = herd_copy();
    let hello = example("hello.py");
    let herd = Herd::start_via(
        std::process::Command::new(&copy),
        &two_hello_workers(&hello),
    );
    let addr = herd.address("http");
    let before = wait_status(&herd, "2 ready workers", |s| settled(s, 2));

    for (script, needle) in [
        (
            "#!/bin/sh\necho 'cannot start: broken' >&2\nexit 3\n",
            "failed its check: exit code 3 (cannot start: broken)",
        ),
        ("#!/bin/sh\nkill -SEGV $$\n", "killed by SIGSEGV"),
        ("#!/bin/sh\nexit 0\n", "did not answer its check"),
        (
            "#!/bin/sh\necho 'herd-reexec-check state=99 version=9.0.0'\n",
            "reads re-exec state version 99",
        ),
        (
            "#!/bin/sh\nexec sleep 60\n",
            "did not answer its check within 5s",
        ),
    ] {
        replace_binary(&copy, script.as_bytes());
        let (code, output) = reexec(&herd);
        assert_eq!(code, 1, "{script}: {output}");
        assert!(
            output.contains(needle) && output.contains("herd keeps running (reexec_check_failed)"),
            "{script}: {output}"
        );
        assert!(
            get(&addr, "/").unwrap().starts_with("hello from pid"),
            "{script}: still serving"
        );
    }
    // SIGUSR2 is checked the same way.
    replace_binary(&copy, b"#!/bin/sh\nexit 3\n");
    herd.signal(libc::SIGUSR2);
    // The sixth refusal, after the five above.
    let refusal = &herd.wait_for_events("reexec_refused", 6, &[])[5];
    let message = refusal["message"].as_str().unwrap_or("");
    assert!(
        message.contains("exit code 3") && message.contains("herd keeps running"),
        "{refusal}"
    );

    let after = herd.status();
    assert_eq!(after["pid"], before["pid"]);
    assert_eq!(
        workers(&after),
        workers(&before),
        "the same workers throughout"
    );

    // A real herd passes the check.
    replace_binary(&copy, &std::fs::read(HERD).unwrap());
    let (code, output) = reexec(&herd);
    assert_eq!(code, 0, "{output}");
    assert_eq!(workers(&herd.status()), workers(&before));
}

/// A check child that does not answer in time is killed with what it started (its process
/// group), not by its pid alone.
#[test]
fn a_check_that_times_out_is_killed_with_what_it_started() {
    let (copy_dir, copy) = herd_copy();
    let herd = Herd::start_via(std::process::Command::new(&copy), &ONE_SLEEPER);
    herd.started(1);
    let sleeper = copy_dir.path().join("sleeper");
    let script = format!(
        "#!/bin/sh\nsleep 30 &\necho $! > '{}'\nwait\n",
        sleeper.display()
    );
    replace_binary(&copy, script.as_bytes());
    let (code, output) = reexec(&herd);
    assert_eq!(code, 1, "{output}");
    assert!(
        output.contains("did not answer its check within 5s"),
        "{output}"
    );
    let sleeper: u32 = std::fs::read_to_string(&sleeper)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    wait_gone(&[sleeper]);
}

/// `herd stop` while a re-exec is being checked: the client is answered `stopping`, and the
/// check child is killed with its group before herd exits.
#[test]
fn a_stop_cancels_a_reexec_being_checked_and_kills_the_check() {
    let (copy_dir, copy) = herd_copy();
    let mut herd = Herd::start_via(std::process::Command::new(&copy), &ONE_SLEEPER);
    herd.started(1);
    let (check, mut client) = hanging_check(&herd, copy_dir.path(), &copy);
    let (code, _, stderr) = herd.ctl(&["stop"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(herd.wait_exit().code(), Some(0));
    assert!(!alive(check), "the check child does not outlive herd");
    let status = wait_child(&mut client, TIMEOUT, libc::SIGKILL).unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut client.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("herd is stopping"), "{stderr}");
}

/// herd killed (SIGKILL) while a re-exec is being checked: the check child, which hangs, dies
/// with it (it was left running for good, re-parented to init).
#[test]
fn a_check_dies_with_a_herd_killed_while_it_runs() {
    let (copy_dir, copy) = herd_copy();
    let mut herd = Herd::start_via(std::process::Command::new(&copy), &ONE_SLEEPER);
    herd.started(1);
    let (check, mut client) = hanging_check(&herd, copy_dir.path(), &copy);
    herd.signal(libc::SIGKILL);
    herd.wait_exit();
    wait_gone(&[check]);
    let _ = wait_child(&mut client, TIMEOUT, libc::SIGKILL);
}

/// Replaces `copy`, the binary `herd` runs from, by a script that writes its pid and hangs, and
/// asks for a re-exec: the check child's pid, once it runs, and the `herd reexec` client
/// waiting for it.
fn hanging_check(
    herd: &Herd,
    dir: &std::path::Path,
    copy: &std::path::Path,
) -> (u32, std::process::Child) {
    let pid_file = dir.join("check.pid");
    let script = format!(
        "#!/bin/sh\necho $$ > '{}.next'\nmv '{0}.next' '{0}'\nexec sleep 31\n",
        pid_file.display()
    );
    replace_binary(copy, script.as_bytes());
    // Retried while the new file is "busy" (see `reexec`).
    let spawn = || {
        std::process::Command::new(HERD)
            .env("HERD_CONTROL", herd.control())
            .arg("reexec")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut client = spawn();
    wait_until("the check to start", || {
        if pid_file.exists() {
            return Ok(());
        }
        if let Some(status) = client.try_wait().unwrap() {
            client = spawn();
            return Err(format!(
                "herd reexec exited ({status}) before the check started"
            ));
        }
        Err("no check pid file yet".to_string())
    });
    let check: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(alive(check));
    (check, client)
}
