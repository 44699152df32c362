//! A fleet behind a real load balancer (issue 17): `bench/fleet.py --quick` builds three hosts
//! as network namespaces, each with a herd, and HAProxy in front health-checking `/readyz`;
//! under continuous load it restarts every host in turn, upgrades every host, and kills one
//! herd with SIGKILL, then reports what the load generator and HAProxy counted. Root only.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::util::*;

/// The whole quick scenario may take this long on a loaded machine (it takes about 15 s).
const FLEET_LIMIT: Duration = Duration::from_secs(150);

fn fleet_script() -> String {
    repo().join("bench/fleet.py").display().to_string()
}

/// The load generator (`bench/loadgen`), built if `cargo test` did not build it already.
fn loadgen() -> String {
    let path = Path::new(HERD).with_file_name("herd-loadgen");
    if !path.exists() {
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "--quiet",
                "-p",
                "herd-loadgen",
                "--bin",
                "herd-loadgen",
            ])
            .current_dir(repo())
            .status()
            .unwrap();
        assert!(status.success(), "cannot build herd-loadgen");
    }
    path.display().to_string()
}

/// The network namespaces whose names start with `prefix`.
fn namespaces(prefix: &str) -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| name.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

/// Runs `bench/fleet.py ARGS` to its end (SIGTERM after `limit`: it then cleans up);
/// returns its pid, exit code, stdout and stderr.
fn run_fleet(args: &[&str], limit: Duration) -> (u32, i32, String, String) {
    let mut child = Command::new("python3")
        .arg(fleet_script())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs bench/fleet.py");
    let pid = child.id();
    let read = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = r.read_to_string(&mut text);
            text
        })
    };
    let stdout = read(Box::new(child.stdout.take().unwrap()));
    let stderr = read(Box::new(child.stderr.take().unwrap()));
    let code = wait_child(&mut child, limit, libc::SIGTERM).map_or(-1, |s| s.code().unwrap_or(-1));
    (pid, code, stdout.join().unwrap(), stderr.join().unwrap())
}

fn failed(scenario: &Value) -> u64 {
    let load = &scenario["load"];
    load["requests"].as_u64().unwrap() - load["ok"].as_u64().unwrap()
}

#[test]
fn a_fleet_behind_haproxy_restarts_upgrades_and_survives_a_kill_under_load() {
    if !root_or_skip("the fleet's hosts are network namespaces") {
        return;
    }
    let loadgen = loadgen();
    let args = ["--quick", "--json", "--herd", HERD, "--loadgen", &loadgen];
    let (pid, code, stdout, stderr) = run_fleet(&args, FLEET_LIMIT);
    assert_eq!(code, 0, "bench/fleet.py failed:\n{stderr}");
    assert_eq!(
        namespaces(&format!("herdfleet{pid}-")),
        Vec::<String>::new(),
        "the run's namespaces are gone"
    );
    let results: Value = serde_json::from_str(&stdout).unwrap();
    let (restart, upgrade, kill) = (&results["restart"], &results["upgrade"], &results["kill"]);
    for (name, scenario) in [("restart", restart), ("upgrade", upgrade), ("kill", kill)] {
        assert!(
            scenario["load"]["ok"].as_u64().unwrap() > 0,
            "{name}: load ran: {scenario}"
        );
    }
    assert_eq!(failed(restart), 0, "rolling restart: {restart}");
    for step in restart["steps"].as_array().unwrap() {
        assert_eq!(
            step["serving_when_out"], true,
            "HAProxy took the host out during the drain delay, before herd stopped: {step}"
        );
    }
    assert_eq!(failed(upgrade), 0, "rolling upgrade: {upgrade}");
    for step in upgrade["steps"].as_array().unwrap() {
        // `UP 1/2` (a check failed, the host still in) may happen on a loaded machine.
        let states = step["states"].as_array().unwrap();
        assert!(
            states.iter().all(|s| s.as_str().unwrap().starts_with("UP")),
            "HAProxy kept the host in through its upgrade: {step}"
        );
    }
    // A SIGKILL loses at most the requests the host had taken (HAProxy answers them 502 and
    // counts a response error on that host); connections refused afterwards are retried on
    // another host.
    let lost = kill["response_errors"]["host1"].as_u64().unwrap();
    assert!(failed(kill) <= lost, "SIGKILL: {kill}");
    let load = &kill["load"];
    assert_eq!(
        load["ok"].as_u64().unwrap() + load["http_status"]["502"].as_u64().unwrap_or(0),
        load["requests"].as_u64().unwrap(),
        "only 502s for requests lost with the host: {kill}"
    );
}

#[test]
fn a_fleet_run_cleans_up_what_a_killed_earlier_run_left() {
    if !root_or_skip("the fleet's hosts are network namespaces") {
        return;
    }
    // A pid that is gone names the killed run; a process still sits in its namespace. (Any
    // fleet run cleans it up, the other test's too.)
    let mut gone = Command::new("true").spawn().unwrap();
    gone.wait().unwrap();
    let name = format!("herdfleet{}-lb", gone.id());
    let dir = std::env::temp_dir().join(format!("herdfleet{}-files", gone.id()));
    std::fs::create_dir_all(&dir).unwrap();
    let added = Command::new("ip")
        .args(["netns", "add", &name])
        .status()
        .unwrap();
    assert!(added.success());
    let mut left = Command::new("ip")
        .args(["netns", "exec", &name, "sleep", "1000"])
        .spawn()
        .unwrap();
    // Once it is in the namespace: a cleanup that looks before `ip netns exec` got there
    // finds nothing to kill (the test failed so once, under load).
    wait_until("the process in the namespace", || {
        let out = Command::new("ip")
            .args(["netns", "pids", &name])
            .output()
            .unwrap();
        let pids = String::from_utf8_lossy(&out.stdout).into_owned();
        (!pids.trim().is_empty()).then_some(()).ok_or(pids)
    });
    let (_, code, _, stderr) = run_fleet(&["--cleanup"], TIMEOUT);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(namespaces(&name), Vec::<String>::new());
    assert!(!dir.exists(), "{} is removed", dir.display());
    let status =
        wait_child(&mut left, TIMEOUT, libc::SIGKILL).expect("the process left in it is killed");
    assert_eq!(status.code(), None, "killed by a signal: {status:?}");
}
