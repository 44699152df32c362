//! Orphans: what a worker leaves behind (a daemon in a session of its own) is re-parented to
//! herd, a child subreaper, which lists it, reaps it, and stops it when herd stops.

use std::path::Path;

use serde_json::Value;

use crate::util::*;

/// herd with one worker that, the first time only, starts a daemon per `(name, script)` of
/// `daemons` (each run by `setsid sh -c SCRIPT DIR`, so `$0` is herd's directory and `$$` the
/// daemon's pid, which it writes to the file `name` first), waits for each to be in its own
/// session (its file written), and exits; its successor just sleeps.
fn herd_leaving(daemons: &[(&str, &str)], grace: &str) -> Herd {
    let mut script =
        String::from("dir=$1\nif [ ! -e \"$dir/first\" ]; then\n  touch \"$dir/first\"\n");
    for (name, daemon) in daemons {
        script += &format!(
            "  (setsid sh -c 'echo $$ > \"$0/{name}.tmp\"; mv \"$0/{name}.tmp\" \"$0/{name}\"; {daemon}' \"$dir\" </dev/null >/dev/null 2>&1 &)\n"
        );
    }
    for (name, _) in daemons {
        script += &format!("  while [ ! -e \"$dir/{name}\" ]; do sleep 0.01; done\n");
    }
    script += "  exit 0\nfi\nexec sleep 1000\n";
    Herd::start_with(|dir| {
        std::fs::write(dir.join("worker.sh"), script).unwrap();
        let mut cmd = herd_json();
        cmd.args([
            "run",
            "-w",
            "1",
            "--grace",
            grace,
            "-b",
            "127.0.0.1:0",
            "--",
            "sh",
        ])
        .arg(dir.join("worker.sh"))
        .arg(dir);
        cmd
    })
}

/// The pid a daemon wrote to `name` in herd's directory.
fn daemon_pid(dir: &Path, name: &str) -> u32 {
    wait_until(
        &format!("the daemon to write {name}"),
        || match std::fs::read_to_string(dir.join(name)) {
            Ok(s) => s.trim().parse::<u32>().map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        },
    )
}

/// The pids `herd status` lists as orphans.
fn orphan_pids(status: &Value) -> Vec<u64> {
    let orphans = status["orphans"].as_array().cloned().unwrap_or_default();
    orphans.iter().filter_map(|o| o["pid"].as_u64()).collect()
}

