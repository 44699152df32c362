//! `herd run --fork-server` with fork servers that break the protocol (docs/fork-server.md's
//! table): a pid it did not fork, an exited worker's pid, a reply herd did not ask for. herd
//! takes none of them as a worker and signals no process it did not adopt.

use crate::fork_server::fork_server_pid;
use crate::interop_python::python_program;
use crate::util::*;

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
    assert!(worker_pids(&herd.status()).is_empty(), "{}", herd.status());
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
pub(crate) fn hand_made_fork_server(dir: &tempfile::TempDir, workers: &str, answer: &str) -> Herd {
    hand_made_fork_server_with(dir, &["-w", workers], "", answer)
}

/// [`hand_made_fork_server`] with herd's `options` (`-w 1` ...), that runs `before_ready` (one
/// Python line) before READY=1.
pub(crate) fn hand_made_fork_server_with(
    dir: &tempfile::TempDir,
    options: &[&str],
    before_ready: &str,
    answer: &str,
) -> Herd {
    let script = write_fork_server(dir, before_ready, answer);
    Herd::start_with(|_| {
        let mut cmd = herd_json();
        cmd.args(["run"])
            .args(options)
            .args(["--ready", "notify", "--fork-server"])
            .args(["-b", "http=127.0.0.1:0", "--"])
            .args([python_program("python3"), script.display().to_string()]);
        cmd
    })
}

/// Writes [`hand_made_fork_server_with`]'s script (again, for an upgrade's generation).
pub(crate) fn write_fork_server(
    dir: &tempfile::TempDir,
    before_ready: &str,
    answer: &str,
) -> std::path::PathBuf {
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
    script
}

