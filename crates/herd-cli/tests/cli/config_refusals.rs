//! Config files `herd check` used to pass and `herd run` or `herd upgrade --reload-config`
//! then failed on: a command or environment too large to execute, and einhorn's convention
//! turned on by a reload.

use std::path::Path;

use crate::config::{herd_on_config, pids};
use crate::util::*;

/// `[env]` with `n` variables `V0`, `V1`, ... of `len` bytes each, after `head`, written to
/// `dir/herd.toml`.
fn with_env(dir: &Path, head: &str, n: usize, len: usize) -> String {
    let path = dir.join("herd.toml");
    let mut text = format!("{head}\n[env]\n");
    for i in 0..n {
        text.push_str(&format!("V{i} = \"{}\"\n", "x".repeat(len)));
    }
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// A variable over Linux's limit for one string (MAX_ARG_STRLEN, 128 KiB): `herd check` said
/// ok, `herd run` logged its start and then failed every worker with E2BIG ("Argument list too
/// long"), exit 1. Both refuse it now, before binding anything (the port is taken: a bind
/// would fail with status 1), in one line naming the variable and the limit, status 2; so is
/// an argument over it, and a variable just under it passes.
#[test]
#[cfg(any(target_os = "linux", target_os = "android"))]
fn a_variable_or_argument_too_large_to_execute_is_refused_before_binding() {
    let dir = tempfile::tempdir().unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let head = format!("bind = [\"127.0.0.1:{port}\"]\ncommand = [\"sleep\", \"100\"]");
    let config = with_env(dir.path(), &head, 1, 200_000);
    let expected = "the workers' variable V0=... (from env) is 200003 bytes, over Linux's limit \
                    of 131071 for one argument or variable (MAX_ARG_STRLEN";
    assert_fails(&["check", "--config", &config], USAGE, expected);
    assert_fails(&["run", "--config", &config], USAGE, expected);
    // `V0=` and 131068 bytes, with its NUL: the most execve takes.
    let config = with_env(dir.path(), &head, 1, 131_067);
    let (code, stdout, stderr) = ctl_at("/nonexistent", &["check", "--config", &config]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains(": ok: "), "{stdout}");
    let path = dir.path().join("herd.toml");
    let text = format!(
        "bind = [\"127.0.0.1:{port}\"]\ncommand = [\"sleep\", \"{}\"]\n",
        "9".repeat(140_000)
    );
    std::fs::write(&path, text).unwrap();
    let config = path.display().to_string();
    let expected = "argument 1 of the worker command ('9999999999999999...') is 140000 bytes, \
                    over Linux's limit of 131071";
    assert_fails(&["check", "--config", &config], USAGE, expected);
    assert_fails(&["run", "--config", &config], USAGE, expected);
}

/// Variables under the limit for one string but over the total (ARG_MAX, at most 6 MiB on
/// Linux): refused alike, naming the largest and the limit.
#[test]
fn a_command_and_environment_too_large_together_are_refused_before_binding() {
    let dir = tempfile::tempdir().unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let head = format!("bind = [\"127.0.0.1:{port}\"]\ncommand = [\"sleep\", \"100\"]");
    let config = with_env(dir.path(), &head, 70, 100_000);
    let expected = "for a program's arguments and environment (ARG_MAX";
    let stderr = assert_fails(&["check", "--config", &config], USAGE, expected);
    assert!(
        stderr.contains("the workers' variable V10=... (from env) is 100004 bytes"),
        "{stderr}"
    );
    assert_fails(&["run", "--config", &config], USAGE, expected);
}

/// The same file given to a running herd by `herd upgrade --reload-config`: refused as an
/// invalid config in one line, and nothing changes (it was refused only once the new
/// generation's workers failed to start).
#[test]
#[cfg(any(target_os = "linux", target_os = "android"))]
fn a_reload_with_a_variable_too_large_to_execute_changes_nothing() {
    let (herd, config) = herd_on_config("");
    let config = &config;
    let before = wait_status(&herd, "2 ready workers", |s| settled(s, 2));
    let text = std::fs::read_to_string(config).unwrap();
    let big = format!("{text}BIG = \"{}\"\n", "x".repeat(200_000));
    std::fs::write(config, big).unwrap();
    let (code, _, stderr) = herd.ctl(&["upgrade", "--reload-config"]);
    assert_eq!(code, FAILURE, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("herd.toml: the workers' variable BIG=... (from env) is 200004 bytes")
            && stderr.contains("MAX_ARG_STRLEN")
            && stderr.trim_end().ends_with("(config_invalid)"),
        "{stderr}"
    );
    let after = herd.status();
    assert_eq!(after["generation"], 1, "{after}");
    assert_eq!(pids(&after), pids(&before));
}

/// einhorn's convention turned on by a reload: the new workers got `EINHORN_FDS` but no
/// `EINHORN_SOCK_PATH`, since herd binds that socket only as it starts, so an einhorn worker
/// that acknowledges had nowhere to. Refused in one line, with what to do instead; turning it
/// off likewise; Server::Starter's, which needs nothing of herd's, reaches the new workers.
#[test]
fn a_reload_that_turns_einhorn_on_is_refused_and_server_starter_is_not() {
    let (herd, config) = herd_on_config("");
    let config = &config;
    let before = wait_status(&herd, "2 ready workers", |s| settled(s, 2));
    let text = std::fs::read_to_string(config).unwrap();
    std::fs::write(config, format!("compat = [\"einhorn\"]\n{text}")).unwrap();
    let (code, _, stderr) = herd.ctl(&["upgrade", "--reload-config"]);
    assert_eq!(code, FAILURE, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(
            "herd.toml: cannot reload: compat \"einhorn\" changed, whose acknowledgement socket \
             (EINHORN_SOCK_PATH) herd binds, or not, as it starts: restart herd, or start a new \
             herd with --takeover; nothing was changed (config_invalid)"
        ),
        "{stderr}"
    );
    let after = herd.status();
    assert_eq!(after["generation"], 1, "{after}");
    assert_eq!(pids(&after), pids(&before));
    std::fs::write(config, format!("compat = [\"server-starter\"]\n{text}")).unwrap();
    let (code, _, stderr) = herd.ctl(&["upgrade", "--reload-config"]);
    assert_eq!(code, 0, "{stderr}");
    let after = wait_status(&herd, "2 ready workers of generation 2", |s| {
        settled(s, 2) && s["generation"] == 2
    });
    let linux = Path::new("/proc/self/environ").exists();
    for pid in pids(&after).into_iter().filter(|_| linux) {
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        let environ = String::from_utf8_lossy(&environ);
        assert!(environ.contains("SERVER_STARTER_PORT=127.0.0.1:"), "{pid}");
        assert!(!environ.contains("EINHORN_"), "{pid}");
    }
}

/// A key, a value or a path with a newline or a terminal's escape sequence (TOML's `"\n"` and
/// `"\u001b"`): the error quoted it as it was, over two lines, and a terminal ran the escape.
/// It is one line now, the characters escaped as herd escapes workers' text.
#[test]
fn a_config_error_quoting_control_characters_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("herd.toml");
    let config = path.display().to_string();
    let cases = [
        (
            "\"a\\nb\\u001b[2J\" = 1\n",
            "herd.toml:1: a\\nb\\x1b[2J: unknown key",
        ),
        (
            "worker-output = \"a\\nb\"\n",
            "herd.toml:1: worker-output: 'a\\nb' is not one of: inherit, prefix, json",
        ),
        (
            "bind = [\"127.0.0.1:0\"]\nchdir = \"/no\\nwhere\"\ncommand = [\"sleep\", \"1\"]\n",
            "--chdir /no\\nwhere: no such directory",
        ),
    ];
    for (text, expected) in cases {
        std::fs::write(&path, text).unwrap();
        assert_fails(&["check", "--config", &config], USAGE, expected);
        assert_fails(&["run", "--config", &config], USAGE, expected);
    }
    let missing = dir.path().join("no\nsuch.toml");
    assert_fails(
        &["check", "--config", &missing.display().to_string()],
        USAGE,
        "no\\nsuch.toml: cannot read the config file",
    );
}