#[test]
fn an_orphan_is_listed_reaped_when_it_exits_and_stopped_with_herd() {
    let mut herd = herd_leaving(
        &[
            ("long", "exec sleep 1000"),
            (
                "short",
                "while [ ! -e \"$0/go\" ]; do sleep 0.05; done; exit 3",
            ),
        ],
        "10s",
    );
    let dir = herd.dir.path().to_path_buf();
    let (long, short) = (daemon_pid(&dir, "long"), daemon_pid(&dir, "short"));
    // Listed as soon as found; the name is the one of the program it runs by the next look.
    let status = wait_status(&herd, "both orphans listed, the long one as sleep", |s| {
        let pids = orphan_pids(s);
        let orphans = s["orphans"].as_array().cloned().unwrap_or_default();
        let sleep = orphans
            .iter()
            .any(|o| o["pid"] == long && o["name"] == "sleep");
        pids.contains(&short.into()) && sleep
    });
    let listed = status["orphans"].as_array().unwrap();
    let entry = listed.iter().find(|o| o["pid"] == long).unwrap();
    assert_eq!(entry["name"], "sleep", "{status}");
    assert!(entry["known_ms"].is_u64(), "{status}");
    herd.wait_for_event("orphan_adopted", &[("pid", long.into())]);
    let (_, table, _) = herd.ctl(&["status"]);
    let row = table.lines().find(|l| l.contains(&format!(" {long} ")));
    assert!(row.is_some_and(|r| r.contains("orphan")), "{table}");
    assert_eq!(parent_of(long), Some(herd.pid()), "re-parented to herd");

    // The short one exits by itself: reaped, no zombie left.
    std::fs::write(dir.join("go"), "").unwrap();
    let exited = herd.wait_for_event("orphan_exited", &[("pid", short.into())]);
    assert!(
        exited["message"]
            .as_str()
            .unwrap_or_default()
            .contains("exit code 3"),
        "{exited}"
    );
    assert_eq!(proc_state(short), None, "reaped, not a zombie");
    wait_status(&herd, "the exited orphan unlisted", |s| {
        orphan_pids(s) == [u64::from(long)]
    });

    // herd stop: the orphan gets the stop signal and is gone before herd exits.
    let (code, _, stderr) = herd.ctl(&["stop"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(herd.wait_exit().code(), Some(0));
    assert_eq!(
        proc_state(long),
        None,
        "gone, and reaped, before herd exited"
    );
    let lines = herd.lines();
    let signalled =
        events(&lines).any(|e| is_event(e, "orphan_signalled", &[("pid", long.into())]));
    assert!(signalled, "{}", last_lines(&lines));
    assert!(!events(&lines).any(|e| e["event"] == "orphan_killed"));
}

#[test]
fn an_orphan_that_ignores_the_stop_signal_is_killed_after_the_grace_period() {
    let mut herd = herd_leaving(&[("stubborn", "trap \"\" TERM; exec sleep 1000")], "1s");
    let dir = herd.dir.path().to_path_buf();
    let stubborn = daemon_pid(&dir, "stubborn");
    wait_status(&herd, "the orphan listed", |s| {
        orphan_pids(s).contains(&stubborn.into())
    });
    let started = std::time::Instant::now();
    herd.signal(libc::SIGTERM);
    herd.wait_for_event("orphan_killed", &[("pid", stubborn.into())]);
    assert_eq!(herd.wait_exit().code(), Some(0));
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(1),
        "not before --grace"
    );
    assert_eq!(
        proc_state(stubborn),
        None,
        "killed and reaped before herd exited"
    );
}

#[test]
fn orphans_are_found_again_after_a_reexec_and_stopped_by_the_new_image() {
    let mut herd = herd_leaving(&[("long", "exec sleep 1000")], "10s");
    let long = daemon_pid(herd.dir.path(), "long");
    wait_status(&herd, "the orphan listed", |s| {
        orphan_pids(s).contains(&long.into())
    });
    let (code, _, stderr) = herd.ctl(&["reexec"]);
    assert_eq!(code, 0, "{stderr}");
    herd.wait_for_events("orphan_adopted", 2, &[("pid", long.into())]);
    wait_status(&herd, "the orphan listed by the new image", |s| {
        orphan_pids(s).contains(&long.into())
    });
    assert_eq!(parent_of(long), Some(herd.pid()), "still herd's child");
    herd.signal(libc::SIGTERM);
    assert_eq!(herd.wait_exit().code(), Some(0));
    assert_eq!(
        proc_state(long),
        None,
        "gone, and reaped, before herd exited"
    );
}

/// The process's parent (`/proc/PID/stat` field 4).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[test]
fn an_orphan_that_holds_a_socket_is_named_with_it() {
    // Two processes left behind: one keeps the worker's socket (fd 3), the other never has it.
    let herd = Herd::start(&[
        "run",
        "-w",
        "1",
        "-b",
        "127.0.0.1:0",
        "--",
        "sh",
        "-c",
        "(sleep 1001 &); (exec 3>&-; sleep 1002 &); exec sleep 1000",
    ]);
    let socket = herd.wait_for_event("listening", &[])["name"].clone();
    let adopted = herd.wait_for_events("orphan_adopted", 2, &[]);
    // An orphan may be adopted between its fork and its exec of `sleep` (its command line
    // still the shell's): looked at until each has exec'd.
    let command_line = |e: &serde_json::Value| {
        let pid = e["pid"].as_u64().unwrap();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        String::from_utf8_lossy(&cmdline).replace('\0', " ")
    };
    let by_argument = |arg: &str| {
        let sleep = format!("sleep {arg}");
        wait_until(&format!("the orphan running {sleep}"), || {
            adopted
                .iter()
                .find(|e| command_line(e).trim_end() == sleep)
                .ok_or_else(|| adopted.iter().map(command_line).collect::<Vec<_>>())
        })
    };
    let (kept, closed) = (by_argument("1001"), by_argument("1002"));
    assert_eq!(kept["sockets"], socket, "{kept}");
    let said = kept["message"].as_str().unwrap();
    let held = format!("it holds socket {}", socket.as_str().unwrap());
    assert!(
        said.contains(&held) && said.contains(&format!("kill {}", kept["pid"])),
        "{kept}"
    );
    assert_eq!(closed["sockets"], "", "{closed}");
    assert!(
        !closed["message"].as_str().unwrap().contains("holds socket"),
        "{closed}"
    );
}

#[test]
fn a_port_kept_by_what_a_killed_herds_workers_left_names_them() {
    // SIGKILL to herd ends its workers (PR_SET_PDEATHSIG), not the children they started,
    // which keep the listening socket: the next herd on the port was told only "in use".
    let mut herd = Herd::start_with(|dir| {
        let mut cmd = herd_json();
        cmd.args(["run", "-w", "1", "-b", "127.0.0.1:0", "--", "sh", "-c"])
            .arg("sleep 1003 >/dev/null 2>&1 & echo $! > \"$0/left\"; exec sleep 1000")
            .arg(dir);
        cmd
    });
    let address = herd.wait_for_event("listening", &[])["address"]
        .as_str()
        .unwrap()
        .to_string();
    let left = daemon_pid(herd.dir.path(), "left");
    herd.signal(libc::SIGKILL);
    herd.wait_exit();
    let stop_it = || {
        let _ = std::process::Command::new("kill")
            .args(["-9", &left.to_string()])
            .status();
    };
    let (code, stderr) = herd_output(&["run", "-b", &address, "--", "sleep", "1"]);
    stop_it();
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!("is already in use by sleep (pid {left})"))
            && stderr.contains("left by a herd's workers")
            && stderr.contains(": stop it or choose another port"),
        "{stderr}"
    );
}

