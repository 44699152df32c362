//! Which command lines a Windows herd refuses, and how.

use clap::{CommandFactory, FromArgMatches};

use super::*;

/// What [`on_windows`] says of `herd ARGS` (which must parse).
fn verdict<S: AsRef<str>>(args: &[S]) -> Result<(), String> {
    let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    let matches = Cli::command()
        .try_get_matches_from(std::iter::once("herd").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    let cli = Cli::from_arg_matches(&matches).unwrap();
    on_windows(cli, &matches).map(drop)
}

fn refused<S: AsRef<str>>(args: &[S]) -> String {
    let why = verdict(args).expect_err("refused");
    assert!(!why.contains('\n'), "{why}");
    why
}

const RUN: &[&str] = &["run", "-b", "127.0.0.1:0", "--", "worker"];

/// `herd run` with `options` before the bind.
fn run_with<'a>(options: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["run"];
    args.extend_from_slice(options);
    args.extend_from_slice(&RUN[1..]);
    args
}

#[test]
fn what_windows_runs_is_accepted() {
    verdict(RUN).unwrap();
    verdict(&run_with(&[
        "-w", "4", "--chdir", "C:\\app", "--env", "A=1",
    ]))
    .unwrap();
    verdict(&run_with(&[
        "--balance",
        "shared",
        "-b",
        "udp://127.0.0.1:53",
    ]))
    .unwrap();
    verdict(&run_with(&["-b", "http=[::1]:0", "-b", ":8080"])).unwrap();
    verdict(&run_with(&[
        "-b",
        ":0,backlog=64,nodelay",
        "-b",
        "[::]:0,v6only",
    ]))
    .unwrap();
    verdict(&run_with(&["--takeover", "web"])).unwrap();
    verdict(&run_with(&[
        "--max-memory",
        "512M",
        "--max-lifetime",
        "1h,jitter=5m",
    ]))
    .unwrap();
    verdict(&["run", "--takeover", r"\\.\pipe\web", "--", "worker"]).unwrap();
    let mut logged = vec!["--log-level", "debug", "--log-format", "json"];
    logged.extend_from_slice(RUN);
    verdict(&logged).unwrap();
}

#[test]
fn unix_only_options_are_refused_by_name_with_a_reason() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--user", "www"],
            "--user is not available on Windows: workers run as",
        ),
        (
            &["--stop-signal", "INT"],
            "--stop-signal is not available on Windows: ",
        ),
        (
            &["--rlimit", "nofile=10"],
            "--rlimit is not available on Windows: ",
        ),
        (&["--umask", "027"], "--umask is not available on Windows: "),
        (
            &["--compat", "einhorn"],
            "--compat is not available on Windows: einhorn's and Server::Starter's",
        ),
        (
            &["--fdstore"],
            "--fdstore is not available on Windows: the fd store is systemd's",
        ),
        (
            &["--control-allow-uid", "5"],
            "--control-allow-uid is not available",
        ),
    ];
    for (options, expected) in cases {
        let why = refused(&run_with(options));
        assert!(why.starts_with(expected), "{options:?}: {why}");
    }
}

#[test]
fn defaults_are_not_refused_but_the_same_value_given_is() {
    // --stop-signal defaults to TERM: only giving it is refused.
    verdict(RUN).unwrap();
    let why = refused(&run_with(&["--stop-signal", "TERM"]));
    assert!(why.starts_with("--stop-signal "), "{why}");
    for options in [
        &["--grace", "5s", "--max-surge", "2", "--min-ready", "1s"][..],
        &[
            "--ready",
            "notify",
            "--ready-timeout",
            "5s",
            "--watchdog",
            "2s",
        ],
        &["--shm", "c=4096", "--metrics", "127.0.0.1:0", "-w", "2..8"],
        &["--starting-nice", "off"],
        &["--starting-nice", "idle"],
        &["--starting-nice", "12"],
        &["-b", ":0,nonblocking"],
    ] {
        verdict(&run_with(options)).unwrap();
    }
}

#[test]
fn the_control_pipe_is_chosen_by_name_or_path_but_not_by_owner() {
    verdict(&["--name", "web", "run", "-b", ":0", "--", "w"]).unwrap();
    verdict(&["run", "--control", "x", "-b", ":0", "--", "w"]).unwrap();
    let why = refused(&["--control-owner", "0", "run", "-b", ":0", "--", "w"]);
    assert!(why.contains("security descriptor"), "{why}");
}

