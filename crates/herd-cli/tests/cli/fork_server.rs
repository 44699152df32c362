//! `herd run --fork-server` with `python/herd_fork.py` (docs/fork-server.md): workers forked
//! from one fork server per generation serve and are supervised as herd's own children;
//! upgrades under load lose nothing; a fork server that fails, stays silent or dies is
//! handled as the table there says.

use std::path::Path;

use serde_json::Value;

use crate::interop_python::{interop_file, python_program, stops_cleanly, upgrades_under_load};
use crate::util::*;

/// `python/herd_fork.py`.
fn launcher() -> String {
    repo().join("python/herd_fork.py").display().to_string()
}

/// herd with `workers` stdlib workers (examples/hello.py, which says READY=1; on a
/// non-blocking socket, as it needs for stops that lose nothing) forked by a fork server,
/// `extra` before the `--`, `env` set; waits until they are ready.
fn forked_hello(workers: &str, extra: &[&str], env: &[(&str, &str)]) -> Herd {
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

/// What `/proc/PID/stat` says of `pid`: (parent pid, process group).
fn parent_and_group(pid: u32) -> (u32, u32) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    (fields[1].parse().unwrap(), fields[2].parse().unwrap())
}

/// `pid`'s environment variable `key`.
fn environ(pid: u32, key: &str) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    environ
        .split(|&b| b == 0)
        .filter_map(|e| std::str::from_utf8(e).ok())
        .find_map(|e| e.strip_prefix(&format!("{key}=")).map(str::to_string))
}