/// A fork server that answers a restart with the pid of the worker that just exited, whose
/// zombie herd holds while the processes it left in its group are stopped (so that the
/// group's id names no stranger): herd must not take an exited process as a new worker.
#[test]
fn an_exited_workers_pid_answered_again_is_refused() {
    // The first request forks a worker as the protocol says; it starts a child in its group
    // (which ignores the stop signal, so that herd holds the worker's zombie until the grace
    // period ends, whenever it reads the next reply) and exits a moment later (not before herd
    // has taken it). Every later request is answered with that worker's pid.
    let answer = "\
        if 'first' in globals():\n    \
            s.send(b'pid %d' % first); continue\n\
        r, w = os.pipe()\n\
        if os.fork() == 0:\n    \
            p = os.fork()\n    \
            if p == 0:\n        \
                os.setpgid(0, 0)\n        \
                while os.getppid() != herd: time.sleep(0.001)\n        \
                import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN)\n        \
                if os.fork() == 0: os.execvp('sleep', ['sleep', '30'])\n        \
                time.sleep(0.3); os._exit(3)\n    \
            os.setpgid(p, p); os.write(w, b'%d\\n' % p); os._exit(0)\n\
        os.close(w); first = int(os.read(r, 64)); os.wait()\n\
        s.send(b'pid %d' % first)";
    let dir = tempfile::tempdir().unwrap();
    let mut herd = hand_made_fork_server_with(&dir, &["-w", "1", "--grace", "3s"], "", answer);
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
    let options = ["-w", "1"];
    let mut herd = hand_made_fork_server_with(&dir, &options, unasked, "s.send(b'error asked')");
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

/// A fork server that answers with the id of a thread of a worker herd supervises: `/proc`
/// answers for a thread with its process's parent (herd) and group (not the thread's id), and
/// a signal to a thread's id reaches its whole process. herd took it for a process that leads
/// no group and SIGKILLed it, killing the worker; it must refuse it and leave the worker be.
#[test]
fn a_workers_thread_id_answered_is_refused_and_the_worker_left_alone() {
    // The first request forks a worker as the protocol says; once re-parented to herd it
    // starts a thread, whose id it sends back. Every later request is answered with it.
    let answer = "\
        if 'tid' in globals():\n    \
            s.send(b'pid %d' % tid); continue\n\
        r, w = os.pipe()\n\
        if os.fork() == 0:\n    \
            p = os.fork()\n    \
            if p == 0:\n        \
                os.setpgid(0, 0)\n        \
                while os.getppid() != herd: time.sleep(0.001)\n        \
                import threading\n        \
                send = lambda: os.write(w, b'%d\\n' % threading.get_native_id())\n        \
                threading.Thread(target=lambda: (send(), time.sleep(60)), daemon=True).start()\n        \
                time.sleep(60); os._exit(0)\n    \
            os.setpgid(p, p); os.write(w, b'%d\\n' % p); os._exit(0)\n\
        os.close(w); f = os.fdopen(r); first = int(f.readline()); os.wait()\n\
        s.send(b'pid %d' % first); tid = int(f.readline())";
    let dir = tempfile::tempdir().unwrap();
    let mut herd = hand_made_fork_server(&dir, "2", answer);
    let started = herd.wait_for_event("worker_started", &[]);
    let worker = started["pid"].as_u64().unwrap();
    let refused = herd.wait_event("the thread's id refused", |e| {
        is_event(e, "worker_start_failed", &[])
            && e["message"]
                .as_str()
                .unwrap()
                .contains(&format!("which is a thread of process {worker}"))
    });
    let message = refused["message"].as_str().unwrap();
    assert!(!message.contains("killed that process"), "{message}");
    // herd's loop has gone round since: a worker it had killed would be reaped and gone.
    let status = herd.status();
    assert!(
        worker_pids(&status).contains(&(worker as u32)),
        "{status}\n{}",
        last_lines(&herd.lines())
    );
    herd.signal(libc::SIGTERM);
    herd.wait_exit();
}

/// A fork server that takes 400 ms to answer each request (within the second herd waits): herd
/// asks it for one worker after the other, and took them four to a batch, its loop held up
/// for all four answers before it read a control request (or a signal, or a READY=1). With 16
/// workers to fork, `herd status` asked once the first has started was answered only when 9
/// to 16 had; one fork a batch lets the turn end after each slow answer.
#[test]
fn a_slow_fork_server_does_not_hold_control_requests_for_a_batch_of_forks() {
    // Each request is answered as the protocol says, 400 ms late; the workers sleep.
    let answer = "\
        time.sleep(0.4)\n\
        r, w = os.pipe()\n\
        if os.fork() == 0:\n    \
            p = os.fork()\n    \
            if p == 0:\n        \
                os.setpgid(0, 0)\n        \
                while os.getppid() != herd: time.sleep(0.001)\n        \
                os.execvp('sleep', ['sleep', '30'])\n    \
            os.setpgid(p, p); os.write(w, b'%d\\n' % p); os._exit(0)\n\
        os.close(w); pid = int(os.read(r, 64)); os.close(r); os.wait()\n\
        s.send(b'pid %d' % pid)";
    let dir = tempfile::tempdir().unwrap();
    let mut herd = hand_made_fork_server(&dir, "16", answer);
    herd.wait_for_event("worker_started", &[]);
    let status = herd.status();
    let started = worker_pids(&status).len();
    assert!(
        started < 9,
        "{started} of 16 forked before herd answered\n{status}"
    );
    herd.signal(libc::SIGTERM);
    herd.wait_exit();
}

/// An upgrade whose fork server says READY=1 but cannot fork (here it answers `error`) is
/// aborted, and the old workers serve on: its fork server, which may hold a whole app loaded,
/// was kept, idle, until the next upgrade. herd closes it (it exits at end of file).
#[test]
fn an_aborted_upgrades_fork_server_is_closed() {
    // Generation 1 forks a worker that says READY=1 and sleeps; generation 2 refuses.
    let answer = "\
        if os.environ['HERD_GENERATION'] != '1':\n    \
            s.send(b'error not this generation'); continue\n\
        r, w = os.pipe()\n\
        if os.fork() == 0:\n    \
            p = os.fork()\n    \
            if p == 0:\n        \
                os.setpgid(0, 0)\n        \
                while os.getppid() != herd: time.sleep(0.001)\n        \
                n.send(b'READY=1'); time.sleep(60); os._exit(0)\n    \
            os.setpgid(p, p); os.write(w, b'%d\\n' % p); os._exit(0)\n\
        os.close(w); pid = int(os.read(r, 64)); os.close(r); os.wait()\n\
        s.send(b'pid %d' % pid)";
    let dir = tempfile::tempdir().unwrap();
    let mut herd = hand_made_fork_server(&dir, "1", answer);
    herd.wait_for_event("worker_ready", &[]);
    let (code, _, stderr) = herd.ctl(&["upgrade"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("not this generation"), "{stderr}");
    let ready = herd.wait_event("generation 2's fork server", |e| {
        is_event(e, "fork_server_ready", &[("generation", 2.into())])
    });
    let server = fork_server_pid(&ready);
    let status = herd.status();
    let listed = status["fork_servers"].as_array().unwrap();
    assert!(
        listed.iter().all(|s| s["generation"] != 2),
        "an aborted generation's fork server is kept: {status}"
    );
    // It exits as its socket closes.
    wait_gone(&[server]);
    herd.signal(libc::SIGTERM);
    herd.wait_exit();
}

/// An upgrade aborted while its fork server still loads (here it hangs in its imports): the
/// fork server reads its socket only once loaded, so closing it did not end it, and it loaded
/// on, untracked, until herd exited (one more per failed upgrade). herd kills it.
#[test]
fn an_aborted_upgrades_fork_server_still_loading_is_killed() {
    let answer = crate::fork_server_replies::forks_then_waits("0", "0");
    let hang = "if os.environ['HERD_GENERATION'] != '1': time.sleep(600)";
    let dir = tempfile::tempdir().unwrap();
    let mut herd = hand_made_fork_server_with(&dir, &["-w", "1"], hang, &answer);
    herd.wait_for_event("worker_ready", &[]);
    let (code, _, stderr) = herd.ctl(&["upgrade", "--timeout", "2s"]);
    assert_eq!(code, 1, "{stderr}");
    let started = herd.wait_event("generation 2's fork server", |e| {
        is_event(e, "fork_server_started", &[("generation", 2.into())])
    });
    wait_gone(&[fork_server_pid(&started)]);
    herd.signal(libc::SIGTERM);
    herd.wait_exit();
}

/// A fork server (the workers' code) cannot send herd an fd along a reply: herd would close it
/// on its loop, which waits as long as its sender likes for a socket with `SO_LINGER`.
#[test]
fn a_fork_server_cannot_send_herd_an_fd() {
    if !kernel_refuses_fds() {
        eprintln!("skipped: this kernel lets fds through (SO_PASSRIGHTS is Linux 6.16+)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let said = dir.path().join("sent");
    let before_ready = format!(
        "import array\ntry:\n    s.sendmsg([b'x'], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, \
         array.array('i', [1]).tobytes())]); r = 'sent'\nexcept OSError as e:\n    r = e.strerror\n\
         open({:?}, 'w').write(r)",
        said.display().to_string()
    );
    let herd = hand_made_fork_server_with(&dir, &["-w", "1"], &before_ready, "pass");
    // It tried before it said READY=1.
    herd.wait_event("the fork server ready", |e| {
        e["event"] == "fork_server_ready"
    });
    let sent = std::fs::read_to_string(&said).unwrap();
    assert_eq!(sent, "Operation not permitted", "herd's end took an fd");
}
