//! `herd upgrade --reload-config` and re-execs with a config file: the workers run the file
//! they were started with until a reload, and a reload under way stays whole.

use crate::config::{herd_on_config, herd_on_config_and, pids};
use crate::util::*;

/// The answers of `n` requests to `addr`.
fn answers(addr: &str, n: usize) -> Vec<String> {
    (0..n).map(|_| get(addr, "/").unwrap()).collect()
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
    killed_and_replaced(&herd, pids(&herd.status())[0], 3);
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
    killed_and_replaced(&herd, before[0], 2);
    assert!(answers(&addr, 6).iter().all(|a| a.contains(", v1")));
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

/// Kills worker `victim` (SIGKILL) and waits for its replacement and `workers` ready ones.
fn killed_and_replaced(herd: &Herd, victim: u32, workers: u64) {
    // SAFETY: kill with a worker's pid.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    herd.wait_event("the replacement", |e| is_start(e) && e["pid"] != victim);
    let ready = format!("{workers} ready workers");
    wait_status(herd, &ready, |s| settled(s, workers));
}

/// `herd run --config FILE -w 1` and a file whose `workers` changes: the reload upgrades with
/// the rest of the file, and `herd upgrade` says on stderr (and herd's log, `config_overridden`)
/// that the command line's `-w` stays. Was: "upgraded" and nothing said the change was not
/// applied.
#[test]
fn a_reload_says_which_changes_herds_command_line_keeps_from_applying() {
    let (herd, config) = herd_on_config_and("", &["-w", "1"]);
    wait_status(&herd, "1 ready worker", |s| settled(s, 1));
    let text = std::fs::read_to_string(&config).unwrap();
    let changed = text
        .replace("workers = 2", "workers = 3")
        .replace("\"v1\"", "\"v2\"");
    std::fs::write(&config, changed).unwrap();
    let (code, stdout, stderr) = herd.ctl(&["upgrade", "--reload-config"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.starts_with("upgraded with the config file read again"),
        "{stdout}"
    );
    assert_eq!(
        stderr,
        "herd upgrade: note: the config file changes workers, which herd's command line gives: \
         the command line's values stay\n"
    );
    herd.wait_for_event("config_overridden", &[("keys", "workers".into())]);
    let after = wait_status(&herd, "1 ready worker", |s| settled(s, 1));
    assert_eq!(
        (after["desired"].as_u64(), after["generation"].as_u64()),
        (Some(1), Some(2))
    );
    assert!(answers(&herd.address("http"), 2)
        .iter()
        .all(|a| a.contains(", v2")));
}

/// A reload whose upgrade is refused (here a --timeout shorter than --min-ready) applies
/// nothing, so it names no key the command line gives that the file changed (it warned
/// config_overridden, "the command line's values stay", for an upgrade that never started);
/// the same reload that starts does.
#[test]
fn a_refused_reload_names_no_overridden_key() {
    let (herd, config) = herd_on_config_and("", &["-w", "1", "--min-ready", "1s"]);
    wait_status(&herd, "1 ready worker", |s| settled(s, 1));
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("workers = 2", "workers = 3")).unwrap();
    let (code, _, stderr) = herd.ctl(&["upgrade", "--reload-config", "--timeout", "500ms"]);
    assert_eq!(code, FAILURE, "{stderr}");
    assert!(stderr.contains("(invalid_argument)"), "{stderr}");
    herd.wait_for_event("upgrade_refused", &[]);
    let lines = herd.lines();
    assert!(
        !events(&lines).any(|e| is_event(e, "config_overridden", &[])),
        "{}",
        last_lines(&lines)
    );
    let (code, _, stderr) = herd.ctl(&["upgrade", "--reload-config"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("the config file changes workers"),
        "{stderr}"
    );
    herd.wait_for_event("config_overridden", &[("keys", "workers".into())]);
}

/// A reload refused for what the file's command or environment says is placed at its line,
/// as `herd run` and `herd check` place it (it named only the file).
#[test]
fn a_reload_refused_for_the_files_command_names_its_line() {
    let (herd, config) = herd_on_config("");
    wait_status(&herd, "2 ready workers", |s| settled(s, 2));
    let text = std::fs::read_to_string(&config).unwrap();
    let line = 1 + text.lines().position(|l| l.starts_with("command")).unwrap();
    std::fs::write(
        &config,
        text.replace("\"python3\"", "\"no-such-program-xyz\""),
    )
    .unwrap();
    let (code, _, stderr) = herd.ctl(&["upgrade", "--reload-config"]);
    assert_eq!(code, FAILURE, "{stderr}");
    let placed = format!("herd.toml:{line}: command: command 'no-such-program-xyz'");
    assert!(stderr.contains(&placed), "{stderr}");
}
