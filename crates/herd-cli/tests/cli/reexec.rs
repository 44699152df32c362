//! Re-exec: herd replaces its own program in place; workers, sockets and state carry on, and a
//! binary that cannot run changes nothing.

use serde_json::Value;

use crate::util::*;

pub(crate) fn workers(status: &Value) -> Vec<(u64, u64, u64)> {
    let mut w: Vec<(u64, u64, u64)> = status["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["slot"].as_u64().unwrap(),
                w["pid"].as_u64().unwrap(),
                w["generation"].as_u64().unwrap(),
            )
        })
        .collect();
    w.sort();
    w
}

/// herd's arguments for two workers running `hello` (hello.py's path) that say READY=1, on a
/// nonblocking socket named http.
pub(crate) fn two_hello_workers(hello: &str) -> [&str; 10] {
    [
        "run",
        "-w",
        "2",
        "--ready",
        "notify",
        "-b",
        "http=127.0.0.1:0,nonblocking",
        "--",
        "python3",
        hello,
    ]
}

#[test]
fn ten_reexecs_under_load_keep_workers_and_lose_nothing() {
    let hello = example("hello.py");
    let herd = Herd::start(&two_hello_workers(&hello));
    let addr = herd.address("http");
    let before = wait_status(&herd, "2 ready workers", |s| s["ready"] == 2);

    let load = Load::start(&addr, 2, |_| true);
    for round in 0..10 {
        let (code, stdout, stderr) = herd.ctl(&["reexec"]);
        assert_eq!(code, 0, "round {round}: {stderr}");
        assert!(
            stdout.contains(&format!("runs as pid {}", herd.pid())),
            "{stdout}"
        );
    }
    herd.signal(libc::SIGUSR2);
    herd.wait_for_events("reexecuted", 11, &[]);
    load.finish_without_failures(50);

    let after = herd.status();
    assert_eq!(after["pid"], before["pid"]);
    assert_eq!(
        workers(&after),
        workers(&before),
        "same slots, pids and generations"
    );
    assert!(after["uptime_ms"].as_u64() >= before["uptime_ms"].as_u64());
    // Still fully supervised: a killed worker is replaced in its slot.
    let victim = workers(&after)[0].1 as i32;
    // SAFETY: kill with a worker's pid.
    unsafe { libc::kill(victim, libc::SIGKILL) };
    herd.wait_event("the replacement", |e| {
        is_start(e) && e["slot"] == 0 && e["pid"] != victim
    });
}

