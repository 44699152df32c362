//! Backlogs: a worker that calls `listen` again replaces herd's backlog, which herd shows in
//! `herd status` and `--metrics` and says once in its log; the accept queue in the metrics.

use std::net::TcpStream;

use crate::util::*;

/// A worker that calls `listen(fd, 100)` on its inherited socket and then never accepts.
const RELISTEN: &str = "import socket, time\n\
                        s = socket.socket(fileno=3)\n\
                        s.listen(100)\n\
                        time.sleep(1000)\n";

#[test]
fn a_worker_that_listens_again_is_said_once_and_shown() {
    let herd = Herd::start(&[
        "run",
        "-w",
        "1",
        "--ready",
        "delay=100ms",
        "--min-ready",
        "1s",
        "-b",
        "http=127.0.0.1:0,backlog=150",
        "--",
        "python3",
        "-c",
        RELISTEN,
    ]);
    let said = herd.wait_for_event("backlog_replaced", &[("socket", "http".into())]);
    assert_eq!(said["now"], 100, "{said}");
    let set = said["set"].as_u64().unwrap();
    assert!(set > 100, "{said}");
    let status = wait_status(&herd, "the backlog in force", |s| {
        s["sockets"][0]["queue_limit"] == 100
    });
    assert_eq!(status["sockets"][0]["backlog_set"], set, "{status}");
    let (_, table, _) = herd.ctl(&["status"]);
    assert!(
        table.contains(&format!("0/100 (herd set {set})")),
        "{table}"
    );

    // The next generation listens again with the same value: nothing more is said. (Its
    // workers are ready for --min-ready, 1 s, over which the backlog is read again.)
    let (code, _, stderr) = herd.ctl(&["upgrade"]);
    assert_eq!(code, 0, "{stderr}");
    let lines = herd.lines();
    let times = events(&lines)
        .filter(|e| is_event(e, "backlog_replaced", &[]))
        .count();
    assert_eq!(times, 1, "said once:{}", last_lines(&lines));
}

#[test]
fn connections_nobody_accepts_show_in_the_queue_metric() {
    let herd = Herd::start(&[
        "run",
        "-w",
        "1",
        "--metrics",
        "127.0.0.1:0",
        "-b",
        "http=127.0.0.1:0,backlog=16",
        "--",
        "sleep",
        "1000",
    ]);
    let metrics = metrics_address(&herd);
    let addr = herd.address("http");
    let _waiting: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    wait_until("the queue metric to show 3", || {
        let response = get(&metrics, "/metrics").map_err(|e| e.to_string())?;
        let wanted = [
            "herd_listen_queue_length{socket=\"http\"} 3",
            "herd_listen_backlog{socket=\"http\"} 16",
        ];
        match wanted
            .iter()
            .all(|line| response.lines().any(|l| l == *line))
        {
            true => Ok(()),
            false => Err(response),
        }
    });
}
