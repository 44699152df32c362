//! `herd run --config FILE` and `herd check --config FILE`.

use std::path::Path;

use crate::util::*;

/// A config file for hello.py workers on a loopback port, telling them `message`, with
/// `extra` lines at the top.
pub(crate) fn hello_config(dir: &Path, extra: &str, message: &str) -> String {
    let path = dir.join("herd.toml");
    let text = format!(
        "{extra}\nworkers = 2\nbind = [\"http=127.0.0.1:0,nonblocking\"]\nready = \"notify\"\n\
         min-ready = \"0s\"\ncommand = [\"python3\", {:?}]\n\n[env]\nHELLO_MESSAGE = {message:?}\n",
        example("hello.py")
    );
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// A herd run from [`hello_config`]'s file (with `extra` lines, telling "v1"), and the file's
/// path, for the test to rewrite before a reload.
pub(crate) fn herd_on_config(extra: &str) -> (Herd, String) {
    let config = std::sync::OnceLock::new();
    let herd = Herd::start_with(|dir| {
        let path = hello_config(dir, extra, "v1");
        config.set(path.clone()).unwrap();
        let mut cmd = herd_json();
        cmd.args(["run", "--config", &path]);
        cmd
    });
    let config = config.into_inner().unwrap();
    (herd, config)
}

#[test]
fn a_herd_runs_from_a_config_file_and_its_workers_get_its_environment() {
    let herd = Herd::start_with(|dir| {
        let config = hello_config(dir, "grace = \"5s\"", "from the file");
        let mut cmd = herd_json();
        cmd.args(["run", "--config", &config]);
        cmd
    });
    let status = wait_status(&herd, "2 ready workers", |s| settled(s, 2));
    assert_eq!(status["generation"], 1);
    let answer = get(&herd.address("http"), "/").unwrap();
    assert!(answer.contains(", from the file"), "{answer}");
    herd.wait_event("herd's settings", |e| {
        e["event"] == "starting" && e["grace"] == "5s"
    });
}

#[test]
fn the_command_line_overrides_the_config_file() {
    let herd = Herd::start_with(|dir| {
        let config = hello_config(dir, "", "from the file");
        let mut cmd = herd_json();
        cmd.args([
            "run",
            "--config",
            &config,
            "-w",
            "1",
            "--env",
            "HELLO_MESSAGE=from the line",
        ]);
        cmd
    });
    wait_status(&herd, "1 ready worker", |s| settled(s, 1));
    let answer = get(&herd.address("http"), "/").unwrap();
    assert!(answer.contains(", from the line"), "{answer}");
}

#[test]
fn check_validates_a_config_file_without_binding_or_starting_anything() {
    let dir = tempfile::tempdir().unwrap();
    // A port in use: `herd run` could not bind it, `herd check` does not try.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let marker = dir.path().join("started");
    let config = dir.path().join("herd.toml");
    let text = format!(
        "workers = 3\nbind = [\"http=127.0.0.1:{port}\"]\n\
         command = [\"sh\", \"-c\", \"touch {}\"]\n",
        marker.display()
    );
    std::fs::write(&config, text).unwrap();
    let config = config.display().to_string();
    let (code, stdout, stderr) = ctl_at("/nonexistent", &["check", "--config", &config]);
    assert_eq!(code, 0, "{stderr}");
    let expected = format!(
        "{config}: ok: 1 socket (http=127.0.0.1:{port}), 3 workers, command: sh -c touch {}; \
         nothing was bound or started\n",
        marker.display()
    );
    assert_eq!(stdout, expected);
    assert!(!marker.exists(), "herd check started the command");
}

#[test]
fn a_bad_config_file_is_one_line_naming_the_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("herd.toml");
    let text = "# workers\nbind = [\"127.0.0.1:0\"]\nworkers = -1\ncommand = [\"sleep\", \"1\"]\n";
    std::fs::write(&config, text).unwrap();
    let config = config.display().to_string();
    let expected = format!("{config}:3: workers: '-1' is not a number of workers");
    assert_fails(&["check", "--config", &config], USAGE, &expected);
    assert_fails(&["run", "--config", &config], USAGE, &expected);
    std::fs::write(&config, "bind = [\"127.0.0.1:0\"]\ngrce = \"1s\"\n").unwrap();
    let expected = format!("{config}:2: grce: unknown key; did you mean 'grace'?");
    assert_fails(&["check", "--config", &config], USAGE, &expected);
    std::fs::write(
        &config,
        "bind = [\"127.0.0.1:0\"]\ncommand = [\"/nonexistent/app\"]\n",
    )
    .unwrap();
    assert_fails(
        &["check", "--config", &config],
        USAGE,
        "command '/nonexistent/app' does not exist",
    );
    let text = "bind = [\"127.0.0.1:0\"]\ncontrol-allow-user = [\"no-such-user-here\"]\n\
                command = [\"sleep\", \"1\"]\n";
    std::fs::write(&config, text).unwrap();
    assert_fails(
        &["check", "--config", &config],
        USAGE,
        "--control-allow-user: no user named 'no-such-user-here'",
    );
    // An empty path: clap's error has no reason, and the file's said "'' is not one of: ".
    for key in ["control", "chdir"] {
        let text =
            format!("bind = [\"127.0.0.1:0\"]\n{key} = \"\"\ncommand = [\"sleep\", \"1\"]\n");
        std::fs::write(&config, text).unwrap();
        let expected =
            format!("{config}:2: {key}: the value is empty: give one, or remove the key");
        assert_fails(&["check", "--config", &config], USAGE, &expected);
    }
    // A value that looks like an option is a value: `--help` was "the value is empty".
    std::fs::write(&config, "bind = [\"127.0.0.1:0\"]\ngrace = \"--help\"\n").unwrap();
    let expected = format!("{config}:2: grace: '--help' is not a duration");
    assert_fails(&["check", "--config", &config], USAGE, &expected);
    // A hex umask was taken as its decimal digits, read as octal: 0x1f became 031.
    std::fs::write(&config, "bind = [\"127.0.0.1:0\"]\numask = 0x1f\n").unwrap();
    let expected = format!("{config}:2: umask: a umask is octal: write umask = \"027\"");
    assert_fails(&["check", "--config", &config], USAGE, &expected);
    // It said "stream did not contain valid UTF-8".
    std::fs::write(&config, b"workers = 1\n# caf\xe9\n").unwrap();
    let expected = format!("{config}: cannot read the config file: it is not UTF-8 text: save it");
    assert_fails(&["check", "--config", &config], USAGE, &expected);
    assert_fails(
        &["check", "--config", "/nonexistent/herd.toml"],
        USAGE,
        "/nonexistent/herd.toml: cannot read the config file",
    );
}

