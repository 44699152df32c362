//! The control socket in a crowd: clients that hang up before their answer, and newcomers
//! when the connection limit is reached. herd is paused (SIGSTOP) while the clients act, so
//! that it meets each of them in the state the test means.

use std::io::{BufRead, BufReader, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::util::*;

pub(crate) const STATUS: &[u8] = b"{\"version\":1,\"command\":\"status\"}\n";

/// Pauses `herd` until the returned guard is dropped.
pub(crate) fn paused(herd: &Herd) -> impl Drop + '_ {
    struct Paused<'a>(&'a Herd);
    impl Drop for Paused<'_> {
        fn drop(&mut self) {
            self.0.signal(libc::SIGCONT);
        }
    }
    herd.signal(libc::SIGSTOP);
    wait_until("herd to be paused", || match proc_state(herd.pid()) {
        Some('T') => Ok(()),
        state => Err(state),
    });
    Paused(herd)
}

/// The answer line on `stream`, as JSON.
pub(crate) fn answer(stream: &UnixStream) -> Value {
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut line = Vec::new();
    BufReader::new(stream).read_until(b'\n', &mut line).unwrap();
    serde_json::from_slice(&line)
        .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&line)))
}

/// A client that asks and hangs up before herd reads its request gets nothing made for it:
/// a `sockets` request with `attach` from a process that closed its connection (and lives on)
/// registers nothing. One that only shuts down its writing side after asking still gets its
/// answer.
#[test]
fn a_client_that_hung_up_gets_no_answer_made_and_a_half_closed_one_does() {
    let herd = Herd::start(&ONE_SLEEPER);
    wait_status(&herd, "the worker ready", |s| s["ready"] == 1);
    let control = herd.control();

    let pause = paused(&herd);
    // Asks to attach, hangs up, and lives on until killed.
    let script = "import socket, sys, time\n\
        s = socket.socket(socket.AF_UNIX)\n\
        s.connect(sys.argv[1])\n\
        s.sendall(b'{\"version\":1,\"command\":\"sockets\",\"attach\":true}\\n')\n\
        s.close()\n\
        print('gone', flush=True)\n\
        time.sleep(1000)\n";
    let mut gone = Command::new("python3")
        .args(["-c", script, &control])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut said = String::new();
    BufReader::new(gone.stdout.take().unwrap())
        .read_line(&mut said)
        .unwrap();
    assert_eq!(said, "gone\n");
    let mut half_closed = UnixStream::connect(&control).unwrap();
    half_closed.write_all(STATUS).unwrap();
    half_closed.shutdown(Shutdown::Write).unwrap();
    drop(pause);

    let status = answer(&half_closed);
    assert_eq!(status["ok"], true, "{status}");
    // herd took the requests in the order they came: the attach came first.
    assert_eq!(
        status["result"]["attached"],
        serde_json::json!([]),
        "{status}"
    );
    let _ = gone.kill();
    let _ = gone.wait();
}

/// A client that sends several requests and hangs up before herd reads them has every one
/// that changes something carried out: the `status` and the undecodable line before its
/// `stop` (answers it can no longer read) do not make herd drop the `stop` with them.
#[test]
fn a_stop_sent_after_other_requests_by_a_client_that_hung_up_is_carried_out() {
    let mut herd = Herd::start(&ONE_SLEEPER);
    wait_status(&herd, "the worker ready", |s| s["ready"] == 1);
    let control = herd.control();

    let pause = paused(&herd);
    let mut gone = UnixStream::connect(&control).unwrap();
    gone.write_all(STATUS).unwrap();
    gone.write_all(b"not json\n").unwrap();
    gone.write_all(b"{\"version\":1,\"command\":\"stop\"}\n")
        .unwrap();
    drop(gone);
    drop(pause);

    let status = herd.wait_exit();
    assert!(status.success(), "herd stopped as asked: {status:?}");
}

/// How many control connections `herd` takes at once: 1000, or an eighth of its open-file
/// limit when that is lower (at least 4).
fn connection_cap(herd: &Herd) -> usize {
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", herd.pid())).unwrap();
    let soft: usize = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
        .unwrap();
    (soft / 8).clamp(4, 1000)
}

/// Opens the connections `herd` takes ([`connection_cap`]: 1000 where its open-file limit
/// allows), silent but for the last, which asks for a status once: all are in when it is
/// answered. The oldest comes first.
fn fill_the_control_socket(herd: &Herd) -> Vec<UnixStream> {
    let (soft, hard) = herd_sys::process::nofile_limit().unwrap();
    if soft < 2100 && hard > soft {
        herd_sys::process::set_nofile_limit(hard.min(4096), hard).unwrap();
    }
    let control = herd.control();
    let mut open: Vec<UnixStream> = (0..connection_cap(herd))
        .map(|_| UnixStream::connect(&control).unwrap())
        .collect();
    let last = open.last_mut().unwrap();
    last.write_all(STATUS).unwrap();
    let status = answer(last);
    assert_eq!(status["ok"], true, "{status}");
    open
}

