//! Worker settings that cannot work (user, group, directory, program, limits): refused before
//! any worker starts, or named when a worker meets them.

use crate::util::*;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn worker_settings_that_cannot_work_are_refused_at_start() {
    let run = |options: &[&str], needles: &[&str]| {
        let mut args = vec!["run"];
        args.extend_from_slice(options);
        args.extend_from_slice(&["-b", "127.0.0.1:0", "--", "sleep", "1000"]);
        fails_within(&args, None, needles);
    };
    run(
        &["--nofile", "99999999999999"],
        &["--nofile 99999999999999", "nr_open"],
    );
    run(
        &["--rlimit", "nofile=999999999:999999999"],
        &["--rlimit nofile=999999999:999999999"],
    );
    run(&["--nofile", "4"], &["--nofile 4", "at least 5"]);
    if is_root() {
        run(
            &["--user", "nobody", "--chdir", "/root"],
            &["--chdir /root", "--user nobody", "Permission denied"],
        );
    } else {
        // Only root may raise a hard limit.
        run(
            &["--rlimit", "core=0:unlimited"],
            &["--rlimit core=0:unlimited"],
        );
    }
}

#[test]
fn relative_commands_are_found_where_they_run() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app");
    std::fs::create_dir(&app).unwrap();
    let script = app.join("serve");
    write_executable(&script, "#!/bin/sh\nexec sleep 1000\n");
    // herd runs in `dir`, which has no ./serve; the workers run in app/, which has.
    let herd = Herd::start_with(|_| {
        let mut cmd = herd_json();
        cmd.current_dir(dir.path()).args([
            "run",
            "-w",
            "1",
            "--chdir",
            "app",
            "-b",
            "127.0.0.1:0",
            "--",
            "./serve",
        ]);
        cmd
    });
    let pid = herd.started(1)[0].1;
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap(),
        app.canonicalize().unwrap()
    );
    drop(herd);
    // The other way round: ./serve exists where herd runs, not where the workers would.
    fails_within(
        &[
            "run",
            "--chdir",
            "/tmp",
            "-b",
            "127.0.0.1:0",
            "--",
            "./serve",
        ],
        Some(&app),
        &["does not exist", "--chdir /tmp"],
    );
}

#[test]
fn scripts_that_cannot_run_are_named_before_they_run() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, content: &str| {
        let path = dir.path().join(name);
        write_executable(&path, content);
        path.display().to_string()
    };
    let missing = write("missing", "#!/nonexistent/interp\necho hi\n");
    let plain = write("plain", "exec sleep 1000\n");
    // A script whose interpreter is a script whose interpreter is missing (the kernel follows
    // such chains; execve would only say ENOENT about the top one).
    let nested = write("nested", &format!("#!{missing}\n"));
    let through = format!("the interpreter '{missing}' of command '{nested}' names the interpreter '/nonexistent/interp'");
    for (script, needle) in [
        (&missing, "the interpreter '/nonexistent/interp'"),
        (&plain, "without a '#!' line"),
        (&nested, through.as_str()),
    ] {
        fails_within(
            &["run", "-b", "127.0.0.1:0", "--", script],
            None,
            &[needle, script],
        );
    }
    // herd attach agrees: the same usage error, not a run through /bin/sh.
    let herd = sleepers(&["-w", "1"]);
    herd.started(1);
    for (script, needle) in [
        (&missing, "the interpreter '/nonexistent/interp'"),
        (&plain, "without a '#!' line"),
        (&nested, through.as_str()),
    ] {
        let (code, _, stderr) = herd.ctl(&["attach", "--", script]);
        assert_eq!(code, USAGE, "{stderr}");
        assert!(stderr.contains(needle), "{stderr}");
    }
    assert_eq!(herd.status()["attached"], serde_json::json!([]));
}

#[test]
fn a_uid_without_a_name_runs_workers_with_its_group() {
    if !root_or_skip("needs root to run workers as another user") {
        return;
    }
    let herd = sleepers(&["-w", "1", "--user", "3999999", "--group", "3999998"]);
    let pid = herd.started(1)[0].1;
    assert!(
        status_field(pid, "Uid").starts_with("3999999\t"),
        "{}",
        status_field(pid, "Uid")
    );
    assert!(
        status_field(pid, "Gid").starts_with("3999998\t"),
        "{}",
        status_field(pid, "Gid")
    );
}

#[test]
fn a_worker_that_cannot_start_names_the_setting() {
    // Only a worker can meet this one: the directory goes away after herd started.
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let chdir = work.display().to_string();
    let herd = sleepers(&["-w", "1", "--chdir", &chdir]);
    herd.started(1);
    std::fs::remove_dir(&work).unwrap();
    let (code, _, stderr) = herd.ctl(&["signal", "KILL", "--worker", "0"]);
    assert_eq!(code, 0, "{stderr}");
    let failed = herd.wait_for_event("worker_start_failed", &[]);
    let message = failed["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("--chdir {chdir}")) && message.contains("No such file"),
        "{failed}"
    );
}

#[test]
fn an_unprivileged_herd_may_name_its_own_user() {
    if !root_or_skip("needs root to run herd as another user") {
        return;
    }
    use std::os::unix::process::CommandExt;
    let herd = Herd::start_with(|dir| {
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o1777))
            .unwrap();
        let mut cmd = herd_json();
        cmd.args([
            "run",
            "-w",
            "1",
            "--user",
            "nobody",
            "-b",
            "127.0.0.1:0",
            "--",
            "sleep",
            "1000",
        ])
        .uid(65534)
        .gid(65534);
        cmd
    });
    let pid = herd.started(1)[0].1;
    assert!(status_field(pid, "Uid").starts_with("65534\t"));
}

#[test]
fn a_worker_killed_by_its_resource_limit_names_the_limit_once() {
    // Burns CPU: SIGXCPU after a second of it (the soft limit), every time.
    let herd = Herd::start(&[
        "run",
        "-w",
        "1",
        "--rlimit",
        "cpu=1:5",
        "--rlimit",
        "core=0",
        "-b",
        "127.0.0.1:0",
        "--",
        "sh",
        "-c",
        "while :; do :; done",
    ]);
    let exits = herd.wait_events("two exits", 2, is_exit);
    let messages: Vec<&str> = exits
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert!(
        messages[0].contains("killed by SIGXCPU; likely cause: --rlimit cpu=1:5 (a worker past its resource limit gets this signal)"),
        "{messages:?}"
    );
    assert!(
        messages[1].contains("killed by SIGXCPU") && !messages[1].contains("likely cause"),
        "once while it crash-loops: {messages:?}"
    );
}