/// One request on the control socket, answered: the reply line.
fn control_request(control: &str, request: &str) -> String {
    use std::io::{BufRead, BufReader, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(control).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    writeln!(stream, "{request}").unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    line
}

#[test]
fn a_worker_that_exits_while_herd_reexecutes_is_still_reaped() {
    // The exit's SIGCHLD can reach the old image just before it execs: the new image must
    // collect such a child itself. Scale-downs followed at once by a re-exec hit that window.
    let herd = sleepers(&["-w", "2", "--ready", "delay=10ms"]);
    let control = herd.control();
    wait_status(&herd, "2 ready workers", |s| settled(s, 2));
    for round in 0..40 {
        control_request(&control, r#"{"version":1,"command":"scale","workers":1}"#);
        let reply = control_request(&control, r#"{"version":1,"command":"reexec"}"#);
        assert!(reply.contains("\"ok\":true"), "round {round}: {reply}");
        let reaped = format!("round {round}: the scaled-away worker reaped");
        wait_status(&herd, &reaped, |s| settled(s, 1));
        control_request(&control, r#"{"version":1,"command":"scale","workers":2}"#);
        wait_status(&herd, "2 ready workers", |s| settled(s, 2));
    }
}

#[test]
fn autoscaling_set_at_runtime_survives_a_reexec() {
    // Turned on at runtime on a fixed herd: still on, with the same bounds, after a re-exec.
    let fixed = sleepers(&["-w", "2"]);
    fixed.started(2);
    let (code, _, stderr) = fixed.ctl(&["scale", "1..4"]);
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = fixed.ctl(&["reexec"]);
    assert_eq!(code, 0, "{stderr}");
    let autoscale = &fixed.status()["autoscale"];
    assert_eq!(
        (&autoscale["min"], &autoscale["max"]),
        (&1.into(), &4.into()),
        "{autoscale}"
    );

    // Turned off at runtime on an autoscaling herd: still off, same workers, after a re-exec.
    let auto = sleepers(&["-w", "2..8"]);
    auto.started(2);
    let (code, _, stderr) = auto.ctl(&["scale", "6"]);
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = auto.ctl(&["reexec"]);
    assert_eq!(code, 0, "{stderr}");
    let status = auto.status();
    assert!(status["autoscale"].is_null(), "{status}");
    assert_eq!(status["desired"], 6, "{status}");
}

/// Replaces `path` with an executable file holding `content` (atomically: herd may be running
/// from it).
pub(crate) fn replace_binary(path: &std::path::Path, content: &[u8]) {
    let next = path.with_extension("next");
    write_executable(&next, content);
    std::fs::rename(&next, path).unwrap();
}

/// `herd reexec`, retried while the new file is "busy". `replace_binary` writes it through an
/// fd that is close-on-exec but not closed at fork: a process forked by another test thread
/// while that fd was open holds it until it execs, and until then execve of the file fails
/// with ETXTBSY (Linux refuses to run a file open for writing). Nothing signals that moment,
/// so this retries, for at most 1 s.
pub(crate) fn reexec(herd: &Herd) -> (i32, String) {
    for _ in 0..100 {
        let (code, stdout, stderr) = herd.ctl(&["reexec"]);
        if !stderr.contains("Text file busy") {
            return (code, stdout + &stderr);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("the new binary stayed busy");
}

#[test]
fn metrics_keep_their_address_and_counts_across_a_reexec() {
    let herd = sleeper_with_metrics();
    let metrics = metrics_address(&herd);
    let victim = herd.started(1)[0].1;
    // SAFETY: kill with a worker's pid.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    herd.wait_events("the replacement", 2, is_start);
    let counted = [
        "herd_worker_restarts_total 1",
        "herd_worker_exits_total{cause=\"signal\"} 1",
    ];
    let text = get(&metrics, "/metrics").unwrap();
    for line in counted {
        assert!(text.contains(line), "{line:?} missing before:\n{text}");
    }

    let (code, _, stderr) = herd.ctl(&["reexec"]);
    assert_eq!(code, 0, "{stderr}");
    let text = get(&metrics, "/metrics").expect("the same metrics address after a re-exec");
    for line in counted {
        assert!(text.contains(line), "{line:?} missing after:\n{text}");
    }
    // The re-exec check's process group was looked at once it exited; it left nothing, which
    // is no news for the log.
    wait_until("the check's group forgotten", || {
        let status = herd.status();
        (status["leftovers"] == serde_json::json!([])).then_some(())
    });
    let lines = herd.lines();
    assert!(
        !events(&lines).any(|e| is_event(e, "leftovers_gone", &[])),
        "{}",
        last_lines(&lines)
    );
}

/// The soft open-file limit of process `pid`.
fn soft_nofile(pid: u64) -> u64 {
    let limits = nofile_limit(pid as u32);
    limits.split(':').next().unwrap().parse().unwrap()
}

#[test]
fn a_reexec_never_lowers_herds_fd_limit_and_workers_keep_the_original() {
    // herd starts with a soft limit of 256 and raises it; the next image is a script that
    // records the limit it was executed with, then becomes herd again.
    let (copy_dir, copy) = herd_copy();
    let record = copy_dir.path().join("limits");
    let copy_arg = copy.clone();
    let herd = Herd::start_with(move |_| {
        let mut cmd = std::process::Command::new("/bin/sh");
        cmd.arg("-c")
            .arg("ulimit -Sn 256 && exec \"$0\" \"$@\"")
            .arg(&copy_arg)
            .args([
                "--log-format",
                "json",
                "run",
                "-w",
                "1",
                "--ready",
                "delay=10ms",
                "-b",
                "127.0.0.1:0",
                "--",
                "sleep",
                "1000",
            ]);
        cmd
    });
    let before = wait_status(&herd, "1 ready worker", |s| settled(s, 1));
    let worker = workers(&before)[0].1;
    assert_eq!(
        soft_nofile(worker),
        256,
        "the worker gets herd's original limit"
    );
    assert!(soft_nofile(herd.pid() as u64) > 256, "herd raised its own");

    let script = format!(
        "#!/bin/sh\n[ \"$1\" = __reexec-check ] || ulimit -Sn >> '{}'\nexec '{HERD}' \"$@\"\n",
        record.display()
    );
    replace_binary(&copy, script.as_bytes());
    let (code, output) = reexec(&herd);
    assert_eq!(code, 0, "{output}");
    let recorded = std::fs::read_to_string(&record).unwrap();
    let at_exec: u64 = recorded.trim().parse().unwrap();
    assert!(
        at_exec > 256,
        "the limit was lowered to {at_exec} for the exec: the new image could not open an fd \
         while holding more"
    );

    // A worker started by the new image still gets the original limit.
    let (code, _, stderr) = herd.ctl(&["signal", "KILL", "--worker", "0"]);
    assert_eq!(code, 0, "{stderr}");
    let after = wait_status(&herd, "a new worker", |s| {
        settled(s, 1) && workers(s)[0].1 != worker
    });
    assert_eq!(soft_nofile(workers(&after)[0].1), 256);
}

#[test]
fn a_reexec_follows_the_symlink_herd_was_started_by() {
    // A symlink-switch deploy: /opt/current -> /opt/v1, herd started as /opt/current/herd,
    // then current -> v2 and `herd reexec`.
    let deploy = tempfile::tempdir().unwrap();
    let root = deploy.path().canonicalize().unwrap();
    for version in ["v1", "v2"] {
        std::fs::create_dir(root.join(version)).unwrap();
        std::fs::copy(HERD, root.join(version).join("herd")).unwrap();
    }
    let current = root.join("current");
    std::os::unix::fs::symlink("v1", &current).unwrap();
    let herd = Herd::start_via(
        std::process::Command::new(current.join("herd")),
        &ONE_SLEEPER,
    );
    let worker = herd.started(1)[0].1;
    let exe = |pid: u32| std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert_eq!(exe(herd.pid()), root.join("v1/herd"));

    let next = root.join("current.next");
    std::os::unix::fs::symlink("v2", &next).unwrap();
    std::fs::rename(&next, &current).unwrap();
    let (code, out) = reexec(&herd);
    assert_eq!(code, 0, "{out}");
    let event = herd.wait_for_event("reexecuted", &[]);
    let v2 = root.join("v2/herd").display().to_string();
    assert_eq!(event["file"], v2.as_str(), "{event}");
    assert_eq!(exe(herd.pid()), root.join("v2/herd"));
    let checked = herd.wait_for_event("reexec_checking", &[]);
    assert_eq!(checked["exe"], current.join("herd").display().to_string());
    assert_eq!(checked["file"], v2.as_str());
    assert_eq!(herd.status()["workers"][0]["pid"], worker);
}

/// herd started with an `argv[0]` that names another program (`exec -a NAME`, systemd's
/// `ExecStart=@`) re-executes its own binary, never that program.
#[test]
fn a_reexec_never_runs_another_program_named_by_argv0() {
    use std::os::unix::process::CommandExt;
    let other = tempfile::tempdir().unwrap();
    let ran = other.path().join("ran");
    let impostor = other.path().join("impostor");
    let script = format!("#!/bin/sh\necho \"$@\" >> '{}'\n", ran.display());
    write_executable(&impostor, script);
    let path = format!(
        "{}:{}",
        other.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = std::process::Command::new(HERD);
    cmd.arg0("impostor").env("PATH", path);
    let herd = Herd::start_via(cmd, &ONE_SLEEPER);
    let worker = herd.started(1)[0].1;
    let warned = herd.wait_event("the argv[0] warning", |e| {
        e["event"] == "setup_note" && e.get("names").is_some()
    });
    assert_eq!(warned["names"], impostor.display().to_string(), "{warned}");

    let (code, out) = reexec(&herd);
    assert_eq!(code, 0, "{out}");
    herd.wait_for_event("reexecuted", &[]);
    let own = std::fs::canonicalize(HERD).unwrap();
    let exe = std::fs::read_link(format!("/proc/{}/exe", herd.pid())).unwrap();
    assert_eq!(exe, own);
    assert!(
        !ran.exists(),
        "the impostor ran: {:?}",
        std::fs::read_to_string(&ran)
    );
    assert_eq!(herd.status()["workers"][0]["pid"], worker);
}