/// Whether herd has closed `stream` (it reads as ended), without waiting.
pub(crate) fn closed(stream: &UnixStream) -> bool {
    use std::os::unix::io::AsFd;
    herd_sys::fd::wait_readable(&[stream.as_fd()], Some(std::time::Duration::ZERO)).unwrap()
}

/// Opens 160 connections to the control socket of `herd`, which runs at an open-file limit of
/// 128 (`prlimit --nofile=128:128`), raising this process's own limit if need be: the last
/// asks for the status and is answered, silent connections having given way for it.
fn crowd_at_herds_file_limit(herd: &Herd) -> Vec<UnixStream> {
    let control = herd.control();
    let (soft, hard) = herd_sys::process::nofile_limit().unwrap();
    if soft < 400 && hard > soft {
        herd_sys::process::set_nofile_limit(hard.min(4096), hard).unwrap();
    }
    let mut open: Vec<UnixStream> = (0..160)
        .map(|_| UnixStream::connect(&control).unwrap())
        .collect();
    let last = open.last_mut().unwrap();
    last.write_all(STATUS).unwrap();
    let status = answer(last);
    assert_eq!(status["ok"], true, "{status}");
    open
}

/// Idle control clients leave herd the files it needs to restart a worker: at an open-file
/// limit of 128, herd takes 16 control connections (an eighth), and a newcomer past them makes
/// the one that has waited longest give way. Was: herd took connections until it had no file
/// left (1000 is the cap), and the worker killed meanwhile was not restarted ("herd is out of
/// file descriptors: cannot create the pipe to start the worker") until they idled out.
#[test]
fn idle_control_clients_leave_herd_the_files_to_restart_a_worker() {
    let mut prlimit = Command::new("prlimit");
    prlimit.arg("--nofile=128:128").arg(HERD);
    let herd = Herd::start_via(prlimit, &ONE_SLEEPER);
    let ready = herd.wait_for_event("worker_ready", &[]);
    let open = crowd_at_herds_file_limit(&herd);
    assert!(closed(&open[0]), "the oldest connection gave way");
    let pid = ready["pid"].as_i64().unwrap() as i32;
    // SAFETY: kill sends a signal to the worker this test's herd started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    herd.wait_for_event("worker_exited", &[("pid", pid.into())]);
    let started = herd.wait_for_events("worker_started", 2, &[]);
    assert_ne!(started[1]["pid"], pid, "{started:?}");
    herd.wait_for_events("worker_ready", 2, &[]);
    let logged = format!("{:?}", herd.lines());
    assert!(!logged.contains("out of file descriptors"), "{logged}");
    drop(open);
}

/// At herd's open-file limit (here 128, reached before the 1000 connections it takes), a
/// newcomer still gets in at once: the connection that has waited longest gives way, as at
/// the connection limit, instead of the newcomer waiting in the socket's backlog until the
/// silent ones idle out (30 s).
#[test]
fn a_newcomer_gets_in_when_silent_connections_hold_all_of_herds_files() {
    let mut prlimit = Command::new("prlimit");
    prlimit.arg("--nofile=128:128").arg(HERD);
    let herd = Herd::start_via(prlimit, &ONE_SLEEPER);
    wait_status(&herd, "the worker ready", |s| s["ready"] == 1);
    let open = crowd_at_herds_file_limit(&herd);
    assert!(closed(&open[0]), "the oldest connection gave way");
    let (code, out, err) = herd.ctl(&["status"]);
    assert_eq!(code, 0, "herd status: {out}{err}");
}

