//! Arguments at their limits: huge, zero and negative numbers, every signal name, and the
//! messages that say what was wrong with them.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;

use serde_json::Value;

use crate::util::*;

/// `herd run ARGS -b 127.0.0.1:0 -- no-such-herd-command`: the command does not exist, so an
/// option that is wrongly accepted shows up as "not found" instead of the expected message.
fn run_fails(options: &[&str], needle: &str) -> String {
    let mut args = vec!["run"];
    args.extend_from_slice(options);
    args.extend_from_slice(&["-b", "127.0.0.1:0", "--", "no-such-herd-command"]);
    assert_fails(&args, USAGE, needle)
}

/// `--group` without `--user` got clap's "required arguments were not provided: --user",
/// which a config file's `group` could not place at its line.
#[test]
fn a_group_without_a_user_says_so() {
    run_fails(&["--group", "root"], "--group root needs --user");
}

#[test]
fn huge_durations_are_refused() {
    let huge = "18446744073709551615";
    for option in ["--grace", "--ready-timeout", "--watchdog"] {
        run_fails(&[option, huge], "at most 365 days");
        run_fails(&[option, "366days"], "at most 365 days");
    }
    run_fails(&["--ready", &format!("delay={huge}")], "at most 365 days");
    assert_fails(&["stop", "--grace", huge], USAGE, "at most 365 days");
    assert_fails(&["upgrade", "--timeout", huge], USAGE, "at most 365 days");
}

#[test]
fn huge_numbers_are_called_too_large() {
    let huge = "18446744073709551615";
    run_fails(
        &["--max-surge", huge],
        "is too large: the maximum is 4294967295",
    );
    run_fails(
        &["--nofile", "18446744073709551616"],
        "is too large: the maximum is",
    );
    run_fails(
        &["--control-allow-uid", huge],
        "is too large: the maximum is 4294967295",
    );
    run_fails(&["-w", huge], "too large: at most 4096 workers");
    run_fails(&["--rlimit", &format!("as={huge}0")], "is too large");
    run_fails(
        &["-b", &format!("127.0.0.1:0,backlog={huge}")],
        "is too large",
    );
    assert_fails(&["signal", "HUP", "--worker", huge], USAGE, "is too large");
}

#[test]
fn signals_the_c_library_keeps_are_refused() {
    for n in ["32", "33"] {
        assert_fails(&["signal", n], USAGE, "reserved by the C library");
    }
    // Real-time signals a worker may use parse: no herd runs there (exit 1, not 2).
    for name in ["34", "RTMIN", "SIGRTMIN+1", "rtmax-2", "64"] {
        let (code, stderr) = herd_output(&["signal", name]);
        assert_eq!(code, FAILURE, "{name}: {stderr}");
        assert!(stderr.contains("no herd is running"), "{name}: {stderr}");
    }
    assert_fails(&["signal", "RTMAX+1"], USAGE, "RTMIN+N or RTMAX-N");
}

#[test]
fn settings_that_never_work_are_refused() {
    run_fails(&["--watchdog", "0"], "must be positive");
    // Workers got WATCHDOG_USEC=0 and were killed as soon as they were ready, again and again;
    // at 1ms (accepted until then) too, as no worker pings that often in time.
    run_fails(&["--watchdog", "999us"], "'999us' is too short");
    run_fails(&["--watchdog", "1ns"], "give at least 100ms");
    run_fails(&["--watchdog", "1ms"], "'1ms' is too short");
    run_fails(
        &["--watchdog", "99ms"],
        "a worker pings at half the interval",
    );
    run_fails(&["--ready-timeout", "0s"], "must be positive");
    run_fails(&["--nofile", "0"], "at least 1");
    run_fails(&["--rlimit", "nofile=0"], "nofile=0");
    run_fails(&["--rlimit", "cpu=0"], "no CPU time");
    run_fails(
        &["--rlimit", "as=1"],
        "as=1: every worker would die at start",
    );
    run_fails(&["--rlimit", "data=1"], "at least 16777216 bytes");
    run_fails(&["--rlimit", "stack=1"], "at least 65536 bytes (64 KiB)");
    run_fails(&["--stop-signal", "STOP"], "SIGSTOP pauses it");
    run_fails(&["--stop-signal", "SIGSTOP"], "cannot be caught");
    for pauses in ["TSTP", "SIGTTIN", "ttou"] {
        run_fails(&["--stop-signal", pauses], "pauses it instead of ending it");
    }
    for ignored in ["CHLD", "SIGCONT", "URG", "WINCH", "23"] {
        run_fails(&["--stop-signal", ignored], "is ignored");
    }
}

