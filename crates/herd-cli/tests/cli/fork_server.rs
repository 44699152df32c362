//! `herd run --fork-server` with `python/herd_fork.py` (docs/fork-server.md): workers forked
//! from one fork server per generation serve and are supervised as herd's own children;
//! upgrades under load lose nothing; a fork server that fails, stays silent or dies is
//! handled as the table there says.

use std::path::Path;

use serde_json::Value;

use crate::interop_python::{interop_file, python_program, stops_cleanly, upgrades_under_load};
use crate::util::*;

/// `python/herd_fork.py`.
pub(crate) fn launcher() -> String {
    repo().join("python/herd_fork.py").display().to_string()
}

/// herd with `workers` stdlib workers (examples/hello.py, which says READY=1; on a
/// non-blocking socket, as it needs for stops that lose nothing) forked by a fork server,
/// `extra` before the `--`, `env` set; waits until they are ready.
pub(crate) fn forked_hello(workers: &str, extra: &[&str], env: &[(&str, &str)]) -> Herd {
    let herd = Herd::start_with(|_| {
        let mut cmd = herd_json();
        cmd.envs(env.iter().copied())
            .args(["run", "-w", workers, "--ready", "notify", "--fork-server"])
            .args(["-b", "http=127.0.0.1:0,nonblocking"])
            .args(extra)
            .arg("--")
            .args([python_program("python3"), launcher(), example("hello.py")]);
        cmd
    });
    let n: u64 = workers.parse().unwrap();
    wait_status(&herd, "the workers ready", |s| settled(s, n));
    herd
}

/// herd with 2 stdlib workers forked by a fork server that preloads `preload.py` (`source`, in a
/// temporary directory on PYTHONPATH; `FLAG` names a file there, not made, for it to look at),
/// `extra` before the `--`; once both are ready. The directory lives as long as what is returned.
pub(crate) fn forked_with_preload(
    source: &str,
    extra: &[&str],
) -> (Herd, std::path::PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("preload.py"), source).unwrap();
    let flag = dir.path().join("flag");
    let herd = Herd::start_with(|_| {
        let mut cmd = herd_json();
        cmd.env("PYTHONPATH", dir.path())
            .env("FLAG", &flag)
            .args(["run", "-w", "2", "--ready", "notify", "--fork-server"])
            .args(extra)
            .args(["-b", "http=127.0.0.1:0,nonblocking", "--"])
            .args([python_program("python3"), launcher()])
            .args(["--preload", "preload", &example("hello.py")]);
        cmd
    });
    wait_status(&herd, "2 ready workers", |s| settled(s, 2));
    (herd, flag, dir)
}

/// What `/proc/PID/stat` says of `pid`: (parent pid, process group).
pub(crate) fn parent_and_group(pid: u32) -> (u32, u32) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    (fields[1].parse().unwrap(), fields[2].parse().unwrap())
}

/// `pid`'s environment variable `key`.
pub(crate) fn environ(pid: u32, key: &str) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    environ
        .split(|&b| b == 0)
        .filter_map(|e| std::str::from_utf8(e).ok())
        .find_map(|e| e.strip_prefix(&format!("{key}=")).map(str::to_string))
}

pub(crate) fn fork_server_pid(event: &Value) -> u32 {
    event["pid"].as_u64().unwrap() as u32
}

