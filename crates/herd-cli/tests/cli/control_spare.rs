//! The control socket at herd's open-file limit: a newcomer is served on a file herd keeps in
//! reserve when no connection can give way (see control_crowds.rs for the crowds that can).

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::process::Command;

use crate::control_crowds::{answer, closed, herd_nobody_may_use, status_as_nobody, STATUS};
use crate::util::*;

/// Lowers `herd`'s open-file limit to the lowest fd number it has free, so that it can open
/// nothing: the limit.
fn at_open_file_limit(herd: &Herd) -> i32 {
    let free = lowest_free_fd(herd.pid());
    let limit = format!("--nofile={free}:{free}");
    let lowered = Command::new("prlimit")
        .args(["--pid", &herd.pid().to_string(), &limit])
        .status()
        .unwrap();
    assert!(lowered.success());
    free
}

/// Waits until `herd` holds every file below its open-file `limit` again: the spare and its
/// reserve taken back (a file its sampler holds for a moment is not counted as free).
fn holds_every_file(herd: &Herd, limit: i32) {
    wait_until("herd to hold every file it may", || {
        match lowest_free_fd(herd.pid()) {
            free if free >= limit => Ok(()),
            free => Err(format!("fd {free} is free, below its limit of {limit}")),
        }
    });
}

/// herd's open-file limit lowered to the lowest fd number it has free, so that it can open
/// nothing (its files held by other things than control connections, none of which can give
/// way): a client that may use herd is still served, on the file herd keeps in reserve, not
/// answered `busy` for "too many control connections" when it has none open; and so is the
/// next, once the first has gone. Then herd holds its spare again: the fd is not left lent to
/// an `accept` that waits for someone who never comes (at the limit, accept fails for want of
/// a file whether or not anyone waits).
#[test]
fn at_herds_open_file_limit_with_no_connection_to_give_way_a_client_is_served_on_the_spare() {
    let herd = Herd::start(&ONE_SLEEPER);
    wait_status(&herd, "the worker ready", |s| s["ready"] == 1);
    let limit = at_open_file_limit(&herd);
    for client in ["the first", "the next"] {
        let mut stream = UnixStream::connect(herd.control()).unwrap();
        stream.write_all(STATUS).unwrap();
        let status = answer(&stream);
        assert_eq!(status["ok"], true, "{client}: {status}");
    }
    holds_every_file(&herd, limit);
}

/// At herd's open-file limit, a client that connects and closes before herd takes it, having
/// sent nothing, makes no silent connection give way: it is let go, and the spare taken back.
#[test]
fn at_herds_open_file_limit_a_client_that_left_at_once_makes_no_connection_give_way() {
    if !root_or_skip("connecting as another uid needs root") {
        return;
    }
    let herd = herd_nobody_may_use(None);
    let control = herd.control();
    let first = UnixStream::connect(&control).unwrap();
    let second = UnixStream::connect(&control).unwrap();
    // Answered once both above were taken (one accept loop, in order); then it waits too.
    let probe = UnixStream::connect(&control).unwrap();
    (&probe).write_all(STATUS).unwrap();
    assert_eq!(answer(&probe)["ok"], true);
    at_open_file_limit(&herd);
    // Gone before herd takes it: herd is stopped meanwhile.
    let pid = herd.pid() as i32;
    // SAFETY: kill with herd's pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    drop(UnixStream::connect(&control).unwrap());
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    // Answered once the one that left was taken; refused, it makes no connection give way.
    let stderr = status_as_nobody(&control);
    assert!(stderr.contains("permission_denied"), "{stderr}");
    let gave_way = [&first, &second, &probe].map(closed);
    assert_eq!(gave_way, [false; 3], "a connection gave way for nobody");
}

/// At herd's open-file limit with no connection to give way, while a client served on the
/// spare stays (`herd logs -f`), the next client is answered at once (`busy`: herd has no file
/// to serve it on) instead of waiting unaccepted until a file is free, with herd warning ten
/// times a second that accept failed. Once the first has gone, herd takes its reserve back
/// without waiting for anyone to connect, and a client is served again.
#[test]
fn at_herds_open_file_limit_a_client_that_stays_on_the_spare_leaves_one_to_answer_busy() {
    let herd = Herd::start(&[
        "run",
        "-w",
        "1",
        "-b",
        "127.0.0.1:0",
        "--worker-output",
        "prefix",
        "--",
        "sleep",
        "1000",
    ]);
    wait_status(&herd, "the worker ready", |s| s["ready"] == 1);
    let limit = at_open_file_limit(&herd);
    let mut follows = UnixStream::connect(herd.control()).unwrap();
    follows
        .write_all(b"{\"version\":1,\"command\":\"logs\",\"follow\":true}\n")
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));

    // Answered as it is accepted: the request may find the connection closed already.
    let mut next = UnixStream::connect(herd.control()).unwrap();
    let _ = next.write_all(STATUS);
    let told = answer(&next);
    assert_eq!(told["error"]["code"], "busy", "{told}");
    let message = told["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("open-file limit"), "{told}");

    drop(follows);
    holds_every_file(&herd, limit);
    wait_until("a client served again", || {
        let mut stream = UnixStream::connect(herd.control()).unwrap();
        let _ = stream.write_all(STATUS);
        let status = answer(&stream);
        if status["ok"] == true {
            Ok(())
        } else {
            Err(status)
        }
    });
}