#[test]
fn the_client_commands_are_accepted_with_the_pipe_they_name() {
    for args in [
        &["status"][..],
        &["status", "--json", "--name", "web"],
        &["--control", r"\\.\pipe\x", "scale", "3"],
        &["scale", "2..5"],
        &["scale", "+1"],
        &["upgrade", "--timeout", "5m"],
        &["stop", "--fast"],
        &["stop", "--grace", "3s"],
        &["signal", "TERM", "--worker", "1"],
        &["signal", "sigint"],
        &["signal", "KILL"],
    ] {
        verdict(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    }
    let why = refused(&["--control-owner", "0", "status"]);
    assert!(why.starts_with("--control-owner is not available"), "{why}");
}

#[test]
fn signals_without_a_windows_meaning_are_refused() {
    for signal in ["HUP", "USR1", "10", "1", "RTMIN+1"] {
        let why = refused(&["signal", signal]);
        assert!(
            why.starts_with(&format!("signal '{signal}' has no meaning on Windows")),
            "{why}"
        );
    }
    assert_eq!(windows_signal("SigTerm"), Ok("TERM"));
    assert_eq!(windows_signal("int"), Ok("INT"));
    assert_eq!(windows_signal("KILL"), Ok("KILL"));
}

#[test]
fn what_unix_users_type_is_a_stop_request_or_a_kill() {
    for (typed, wire) in [
        ("9", "KILL"),
        ("KILL", "KILL"),
        ("SIGKILL", "KILL"),
        ("15", "TERM"),
        ("TERM", "TERM"),
        ("SIGTERM", "TERM"),
        ("stop", "TERM"),
        ("STOP", "TERM"),
        ("2", "INT"),
        ("INT", "INT"),
        ("SIGINT", "INT"),
    ] {
        assert_eq!(windows_signal(typed), Ok(wire), "{typed}");
    }
    for odd in [
        "SIG9", "SIG15", "SIGSTOP", "sig", "", "09", "+9", " 9", "STOP9",
    ] {
        assert!(windows_signal(odd).is_err(), "{odd:?}");
    }
    let why = windows_signal("HUP").unwrap_err();
    assert!(
        why.contains("stop, TERM (15) or INT (2)") && why.contains("KILL (9)"),
        "{why}"
    );
}

#[test]
fn subcommands_not_built_on_windows_are_refused() {
    assert!(refused(&["reexec"]).contains("no exec"));
    assert!(refused(&["reexec"]).contains("herd run --takeover NAME"));
}

#[test]
fn values_windows_cannot_do_are_refused() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--balance", "reuseport"],
            "--balance reuseport is not available",
        ),
        (
            &["-b", "unix:/tmp/s"],
            "--bind 'unix:/tmp/s' is not available on Windows: Unix",
        ),
        (
            &["-b", "systemd"],
            "--bind 'systemd' is not available on Windows: systemd",
        ),
        (
            &["-b", ":0,stdin"],
            "--bind ':0,stdin' is not available on Windows: stdin: a worker's stdin carries",
        ),
        (
            &["--max-memory", "pss=512M"],
            "--max-memory pss= is not available on Windows: Windows has no proportional",
        ),
    ];
    for (options, expected) in cases {
        let why = refused(&run_with(options));
        assert!(why.starts_with(expected), "{options:?}: {why}");
    }
}

/// The worker command that a Windows herd runs for `herd run -b :0 -- ARGS`.
fn command_run(args: &[&str]) -> Vec<String> {
    let mut line = vec!["herd", "run", "-b", ":0", "--"];
    line.extend_from_slice(args);
    let matches = Cli::command().try_get_matches_from(line).unwrap();
    let cli = Cli::from_arg_matches(&matches).unwrap();
    let Command::Run(args) = on_windows(cli, &matches).unwrap().command else {
        panic!("not a run");
    };
    let words = args.command.into_iter().map(|a| a.into_string().unwrap());
    words.collect()
}

#[test]
fn templates_in_the_command_are_refused() {
    for template in ["--port={fd:http}", "{worker}", "app-{generation}.pid"] {
        let why = refused(&["run", "-b", ":0", "--", "app", template]);
        assert!(why.contains("templates in COMMAND"), "{template}: {why}");
    }
}

#[test]
fn braces_are_read_as_on_unix() {
    // `{{` and `}}` are literal braces, as Unix's template parser makes them.
    assert_eq!(
        command_run(&["python", "-c", "print({{1:2}})", "{{worker}}"]),
        ["python", "-c", "print({1:2})", "{worker}"]
    );
    // What Unix refuses as a bad template, Windows refuses with the same words.
    let why = refused(&["run", "-b", ":0", "--", "app", "{\"json\": 1}"]);
    assert!(why.starts_with("argument 1"), "{why}");
    assert!(why.contains("unknown template"), "{why}");
    let why = refused(&["run", "-b", ":0", "--", "app", "a}b"]);
    assert!(why.contains("unmatched '}'"), "{why}");
}

#[test]
fn every_run_option_has_a_verdict() {
    // An option added to `herd run` is refused on Windows unless listed as available; the
    // available ones must exist.
    let command = Cli::command();
    let run = command.find_subcommand("run").unwrap();
    let ids: Vec<&str> = run.get_arguments().map(|a| a.get_id().as_str()).collect();
    for id in RUN_AVAILABLE {
        assert!(ids.contains(id), "{id} is not an option of herd run");
    }
    let globals: Vec<&str> = command
        .get_arguments()
        .map(|a| a.get_id().as_str())
        .collect();
    for id in GLOBAL_AVAILABLE {
        assert!(globals.contains(id), "{id} is not a global option");
    }
}

#[test]
fn attach_is_accepted_with_its_command_read_literally() {
    verdict(&["attach", "--", "worker.exe", "--port", "{{8080}}"]).unwrap();
    verdict(&["attach", "--only", "http,dns", "--", "worker.exe"]).unwrap();
    let why = refused(&["attach", "--", "worker.exe", "{fd:http}"]);
    assert!(why.contains("templates in COMMAND"), "{why}");
}