/// A herd with [`ONE_SLEEPER`]'s worker, ready, at an open-file limit of `files` if given
/// (`prlimit`), whose control socket uid 65534 can reach (its directory is 0711) but may not
/// use (`--control-allow-uid 4000`).
pub(crate) fn herd_nobody_may_use(files: Option<u32>) -> Herd {
    let args = [
        &["run", "--control-allow-uid", "4000"][..],
        &ONE_SLEEPER[1..],
    ]
    .concat();
    let herd = match files {
        Some(files) => {
            let mut prlimit = Command::new("prlimit");
            prlimit.arg(format!("--nofile={files}:{files}")).arg(HERD);
            Herd::start_via(prlimit, &args)
        }
        None => Herd::start(&args),
    };
    wait_status(&herd, "the worker ready", |s| s["ready"] == 1);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(herd.dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    herd
}

/// Connects to `control` as uid and gid 65534 and asks for the status: what it was told.
pub(crate) fn status_as_nobody(control: &str) -> String {
    use std::os::unix::process::CommandExt;
    let denied = Command::new(HERD)
        .args(["status", "--json", "--control", control])
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    String::from_utf8_lossy(&denied.stderr).into_owned()
}

/// At herd's open-file limit (128) a newcomer whose uid may not use herd is refused without
/// making any connection give way: herd accepts it on the fd it keeps in reserve and checks it
/// first. One that may use herd still gets in, a silent connection giving way for it.
#[test]
fn at_herds_open_file_limit_a_refused_newcomer_makes_no_connection_give_way() {
    if !root_or_skip("connecting as another uid needs root") {
        return;
    }
    let herd = herd_nobody_may_use(Some(128));
    let control = herd.control();
    let open = crowd_at_herds_file_limit(&herd);
    let gone = |open: &[UnixStream]| open.iter().filter(|s| closed(s)).count();
    let before = gone(&open);

    let stderr = status_as_nobody(&control);
    assert!(stderr.contains("permission_denied"), "{stderr}");
    assert_eq!(
        gone(&open),
        before,
        "a connection gave way for a refused newcomer"
    );
    let (code, out, err) = herd.ctl(&["status"]);
    assert_eq!(code, 0, "herd status: {out}{err}");
    assert_eq!(gone(&open), before + 1, "one connection gave way");
}

/// With every connection herd takes open, a newcomer whose uid may not use herd is refused without
/// making the connection that has waited longest close first.
#[test]
fn a_newcomer_that_may_not_use_herd_makes_no_connection_give_way() {
    if !root_or_skip("connecting as another uid needs root") {
        return;
    }
    let herd = herd_nobody_may_use(None);
    let control = herd.control();
    let open = fill_the_control_socket(&herd);

    let stderr = status_as_nobody(&control);
    assert!(stderr.contains("permission_denied"), "{stderr}");
    assert!(
        !closed(&open[0]),
        "the oldest connection gave way for a refused newcomer"
    );
    // It still gives way for a newcomer that may use herd.
    let (code, out, err) = herd.ctl(&["status"]);
    assert_eq!(code, 0, "herd status: {out}{err}");
    assert!(closed(&open[0]), "the oldest connection gave way");
}

/// With every connection herd takes open, a newcomer for which the connection that has waited
/// longest is told to give way just as that one's request comes gets the next one's place at
/// once, not `busy` after a second. herd is paused while the newcomer connects and then the oldest
/// asks, so that it meets the newcomer first.
#[test]
fn a_newcomer_gets_the_next_place_when_the_oldest_asks_as_it_is_told_to_give_way() {
    let herd = Herd::start(&ONE_SLEEPER);
    wait_status(&herd, "the worker ready", |s| s["ready"] == 1);
    let control = herd.control();
    let mut open = fill_the_control_socket(&herd);

    let pause = paused(&herd);
    let mut newcomer = UnixStream::connect(&control).unwrap();
    newcomer.write_all(STATUS).unwrap();
    open[0].write_all(STATUS).unwrap();
    drop(pause);

    let status = answer(&newcomer);
    assert_eq!(status["ok"], true, "the newcomer: {status}");
    let status = answer(&open[0]);
    assert_eq!(status["ok"], true, "the oldest, which asked: {status}");
    assert!(closed(&open[1]), "the next oldest gave way");
}

/// `count` connections to `control` made as uid and gid 65534: the credentials a connection
/// carries are its connecting thread's, so a thread of its own changes its ids (the raw
/// system calls change one thread's, where libc's change every thread's).
fn connected_as_nobody(control: &str, count: usize) -> Vec<UnixStream> {
    let control = control.to_owned();
    std::thread::spawn(move || {
        // SAFETY: plain system calls on this thread's own credentials.
        let ids = unsafe {
            libc::syscall(libc::SYS_setresgid, 65534, 65534, 65534) == 0
                && libc::syscall(libc::SYS_setresuid, 65534, 65534, 65534) == 0
        };
        assert!(
            ids,
            "cannot become uid 65534: {}",
            std::io::Error::last_os_error()
        );
        (0..count)
            .map(|_| UnixStream::connect(&control).unwrap())
            .collect()
    })
    .join()
    .unwrap()
}

/// At herd's open-file limit (64), a crowd of connections from a uid that may not use herd,
/// more than herd has files free, waiting in the backlog ahead of one that may use it: the
/// refused ones are answered and closed as they come, so the one let in is answered `ok`, not
/// `busy` because every file was held by refusals still on their way out. herd is paused
/// while they connect, so that it meets them all at once.
#[test]
fn at_herds_open_file_limit_a_crowd_of_refused_uids_keeps_no_allowed_client_out() {
    if !root_or_skip("connecting as another uid needs root") {
        return;
    }
    let herd = herd_nobody_may_use(Some(64));
    let control = herd.control();

    let pause = paused(&herd);
    let open = std::fs::read_dir(format!("/proc/{}/fd", herd.pid()))
        .unwrap()
        .count();
    let refused = connected_as_nobody(&control, 64usize.saturating_sub(open) + 10);
    let mut allowed = UnixStream::connect(&control).unwrap();
    allowed.write_all(STATUS).unwrap();
    drop(pause);

    let status = answer(&allowed);
    assert_eq!(status["ok"], true, "{status}");
    for stream in &refused {
        let told = answer(stream);
        assert_eq!(told["error"]["code"], "permission_denied", "{told}");
    }
}