/// A variable herd sets for each worker itself, given with `--env` or in `[env]`, is refused by
/// `check` and `run` alike: a worker given a `NOTIFY_SOCKET` of its own never said `READY=1` to
/// herd, and was killed as not ready in time, again and again; check passed it.
#[test]
fn a_variable_herd_sets_for_each_worker_is_refused_in_env() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("herd.toml");
    let config = path.display().to_string();
    let text = "command = [\"sleep\", \"100\"]\nbind = [\"127.0.0.1:0\"]\n\
                [env]\nA = \"1\"\nNOTIFY_SOCKET = \"/tmp/elsewhere\"\n";
    std::fs::write(&path, text).unwrap();
    let at =
        format!("{config}:5: env: --env NOTIFY_SOCKET: herd sets NOTIFY_SOCKET for each worker");
    assert_fails(&["check", "--config", &config], USAGE, &at);
    assert_fails(&["run", "--config", &config], USAGE, &at);
    let given = "herd: error: --env HERD_CONTROL: herd sets HERD_CONTROL for each worker itself";
    let run = [
        "run",
        "-b",
        "127.0.0.1:0",
        "--env",
        "HERD_CONTROL=x",
        "--",
        "sleep",
        "100",
    ];
    assert_fails(&run, USAGE, given);
}