#[test]
fn forked_workers_serve_as_herds_children_and_a_restart_forks_again() {
    let herd = forked_hello("2", &[], &[]);
    let started = herd.wait_for_event("fork_server_started", &[("generation", 1.into())]);
    let server = fork_server_pid(&started);
    herd.wait_for_event("fork_server_ready", &[("pid", server.into())]);
    let pids = worker_pids(&herd.status());
    assert_eq!(pids.len(), 2);
    for (slot, &pid) in pids.iter().enumerate() {
        assert_ne!(pid, server);
        // herd's child, leading its own process group, with its own LISTEN_PID.
        assert_eq!(parent_and_group(pid), (herd.pid(), pid), "worker {slot}");
    }
    // The fork server is herd's child in herd's own group, and holds no listening socket.
    let (parent, group) = parent_and_group(server);
    assert_eq!(parent, herd.pid());
    assert_eq!(group, parent_and_group(herd.pid()).1);
    assert_eq!(environ(server, "LISTEN_FDS"), None);
    let (code, text, _) = herd.ctl(&["status"]);
    assert_eq!(code, 0);
    let shown = format!("fork servers: pid {server} (generation 1, ready)");
    assert!(text.contains(&shown), "{text}");
    // Each answers with its own pid and slot (HERD_WORKER from the request's environment;
    // /proc/PID/environ still shows the fork server's).
    let addr = herd.address("http");
    let mut seen = std::collections::BTreeSet::new();
    wait_until("both workers to answer", || {
        seen.insert(get(&addr, "/").unwrap().trim().to_string());
        let slots: Vec<bool> = (0..2)
            .map(|slot| seen.iter().any(|s| s.ends_with(&format!("worker {slot}"))))
            .collect();
        match slots == [true, true] {
            true => Ok(()),
            false => Err(seen.clone()),
        }
    });
    for answer in &seen {
        let pid: u32 = answer["hello from pid ".len()..]
            .split(',')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            pids.contains(&pid),
            "{answer} is from no worker of {pids:?}"
        );
    }
    // A worker killed is forked again by the same fork server.
    kill_9(pids[0]);
    wait_status(&herd, "a new worker ready", |s| {
        settled(s, 2) && !worker_pids(s).contains(&pids[0])
    });
    let lines = herd.lines();
    let servers = events(&lines)
        .filter(|e| is_event(e, "fork_server_started", &[]))
        .count();
    assert_eq!(servers, 1, "{}", last_lines(&lines));
    stop_and_wait(herd);
}

/// A wrapper script that execs herd_fork.py with arguments of its own before `"$@"` and
/// variables it exported: each worker runs with its own `{worker}` (the fork server was given
/// slot 0's) and the wrapper's variables, herd's own (`HERD_WORKER`) being the worker's.
#[test]
fn a_wrapper_scripts_workers_get_their_own_numbers_and_its_variables() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app.py");
    std::fs::write(
        &app,
        format!(
            "import json, os, runpy, sys\n\
             seen = {{'argv': sys.argv[1:], 'worker': os.environ.get('HERD_WORKER'),\n\
                     'db': os.environ.get('DB_URL')}}\n\
             with open(os.path.join({dir:?}, 'seen-%s.json' % seen['worker']), 'w') as f:\n\
             \x20   json.dump(seen, f)\n\
             runpy.run_path({hello:?}, run_name='__main__')\n",
            dir = dir.path().display().to_string(),
            hello = example("hello.py"),
        ),
    )
    .unwrap();
    let wrapper = dir.path().join("run.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexport DB_URL=postgres://db/app HERD_WORKER=99\n\
             exec '{}' '{}' '{}' --mode prod \"$@\"\n",
            python_program("python3"),
            launcher(),
            app.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let herd = Herd::start_with(|_| {
        let mut cmd = herd_json();
        cmd.args(["run", "-w", "2", "--ready", "notify", "--fork-server"])
            .args(["-b", "http=127.0.0.1:0,nonblocking", "--"])
            .arg(&wrapper)
            .args(["--port-offset", "{worker}"]);
        cmd
    });
    wait_status(&herd, "the workers ready", |s| settled(s, 2));
    for slot in 0..2 {
        let seen = std::fs::read_to_string(dir.path().join(format!("seen-{slot}.json"))).unwrap();
        let seen: Value = serde_json::from_str(&seen).unwrap();
        let args = ["--mode", "prod", "--port-offset", &slot.to_string()];
        assert_eq!(seen["argv"], serde_json::json!(args), "worker {slot}");
        assert_eq!(
            seen["worker"],
            slot.to_string(),
            "herd's HERD_WORKER, not the wrapper's"
        );
        assert_eq!(seen["db"], "postgres://db/app", "worker {slot}");
    }
    stop_and_wait(herd);
}

/// Stops herd with SIGTERM and checks it exits 0 (after a worker killed on purpose, which
/// herd rightly warns of).
pub(crate) fn stop_and_wait(mut herd: Herd) {
    herd.signal(libc::SIGTERM);
    let status = herd.wait_exit();
    assert!(status.success(), "{status:?}{}", last_lines(&herd.lines()));
}

