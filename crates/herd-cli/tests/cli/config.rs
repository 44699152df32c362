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
    herd_on_config_and(extra, &[])
}

/// [`herd_on_config`], with `args` on herd's command line after the file (which override it).
pub(crate) fn herd_on_config_and(extra: &str, args: &[&str]) -> (Herd, String) {
    let config = std::sync::OnceLock::new();
    let herd = Herd::start_with(|dir| {
        let path = hello_config(dir, extra, "v1");
        config.set(path.clone()).unwrap();
        let mut cmd = herd_json();
        cmd.args(["run", "--config", &path]).args(args);
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

/// `--max-starting auto` (the default) is one start-up per 4 CPUs herd may run on, at least
/// 1; `starting` says what it came to, and a config file's number or `auto` is taken too.
#[test]
fn max_starting_auto_comes_to_one_per_four_cpus_and_the_starting_line_says_so() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let auto = (cpus / 4).max(1);
    for (extra, expected) in [
        ("", auto),
        ("max-starting = 3", 3),
        ("max-starting = \"auto\"", auto),
    ] {
        let (herd, _) = herd_on_config(extra);
        herd.wait_event("herd's settings", |e| {
            e["event"] == "starting" && e["max_starting"] == expected
        });
    }
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
    // A variable given twice in the file's env list was taken, the later value winning.
    std::fs::write(
        &config,
        "bind = [\"127.0.0.1:0\"]\ncommand = [\"sleep\", \"1\"]\nenv = [\"A=1\", \"A=2\"]\n",
    )
    .unwrap();
    let expected =
        format!("{config}:3: env: the workers' variable A is given twice: keep one of the two");
    assert_fails(&["check", "--config", &config], USAGE, &expected);
    assert_fails(&["run", "--config", &config], USAGE, &expected);
    // It ended with the OS's words: "No such file or directory (os error 2)".
    for command in ["check", "run"] {
        assert_fails(
            &[command, "--config", "/nonexistent/herd.toml"],
            USAGE,
            "herd: error: /nonexistent/herd.toml: cannot read the config file: no such file: \
             create it or give --config the right path",
        );
    }
    // A file that cannot be read from its start: it ended with the OS's bare "Input/output
    // error (os error 5)".
    #[cfg(target_os = "linux")]
    assert_fails(
        &["run", "--config", "/proc/self/mem"],
        USAGE,
        "herd: error: /proc/self/mem: cannot read the config file: reading it failed \
         ('Input/output error (os error 5)'): give --config the path of an ordinary TOML file",
    );
    // And a path through a file, not a directory: "Not a directory (os error 20)".
    let through = format!("{config}/herd.toml");
    assert_fails(
        &["run", "--config", &through],
        USAGE,
        &format!("{through}: cannot read the config file: no such file (a directory on its path is a file): give --config the right path"),
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

/// The pids of the workers in `status`, sorted.
pub(crate) fn pids(status: &serde_json::Value) -> Vec<u32> {
    let mut pids = worker_pids(status);
    pids.sort();
    pids
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