/// `herd logs -n` says in one line what is wrong with its value and what to give instead,
/// without calling 0 positive.
#[test]
fn a_wrong_number_of_log_lines_says_what_to_give() {
    for (value, needle) in [
        ("-1", "the number of lines must be 0 or more"),
        ("x", "the number of lines is a whole number, 0 or more"),
        ("4294967296", "the number of lines is at most 4294967295"),
    ] {
        for option in ["-n", "--lines"] {
            let stderr = assert_fails(&["logs", option, value], USAGE, needle);
            assert!(!stderr.contains("positive"), "{stderr}");
            assert!(stderr.contains("leave -n out"), "{stderr}");
        }
    }
}

#[test]
fn negative_numbers_are_called_negative() {
    for (args, needle) in [
        (&["run", "-w", "-1"][..], "must be positive"),
        (&["run", "--umask", "-1"], "must be positive"),
        (&["run", "--user", "-1"], "must be positive"),
        (&["run", "--nofile", "-1"], "must be positive"),
        (&["run", "--max-surge", "-1"], "must be positive"),
        (
            &["run", "--starting-nice", "-5"],
            "auto, off, idle, or a number from 1 to 19",
        ),
        (&["run", "--control-allow-uid", "-1"], "must be positive"),
        (&["run", "--grace", "-1"], "cannot be negative"),
    ] {
        let mut args = args.to_vec();
        args.extend_from_slice(&["-b", "127.0.0.1:0", "--", "true"]);
        let stderr = assert_fails(&args, USAGE, needle);
        assert!(!stderr.contains("'-- -1'"), "{stderr}");
    }
    let stderr = assert_fails(
        &["signal", "KILL", "--worker", "-1"],
        USAGE,
        "slots are numbered from 0",
    );
    assert!(!stderr.contains("'-- -1'"), "{stderr}");
}

/// `-0` is 0 on every command line, as `herd logs -n -0` was: `herd logs --worker -0` was
/// refused ("slots are numbered from 0"), `--control-owner`, `--max-memory` and
/// `--max-lifetime` took it for an unknown flag, and `--max-starting -0` was told to be
/// positive (at least 1) rather than at least 1.
#[test]
fn minus_zero_is_zero_on_every_command_line() {
    // Parsed: what follows is that no herd runs there.
    for args in [
        &["logs", "--worker", "-0"][..],
        &["logs", "-n", "-0"],
        &["signal", "KILL", "--worker", "-0"],
        &["--control-owner", "-0", "status"],
        &["stop", "--grace", "-0"],
    ] {
        assert_fails(args, 1, "no herd is running at");
    }
    for (args, needle) in [
        (
            &["run", "--max-starting", "-0"][..],
            "--max-starting '-0': the value must be at least 1: give a number of workers, or auto",
        ),
        (&["run", "-w", "-0"], "a herd needs at least 1 worker"),
        (
            &["run", "--nofile", "-0"],
            "--nofile '-0': the value must be at least 1",
        ),
        (
            &["run", "--max-surge", "-0"],
            "--max-surge '-0': the value must be at least 1:",
        ),
        (
            &["run", "--max-memory", "-0"],
            "--max-memory '-0' must be from 1M",
        ),
        (
            &["run", "--max-lifetime", "-0"],
            "--max-lifetime '-0' is too short",
        ),
        (
            &["run", "--ready-timeout", "-0"],
            "'-0' is zero: the duration must be positive",
        ),
    ] {
        let mut args = args.to_vec();
        args.extend_from_slice(&["-b", "127.0.0.1:0", "--", "true"]);
        let stderr = assert_fails(&args, USAGE, needle);
        assert!(!stderr.contains("positive (at least"), "{stderr}");
    }
}

