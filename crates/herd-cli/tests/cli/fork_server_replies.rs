//! Fork servers whose replies come late, or never, or for starts no longer wanted: herd
//! sends a request and goes on, and reads the reply when it comes.

use crate::fork_server_hostile::{
    hand_made_fork_server, hand_made_fork_server_with, write_fork_server,
};
use crate::util::*;

/// A fork server's answer (see [`hand_made_fork_server`]) that forks a worker as the protocol
/// says, `delay` seconds late (its worker says READY=1 and sleeps).
fn forks_late(delay: &str) -> String {
    forks_then_waits(delay, "0")
}

/// A fork server's answer that waits `before` seconds, forks a worker as the protocol says
/// (which says READY=1 and sleeps), then waits `after` seconds before it answers.
pub(crate) fn forks_then_waits(before: &str, after: &str) -> String {
    format!(
        "time.sleep({before})\n\
         r, w = os.pipe()\n\
         if os.fork() == 0:\n    \
             p = os.fork()\n    \
             if p == 0:\n        \
                 os.setpgid(0, 0)\n        \
                 while os.getppid() != herd: time.sleep(0.001)\n        \
                 n.send(b'READY=1'); time.sleep(30); os._exit(0)\n    \
             os.setpgid(p, p); os.write(w, b'%d\\n' % p); os._exit(0)\n\
         os.close(w); pid = int(os.read(r, 64)); os.close(r); os.wait()\n\
         time.sleep({after})\n\
         s.send(b'pid %d' % pid)"
    )
}

/// A fork server that takes 1.5 s to answer each request: herd waited for the answer in its loop,
/// at most a second, so it answered no control request meanwhile, then killed the fork server
/// and failed the start ("did not answer within 1s"). It sends the request and goes on: `herd
/// status` is answered while the start awaits its reply, and the worker starts.
#[test]
fn a_fork_server_slow_to_answer_holds_nothing_up_and_its_workers_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut herd = hand_made_fork_server(&dir, "2", &forks_late("1.5"));
    herd.wait_for_event("fork_server_ready", &[]);
    // The first start has asked it (as it said READY=1) and awaits its reply.
    let asked = std::time::Instant::now();
    let status = herd.status();
    let took = asked.elapsed();
    assert!(
        worker_pids(&status).is_empty(),
        "the status came after a worker started: {status}"
    );
    assert!(
        took < std::time::Duration::from_secs(1),
        "herd status took {took:?} while a start awaited its fork server's reply"
    );
    herd.wait_for_events("worker_started", 2, &[]);
    let lines = herd.lines();
    let failed = events(&lines).find(|e| {
        is_event(e, "worker_start_failed", &[]) || is_event(e, "fork_server_exited", &[])
    });
    assert!(failed.is_none(), "{failed:?}\n{}", last_lines(&lines));
    herd.signal(libc::SIGTERM);
    herd.wait_exit();
}

/// herd stops while a start awaits its fork server's reply: herd waits for the reply, and the
/// worker it names, a real process forked for a start no longer wanted, is stopped with the
/// others (it would otherwise run on, an orphan, until herd's own end).
#[test]
fn a_worker_forked_for_a_start_no_longer_wanted_is_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let mut herd = hand_made_fork_server(&dir, "1", &forks_late("1"));
    herd.wait_for_event("fork_server_ready", &[]);
    herd.signal(libc::SIGTERM);
    let worker = unwanted_worker_killed(&herd);
    herd.wait_exit();
    wait_gone(&[worker]);
    let lines = herd.lines();
    let started = events(&lines).find(|e| is_event(e, "worker_started", &[]));
    assert!(started.is_none(), "{started:?}");
}