/// A re-exec within the window that held back lines about orphans: the old image said nothing
/// of them (the new one counts afresh), so the count was lost. It is said before re-executing.
#[test]
fn lines_held_back_about_orphans_are_counted_before_a_reexec() {
    let names: Vec<String> = (0..15).map(|i| format!("d{i}")).collect();
    let daemons: Vec<(&str, &str)> = names
        .iter()
        // Without herd's socket (fd 3) once they run: one that holds it is always named.
        .map(|n| (n.as_str(), "exec sleep 1000 3>&-"))
        .collect();
    let mut herd = herd_leaving(&daemons, "10s");
    wait_status(&herd, "15 orphans listed", |s| orphan_pids(s).len() == 15);
    let (code, _, stderr) = herd.ctl(&["reexec"]);
    assert_eq!(code, 0, "{stderr}");
    herd.wait_for_event("reexecuted", &[]);
    let lines = herd.lines();
    let before: Vec<&Value> = events(&lines)
        .take_while(|e| e["event"] != "reexec_started")
        .collect();
    // Each one is either named (10, and any a look found before its `exec` closed herd's
    // socket, which is always named) or counted, before the re-exec.
    let named = before
        .iter()
        .filter(|e| e["event"] == "orphan_adopted")
        .count();
    let counted = before
        .iter()
        .find(|e| e["event"] == "orphan_lines_held")
        .and_then(|e| e["adopted"].as_u64());
    // (All named only if a look found every one before it closed the socket: nothing held.)
    assert_eq!(
        named as u64 + counted.unwrap_or(0),
        15,
        "{}",
        last_lines(&lines)
    );
    herd.signal(libc::SIGTERM);
    assert_eq!(herd.wait_exit().code(), Some(0));
}