fn fork_server_pid(event: &Value) -> u32 {
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

/// Stops herd with SIGTERM and checks it exits 0 (after a worker killed on purpose, which
/// herd rightly warns of).
fn stop_and_wait(mut herd: Herd) {
    herd.signal(libc::SIGTERM);
    let status = herd.wait_exit();
    assert!(status.success(), "{status:?}{}", last_lines(&herd.lines()));
}

/// SIGKILL to `pid`, with `kill(1)`.
fn kill_9(pid: u32) {
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
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken");
    std::fs::write(
        dir.path().join("gate.py"),
        "import os\nif os.path.exists(os.environ['BROKEN']):\n    raise SystemExit('a bad build')\n",
    )
    .unwrap();
    let path = dir.path().display().to_string();
    let flag = broken.display().to_string();
    let herd = Herd::start_with(|_| {
        let mut cmd = herd_json();
        cmd.env("PYTHONPATH", &path)
            .env("BROKEN", &flag)
            .args(["run", "-w", "2", "--ready", "notify", "--fork-server"])
            .args(["-b", "http=127.0.0.1:0,nonblocking", "--"])
            .args([python_program("python3"), launcher()])
            .args(["--preload", "gate", &example("hello.py")]);
        cmd
    });
    wait_status(&herd, "2 ready workers", |s| settled(s, 2));
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

#[test]
fn a_command_that_never_says_ready_is_killed_after_the_ready_timeout() {
    let herd = Herd::start(&[
        "run",
        "-w",
        "1",
        "--ready",
        "notify",
        "--ready-timeout",
        "1s",
        "--fork-server",
        "-b",
        "http=127.0.0.1:0",
        "--",
        "sleep",
        "1000",
    ]);
    let started = herd.wait_for_event("fork_server_started", &[]);
    let server = fork_server_pid(&started);
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

/// A fork server that answers with the pid of a process it did not fork (here one of the
/// test's own): herd refuses to take it as a worker, and never signals it.
#[test]
fn a_pid_the_fork_server_did_not_fork_is_refused_and_left_alone() {
    let mut victim = std::process::Command::new("sleep")
        .arg("1000")
        .spawn()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut herd = hand_made_fork_server(&dir, "1", &format!("s.send(b'pid {}')", victim.id()));
    let refused = herd.wait_event("the refused pid", |e| {
        is_event(e, "worker_start_failed", &[])
            && e["message"]
                .as_str()
                .unwrap()
                .contains("which is not herd's child")
    });
    let message = refused["message"].as_str().unwrap();
    assert!(message.contains(&victim.id().to_string()), "{message}");
    assert!(status_workers_empty(&herd.status()), "{}", herd.status());
    herd.signal(libc::SIGTERM);
    herd.wait_exit();
    assert!(
        victim.try_wait().unwrap().is_none(),
        "herd signalled a process it never started"
    );
    victim.kill().unwrap();
    victim.wait().unwrap();
}

/// herd with `workers` workers forked by a fork server written here, in `dir`: it says
/// READY=1, then runs `answer` (Python lines, `s` its socket to herd, `herd` herd's pid) for
/// each request it reads.
fn hand_made_fork_server(dir: &tempfile::TempDir, workers: &str, answer: &str) -> Herd {
    hand_made_fork_server_with(dir, workers, "", answer)
}

/// [`hand_made_fork_server`] that runs `before_ready` (one Python line) before READY=1.
fn hand_made_fork_server_with(
    dir: &tempfile::TempDir,
    workers: &str,
    before_ready: &str,
    answer: &str,
) -> Herd {
    let script = dir.path().join("fork_server.py");
    let answer: String = answer.lines().map(|l| format!("    {l}\n")).collect();
    std::fs::write(
        &script,
        format!(
            "import os, socket, sys, time\n\
             s = socket.socket(fileno=int(os.environ['HERD_FORK_SERVER']))\n\
             herd = os.getppid()\n\
             a = os.environ['NOTIFY_SOCKET']\n\
             n = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n\
             n.connect('\\0' + a[1:] if a.startswith('@') else a)\n\
             {before_ready}\n\
             n.send(b'READY=1')\n\
             while s.recvmsg(65536, socket.CMSG_SPACE(4 * 16))[0]:\n\
             {answer}"
        ),
    )
    .unwrap();
    Herd::start_with(|_| {
        let mut cmd = herd_json();
        cmd.args(["run", "-w", workers, "--ready", "notify", "--fork-server"])
            .args(["-b", "http=127.0.0.1:0", "--"])
            .args([python_program("python3"), script.display().to_string()]);
        cmd
    })
}

/// A fork server that answers a restart with the pid of the worker that just exited, whose
/// zombie herd holds while the processes it left in its group are stopped (so that the
/// group's id names no stranger): herd must not take an exited process as a new worker.
#[test]
fn an_exited_workers_pid_answered_again_is_refused() {
    // The first request forks a worker as the protocol says; it starts a child in its group
    // and exits a moment later (not before herd has taken it). Every later request is
    // answered with that worker's pid.
    let answer = "\
        if 'first' in globals():\n    \
            s.send(b'pid %d' % first); continue\n\
        r, w = os.pipe()\n\
        if os.fork() == 0:\n    \
            p = os.fork()\n    \
            if p == 0:\n        \
                os.setpgid(0, 0)\n        \
                while os.getppid() != herd: time.sleep(0.001)\n        \
                if os.fork() == 0: os.execvp('sleep', ['sleep', '30'])\n        \
                time.sleep(0.3); os._exit(3)\n    \
            os.setpgid(p, p); os.write(w, b'%d\\n' % p); os._exit(0)\n\
        os.close(w); first = int(os.read(r, 64)); os.wait()\n\
        s.send(b'pid %d' % first)";
    let dir = tempfile::tempdir().unwrap();
    let mut herd = hand_made_fork_server(&dir, "1", answer);
    let started = herd.wait_for_event("worker_started", &[]);
    let worker = started["pid"].as_u64().unwrap();
    herd.wait_event("its pid refused", |e| {
        is_event(e, "worker_start_failed", &[])
            && e["message"]
                .as_str()
                .unwrap()
                .contains(&format!("answered pid {worker}, which has exited already"))
    });
    let lines = herd.lines();
    let again = events(&lines)
        .filter(|e| is_event(e, "worker_started", &[("pid", worker.into())]))
        .count();
    assert_eq!(again, 1, "{}", last_lines(&lines));
    herd.signal(libc::SIGTERM);
    herd.wait_exit();
}

/// A fork server that sends a reply herd did not ask for (here before READY=1; a request
/// answered twice does the same to the next one): herd must not take it for the next
/// request's answer (every reply after it would answer the request before, a worker forked for
/// one slot taken as another's); it kills the fork server when it next asks.
#[test]
fn a_fork_server_that_answers_unasked_is_killed_before_it_is_asked() {
    let dir = tempfile::tempdir().unwrap();
    let unasked = "s.send(b'error unasked')";
    let mut herd = hand_made_fork_server_with(&dir, "1", unasked, "s.send(b'error asked')");
    let killed = herd.wait_event("the fork server killed", |e| {
        is_event(e, "fork_server_exited", &[])
            && e["message"]
                .as_str()
                .unwrap()
                .contains("sent \"error unasked\" before herd asked anything")
    });
    let server = fork_server_pid(&killed);
    // No start took it as its answer.
    let lines = herd.lines();
    let took_it = events(&lines).find(|e| {
        is_event(e, "worker_start_failed", &[])
            && e["message"]
                .as_str()
                .unwrap()
                .ends_with("could not fork it: unasked")
    });
    assert!(took_it.is_none(), "{took_it:?}");
    herd.wait_event("another fork server", |e| {
        is_event(e, "fork_server_started", &[]) && fork_server_pid(e) != server
    });
    herd.signal(libc::SIGTERM);
    herd.wait_exit();
}

/// Whether `status` lists no worker.
fn status_workers_empty(status: &Value) -> bool {
    worker_pids(status).is_empty()
}

/// `pid`'s scheduling policy (field 41 of `/proc/PID/stat`: 0 `SCHED_OTHER`, 5 `SCHED_IDLE`).
fn policy(pid: u32) -> u32 {
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
    let dir = tempfile::tempdir().unwrap();
    let hold = dir.path().join("hold");
    std::fs::write(
        dir.path().join("slow.py"),
        "import os, time\ntime.sleep(0.5)\nwhile os.path.exists(os.environ['HOLD']):\n    time.sleep(0.01)\n",
    )
    .unwrap();
    let path = dir.path().display().to_string();
    let flag = hold.display().to_string();
    let herd = Herd::start_with(|_| {
        let mut cmd = herd_json();
        cmd.env("PYTHONPATH", &path)
            .env("HOLD", &flag)
            .args(["run", "-w", "2", "--ready", "notify", "--fork-server"])
            .args(["--starting-nice", "idle"])
            .args(["-b", "http=127.0.0.1:0,nonblocking", "--"])
            .args([python_program("python3"), launcher()])
            .args(["--preload", "slow", &example("hello.py")]);
        cmd
    });
    wait_status(&herd, "2 ready workers", |s| settled(s, 2));
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