#[test]
fn scale_at_the_limits_of_the_integers() {
    let herd = sleepers(&["-w", "2"]);
    herd.started(2);
    for target in [
        "+9223372036854775807",
        "-9223372036854775808",
        "+99999999999999999999",
    ] {
        let (code, _, stderr) = herd.ctl(&["scale", target]);
        assert_eq!(code, USAGE, "{target}: {stderr}");
        assert!(
            stderr.contains("at most 4096 workers"),
            "{target}: {stderr}"
        );
    }
    // A raw client can send any i64.
    let ask = |line: &str| -> Value {
        let mut s = UnixStream::connect(herd.control()).unwrap();
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        s.write_all(line.as_bytes()).unwrap();
        let mut answer = String::new();
        BufReader::new(&s).read_line(&mut answer).unwrap();
        serde_json::from_str(&answer).unwrap()
    };
    let min = ask(&format!(
        "{{\"version\":1,\"command\":\"scale\",\"delta\":{}}}\n",
        i64::MIN
    ));
    assert_eq!(min["error"]["code"], "invalid_argument", "{min}");
    assert_eq!(
        min["error"]["message"],
        "cannot remove 9223372036854775808 of 2 workers: remove at most 2 (-2), or give the \
         number to run (herd scale N)",
        "{min}"
    );
    let max = ask(&format!(
        "{{\"version\":1,\"command\":\"scale\",\"delta\":{}}}\n",
        i64::MAX
    ));
    assert_eq!(max["error"]["code"], "invalid_argument", "{max}");
    assert!(
        max["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 4096 workers"),
        "{max}"
    );
    let huge = ask("{\"version\":1,\"command\":\"stop\",\"grace_ms\":18446744073709551615}\n");
    assert_eq!(huge["error"]["code"], "invalid_argument", "{huge}");
    // herd is unharmed and unchanged.
    let status = herd.status();
    assert!(status["desired"] == 2 && status["running"] == 2, "{status}");
    let (code, stdout, stderr) = herd.ctl(&["scale", "-1"]);
    assert_eq!(
        (code, stdout.trim()),
        (0, "scaled from 2 to 1 worker"),
        "{stderr}"
    );
}

#[test]
fn every_signal_has_its_name() {
    // core=0: the signals below dump core by default.
    let herd = sleepers(&["-w", "1", "--rlimit", "core=0"]);
    for (n, name) in ["SEGV", "BUS", "XCPU", "SYS"].into_iter().enumerate() {
        let pid = herd.started(n + 1)[n].1;
        let (code, stdout, stderr) = herd.ctl(&["signal", name, "--worker", "0"]);
        assert_eq!(code, 0, "{name}: {stderr}");
        assert_eq!(stdout.trim(), format!("sent SIG{name} to 1 worker"));
        let exit = herd.wait_event("the signalled exit", |e| is_exit(e) && e["pid"] == pid);
        assert!(
            exit["message"]
                .as_str()
                .unwrap()
                .contains(&format!("killed by SIG{name}")),
            "{exit}"
        );
    }
    for name in [
        "ILL", "FPE", "XFSZ", "URG", "TRAP", "VTALRM", "PROF", "IO", "PWR", "STKFLT",
    ] {
        // No herd runs at this control socket: the name parsed (exit 1, not 2).
        let (code, stderr) = herd_output(&["signal", name]);
        assert_eq!(code, FAILURE, "{name}: {stderr}");
        assert!(stderr.contains("no herd is running"), "{name}: {stderr}");
    }
}

/// A control socket path of exactly `len` bytes in `dir`.
fn control_of_len(dir: &std::path::Path, len: usize) -> String {
    let base = format!("{}/", dir.display());
    let pad = len - base.len() - ".sock".len();
    format!("{base}{}.sock", "c".repeat(pad))
}

#[test]
fn long_control_paths_are_checked_once() {
    let dir = tempfile::tempdir().unwrap();
    // 94 bytes leave room for NAME.PID.notify with any pid; 95 never do.
    let long = control_of_len(dir.path(), 95);
    let stderr = run_fails(&["--control", &long], "at most 94 bytes");
    assert!(
        stderr.contains(&format!("the control socket path {long} is 95 bytes")),
        "{stderr}"
    );
    assert!(!stderr.contains(".notify is longer"), "{stderr}");
    let longer = control_of_len(dir.path(), 120);
    assert_fails(&["status", "--control", &longer], USAGE, "is 120 bytes");
    let fits = control_of_len(dir.path(), 94);
    let herd = sleepers(&["--control", &fits, "-w", "1"]);
    herd.started(1);
    assert!(std::path::Path::new(&fits).exists());
}