/// SIGKILL to `pid`, with `kill(1)`.
pub(crate) fn kill_9(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn upgrades_under_load_lose_nothing_and_close_the_old_fork_server() {
    let herd = forked_hello("2", &[], &[]);
    let first = fork_server_pid(&herd.wait_for_event("fork_server_ready", &[]));
    upgrades_under_load(&herd, |body| body.starts_with("hello from pid"));
    herd.wait_for_event("fork_server_ready", &[("generation", 3.into())]);
    // The first generation's fork server exits once a newer one is ready: herd reaps it.
    wait_until("the first fork server to be gone", || {
        (!Path::new(&format!("/proc/{first}")).exists()).then_some(())
    });
    let lines = herd.lines();
    let servers = events(&lines)
        .filter(|e| is_event(e, "fork_server_started", &[]))
        .count();
    assert_eq!(servers, 3, "one per generation: {}", last_lines(&lines));
    stops_cleanly(herd);
}

#[test]
fn a_fork_server_that_cannot_load_fails_the_upgrade_and_the_old_workers_serve_on() {
    let source =
        "import os\nif os.path.exists(os.environ['FLAG']):\n    raise SystemExit('a bad build')\n";
    let (herd, broken, _dir) = forked_with_preload(source, &[]);
    let before = worker_pids(&herd.status());
    std::fs::write(&broken, "").unwrap();
    let (code, stdout, stderr) = herd.ctl(&["upgrade", "--timeout", "20s"]);
    assert_ne!(code, 0, "the upgrade succeeded: {stdout}");
    let why = herd.wait_event("the fork server's failure", |e| {
        is_event(e, "fork_server_exited", &[("generation", 2.into())])
    });
    let message = why["message"].as_str().unwrap();
    assert!(message.contains("before it said READY=1"), "{message}");
    assert!(
        stderr.contains("fork server") || stdout.contains("fork server"),
        "the upgrade's answer does not say why: {stdout}{stderr}"
    );
    // The old workers serve on.
    let status = herd.status();
    assert_eq!(worker_pids(&status), before);
    get(&herd.address("http"), "/").unwrap();
}

/// herd with one worker whose fork server is `sleep 1000` (a command that does not speak the
/// protocol), with herd's options `options`: herd and the fork server's pid.
fn silent_fork_server(options: &[&str]) -> (Herd, u32) {
    let mut args = vec!["run", "-w", "1", "--fork-server", "-b", "http=127.0.0.1:0"];
    args.extend_from_slice(options);
    args.extend_from_slice(&["--", "sleep", "1000"]);
    let herd = Herd::start(&args);
    let started = herd.wait_for_event("fork_server_started", &[]);
    let server = fork_server_pid(&started);
    (herd, server)
}

#[test]
fn a_command_that_never_says_ready_is_killed_after_the_ready_timeout() {
    let (herd, server) = silent_fork_server(&["--ready", "notify", "--ready-timeout", "1s"]);
    let failed = herd.wait_for_event("fork_server_exited", &[("pid", server.into())]);
    let message = failed["message"].as_str().unwrap();
    assert!(
        message.contains("did not say READY=1 within 1s") && message.contains("protocol"),
        "{message}"
    );
    herd.wait_event("the start's failure", |e| {
        is_event(e, "worker_start_failed", &[]) && e["message"].as_str().unwrap().contains("1s")
    });
    wait_until("the fork server to be gone", || {
        (!Path::new(&format!("/proc/{server}")).exists()).then_some(())
    });
}

#[test]
fn a_fork_server_killed_is_started_anew_by_the_next_start_and_its_workers_serve_on() {
    let herd = forked_hello("2", &[], &[]);
    let server = fork_server_pid(&herd.wait_for_event("fork_server_ready", &[]));
    let pids = worker_pids(&herd.status());
    kill_9(server);
    let exited = herd.wait_for_event("fork_server_exited", &[("pid", server.into())]);
    assert_eq!(exited["level"], "WARN", "{exited}");
    // Its workers serve on.
    assert_eq!(worker_pids(&herd.status()), pids);
    get(&herd.address("http"), "/").unwrap();
    kill_9(pids[1]);
    herd.wait_for_events("fork_server_ready", 2, &[]);
    wait_status(&herd, "a new worker ready", |s| {
        settled(s, 2) && !worker_pids(s).contains(&pids[1])
    });
}

#[test]
fn worker_output_captures_what_forked_workers_write() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("say.py");
    let hello = example("hello.py");
    std::fs::write(
        &script,
        format!(
            "import os, runpy\nprint('forked worker', os.getpid(), flush=True)\n\
             runpy.run_path({hello:?}, run_name='__main__')\n"
        ),
    )
    .unwrap();
    let herd = Herd::start_with(|_| {
        let mut cmd = herd_json();
        cmd.args(["run", "-w", "1", "--ready", "notify", "--fork-server"])
            .args(["--worker-output", "prefix", "-b", "http=127.0.0.1:0", "--"])
            .args([
                python_program("python3"),
                launcher(),
                script.display().to_string(),
            ]);
        cmd
    });
    wait_status(&herd, "1 ready worker", |s| settled(s, 1));
    let pid = worker_pids(&herd.status())[0];
    let said = format!("forked worker {pid}");
    wait_until("herd logs to show the worker's line", || {
        let (code, stdout, _) = herd.ctl(&["logs"]);
        match code == 0 && stdout.contains(&said) {
            true => Ok(()),
            false => Err(stdout),
        }
    });
}

