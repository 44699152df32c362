//! Attached processes (`herd attach`) stop with herd: the stop signal, then SIGKILL after the
//! grace, their process group with them, and a group shared with others left alone.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::util::*;

/// A child killed on drop, so that a failing test leaves no process behind.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Kills a process group on drop, so that a failing test leaves none of its members behind.
struct KillGroupOnDrop(u32);

impl Drop for KillGroupOnDrop {
    fn drop(&mut self) {
        // SAFETY: kill takes plain integers.
        unsafe { libc::kill(-(self.0 as libc::pid_t), libc::SIGKILL) };
    }
}

/// `herd attach -- COMMAND...` against `herd`'s control socket, with `env` set as well, killed
/// on drop; and the first line COMMAND writes to its standard output.
fn attach(herd: &Herd, env: &[(&str, &str)], command: &[&str]) -> (KillOnDrop, String) {
    first_line(
        Command::new(HERD)
            .env("HERD_CONTROL", herd.control())
            .envs(env.iter().copied())
            .args(["attach", "--"])
            .args(command),
    )
}

/// Spawns `command` with no standard input, killed on drop; and the first line it writes to
/// its standard output.
fn first_line(command: &mut Command) -> (KillOnDrop, String) {
    use std::io::BufRead;
    let mut child = KillOnDrop(
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    std::io::BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line)
}

/// How many pidfds `pid` holds.
fn pidfds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().contains("pidfd"))
        .count()
}

