//! `--bind ...,nonblocking` on Windows, under Wine: herd puts the socket in non-blocking mode
//! before any worker starts, and the descriptor each worker rebuilds from its
//! `WSADuplicateSocketW` block shares that mode: `accept` with nothing queued fails at once
//! with `WSAEWOULDBLOCK`, though the worker never set the mode itself. Without the mode the
//! worker waits in that `accept` and never says `READY=1`.
#![cfg(windows)]

use std::io::Write;

mod windows_support;

use windows_support::{answer, Herd};

/// `WSAEWOULDBLOCK`.
const WOULD_BLOCK: i32 = 10035;

/// With `HERD_TEST_WORKER` set, this test binary is the worker herd runs. Before it says
/// `READY=1` (so before the test connects: nothing is queued), it accepts once on the socket
/// `http` as it received it; then it answers each connection with `worker pid N first accept
/// CODE` (the Winsock error that accept gave, or 0 if it took a connection).
#[test]
fn worker() {
    let Some(listener) = windows_support::worker_listener() else {
        return;
    };
    let first = match listener.accept() {
        Ok(_) => 0,
        Err(e) => e.raw_os_error().unwrap_or(-1),
    };
    let stop = herd::stop_requested().expect("the stop event");
    herd::notify::ready().expect("READY=1");
    windows_support::serve_until_stopped(listener, stop, |mut stream| {
        let pid = std::process::id();
        let _ = writeln!(stream, "worker pid {pid} first accept {first}");
    });
}

#[test]
fn a_nonblocking_socket_is_non_blocking_in_every_worker() {
    let herd = Herd::start_on(
        "http=127.0.0.1:0,nonblocking",
        &["-w", "2", "--ready", "notify"],
    );
    herd.wait_for("worker_ready");
    herd.wait_for("worker_ready");
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..50 {
        let answer = answer(&herd.addr);
        let first = answer
            .trim_end()
            .rsplit(' ')
            .next()
            .and_then(|c| c.parse().ok());
        assert_eq!(first, Some(WOULD_BLOCK), "{answer:?}");
        seen.insert(answer);
        if seen.len() == 2 {
            break;
        }
    }
    herd.stop();
}

/// The old herd's socket is non-blocking and the new herd's `--bind` does not say
/// `nonblocking`: Windows cannot tell a socket's mode, so herd cannot refuse the mismatch as
/// it does on Unix, and it never makes a socket blocking (the old herd's workers still serve
/// on it): the new workers get the socket non-blocking.
#[test]
fn a_socket_taken_over_without_nonblocking_stays_non_blocking() {
    let old = Herd::start_on(
        "http=127.0.0.1:0,nonblocking",
        &["-w", "1", "--ready", "notify"],
    );
    old.wait_for("worker_ready");
    let bind = format!("http={}", old.addr);
    let new = Herd::take_over(&old, &["-w", "1", "--ready", "notify", "-b", &bind]);
    new.wait_for("takeover_complete");
    new.wait_for("old_herd_stopped");
    let answer = answer(&new.addr);
    assert!(
        answer
            .trim_end()
            .ends_with(&format!(" first accept {WOULD_BLOCK}")),
        "{answer:?}"
    );
    new.stop();
}
