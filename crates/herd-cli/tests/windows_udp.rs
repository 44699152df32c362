//! UDP and IPv6 on Windows, run under Wine by scripts/check-windows.sh: herd.exe shares a UDP
//! socket, a TCP socket on 127.0.0.1 and one on [::1] with 2 workers, which take them by name
//! (`take_udp_socket`, `take_tcp_listener`) and answer from distinct processes.
#![cfg(windows)]

use std::collections::BTreeSet;
use std::io::Write;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

mod windows_support;

use windows_support::{ask, this_test_as_worker, unique_name, Herd, TIMEOUT};

/// With `HERD_TEST_WORKER` set, this test binary is the worker herd runs: it answers each
/// datagram on `dns` and each connection on `http` and `v6` with its pid.
#[test]
fn worker() {
    if std::env::var_os("HERD_TEST_WORKER").is_none() {
        return;
    }
    let mut sockets = herd::Sockets::from_env().expect("sockets from herd");
    if let Some(stop) = herd::stop_requested().expect("the stop event") {
        std::thread::spawn(move || {
            stop.wait();
            std::process::exit(0);
        });
    }
    let pid = std::process::id();
    let udp = sockets.take_udp_socket("dns").unwrap().expect("named dns");
    std::thread::spawn(move || {
        let mut buffer = [0; 512];
        while let Ok((_, from)) = udp.recv_from(&mut buffer) {
            let _ = udp.send_to(format!("worker pid {pid}\n").as_bytes(), from);
        }
    });
    let v6 = sockets.take_tcp_listener("v6").unwrap().expect("named v6");
    std::thread::spawn(move || {
        for mut stream in v6.incoming().flatten() {
            let _ = writeln!(stream, "worker pid {pid}");
        }
    });
    let http = sockets
        .take_tcp_listener("http")
        .unwrap()
        .expect("named http");
    for mut stream in http.incoming().flatten() {
        let _ = writeln!(stream, "worker pid {pid}");
    }
}

/// The pid in a worker's answer.
fn pid_in(answer: &str) -> u32 {
    answer
        .trim_end()
        .strip_prefix("worker pid ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected answer {answer:?}"))
}

/// Sends datagrams to `addr` until 2 different workers have answered.
fn udp_answers(addr: &str) -> BTreeSet<u32> {
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let deadline = Instant::now() + TIMEOUT;
    let mut pids = BTreeSet::new();
    let mut buffer = [0; 512];
    while pids.len() < 2 {
        assert!(Instant::now() < deadline, "only {pids:?} answered over UDP");
        client.send_to(b"who\n", addr).unwrap();
        if let Ok((n, _)) = client.recv_from(&mut buffer) {
            pids.insert(pid_in(&String::from_utf8_lossy(&buffer[..n])));
        }
    }
    pids
}

#[test]
fn udp_and_ipv6_sockets_are_served_by_distinct_workers() {
    // `http` first: the harness waits until it listens.
    let run = [
        "-w",
        "2",
        "-b",
        "http=127.0.0.1:0",
        "-b",
        "dns=udp://127.0.0.1:0",
        "-b",
        "v6=[::1]:0",
    ];
    let herd = Herd::start_named(&unique_name(), &run, &this_test_as_worker());
    let addresses: Vec<(String, String)> = (0..2)
        .map(|_| {
            let listening = herd.wait_for("listening");
            let name = listening["name"].as_str().unwrap().to_string();
            (name, listening["address"].as_str().unwrap().to_string())
        })
        .collect();
    let address = |name: &str| {
        let found = addresses.iter().find(|(n, _)| n == name);
        found
            .unwrap_or_else(|| panic!("no {name} in {addresses:?}"))
            .1
            .clone()
    };
    let (dns, v6) = (address("dns"), address("v6"));
    // A UDP socket's address is logged with its scheme.
    let dns = dns.strip_prefix("udp://").unwrap_or(&dns).to_string();
    assert!(v6.starts_with("[::1]:"), "{v6}");
    let over_udp = udp_answers(&dns);
    let over_tcp = herd.answers(2, 2);
    assert_eq!(over_udp, over_tcp, "the same 2 workers serve both sockets");
    let over_v6: BTreeSet<u32> = (0..4).map(|_| ask(&v6)).collect();
    assert!(over_v6.is_subset(&over_tcp), "{over_v6:?} {over_tcp:?}");
    herd.stop();
}
