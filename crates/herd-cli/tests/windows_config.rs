//! herd.exe from a config file, under Wine: `herd run --config`, `herd upgrade
//! --reload-config` handing the new workers the file's new environment, and what Windows
//! refuses refused from the file too.
#![cfg(windows)]

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

mod windows_support;

use windows_support::{
    answer, client, this_test_as_worker, unique_name, Herd, SpawnUnderWine, HERD,
};

/// With `HERD_TEST_WORKER` set, this test binary is the worker herd runs: it answers each
/// connection on `http` with `worker pid N` and `greeting G` (`HERD_TEST_GREETING`), and stops
/// when herd asks.
#[test]
fn worker() {
    let Some(listener) = windows_support::worker_listener() else {
        return;
    };
    let stop = herd::stop_requested().expect("the stop event");
    let greeting = std::env::var("HERD_TEST_GREETING").unwrap_or_default();
    windows_support::serve_until_stopped(listener, stop, |mut stream| {
        let pid = std::process::id();
        let _ = write!(stream, "worker pid {pid}\ngreeting {greeting}\n");
    });
}

/// A config file of this test's own, removed on drop.
struct ConfigFile(PathBuf);

impl ConfigFile {
    /// Two workers of this test binary on a loopback port, greeting with `greeting`, and
    /// `extra` lines.
    fn new(greeting: &str, extra: &str) -> ConfigFile {
        let path = std::env::temp_dir().join(format!("{}.toml", unique_name()));
        let file = ConfigFile(path);
        file.write(greeting, extra);
        file
    }

    fn write(&self, greeting: &str, extra: &str) {
        let command: Vec<String> = this_test_as_worker()
            .iter()
            .map(|w| format!("{:?}", w.to_str().unwrap()))
            .collect();
        let text = format!(
            "workers = 2\nbind = [\"http=127.0.0.1:0\"]\nmin-ready = \"0s\"\n{extra}\n\
             command = [{}]\n\n[env]\nHERD_TEST_GREETING = {greeting:?}\n",
            command.join(", ")
        );
        std::fs::write(&self.0, text).unwrap();
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `herd --name NAME ARGS`, which must fail with exit 1 and one line: that line.
fn refused(name: &str, args: &[&str]) -> String {
    let out = Command::new(HERD)
        .args(["--name", name])
        .args(args)
        .output_under_wine()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
    stderr
}

#[test]
fn herd_runs_from_a_config_file_and_a_reload_hands_new_workers_its_environment() {
    let config = ConfigFile::new("v1", "");
    let herd = Herd::start_named(&unique_name(), &["--config", config.path()], &[]);
    assert_eq!(herd.answers(2, 2).len(), 2, "both workers answer");
    let first = answer(&herd.addr);
    assert!(first.contains("\ngreeting v1\n"), "{first}");

    config.write("v2", "");
    let said = client(&herd.name, &["upgrade", "--reload-config"]);
    assert_eq!(
        said,
        "upgraded with the config file read again: every worker now runs generation 2\n"
    );
    herd.wait_for("config_reloaded");
    for _ in 0..6 {
        let now = answer(&herd.addr);
        assert!(now.contains("\ngreeting v2\n"), "{now}");
    }

    let port = herd.addr.rsplit(':').next().unwrap().to_string();
    let other = format!("http=127.0.0.1:{}", port.parse::<u16>().unwrap() ^ 1);
    let text = std::fs::read_to_string(&config.0).unwrap();
    std::fs::write(&config.0, text.replace("http=127.0.0.1:0", &other)).unwrap();
    let line = refused(&herd.name, &["upgrade", "--reload-config"]);
    assert!(
        line.contains("cannot reload: bind changed") && line.contains("(config_invalid)"),
        "{line}"
    );
    let still = answer(&herd.addr);
    assert!(still.contains("\ngreeting v2\n"), "{still}");
    herd.stop();
}

#[test]
fn what_windows_refuses_is_refused_from_the_file_in_the_same_line() {
    let config = ConfigFile::new("v1", "user = \"www\"");
    windows_support::assert_fails(
        &["check", "--config", config.path()],
        2,
        "--user is not available on Windows: workers run as herd's own user on Windows",
    );
    windows_support::assert_fails(
        &["run", "--config", config.path()],
        2,
        "--user is not available on Windows",
    );
    config.write("v1", "");
    let checked = client(&unique_name(), &["check", "--config", config.path()]);
    assert!(
        checked.contains(": ok: 1 socket (http=127.0.0.1:0), 2 workers"),
        "{checked}"
    );
}