/// A re-exec asked while a start awaits its fork server's reply is refused (the slot is
/// starting, and its worker's pid is not known yet), cleanly: herd serves on, the start
/// completes, and a re-exec asked then goes ahead.
#[test]
fn a_reexec_while_a_start_awaits_its_reply_is_refused_and_the_start_completes() {
    let dir = tempfile::tempdir().unwrap();
    let mut herd = hand_made_fork_server(&dir, "1", &forks_late("1.5"));
    herd.wait_for_event("fork_server_ready", &[]);
    let (code, _, stderr) = herd.ctl(&["reexec"]);
    assert_ne!(code, 0, "{stderr}");
    assert!(
        stderr.contains("starting workers") && stderr.contains("try again"),
        "{stderr}"
    );
    let ready = herd.wait_for_event("worker_ready", &[]);
    let worker = ready["pid"].as_u64().unwrap() as u32;
    let (code, _, stderr) = herd.ctl(&["reexec"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(worker_pids(&herd.status()), vec![worker]);
    herd.signal(libc::SIGTERM);
    herd.wait_exit();
}

/// An upgrade aborted while one of its starts awaits its fork server's reply (its first new
/// worker exits at once; the second start's answer comes 2 s later): a re-exec then went
/// ahead, the exec closed the socket the reply comes on, and the worker it named served on,
/// no one's. It is refused until that reply is read (and its worker killed).
#[test]
fn a_reexec_while_an_aborted_upgrades_start_awaits_its_reply_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let options = ["-w", "2", "--max-starting", "2"];
    let mut herd = hand_made_fork_server_with(&dir, &options, "", &forks_late("0"));
    wait_status(&herd, "two workers ready", |s| s["ready"] == 2);
    let first_dies = format!(
        "k += 1\n\
         if k == 1:\n    \
             r, w = os.pipe()\n    \
             if os.fork() == 0:\n        \
                 p = os.fork()\n        \
                 if p == 0:\n            \
                     os.setpgid(0, 0)\n            \
                     while os.getppid() != herd: time.sleep(0.001)\n            \
                     time.sleep(0.2); os._exit(1)\n        \
                 os.setpgid(p, p); os.write(w, b'%d\\n' % p); os._exit(0)\n    \
             os.close(w); pid = int(os.read(r, 64)); os.close(r); os.wait()\n    \
             s.send(b'pid %d' % pid); continue\n\
         {}",
        forks_then_waits("0", "2")
    );
    write_fork_server(&dir, "k = 0", &first_dies);
    let (code, _, stderr) = herd.ctl(&["upgrade"]);
    assert_ne!(code, 0, "the upgrade fails: {stderr}");
    let (code, _, stderr) = herd.ctl(&["reexec"]);
    assert_ne!(code, 0, "{stderr}");
    assert!(stderr.contains("has not answered"), "{stderr}");
    let worker = unwanted_worker_killed(&herd);
    wait_gone(&[worker]);
    let (code, _, stderr) = herd.ctl(&["reexec"]);
    assert_eq!(code, 0, "{stderr}");
    herd.signal(libc::SIGTERM);
    herd.wait_exit();
}

/// A fork server that exits while a start awaits its reply fails that start with its exit (the
/// start is retried, by another fork server).
#[test]
fn a_fork_server_that_exits_before_it_answers_fails_the_start_with_its_exit() {
    let dir = tempfile::tempdir().unwrap();
    let mut herd = hand_made_fork_server(&dir, "1", "time.sleep(0.3); os._exit(7)");
    let failed = herd.wait_event("the start failed", |e| {
        is_event(e, "worker_start_failed", &[])
            && e["message"]
                .as_str()
                .unwrap()
                .contains("before it answered")
    });
    let message = failed["message"].as_str().unwrap();
    assert!(message.contains("exit code 7"), "{message}");
    herd.signal(libc::SIGTERM);
    herd.wait_exit();
}

/// A forked worker that says READY=1 before its fork server's reply reaches herd (the worker
/// runs as soon as it is re-parented; the reply follows when the fork server is scheduled,
/// here half a second later): herd heard a READY=1 from a process that was no worker yet and
/// dropped it, and the worker never became ready. It hears it again once the reply is read.
#[test]
fn a_ready_said_before_the_fork_servers_reply_is_heard() {
    ready_heard_before_the_reply("", &["n.send(b'READY=1')"]);
}

/// As above, but the worker's READY=1 comes from a process it runs, as `systemd-notify` does:
/// READY=1, then `BARRIER=1` with an fd, waiting until herd closes it, and gone (reaped by the
/// worker) before the fork server's reply is read. herd kept the message with its sender's pid
/// alone and then found no such process, no worker's, and dropped it: the worker never became
/// ready. It keeps the sender's ancestors, read as the message came.
#[test]
fn a_ready_said_by_a_workers_child_before_the_reply_is_heard() {
    let says = [
        "c = os.fork()",
        "if c == 0:",
        "    br, bw = os.pipe()",
        "    n.send(b'READY=1'); socket.send_fds(n, [b'BARRIER=1'], [bw]); os.close(bw)",
        "    select.select([br], [], [], 10); os._exit(0)",
        "os.waitpid(c, 0)",
    ];
    ready_heard_before_the_reply("import select, socket", &says);
}

/// A fork server (importing `imports` first) whose worker, once re-parented to herd, runs
/// `says` (lines of Python) to say READY=1 and then tells the fork server, which answers half a
/// second later: the worker is ready, and no message was dropped.
fn ready_heard_before_the_reply(imports: &str, says: &[&str]) {
    let says: String = says.iter().map(|l| format!("        {l}\n")).collect();
    let answer = format!(
        "r, w = os.pipe(); said_r, said_w = os.pipe()\n\
         if os.fork() == 0:\n    \
             p = os.fork()\n    \
             if p == 0:\n        \
                 os.setpgid(0, 0)\n        \
                 while os.getppid() != herd: time.sleep(0.001)\n\
         {says}        \
                 os.write(said_w, b'.'); time.sleep(30); os._exit(0)\n    \
             os.setpgid(p, p); os.write(w, b'%d\\n' % p); os._exit(0)\n\
         os.close(w); pid = int(os.read(r, 64)); os.close(r); os.wait()\n\
         os.read(said_r, 1); os.close(said_r); os.close(said_w)\n\
         time.sleep(0.5)\n\
         s.send(b'pid %d' % pid)"
    );
    let dir = tempfile::tempdir().unwrap();
    let options = ["-w", "1", "--ready-timeout", "20s"];
    let mut herd = hand_made_fork_server_with(&dir, &options, imports, &answer);
    let started = herd.wait_for_event("worker_started", &[]);
    let ready = herd.wait_for_event("worker_ready", &[]);
    assert_eq!(ready["pid"], started["pid"]);
    let lines = herd.lines();
    let dropped = events(&lines).find(|e| is_event(e, "notify_dropped", &[]));
    assert!(dropped.is_none(), "{dropped:?}");
    herd.signal(libc::SIGTERM);
    herd.wait_exit();
}

/// A fork server that answers 2.5 s after its worker was re-parented to herd: herd's look for
/// orphans (every second) found herd's child that was no worker yet and adopted it as an
/// orphan ("left behind by a worker", a warning, and stopped as one when herd stops) beside
/// taking it as a worker once the reply came. It adopts none while a reply is awaited.
#[test]
fn a_worker_forked_before_its_reply_is_read_is_not_taken_for_an_orphan() {
    let dir = tempfile::tempdir().unwrap();
    let mut herd = hand_made_fork_server(&dir, "1", &forks_then_waits("0", "2.5"));
    let ready = herd.wait_for_event("worker_ready", &[]);
    let status = herd.status();
    assert_eq!(
        worker_pids(&status),
        vec![ready["pid"].as_u64().unwrap() as u32]
    );
    assert_eq!(status["orphans"], serde_json::json!([]), "{status}");
    let lines = herd.lines();
    let adopted = events(&lines).find(|e| is_event(e, "orphan_adopted", &[]));
    assert!(adopted.is_none(), "{adopted:?}");
    herd.signal(libc::SIGTERM);
    herd.wait_exit();
}

/// The pid of the worker herd killed because its fork server forked it for a start no longer
/// wanted, once herd says so.
fn unwanted_worker_killed(herd: &Herd) -> u32 {
    let killed = herd.wait_event("the unwanted worker killed", |e| {
        is_event(e, "worker_start_failed", &[])
            && e["message"]
                .as_str()
                .unwrap()
                .contains("for a start no longer wanted")
    });
    killed["pid"].as_u64().unwrap() as u32
}