#[test]
fn gunicorn_through_herd_fork_upgrades_under_load_and_stops_cleanly() {
    let herd = Herd::start_with(|_| {
        let mut cmd = herd_json();
        cmd.args(["run", "-w", "2", "--ready", "notify", "--fork-server"])
            .args(["-b", "http=127.0.0.1:0,nonblocking", "--"])
            .args([python_program("python3"), launcher()])
            .args(["--preload", "gunicorn.app.wsgiapp", "-m", "gunicorn"])
            .args(["-c", &example("gunicorn_herd.conf.py")])
            .args(["--chdir", &interop_file(""), "wsgi_app:app"]);
        cmd
    });
    wait_status(&herd, "2 ready workers", |s| settled(s, 2));
    upgrades_under_load(&herd, |body| body.starts_with("gunicorn pid"));
    stops_cleanly(herd);
}

/// `pid`'s scheduling policy (field 41 of `/proc/PID/stat`: 0 `SCHED_OTHER`, 5 `SCHED_IDLE`).
pub(crate) fn policy(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    rest[41 - 3].parse().unwrap()
}

/// An upgrade's fork server loads beside the serving workers: at `--starting-nice`'s priority
/// (`SCHED_IDLE`) until it says READY=1, and its workers are born at herd's. Each load takes
/// half a second at least: the first, at herd's priority, sets the warm-up budget (twice the
/// slowest start-up), within which the test looks.
#[test]
fn an_upgrades_fork_server_loads_at_the_starting_priority_and_its_workers_serve_at_herds() {
    let source = "import os, time\ntime.sleep(0.5)\nwhile os.path.exists(os.environ['FLAG']):\n    time.sleep(0.01)\n";
    let (herd, hold, _dir) = forked_with_preload(source, &["--starting-nice", "idle"]);
    std::fs::write(&hold, "").unwrap();
    let control = herd.control();
    let upgrade = std::thread::spawn(move || ctl_at(&control, &["upgrade"]));
    let started = herd.wait_for_event("fork_server_started", &[("generation", 2.into())]);
    let server = fork_server_pid(&started);
    assert_eq!(
        policy(server),
        5,
        "the loading fork server is not SCHED_IDLE{}",
        last_lines(&herd.lines())
    );
    std::fs::remove_file(&hold).unwrap();
    let (code, stdout, stderr) = upgrade.join().unwrap();
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(
        policy(server),
        0,
        "the ready fork server is not back at SCHED_OTHER"
    );
    for pid in worker_pids(&herd.status()) {
        assert_eq!(policy(pid), 0, "worker {pid} is not at SCHED_OTHER");
    }
}

/// A command that does not speak the protocol, with the default readiness (a minute to load):
/// herd says so after 5 s, not only when it kills it.
#[test]
fn a_command_that_does_not_speak_the_protocol_is_said_slow_after_five_seconds() {
    let (herd, server) = silent_fork_server(&[]);
    let slow = herd.wait_for_event("fork_server_slow", &[("pid", server.into())]);
    let message = slow["message"].as_str().unwrap();
    assert!(
        message.contains("after 5s") && message.contains("python/herd_fork.py"),
        "{message}"
    );
    assert_eq!(slow["level"], "WARN");
}