#[test]
fn a_nul_in_a_config_string_is_refused_where_it_is() {
    // TOML's \u0000 is a NUL, which no argument, variable or path can hold: `herd check` said
    // ok and `herd run` failed later (at the worker's start, or binding a socket file).
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("herd.toml");
    let config_name = config.display().to_string();
    let head = "bind = [\"127.0.0.1:0\"]\ncommand = [\"sleep\", \"1\"]\n";
    let cases = [
        ("[env]\nA = \"x\\u0000y\"\n", "4: env: a string"),
        ("[env]\n\"A\\u0000B\" = \"x\"\n", "4: env: a key"),
        (
            "shm = [\"a=4096\"]\ncontrol = \"/tmp/a\\u0000b\"\n",
            "4: control: a string",
        ),
    ];
    for (tail, at) in cases {
        std::fs::write(&config, format!("{head}{tail}")).unwrap();
        let expected = format!("{config_name}:{at} cannot contain a NUL byte (\\u0000)");
        assert_fails(&["check", "--config", &config_name], USAGE, &expected);
        assert_fails(&["run", "--config", &config_name], USAGE, &expected);
    }
    let text = "bind = [\"unix:/tmp/a\\u0000b\"]\ncommand = [\"sleep\", \"1\\u0000\"]\n";
    std::fs::write(&config, text).unwrap();
    let expected = format!("{config_name}:1: bind: a string cannot contain a NUL byte");
    assert_fails(&["check", "--config", &config_name], USAGE, &expected);
}