#[test]
fn an_attached_process_that_ignores_the_stop_signal_is_killed_after_the_grace() {
    use std::os::unix::process::ExitStatusExt;
    let mut herd = sleepers(&["-w", "1"]);
    herd.started(1);
    let ignores_term = "import signal, time\n\
        signal.signal(signal.SIGTERM, signal.SIG_IGN)\n\
        print('ignoring SIGTERM', flush=True)\n\
        time.sleep(1000)\n";
    let (mut attached, line) = attach(&herd, &[], &["python3", "-c", ignores_term]);
    let pid = attached.0.id();
    herd.wait_for_event("worker_attached", &[("pid", pid.into())]);
    assert_eq!(line, "ignoring SIGTERM\n");

    // Held by a pidfd, in this image and the next.
    assert_eq!(
        pidfds(herd.pid()),
        1,
        "herd holds the attached process by a pidfd"
    );
    let (code, _, stderr) = herd.ctl(&["reexec"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(pidfds(herd.pid()), 1, "the pidfd survives the re-exec");
    assert_eq!(herd.status()["attached"][0]["pid"], pid);

    let asked = std::time::Instant::now();
    let (code, _, stderr) = herd.ctl(&["stop", "--grace", "1s"]);
    let took = asked.elapsed();
    assert_eq!(code, 0, "{stderr}");
    let status = attached
        .0
        .try_wait()
        .unwrap()
        .expect("the attached process is gone once herd stop returns");
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    assert!(
        took >= std::time::Duration::from_secs(1),
        "killed after the grace period, not before: {took:?}"
    );
    assert_eq!(herd.wait_exit().code(), Some(0));
    herd.wait_for_event("attached_worker_killed", &[("pid", pid.into())]);
}

/// `herd attach` leads a process group, and herd stops that group as it stops a worker's:
/// the shell gets the stop signal and exits; what it forked ignores it, stays in the group
/// holding the socket, and is killed after the grace; `herd stop` returns once it is gone and
/// the port is free.
#[test]
fn what_an_attached_process_forks_stops_with_herd_and_frees_the_port() {
    let mut herd = sleeper_on_http();
    let addr = herd.address("http");
    // The subshell ignores SIGTERM, and so does the sleep it becomes.
    let script = "(trap '' TERM; exec sleep 101) & echo $!; wait";
    let (attached, line) = attach(&herd, &[], &["sh", "-c", script]);
    let pid = attached.0.id();
    let _group = KillGroupOnDrop(pid);
    herd.wait_for_event("worker_attached", &[("pid", pid.into())]);
    let sleeper: u32 = line.trim().parse().unwrap();
    assert_eq!(
        in_groups(&[pid]).len(),
        2,
        "herd attach leads a group (the test did not make it one): {line}"
    );

    let (code, _, stderr) = herd.ctl(&["stop", "--grace", "1s"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        !alive(sleeper),
        "what the attached process forked is gone once herd stop returns"
    );
    std::net::TcpListener::bind(&addr).expect("the port is free once herd stop returns");
    assert_eq!(herd.wait_exit().code(), Some(0));
    // An attached process has no slot: its events carry none (they said slot 0).
    for event in ["leftovers_killed", "leftovers_gone"] {
        let said = herd.wait_for_event(event, &[("pid", pid.into())]);
        assert!(said.get("slot").is_none(), "{said}");
    }
}

/// What an attached process started in a session of its own (a daemon) is out of herd's
/// reach, and keeps the port in use after herd stops: herd says so, naming it, where its stop
/// answered as if the port were free.
#[test]
fn a_daemon_an_attached_process_left_holding_the_port_is_named_at_the_stop() {
    let mut herd = sleeper_on_http();
    let addr = herd.address("http");
    // The script ends once the daemon leads a session of its own (field 6 of its stat),
    // out of the group herd stops with the attached process.
    let script = "setsid sh -c 'trap \"\" TERM; exec sleep 102' & \
                  until [ \"$(cut -d' ' -f6 /proc/$!/stat)\" = $! ]; do :; done; echo $!";
    let (attached, line) = attach(&herd, &[], &["sh", "-c", script]);
    let daemon: u32 = line.trim().parse().unwrap();
    struct Kill(u32);
    impl Drop for Kill {
        fn drop(&mut self) {
            // SAFETY: kill takes plain integers; the daemon is the test's.
            unsafe { libc::kill(self.0 as libc::pid_t, libc::SIGKILL) };
        }
    }
    let _daemon = Kill(daemon);
    drop(attached);
    let (code, _, stderr) = herd.ctl(&["stop", "--grace", "1s"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(herd.wait_exit().code(), Some(0));
    let said = herd.wait_for_event("socket_still_held", &[]);
    assert_eq!(said["address"], addr.as_str(), "{said}");
    assert_eq!(said["pids"], daemon.to_string().as_str(), "{said}");
    assert_eq!(said["level"], "WARN", "{said}");
}

/// A script run with `setsid` starts a background job, then `exec`s `herd attach`: the attach
/// already leads its group (the session's), which the job is in too. herd does not take that
/// group as the attached process's (it says so, and so does the client): when the attached
/// process exits, the job it never started is left alone.
#[test]
fn a_group_the_attached_process_shares_with_others_is_not_stopped_with_it() {
    use std::io::Read;
    let herd = sleeper_on_http();
    let script = format!(
        "sleep 301 </dev/null >/dev/null 2>&1 & echo $!; exec '{HERD}' attach --control '{}' -- \
         sleep 1001",
        herd.control()
    );
    let (mut session, line) = first_line(
        Command::new("setsid")
            .args(["sh", "-c", &script])
            .stderr(Stdio::piped()),
    );
    let job: u32 = line.trim().parse().unwrap();
    let registered = herd.wait_for_event("worker_attached", &[]);
    let pid = registered["pid"].as_u64().unwrap() as u32;
    let _group = KillGroupOnDrop(pid);
    herd.wait_for_event("attached_group_shared", &[("pid", pid.into())]);

    // Registered before it became COMMAND: signalled once it has.
    wait_until("the exec", || {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() == "sleep" {
            Ok(())
        } else {
            Err(format!("command {comm:?}"))
        }
    });
    // SAFETY: kill takes plain integers.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    herd.wait_for_event("attached_worker_exited", &[("pid", pid.into())]);
    // Any stop of the group would have been sent in the turn that saw the exit: a status
    // request is answered after it.
    let status = herd.status();
    assert_eq!(status["leftovers"], serde_json::json!([]), "{status}");
    assert!(
        alive(job),
        "the job the attached process did not start runs on"
    );
    let mut stderr = String::new();
    session
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        stderr.contains("herd will stop only COMMAND, not what it forks"),
        "the client warns: {stderr}"
    );
}

/// An attached command learns herd's stop signal as herd's own workers do, from
/// `HERD_STOP_SIGNAL` (so the herd library's `stop_requested` catches it): herd's, never one
/// `herd attach` inherited.
#[test]
fn an_attached_command_gets_herds_stop_signal_in_its_environment() {
    let herd = sleepers(&["--stop-signal", "INT", "-w", "1"]);
    herd.started(1);
    let script = "echo \"[$HERD_STOP_SIGNAL]\"; exec sleep 1000";
    let inherited = [("HERD_STOP_SIGNAL", "QUIT")];
    let (_attached, line) = attach(&herd, &inherited, &["sh", "-c", script]);
    assert_eq!(line, "[INT]\n");
}

/// With `HERD_TEST_ATTACH_TO` set to a herd's control socket, this test is a program that
/// attaches itself to that herd with the herd library, says so on stderr with the stop signal
/// the answer named, and exits once asked to stop. Slot 0 catches its stop request before it
/// attaches, any other slot after.
#[test]
fn self_attaching_program() {
    let Some(control) = std::env::var_os("HERD_TEST_ATTACH_TO") else {
        return;
    };
    let caught_first = herd::worker_slot() == Some(0);
    let stop = caught_first.then(|| herd::stop_requested().unwrap().unwrap());
    let options = herd::fetch::FetchOptions::default();
    let attached = herd::fetch::attach(std::path::Path::new(&control), &options).unwrap();
    let stop = stop.unwrap_or_else(|| herd::stop_requested().unwrap().unwrap());
    // One write a line: the other workers write to the same stderr.
    let say = |line: String| std::io::stderr().write_all(line.as_bytes()).unwrap();
    say(format!(
        "self-attached, stop signal {:?}\n",
        attached.stop_signal
    ));
    stop.wait();
    say("self-attached, asked to stop\n".to_string());
}

/// A worker of one herd that attaches itself to another with the herd library stops on the
/// other's stop signal, which the library returns, not on the one its own herd named in
/// `HERD_STOP_SIGNAL`: whether it caught its stop request before attaching or after.
#[test]
fn a_worker_attached_to_another_herd_by_the_library_stops_on_that_herds_signal() {
    let other = sleepers(&["--stop-signal", "INT", "-w", "1"]);
    other.started(1);
    other.wait_for_event("control_ready", &[]);
    let (control, me) = (other.control(), std::env::current_exe().unwrap());
    let own = Herd::start_with(|_| {
        let mut cmd = herd_json();
        cmd.env("HERD_TEST_ATTACH_TO", &control)
            .args([
                "run",
                "--stop-signal",
                "QUIT",
                "-w",
                "2",
                "-b",
                "127.0.0.1:0",
            ])
            .arg("--")
            .arg(me)
            .args(["--exact", "attached::self_attaching_program", "--nocapture"]);
        cmd
    });
    let workers = own.started(2);
    let said = own.wait_for("both workers attached", |lines| {
        let said = texts(lines, |t| t.starts_with("self-attached, stop signal"));
        (said.len() >= 2).then(|| said.into_iter().cloned().collect::<Vec<_>>())
    });
    let int = format!("self-attached, stop signal Some({})", libc::SIGINT);
    assert!(said.iter().all(|s| *s == int), "{said:?}");
    other.signal(libc::SIGTERM);
    for (_, pid) in workers {
        let exit = own.wait_for_event("worker_exited", &[("pid", pid.into())]);
        assert!(
            exit["message"].as_str().unwrap().contains("exit code 0"),
            "stopped by the attached herd's SIGINT, caught: {exit}"
        );
    }
}

#[test]
fn herd_attach_passes_the_named_owner_on_to_its_command() {
    if !crate::access::root() {
        return;
    }
    const DEPLOY: u32 = 4343;
    // A herd that may signal deploy's processes (root's), which deploy trusts by itself, and
    // a name deploy gives anyway: herd attach passes it on, so that the program it becomes
    // trusts the same herds.
    let tmp = crate::access::shared_tmp();
    let sock = tmp.path().join("herd.sock");
    let herd = Herd::start_with(|_| {
        let mut cmd = herd_json();
        cmd.env("HERD_CONTROL", &sock)
            .args(["run", "-w", "1", "--control-allow-uid", "4343"])
            .args(["-b", "127.0.0.1:0", "--", "sleep", "1000"]);
        cmd
    });
    herd.started(1);
    herd.wait_for_event("control_ready", &[]);
    let out = tmp.path().join("owner.txt");
    let script = format!("printf %s \"$HERD_CONTROL_OWNER\" > {}", out.display());
    let owner = [
        "--control",
        sock.to_str().unwrap(),
        "--control-owner",
        "4242",
    ];
    let attach = [&owner[..], &["attach", "--", "sh", "-c", &script]].concat();
    let (code, _, stderr) = crate::access::herd_as(DEPLOY, DEPLOY, &[], &attach);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "4242");
}

#[test]
fn herd_attach_gives_its_command_the_signal_mask_it_inherited() {
    let herd = Herd::start(&["run", "-w", "1", "-b", "127.0.0.1:0", "--", "sleep", "1000"]);
    herd.started(1);
    herd.wait_for_event("control_ready", &[]);
    // A caller that blocks SIGUSR1, then runs herd attach, whose command shows its mask.
    let block_usr1_and_exec = "import os, signal, sys\n\
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])\n\
        os.execv(sys.argv[1], sys.argv[1:])\n";
    let out = Command::new("python3")
        .args(["-c", block_usr1_and_exec, HERD, "attach", "--", "sh", "-c"])
        .arg("exec grep SigBlk /proc/self/status")
        .env("HERD_CONTROL", herd.control())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // What herd blocks from its first instruction for `herd run` is not blocked any more (a
    // command with SIGTERM blocked would stop only at the grace period's SIGKILL); what the
    // caller blocked still is.
    let usr1 = 1u64 << (libc::SIGUSR1 - 1);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("SigBlk:\t{usr1:016x}\n")
    );
}
