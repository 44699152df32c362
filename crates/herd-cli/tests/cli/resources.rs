//! herd's resources under stress: nothing leaks over a thousand restarts, running out of fds
//! is survived, metrics clients cannot starve supervision, and fd limits are raised for herd
//! but kept for workers, and a pool of hundreds starts and stops clean.

use std::time::Duration;

use serde_json::Value;

use crate::util::*;

fn fd_count(pid: u32) -> usize {
    open_fds(pid).len()
}

fn rss_kib(pid: u32) -> u64 {
    status_field(pid, "VmRSS")
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn a_thousand_restarts_leak_nothing() {
    let herd = sleepers(&["-w", "2"]);
    herd.started(2);
    // Warm up: let herd reach its steady allocations.
    let restart = |n: usize| {
        let status = wait_status(&herd, "a live worker", |s| !worker_pids(s).is_empty());
        let victim = worker_pids(&status)[0];
        // SAFETY: kill with a worker's pid.
        unsafe { libc::kill(victim as i32, libc::SIGKILL) };
        herd.wait_events("the restart", n, is_start);
    };
    let mut starts = 2;
    for _ in 0..50 {
        starts += 1;
        restart(starts);
    }
    let (fds, rss) = (fd_count(herd.pid()), rss_kib(herd.pid()));
    for _ in 0..1000 {
        starts += 1;
        restart(starts);
    }
    wait_until("no zombie children", || {
        let zombies: Vec<u32> = children(herd.pid())
            .into_iter()
            .filter(|&(_, state)| state == 'Z')
            .map(|(pid, _)| pid)
            .collect();
        if zombies.is_empty() {
            Ok(())
        } else {
            Err(format!("zombies {zombies:?}"))
        }
    });
    // A control connection of the last status request may still be closing: wait for the
    // count to settle; a leaked fd never goes away.
    let mut now = 0;
    let settled = (0..500).any(|_| {
        now = fd_count(herd.pid());
        now <= fds || {
            std::thread::sleep(Duration::from_millis(10));
            false
        }
    });
    assert!(
        settled,
        "herd holds {now} fds after 1000 restarts, {fds} before"
    );
    let grown = rss_kib(herd.pid()).saturating_sub(rss);
    assert!(
        grown < 1024,
        "herd's memory grew by {grown} KiB over 1000 restarts"
    );
    assert_eq!(herd.status()["running"], 2);
}

#[test]
fn running_out_of_fds_is_survived() {
    // herd with at most 64 fds, then 12 clients hold control connections open.
    let mut prlimit = std::process::Command::new("prlimit");
    prlimit.arg("--nofile=64:64").arg(HERD);
    let sleepers = ["run", "-w", "2", "-b", "127.0.0.1:0", "--", "sleep", "1000"];
    let herd = Herd::start_via(prlimit, &sleepers);
    herd.started(2);
    herd.wait_for_event("control_ready", &[]);
    let control = herd.control();
    let connect = || std::os::unix::net::UnixStream::connect(&control).ok();
    let held: Vec<_> = (0..12).filter_map(|_| connect()).collect();
    // herd takes an eighth of its limit in control connections (8); the others give way, so
    // they leave it the files supervision needs
    // (`idle_control_clients_leave_herd_the_files_to_restart_a_worker`). Out of fds all the
    // same (its limit lowered to the files it holds once it has taken them, a status
    // answered after them), it survives. (80 clients, a crowd of newcomers each making an
    // older one give way, could leave the status waiting past its second for room: `busy`.)
    let (code, _, stderr) = herd.ctl(&["status", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let lowest_free = lowest_free_fd(herd.pid());
    let limit = format!("--nofile={lowest_free}:64");
    let lowered = std::process::Command::new("prlimit")
        .args(["--pid", &herd.pid().to_string(), &limit])
        .status()
        .unwrap();
    assert!(lowered.success());
    // A worker killed now cannot be restarted yet; the log says why, not "cannot fork".
    let victim = herd.started(2)[0].1;
    // SAFETY: kill with a worker's pid.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    let failure = herd.wait_for_event("worker_start_failed", &[]);
    let message = failure["message"].as_str().unwrap();
    assert!(
        message.contains("herd is out of file descriptors") && !message.contains("cannot fork"),
        "{message}"
    );
    // It backs off (100 ms) instead of spinning, and keeps its workers.
    std::thread::sleep(Duration::from_millis(500));
    let warnings = herd
        .lines()
        .iter()
        .filter(|l| matches!(l, Line::Event(e) if e["event"] == "control_accept_failed"))
        .count();
    assert!(
        warnings <= 20,
        "{warnings} accept failures in about half a second: spinning"
    );
    drop(held);
    // Its files free again: the limit it was started with.
    let raised = std::process::Command::new("prlimit")
        .args(["--pid", &herd.pid().to_string(), "--nofile=64:64"])
        .status()
        .unwrap();
    assert!(raised.success());
    let status = wait_until("herd to answer again", || {
        let out = std::process::Command::new(HERD)
            .env("HERD_CONTROL", &control)
            .args(["status", "--json"])
            .output()
            .unwrap();
        if out.status.success() {
            Ok(serde_json::from_slice::<Value>(&out.stdout).unwrap())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    });
    assert!(status["running"].as_u64().unwrap() >= 1, "{status}");
    // The killed worker's slot is refilled once fds are free again.
    herd.wait_events("the restart", 3, is_start);
    wait_status(&herd, "2 running workers", |s| s["running"] == 2);
}

/// herd's open-file limit lowered below the files it holds, a client it can never accept (it
/// stays in the backlog, even once gone) has herd warn ever more rarely (the 1st, 2nd, 4th...
/// failure in a row, retried after 10 ms doubling up to 1 s), not ten times a second for ever.
#[test]
fn a_connection_herd_can_never_accept_is_not_warned_about_ten_times_a_second() {
    let sleepers = ["run", "-w", "1", "-b", "127.0.0.1:0", "--", "sleep", "1000"];
    let herd = Herd::start(&sleepers);
    herd.started(1);
    herd.wait_for_event("control_ready", &[]);
    let held = open_fds(herd.pid()).len().saturating_sub(4);
    let limit = format!("--nofile={held}:{held}");
    let pid = herd.pid().to_string();
    let lowered = std::process::Command::new("prlimit")
        .args(["--pid", &pid, &limit])
        .status()
        .unwrap();
    assert!(lowered.success());
    let client = std::os::unix::net::UnixStream::connect(herd.control()).unwrap();
    herd.wait_for_event("control_accept_failed", &[]);
    drop(client);
    // The measurement itself: how often herd says so over 3 s.
    std::thread::sleep(Duration::from_secs(3));
    let failures: Vec<Value> = herd
        .lines()
        .into_iter()
        .filter_map(|l| match l {
            Line::Event(e) if e["event"] == "control_accept_failed" => Some(e),
            _ => None,
        })
        .collect();
    assert!(
        failures.len() <= 6,
        "{} warnings in 3 s: {failures:#?}",
        failures.len()
    );
    let last = failures.last().unwrap();
    assert!(last["failures"].as_u64().unwrap_or(0) >= 4, "{last}");
}

#[test]
fn metrics_clients_cannot_starve_supervision() {
    // herd with 128 fds (soft = hard: nothing to raise), then 300 idle clients on --metrics.
    let herd = Herd::start_with(|_| {
        let mut cmd = std::process::Command::new("prlimit");
        cmd.arg("--nofile=128:128").arg(HERD).args([
            "--log-format",
            "json",
            "run",
            "-w",
            "2",
            "--metrics",
            "127.0.0.1:0",
            "-b",
            "127.0.0.1:0",
            "--",
            "sleep",
            "1000",
        ]);
        cmd
    });
    let victim = herd.started(2)[0].1;
    let metrics = metrics_address(&herd);
    herd.status();
    let before = open_fds(herd.pid()).len();
    let held: Vec<std::net::TcpStream> = (0..300)
        .filter_map(|_| std::net::TcpStream::connect(&metrics).ok())
        .collect();
    assert!(held.len() >= 200, "only {} connections", held.len());
    // herd takes a few (an eighth of its fds), and leaves the rest in the kernel's queue.
    // (`before` may count an fd or two that were about to close.)
    let cap = 128 / 8;
    wait_until("herd to take its share of the connections", || {
        let open = open_fds(herd.pid()).len();
        if open + 4 >= before + cap {
            Ok(())
        } else {
            Err(format!("{open} fds open, {before} before"))
        }
    });
    // Supervision goes on: a killed worker is restarted, the control socket answers.
    // SAFETY: kill with a worker's pid.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    herd.wait_events("the restart", 3, is_start);
    let status = herd.status();
    assert_eq!(status["workers"].as_array().unwrap().len(), 2, "{status}");
    let open = open_fds(herd.pid()).len();
    assert!(
        open <= before + cap + 4,
        "herd holds {open} fds, {before} before the clients came"
    );
    drop(held);
    // Once they are gone, scrapes are served again.
    let text = wait_until("a scrape", || get(&metrics, "/metrics"));
    assert!(text.contains("herd_workers_running 2"), "{text}");
    let (code, _, stderr) = herd.ctl(&["stop"]);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn herd_raises_its_fd_limit_and_workers_keep_theirs() {
    let mut prlimit = std::process::Command::new("prlimit");
    prlimit.arg("--nofile=256:4096").arg(HERD);
    let herd = Herd::start_via(prlimit, &ONE_SLEEPER);
    let worker = herd.started(1)[0].1;
    assert_eq!(
        nofile_limit(herd.pid()),
        "4096:4096",
        "herd raised its own soft limit"
    );
    assert_eq!(
        nofile_limit(worker),
        "256:4096",
        "the worker keeps the one herd was started with"
    );
    // The same after a re-exec: the new image starts from the original limit.
    let (code, _, stderr) = herd.ctl(&["reexec"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(nofile_limit(herd.pid()), "4096:4096");
    // SAFETY: kill with a worker's pid.
    unsafe { libc::kill(worker as i32, libc::SIGKILL) };
    let next = herd.started(2)[1].1;
    assert_eq!(nofile_limit(next), "256:4096");
}

/// Under an open-file limit too low for herd itself (16: herd bound its socket, then failed
/// every worker start for want of a pipe, at every retry, for ever), herd refuses to start in
/// one line that says what limit it needs.
#[test]
fn a_limit_too_low_for_herd_itself_is_refused_at_start() {
    let (waited, stderr) = run_under_nofile(16, &["-b", "127.0.0.1:0"]);
    let waited = waited.expect("herd refused to start under a limit of 16");
    assert_eq!(waited.code(), Some(USAGE), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("herd's open-file limit of 16 is too low to supervise")
            && stderr.contains("raise the limit to at least 34 "),
        "{stderr}"
    );
}

/// A worker's start holds a second copy of every socket herd binds (the child copies each
/// above 3, 4, ... before it moves them there, under herd's limit): with 20 sockets under a
/// limit of 60 (above the 52 that 32 and one a socket need) herd ran, and every worker start failed with "cannot place
/// the worker's inherited sockets", at every retry.
#[test]
fn a_limit_with_no_room_for_a_second_copy_of_the_sockets_is_refused_at_start() {
    let binds: Vec<&str> = std::iter::repeat_n(["-b", "127.0.0.1:0"], 20)
        .flatten()
        .collect();
    let (waited, stderr) = run_under_nofile(60, &binds);
    let waited = waited.expect("herd refused to start under a limit of 60 with 20 sockets");
    assert_eq!(waited.code(), Some(USAGE), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("herd's open-file limit of 60 is too low to supervise")
            && stderr.contains("raise the limit to at least 72 "),
        "{stderr}"
    );
}

/// `herd run ARGS -- sleep 1000` under an open-file limit of `limit`: how it exited, if it did
/// within 10 s (it is stopped, and its workers with it, if it still runs), and its stderr.
fn run_under_nofile(limit: u64, args: &[&str]) -> (Option<std::process::ExitStatus>, String) {
    let mut herd = std::process::Command::new("prlimit")
        .arg(format!("--nofile={limit}:{limit}"))
        .arg(HERD)
        .arg("run")
        .args(args)
        .args(["--", "sleep", "1000"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let waited = loop {
        match herd.try_wait().unwrap() {
            Some(status) => break Some(status),
            None if std::time::Instant::now() > deadline => break None,
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    if waited.is_none() {
        // SAFETY: kill with the pid of our child, not yet reaped (prlimit execs herd).
        unsafe { libc::kill(herd.id() as i32, libc::SIGTERM) };
        let _ = herd.wait();
    }
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut herd.stderr.take().unwrap(), &mut stderr).unwrap();
    (waited, stderr)
}

/// 256 native workers, started a batch at a time (each batch's children start side by side):
/// every slot gets a worker of its own, a live child of herd's, each ready (so each saw its
/// own `LISTEN_PID`); none fails to start; herd's stop leaves no worker nor anything in
/// their process groups behind.
#[test]
fn a_pool_of_256_starts_ready_and_stops_clean() {
    let hello = rust_example("hello");
    let mut herd = Herd::start(&[
        "run",
        "-w",
        "256",
        "--ready",
        "notify",
        "-b",
        "http=127.0.0.1:0",
        "--",
        &hello,
    ]);
    // 256 starts take a few seconds of CPU (debug builds): more time than one wait's on a
    // machine busy with other tests.
    let status = wait_until_within("256 ready workers", TIMEOUT * 3, || {
        let status = herd.status();
        match settled(&status, 256) {
            true => Ok(status),
            false => Err(format!(
                "{} running, {} ready",
                status["running"], status["ready"]
            )),
        }
    });
    let slots = worker_slots(&status);
    assert_eq!(slots, (0..256).collect::<Vec<u64>>());
    let pids = worker_pids(&status);
    let live: std::collections::HashSet<u32> = children(herd.pid())
        .into_iter()
        .filter(|&(_, state)| state != 'Z')
        .map(|(pid, _)| pid)
        .collect();
    let strangers: Vec<&u32> = pids.iter().filter(|pid| !live.contains(pid)).collect();
    assert!(
        strangers.is_empty(),
        "not herd's live children: {strangers:?}"
    );
    assert_eq!(live.len(), 256, "herd's children: {live:?}");
    let failed = events(&herd.lines())
        .filter(|e| e["event"] == "worker_start_failed")
        .count();
    assert_eq!(failed, 0, "{}", last_lines(&herd.lines()));
    herd.signal(libc::SIGTERM);
    assert!(herd.wait_exit().success());
    wait_gone(&pids);
    assert_eq!(
        in_groups(&pids),
        Vec::<u32>::new(),
        "left in the workers' groups"
    );
}