#[test]
fn the_example_config_file_checks() {
    let example = example("herd.toml");
    let (code, stdout, stderr) = ctl_at("/nonexistent", &["check", "--config", &example]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(": ok: 1 socket (http=127.0.0.1:8080), 4 workers"),
        "{stdout}"
    );
}

/// The answers of `n` requests to `addr`.
fn answers(addr: &str, n: usize) -> Vec<String> {
    (0..n).map(|_| get(addr, "/").unwrap()).collect()
}

/// The pids of the workers in `status`, sorted.
pub(crate) fn pids(status: &serde_json::Value) -> Vec<u32> {
    let mut pids = worker_pids(status);
    pids.sort();
    pids
}

#[test]
fn upgrade_reload_config_gives_new_workers_the_new_environment_under_load() {
    let (herd, config) = herd_on_config("");
    let config = &config;
    let addr = herd.address("http");
    let before = wait_status(&herd, "2 ready workers", |s| settled(s, 2));
    assert!(answers(&addr, 4).iter().all(|a| a.contains(", v1")));
    let load = Load::start(&addr, 2, |b| b.starts_with("hello from pid"));

    // A new environment: the PM2 complaint. Nothing is read until asked.
    let text = std::fs::read_to_string(config).unwrap();
    std::fs::write(config, text.replace("\"v1\"", "\"v2\"")).unwrap();
    let (code, stdout, stderr) = herd.ctl(&["upgrade", "--reload-config"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout,
        "upgraded with the config file read again: every worker now runs generation 2\n"
    );
    herd.wait_for_event("config_reloaded", &[("generation", 2.into())]);
    let after = wait_status(&herd, "2 ready workers", |s| settled(s, 2));
    assert_eq!(after["generation"], 2);
    for worker in after["workers"].as_array().unwrap() {
        assert_eq!(worker["generation"], 2, "{after}");
    }
    // The old workers drained and exited; the new ones answer with the new value.
    for pid in pids(&before) {
        herd.wait_for_event("worker_exited", &[("pid", pid.into())]);
    }
    assert!(answers(&addr, 6).iter().all(|a| a.contains(", v2")));

    // What needs a new socket is refused in one line, and the pool stays as it is.
    let text = std::fs::read_to_string(config).unwrap();
    std::fs::write(config, text.replace("127.0.0.1:0", "127.0.0.1:1")).unwrap();
    let (code, _, stderr) = herd.ctl(&["upgrade", "--reload-config"]);
    assert_eq!(code, FAILURE, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(": cannot reload: bind changed, which needs new sockets")
            && stderr.contains("(config_invalid)"),
        "{stderr}"
    );
    // So is a file that no longer parses, with its line and key.
    std::fs::write(config, text.replace("workers = 2", "workers = -2")).unwrap();
    let (code, _, stderr) = herd.ctl(&["upgrade", "--reload-config"]);
    assert_eq!(code, FAILURE, "{stderr}");
    assert!(stderr.contains("herd.toml:2: workers: '-2'"), "{stderr}");
    // A plain upgrade reads nothing: the workers keep v2.
    std::fs::write(config, text.replace("\"v2\"", "\"v3\"")).unwrap();
    let (code, _, stderr) = herd.ctl(&["upgrade"]);
    assert_eq!(code, 0, "{stderr}");
    wait_status(&herd, "generation 3", |s| {
        settled(s, 2) && s["generation"] == 3
    });
    assert!(answers(&addr, 4).iter().all(|a| a.contains(", v2")));
    load.finish_without_failures(50);
}

#[test]
fn reload_config_without_a_config_file_is_refused() {
    let herd = sleeper_on_http();
    let before = herd.status();
    let (code, _, stderr) = herd.ctl(&["upgrade", "--reload-config"]);
    assert_eq!(code, FAILURE, "{stderr}");
    assert!(
        stderr.starts_with("herd: error: herd was not started with --config")
            && stderr.trim_end().ends_with("(config_invalid)"),
        "{stderr}"
    );
    assert_eq!(pids(&herd.status()), pids(&before));
}

#[test]
fn a_reexec_keeps_the_config_the_workers_run_until_a_reload() {
    let (herd, config) = herd_on_config("");
    let config = &config;
    let addr = herd.address("http");
    wait_status(&herd, "2 ready workers", |s| settled(s, 2));
    // The file changes, nobody asks for a reload, herd re-executes itself.
    let text = std::fs::read_to_string(config).unwrap();
    std::fs::write(config, text.replace("\"v1\"", "\"v2\"")).unwrap();
    let (code, _, stderr) = herd.ctl(&["reexec"]);
    assert_eq!(code, 0, "{stderr}");
    // A worker restarted by the new image runs what the workers ran: v1.
    let victim = pids(&herd.status())[0];
    // SAFETY: kill with a worker's pid.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    herd.wait_event("the replacement", |e| {
        is_start(e) && e["pid"] != victim && e["generation"] == 1
    });
    wait_status(&herd, "2 ready workers", |s| settled(s, 2));
    assert!(answers(&addr, 6).iter().all(|a| a.contains(", v1")));
    // Asked for, the reload reads the file: v2.
    let (code, _, stderr) = herd.ctl(&["upgrade", "--reload-config"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(answers(&addr, 6).iter().all(|a| a.contains(", v2")));
}

#[test]
fn upgrades_and_reloads_during_a_reloaded_upgrade_are_refused_and_leave_it_whole() {
    let (herd, config) = herd_on_config("");
    let config = &config;
    let addr = herd.address("http");
    wait_status(&herd, "2 ready workers", |s| settled(s, 2));
    // The reload asks for a third worker, and each new one stays ready 3 s before it
    // replaces an old one: the upgrade rolls for 6 s at least.
    let text = std::fs::read_to_string(config).unwrap();
    let v2 = text
        .replace("\"v1\"", "\"v2\"")
        .replace("workers = 2", "workers = 3")
        .replace("min-ready = \"0s\"", "min-ready = \"3s\"");
    std::fs::write(config, &v2).unwrap();
    std::thread::scope(|scope| {
        let reload = scope.spawn(|| herd.ctl(&["upgrade", "--reload-config"]));
        herd.wait_for_event("config_reloaded", &[("generation", 2.into())]);
        std::fs::write(config, v2.replace("\"v2\"", "\"v3\"")).unwrap();
        for args in [&["upgrade", "--reload-config"][..], &["upgrade"]] {
            let (code, _, stderr) = herd.ctl(args);
            assert_eq!(code, FAILURE, "{args:?}: {stderr}");
            assert!(
                stderr.contains("(busy): an upgrade to generation 2 is in progress"),
                "{args:?}: {stderr}"
            );
        }
        let (code, stdout, stderr) = reload.join().unwrap();
        assert_eq!(code, 0, "{stderr}");
        assert!(
            stdout.contains("every worker now runs generation 2"),
            "{stdout}"
        );
    });
    // The reload is whole: three workers, all of generation 2, all with v2.
    let status = wait_status(&herd, "3 ready workers", |s| settled(s, 3));
    assert_eq!(status["generation"], 2, "{status}");
    assert!(answers(&addr, 6).iter().all(|a| a.contains(", v2")));
    // And v2 is what herd keeps across a re-exec: a worker restarted then runs it.
    let (code, _, stderr) = herd.ctl(&["reexec"]);
    assert_eq!(code, 0, "{stderr}");
    let victim = pids(&herd.status())[0];
    // SAFETY: kill with a worker's pid.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    herd.wait_event("the replacement", |e| is_start(e) && e["pid"] != victim);
    wait_status(&herd, "3 ready workers", |s| settled(s, 3));
    assert!(answers(&addr, 9).iter().all(|a| a.contains(", v2")));
}

#[test]
fn a_scale_during_a_reloaded_upgrade_is_not_undone_by_the_files_workers_when_it_ends() {
    let (herd, config) = herd_on_config("");
    wait_status(&herd, "2 ready workers", |s| settled(s, 2));
    // The file asks for 3 workers; each new one stays ready 3 s before it replaces an old
    // one, so the upgrade rolls long enough for a `herd scale` to come in the middle.
    let text = std::fs::read_to_string(&config).unwrap();
    let v2 = text
        .replace("workers = 2", "workers = 3")
        .replace("min-ready = \"0s\"", "min-ready = \"3s\"");
    std::fs::write(&config, v2).unwrap();
    std::thread::scope(|scope| {
        let reload = scope.spawn(|| herd.ctl(&["upgrade", "--reload-config"]));
        herd.wait_for_event("config_reloaded", &[("generation", 2.into())]);
        let (code, stdout, stderr) = herd.ctl(&["scale", "5"]);
        assert_eq!(code, 0, "{stderr}");
        assert!(stdout.contains("to 5 workers"), "{stdout}");
        let (code, _, stderr) = reload.join().unwrap();
        assert_eq!(code, 0, "{stderr}");
    });
    // The later order stands: the file's 3, read before it, is not applied at the end.
    let status = herd.status();
    assert_eq!(status["desired"], 5, "{status}");
    let undone: Vec<_> = events(&herd.lines())
        .filter(|e| e["event"] == "scaling" && e["trigger"] == "config file")
        .cloned()
        .collect();
    assert!(undone.is_empty(), "{undone:?}");
    wait_status(&herd, "5 ready workers", |s| settled(s, 5));
    // The file's workers = 3 is now the one in force: read again unchanged, the scale stays.
    let (code, _, stderr) = herd.ctl(&["upgrade", "--reload-config"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(herd.status()["desired"], 5);
}

#[test]
fn a_reexec_reads_nothing_so_a_broken_or_missing_file_does_not_stop_it() {
    let (herd, config) = herd_on_config("log-format = \"json\"");
    let config = &config;
    let addr = herd.address("http");
    let before = pids(&wait_status(&herd, "2 ready workers", |s| settled(s, 2)));
    for (n, broken) in [Some("workers = -1\n"), None].into_iter().enumerate() {
        match broken {
            Some(text) => std::fs::write(config, text).unwrap(),
            None => std::fs::remove_file(config).unwrap(),
        }
        let (code, _, stderr) = herd.ctl(&["reexec"]);
        assert_eq!(code, 0, "{broken:?}: {stderr}");
        herd.wait_for_events("reexecuted", n + 1, &[]);
        let status = wait_status(&herd, "2 ready workers", |s| settled(s, 2));
        assert_eq!(pids(&status), before, "{broken:?}: the same workers");
        assert!(answers(&addr, 4).iter().all(|a| a.contains(", v1")));
    }
    // A worker restarted by the new image runs what the workers ran.
    let victim = before[0];
    // SAFETY: kill with a worker's pid.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    herd.wait_event("the replacement", |e| is_start(e) && e["pid"] != victim);
    wait_status(&herd, "2 ready workers", |s| settled(s, 2));
    assert!(answers(&addr, 6).iter().all(|a| a.contains(", v1")));
}

/// What would fail every worker at `herd run`'s start fails `herd check` too, as one line and
/// status 2: a limit above the system's ceiling for open files (herd check said ok).
#[test]
fn herd_check_meets_what_would_fail_every_worker() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("herd.toml");
    let text =
        "bind = [\"127.0.0.1:0\"]\nnofile = 18446744073709551615\ncommand = [\"sleep\", \"1\"]\n";
    std::fs::write(&config, text).unwrap();
    let config = config.display().to_string();
    let expected = "above the system's ceiling for open files";
    assert_fails(&["check", "--config", &config], USAGE, expected);
    assert_fails(&["run", "--config", &config], USAGE, expected);
}

/// A user over its process limit (`RLIMIT_NPROC`, which Linux checks at the execve after a
/// change of user, `EAGAIN`) fails every worker: `herd check` said ok (its probe checks the
/// program with `access`, not `execve`), then `herd run` could start none. Both now refuse it,
/// as one line that names the limit, status 2. (Linux flags the change of user when the
/// user's *other* processes are over the limit: one runs here, so nproc=0 is over it.)
#[test]
fn herd_check_meets_a_user_over_its_process_limit() {
    if !root_or_skip("needs root to switch users") {
        return;
    }
    let mut other = std::process::Command::new("sleep");
    std::os::unix::process::CommandExt::uid(&mut other, 65534);
    std::os::unix::process::CommandExt::gid(&mut other, 65534);
    let mut other = other.arg("60").spawn().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("herd.toml");
    let text = "bind = [\"127.0.0.1:0\"]\nuser = \"nobody\"\nrlimit = [\"nproc=0\"]\n\
                command = [\"/bin/sleep\", \"1\"]\n";
    std::fs::write(&config, text).unwrap();
    let config = config.display().to_string();
    let expected = "as many processes (threads included) as its process limit allows";
    assert_fails(&["check", "--config", &config], USAGE, expected);
    assert_fails(&["run", "--config", &config], USAGE, expected);
    other.kill().unwrap();
    other.wait().unwrap();
}

/// One limit set twice (`nofile` and `rlimit = ["nofile=..."]`, or twice in `rlimit`): the
/// first applied bounded the second, whose raise of the hard limit needs CAP_SYS_RESOURCE, so
/// herd check and herd run said "Operation not permitted" without a word of why (or, with
/// that capability, the later one won unsaid). Both refuse it, naming the two settings.
#[test]
fn one_limit_set_twice_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("herd.toml");
    let text = "bind = [\"127.0.0.1:0\"]\nrlimit = [\"nofile=100\"]\nnofile = 200\n\
                command = [\"sleep\", \"1\"]\n";
    std::fs::write(&config, text).unwrap();
    let config = config.display().to_string();
    let expected = "--rlimit nofile=100 and --nofile 200 set the same limit: give it once";
    assert_fails(&["check", "--config", &config], USAGE, expected);
    assert_fails(&["run", "--config", &config], USAGE, expected);
    let twice = [
        "run",
        "--rlimit",
        "core=0",
        "--rlimit",
        "core=1",
        "-b",
        "127.0.0.1:0",
    ];
    let twice = [&twice[..], &["--", "sleep", "1"]].concat();
    assert_fails(
        &twice,
        USAGE,
        "--rlimit core=0 and --rlimit core=1 set the same limit",
    );
}

#[test]
fn a_reload_that_changes_recycling_keeps_what_the_recycler_knew() {
    let (herd, config) = herd_on_config("max-lifetime = \"1s\"");
    let config = &config;
    herd.wait_for_event("recycle", &[]);
    wait_status(&herd, "a recycle listed", |s| {
        s["recycles"].as_array().is_some_and(|r| !r.is_empty())
    });
    let text = std::fs::read_to_string(config).unwrap();
    std::fs::write(
        config,
        text.replace("max-lifetime = \"1s\"", "max-lifetime = \"1h\""),
    )
    .unwrap();
    let (code, _, stderr) = herd.ctl(&["upgrade", "--reload-config"]);
    assert_eq!(code, 0, "{stderr}");
    herd.wait_for_event("config_reloaded", &[]);
    // The recycles before it are still listed: a new policy is no new recycler.
    let status = herd.status();
    assert!(
        status["recycles"].as_array().is_some_and(|r| !r.is_empty()),
        "{status:#}"
    );
}