/// `fdstore = true` checked outside systemd (a shell, CI) passes, as the file is right for the
/// service that runs it, but says that `herd run` refuses it here (check said only "ok").
#[test]
fn fdstore_checked_outside_systemd_says_run_refuses_it_here() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("herd.toml");
    let text = "command = [\"sleep\", \"100\"]\nbind = [\"127.0.0.1:0\"]\nfdstore = true\n";
    std::fs::write(&path, text).unwrap();
    let out = std::process::Command::new(HERD)
        .args(["check", "--config"])
        .arg(&path)
        .env_remove("NOTIFY_SOCKET")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        stdout.ends_with(
            "; here herd run would refuse it: --fdstore needs systemd, and NOTIFY_SOCKET is not \
             set: run herd from a service with FileDescriptorStoreMax= (and Type=notify), or \
             drop --fdstore\n"
        ),
        "{stdout}"
    );
}

/// `herd check` passed what `herd run` refused only as it bound (exit 2 all the same): an
/// address given to two `--bind`s, `--metrics` and `--health` (or a `--bind`) at one address,
/// and a control socket path too long. Both refuse them now, in one line, before anything is
/// bound (the port is held here: a bind would fail otherwise).
#[test]
fn what_run_refuses_as_it_binds_check_refuses_too() {
    let dir = tempfile::tempdir().unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let unix = dir.path().join("x.http").display().to_string();
    let long = dir.path().join(format!("{}.sock", "a".repeat(120)));
    let cases = [
        (
            format!("bind = [\"unix:{unix}\", \"unix:{unix}\"]"),
            format!("--bind 'unix:{unix}' binds the same address as --bind 'unix:{unix}'"),
        ),
        (
            format!("bind = [\"a=127.0.0.1:{port}\", \"b=127.0.0.1:{port}\"]"),
            "binds the same address as".to_string(),
        ),
        (
            format!(
                "bind = [\"127.0.0.1:0\"]\nmetrics = \"127.0.0.1:{port}\"\n\
                 health = \"127.0.0.1:{port}\""
            ),
            format!("this herd serves 127.0.0.1:{port} already, with --metrics"),
        ),
        (
            format!("bind = [\"0.0.0.0:{port}\"]\nmetrics = \"127.0.0.1:{port}\""),
            format!("already, with its socket 'tcp-{port}' (--bind)"),
        ),
        (
            format!("bind = [\"127.0.0.1:0\"]\ncontrol = \"{}\"", long.display()),
            "the control socket path".to_string(),
        ),
    ];
    let path = dir.path().join("herd.toml");
    let config = path.display().to_string();
    for (head, expected) in cases {
        std::fs::write(&path, format!("{head}\ncommand = [\"sleep\", \"100\"]\n")).unwrap();
        assert_fails(&["check", "--config", &config], USAGE, &expected);
        assert_fails(&["run", "--config", &config], USAGE, &expected);
    }
    assert!(!Path::new(&unix).exists());
    // Each is said where the file gives the option it is about (was: with no line, or none
    // of the file's at all), unless the command line overrides it.
    let text = format!(
        "command = [\"sleep\", \"100\"]\nbind = [\"127.0.0.1:0\"]\n\
         metrics = \"127.0.0.1:{port}\"\nhealth = \"127.0.0.1:{port}\"\n"
    );
    std::fs::write(&path, text).unwrap();
    let at = format!("{config}:4: health: --health '127.0.0.1:{port}': this herd serves");
    assert_fails(&["check", "--config", &config], USAGE, &at);
    assert_fails(&["run", "--config", &config], USAGE, &at);
    std::fs::write(
        &path,
        "command = [\"true\"]\nready-min = 3\nbind = [\"127.0.0.1:0\"]\n",
    )
    .unwrap();
    let at = format!("{config}:2: ready-min: --ready-min 3: the pool has at most 2 workers");
    assert_fails(&["run", "--config", &config, "-w", "2"], USAGE, &at);
    let given = "herd: error: --ready-min 4: the pool has at most 2 workers";
    let stderr = assert_fails(
        &["run", "--config", &config, "-w", "2", "--ready-min", "4"],
        USAGE,
        "",
    );
    assert!(stderr.starts_with(given), "{stderr}");
}
