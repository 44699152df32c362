//! `herd run --config FILE` and `herd check --config FILE`.

use std::path::Path;

use crate::util::*;

/// A config file for hello.py workers on a loopback port, telling them `message`, with
/// `extra` lines at the top.
fn hello_config(dir: &Path, extra: &str, message: &str) -> String {
    let path = dir.join("herd.toml");
    let text = format!(
        "{extra}\nworkers = 2\nbind = [\"http=127.0.0.1:0,nonblocking\"]\nready = \"notify\"\n\
         min-ready = \"0s\"\ncommand = [\"python3\", {:?}]\n\n[env]\nHELLO_MESSAGE = {message:?}\n",
        example("hello.py")
    );
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
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
    assert_fails(
        &["check", "--config", "/nonexistent/herd.toml"],
        USAGE,
        "/nonexistent/herd.toml: cannot read the config file",
    );
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