#[test]
fn an_address_given_twice_is_named_so() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let sock = dir.path().join("a.sock");
    let unix = format!("unix:{}", sock.display());
    let same = format!("127.0.0.1:{port}");
    let any = format!(":{port}");
    // The same file written another way: through a symlink to its directory.
    std::os::unix::fs::symlink(dir.path(), dir.path().join("link")).unwrap();
    let linked = format!("unix:{}", dir.path().join("link/a.sock").display());
    for (first, second) in [
        (same.as_str(), same.as_str()),
        (any.as_str(), same.as_str()),
        (unix.as_str(), unix.as_str()),
        (unix.as_str(), linked.as_str()),
    ] {
        let first = format!("a={first}");
        let stderr = assert_fails(
            &["run", "-b", &first, "-b", second, "--", "true"],
            USAGE,
            "given twice",
        );
        assert!(
            stderr.contains(&first) && !stderr.contains("stop the other server"),
            "{stderr}"
        );
        assert!(!sock.exists(), "socket file left behind");
    }
    // Another program's socket is still "in use", and that program (this test) is named.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let stderr = assert_fails(
        &["run", "-b", "127.0.0.1:0", "-b", &addr, "--", "true"],
        FAILURE,
        "already in use by ",
    );
    let holder = format!(
        "(pid {}): stop it or choose another port",
        std::process::id()
    );
    assert!(stderr.contains(&holder), "{stderr}");
}

#[test]
fn a_name_that_is_not_one_is_called_a_name() {
    let stderr = run_fails(&["-b", "ünï=127.0.0.1:80"], "invalid socket name 'ünï'");
    assert!(stderr.contains("letters, digits"), "{stderr}");
    run_fails(&["-b", "my app=:0"], "invalid socket name 'my app'");
}

#[test]
fn misnamed_options_get_the_right_message() {
    fails_within(
        &[
            "run",
            "--chdir",
            "/etc/passwd",
            "-b",
            "127.0.0.1:0",
            "--",
            "true",
        ],
        None,
        &["--chdir /etc/passwd is a file, not a directory"],
    );
    fails_within(
        &[
            "run",
            "--user",
            "3999999",
            "-b",
            "127.0.0.1:0",
            "--",
            "true",
        ],
        None,
        &["no user has uid 3999999", "--group"],
    );
    fails_within(
        &["run", "-b", "[fe80::1]:80", "--", "true"],
        None,
        &["link-local", "[fe80::1%eth0]:80"],
    );
    // --metrics takes the forms --bind takes.
    for metrics in [":0", "localhost:0", "127.0.0.1:0"] {
        let herd = sleepers(&["-w", "1", "--metrics", metrics]);
        let event = herd.wait_for_event("metrics_ready", &[]);
        let port = event["address"]
            .as_str()
            .unwrap()
            .rsplit(':')
            .next()
            .unwrap()
            .to_string();
        let text = get(&format!("127.0.0.1:{port}"), "/metrics").unwrap();
        assert!(text.contains("herd_"), "{metrics}: {text}");
    }
}

#[test]
fn link_local_addresses_bind_with_their_scope() {
    // A link-local address of this machine, with its interface, if it has one.
    let Some((ip, interface)) = std::fs::read_to_string("/proc/net/if_inet6")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 6 && f[0].starts_with("fe80")).then(|| {
                let groups: Vec<String> = f[0]
                    .as_bytes()
                    .chunks(4)
                    .map(|c| String::from_utf8_lossy(c).into())
                    .collect();
                let ip: std::net::Ipv6Addr = groups.join(":").parse().unwrap();
                (ip, f[5].to_string())
            })
        })
    else {
        eprintln!("skipped: no link-local IPv6 address here");
        return;
    };
    let spec = format!("ll=[{ip}%{interface}]:0");
    let herd = Herd::start(&["run", "-w", "1", "-b", &spec, "--", "sleep", "1000"]);
    let address = herd.address("ll");
    assert!(address.starts_with(&format!("[{ip}%")), "{address}");
}

#[test]
fn a_stopped_herd_is_named_at_once() {
    let herd = sleepers(&["-w", "1"]);
    herd.started(1);
    herd.signal(libc::SIGSTOP);
    wait_until("herd to be stopped", || match proc_state(herd.pid()) {
        Some('T') => Ok(()),
        state => Err(state),
    });
    let started = std::time::Instant::now();
    let (code, _, stderr) = herd.ctl(&["status"]);
    let took = started.elapsed();
    herd.signal(libc::SIGCONT);
    assert_eq!(code, FAILURE, "{stderr}");
    assert!(
        stderr.contains("is stopped") && stderr.contains(&format!("kill -CONT {}", herd.pid())),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(took < std::time::Duration::from_secs(5), "took {took:?}");
    // Resumed, it answers again.
    assert_eq!(herd.status()["desired"], 1);
}