/// A restart that waits for its fork server (killed, loading again) shows in `herd status`
/// as its slot waiting for the fork server, where it was missing (no worker, no backoff).
#[test]
fn a_start_waiting_for_its_fork_server_shows_in_status() {
    let source =
        "import os, time\nwhile os.path.exists(os.environ['FLAG']):\n    time.sleep(0.01)\n";
    let (herd, hold, _dir) = forked_with_preload(source, &[]);
    let server = fork_server_pid(&herd.wait_for_event("fork_server_ready", &[]));
    std::fs::write(&hold, "").unwrap();
    kill_9(server);
    herd.wait_for_event("fork_server_exited", &[("pid", server.into())]);
    let pids = worker_pids(&herd.status());
    kill_9(pids[1]);
    let status = wait_status(&herd, "slot 1 waiting for its fork server", |s| {
        s["forking"] == serde_json::json!([{"slot": 1, "generation": 1}])
    });
    assert_eq!(worker_pids(&status), vec![pids[0]], "{status}");
    let (code, table, stderr) = herd.ctl(&["status"]);
    assert_eq!(code, 3, "{table}{stderr}");
    let row = table
        .lines()
        .find(|l| l.starts_with("1 "))
        .unwrap_or_default();
    assert!(row.contains("waiting for its fork server"), "{table}");
    std::fs::remove_file(&hold).unwrap();
    wait_status(&herd, "2 ready workers", |s| {
        settled(s, 2) && s.get("forking").is_none()
    });
}

/// A restart (at herd's priority) that waits for a fork server loading at `--starting-nice`
/// (a scale-up's) does not wait on a load left in `SCHED_IDLE`: herd raises it. Each load takes
/// 2 s at least, so the warm-up budget (twice the first, timed) is long past the test's kill.
#[test]
fn a_restart_waiting_for_a_lowered_fork_server_raises_its_load() {
    let source = "import os, time\ntime.sleep(2)\nwhile os.path.exists(os.environ['FLAG']):\n    time.sleep(0.01)\n";
    let (herd, hold, _dir) = forked_with_preload(source, &["--starting-nice", "idle"]);
    std::fs::write(&hold, "").unwrap();
    let first = herd.wait_for_event("fork_server_started", &[("generation", 1.into())]);
    // SAFETY: a plain kill(2) of the fork server this test started through herd.
    assert_eq!(
        unsafe { libc::kill(fork_server_pid(&first) as i32, libc::SIGKILL) },
        0
    );
    herd.wait_for_event(
        "fork_server_exited",
        &[("pid", fork_server_pid(&first).into())],
    );
    // A scale-up beside the serving workers: its fork server loads lowered.
    let control = herd.control();
    let scale = std::thread::spawn(move || ctl_at(&control, &["scale", "3"]));
    let started = herd.wait_events("the scale-up's fork server", 2, |e| {
        e["event"] == "fork_server_started"
    });
    let loading = fork_server_pid(&started[1]);
    assert_eq!(
        policy(loading),
        5,
        "the scale-up's fork server loads lowered"
    );
    // A worker killed: its restart, at herd's priority, waits for that load.
    let worker = worker_pids(&herd.status())[0];
    // SAFETY: a plain kill(2) of a worker this test started through herd.
    assert_eq!(unsafe { libc::kill(worker as i32, libc::SIGKILL) }, 0);
    let over = herd.wait_for_event("warm_up_over", &[("pid", loading.into())]);
    assert_eq!(over["reason"], "waited_for", "{over}");
    // herd says it, then raises it.
    wait_until("the fork server at herd's priority", || {
        let now = policy(loading);
        (now == 0).then_some(()).ok_or(format!("policy {now}"))
    });
    std::fs::remove_file(&hold).unwrap();
    let (code, stdout, stderr) = scale.join().unwrap();
    assert_eq!(code, 0, "{stdout}{stderr}");
    wait_status(&herd, "3 ready workers", |s| settled(s, 3));
}
