//! `herd upgrade --reload-config`: the file read again, what it may change, and what it says.
use super::*;

#[test]
fn a_reload_reads_the_file_again_and_refuses_what_needs_new_sockets() {
    let base = "bind = [\"http=127.0.0.1:0\"]\ncommand = [\"app\"]\nworkers = 2\n";
    let file = TempFile::new(&format!("{base}[env]\nA = \"1\"\n"));
    let argv = os(&["herd", "run", "--config", &file.0.to_string_lossy()]);
    let mut reloader = Reloader::new(argv, None).unwrap();
    let write = |text: &str| std::fs::write(&file.0, text).unwrap();
    let second = format!("{base}grace = \"5s\"\n[env]\nA = \"2\"\n");
    write(&second);
    let reread = reloader.reread().unwrap();
    assert_eq!(reread.args.grace, Duration::from_secs(5));
    assert_eq!(reread.args.env, [("A".into(), "2".into())]);
    assert_eq!(
        reread.workers, None,
        "workers unchanged: a herd scale since stays"
    );
    assert!(
        reloader.in_force().contains("A = \"1\""),
        "in force until settled"
    );
    reloader.settle(true);
    assert_eq!(reloader.in_force(), second);
    write(&base.replace("workers = 2", "workers = 3"));
    assert_eq!(reloader.reread().unwrap().workers, Some(Workers::Fixed(3)));
    reloader.settle(false);
    assert_eq!(
        reloader.in_force(),
        second,
        "an upgrade that failed changes nothing"
    );
    assert_eq!(reloader.reread().unwrap().workers, Some(Workers::Fixed(3)));
    // The same socket written otherwise is no change.
    write(&base.replace("127.0.0.1:0", "tcp://127.0.0.1:00"));
    reloader.reread().unwrap();
    write(
        &base
            .replace("127.0.0.1:0", "127.0.0.1:1")
            .replace("workers = 2", "workers = 3"),
    );
    let refused = reloader.reread().unwrap_err();
    assert!(
        refused.ends_with(
            ": cannot reload: bind changed, which needs new sockets: restart herd, or start a \
             new herd with --takeover; nothing was changed"
        ),
        "{refused}"
    );
    write(&format!("{base}log-level = \"debug\"\nname = \"other\"\n"));
    let refused = reloader.reread().unwrap_err();
    assert!(
        refused.contains("name changed, which herd's control socket"),
        "{refused}"
    );
    assert!(
        refused.contains("; log-level changed, which herd's own log"),
        "{refused}"
    );
    write(&format!("{base}env = [\"A=1\", \"A=2\"]\n"));
    let twice = reloader.reread().unwrap_err();
    assert!(
        twice.ends_with(
            ":4: env: the workers' variable A is given twice: keep one of the two values"
        ),
        "{twice}"
    );
    write("workers = 0\n");
    let invalid = reloader.reread().unwrap_err();
    assert!(
        invalid.ends_with(":1: workers: a herd needs at least 1 worker"),
        "{invalid}"
    );
    // Gone: from a directory anyone may write in (/tmp), whoever makes it there meanwhile
    // would choose what herd runs; elsewhere (TMPDIR, Windows), it is just gone.
    std::fs::remove_file(&file.0).unwrap();
    let gone = reloader.reread().unwrap_err();
    let said = match super::super::others_could_write(&file.0) {
        Some(_) => "may be written by group or others",
        None => ": cannot reload: no such file",
    };
    assert!(gone.contains(said), "{gone}");
    // A re-exec's new image starts from the contents the workers run, not from the disk.
    let argv = os(&["herd", "run", "--config", &file.0.to_string_lossy()]);
    let resumed = Reloader::new(argv, Some(&second)).unwrap();
    assert_eq!(resumed.in_force(), second);
}

/// `herd run --config FILE -w 1 --grace 5s -- app`: a reload that changes `workers`, `grace`
/// or `command` in the file changes nothing of them, and says which (it answered "upgraded"
/// and nothing told); one the command line leaves to the file, or that it did not change, is
/// not named.
#[test]
fn a_reload_names_what_the_file_changed_that_the_command_line_gives() {
    let base = "bind = [\"http=127.0.0.1:0\"]\ncommand = [\"app\"]\nworkers = 2\ngrace = \"3s\"\n";
    let file = TempFile::new(base);
    let path = file.0.to_string_lossy().into_owned();
    let argv = os(&[
        "herd", "run", "--config", &path, "-w", "1", "--grace", "5s", "--", "other",
    ]);
    let mut reloader = Reloader::new(argv, None).unwrap();
    let write = |text: &str| std::fs::write(&file.0, text).unwrap();
    write(&format!("{base}watchdog = \"9s\"\n"));
    let reread = reloader.reread().unwrap();
    assert!(reread.overridden.is_empty(), "{:?}", reread.overridden);
    // The same values written otherwise are no change: nothing the command line keeps.
    write(&format!(
        "{}watchdog = \"9s\"\n",
        base.replace("\"3s\"", "\"3000ms\"")
            .replace("workers = 2", "workers = \"2\"")
    ));
    let reread = reloader.reread().unwrap();
    assert!(reread.overridden.is_empty(), "{:?}", reread.overridden);
    write(
        &base
            .replace("workers = 2", "workers = 3")
            .replace("\"3s\"", "\"7s\"")
            .replace("\"app\"", "\"app2\""),
    );
    let reread = reloader.reread().unwrap();
    assert_eq!(reread.overridden, ["command", "workers", "grace"]);
    assert_eq!(reread.args.grace, Duration::from_secs(5));
    assert_eq!(reread.workers, None);
}

#[test]
fn only_what_a_reload_cannot_change_counts_as_fixed() {
    let base = cli(&["run", "-b", ":0", "--", "app"]);
    let same_sockets = cli(&[
        "run", "-b", ":0", "-w", "3", "--grace", "1s", "--env", "A=1", "--", "other",
    ]);
    assert!(fixed_changes(&base, &same_sockets).is_empty());
    let other = cli(&[
        "--name", "n", "run", "-b", ":1", "--shm", "a=4096", "--", "app",
    ]);
    let changes = fixed_changes(&base, &other);
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert!(changes[0].starts_with("bind, shm changed"), "{changes:?}");
    assert!(changes[1].starts_with("name changed"), "{changes:?}");
}

#[test]
fn a_changed_starting_nice_is_refused_in_one_clean_sentence() {
    let base = cli(&["run", "-b", ":0", "--", "app"]);
    let off = cli(&["run", "-b", ":0", "--starting-nice", "off", "--", "app"]);
    let changes = fixed_changes(&base, &off);
    assert_eq!(
        changes,
        [
            "starting-nice changed, which herd checked against its own priority and privileges at \
          start-up: restart herd to change it"
        ]
    );
    // Every reason reads as one sentence: no line-continuation gaps.
    for (why, _) in crate::cli::config::reload::FIXED {
        assert!(!why.contains("  "), "{why:?}");
    }
}

/// Turning einhorn's convention on or off needs its acknowledgement socket, which herd binds
/// only as it starts: a reload gave the workers `EINHORN_FDS` but no `EINHORN_SOCK_PATH`, so
/// an acknowledging worker never became ready. Server::Starter's needs no socket of herd's.
#[test]
fn a_reload_refuses_turning_einhorn_on_or_off_but_not_server_starter() {
    let plain = cli(&["run", "-b", ":0", "--", "app"]);
    let einhorn = cli(&["run", "-b", ":0", "--compat", "einhorn", "--", "app"]);
    let both = cli(&[
        "run",
        "-b",
        ":0",
        "--compat",
        "server-starter",
        "--compat",
        "einhorn",
        "--",
        "app",
    ]);
    let starter = cli(&["run", "-b", ":0", "--compat", "server-starter", "--", "app"]);
    let refused = [
        "compat \"einhorn\" changed, whose acknowledgement socket (EINHORN_SOCK_PATH) herd \
         binds, or not, as it starts: restart herd, or start a new herd with --takeover",
    ];
    assert_eq!(fixed_changes(&plain, &einhorn), refused);
    assert_eq!(fixed_changes(&einhorn, &plain), refused);
    assert_eq!(fixed_changes(&starter, &einhorn), refused);
    assert!(fixed_changes(&plain, &starter).is_empty());
    assert!(fixed_changes(&einhorn, &both).is_empty());
}

/// `herd run --config FILE --env A=1`: a reload whose file changes `A` in its `env` changes
/// nothing of it (the command line's `--env` wins), and says so, as for any other key the
/// command line gives; a variable only the file sets, or one it did not change, is not named.
#[test]
fn a_reload_names_a_variable_the_file_changed_that_the_command_lines_env_sets() {
    let base = "bind = [\"http=127.0.0.1:0\"]\ncommand = [\"app\"]\n";
    let file = TempFile::new(&format!("{base}[env]\nA = \"1\"\nB = \"1\"\n"));
    let path = file.0.to_string_lossy().into_owned();
    let argv = os(&["herd", "run", "--config", &path, "--env", "A=0"]);
    let mut reloader = Reloader::new(argv, None).unwrap();
    let write = |text: &str| std::fs::write(&file.0, text).unwrap();
    write(&format!("{base}[env]\nA = 1\nB = \"2\"\n"));
    let reread = reloader.reread().unwrap();
    assert!(reread.overridden.is_empty(), "{:?}", reread.overridden);
    write(&format!("{base}env = [\"B=2\", \"A=2\"]\n"));
    let reread = reloader.reread().unwrap();
    assert_eq!(reread.overridden, ["env.A"]);
    assert!(reread.args.env.contains(&("A".into(), "0".into())));
    // One the file did not set before is a change too.
    let argv = os(&["herd", "run", "--config", &path, "--env", "C=0"]);
    let mut reloader = Reloader::new(argv, None).unwrap();
    write(&format!("{base}[env]\nC = \"3\"\n"));
    assert_eq!(reloader.reread().unwrap().overridden, ["env.C"]);
}

/// `herd run --config FILE --nofile 4096` with `rlimit = ["nofile=1024", "core=0"]`: the
/// command line's `--nofile` overrides the file's `nofile` alone (`rlimit.nofile`), and a
/// reload names it only when the file changed that limit, not at every reload.
#[cfg(unix)] // Windows has no resource limits: --nofile is refused there.
#[test]
fn a_reload_names_a_limit_the_file_changed_that_the_command_line_sets() {
    let base = "bind = [\"http=127.0.0.1:0\"]\ncommand = [\"app\"]\n";
    let file = TempFile::new(&format!("{base}rlimit = [\"nofile=1024\", \"core=0\"]\n"));
    let path = file.0.to_string_lossy().into_owned();
    let argv = os(&["herd", "run", "--config", &path, "--nofile", "4096"]);
    let mut reloader = Reloader::new(argv, None).unwrap();
    let write = |text: &str| std::fs::write(&file.0, text).unwrap();
    write(&format!("{base}rlimit = [\"core=1\", \"nofile=1024\"]\n"));
    let reread = reloader.reread().unwrap();
    assert!(reread.overridden.is_empty(), "{:?}", reread.overridden);
    reloader.settle(true);
    write(&format!("{base}rlimit = [\"core=1\", \"nofile=2048\"]\n"));
    let reread = reloader.reread().unwrap();
    assert_eq!(reread.overridden, ["rlimit.nofile"]);
    assert_eq!(reread.args.nofile, Some(4096));
    reloader.settle(true);
    // The same limits in other words: nothing the command line keeps from being applied.
    write(&format!(
        "{base}rlimit = [\"core=1:1\", \"nofile=2048:2048\"]\n"
    ));
    let reread = reloader.reread().unwrap();
    assert!(reread.overridden.is_empty(), "{:?}", reread.overridden);
}

/// An error about what a reload read (the worker command's, made by `herd run`'s code) is
/// placed at the file's line, as `herd run` places it, or names the file; a key the command
/// line gives is not the file's.
#[test]
fn a_reload_places_errors_about_what_it_read_in_the_file() {
    let base = "bind = [\"http=127.0.0.1:0\"]\n[env]\nA = \"1\"\n";
    let file = TempFile::new(&format!("command = [\"app\"]\n{base}"));
    let path = file.0.to_string_lossy().into_owned();
    let mut reloader = Reloader::new(os(&["herd", "run", "--config", &path]), None).unwrap();
    std::fs::write(&file.0, format!("\ncommand = [\"gone\"]\n{base}")).unwrap();
    reloader.reread().unwrap();
    let missing = "command 'gone' does not exist".to_string();
    assert_eq!(
        reloader.place(missing.clone()),
        format!("{path}:2: command: {missing}")
    );
    let other = "no such thing".to_string();
    assert_eq!(reloader.place(other.clone()), format!("{path}: {other}"));
    let argv = os(&["herd", "run", "--config", &path, "--", "mine"]);
    let mut reloader = Reloader::new(argv, None).unwrap();
    reloader.reread().unwrap();
    assert_eq!(
        reloader.place(missing.clone()),
        format!("{path}: {missing}")
    );
}

/// A file that says something wrong is told so before what it would change: a reload of
/// `compat = ["einhorn", "einhorn"]` said "compat changed ... restart herd", not that it is
/// given twice; a variable herd sets is refused at its line (the variable's, not `[env]`'s).
#[test]
fn a_reload_says_what_the_file_says_wrong_before_what_it_changes() {
    let base = "bind = [\"http=127.0.0.1:0\"]\ncommand = [\"app\"]\n";
    let file = TempFile::new(base);
    let path = file.0.to_string_lossy().into_owned();
    let mut reloader = Reloader::new(os(&["herd", "run", "--config", &path]), None).unwrap();
    let write = |text: &str| std::fs::write(&file.0, text).unwrap();
    // Windows refuses --compat whatever its value.
    if cfg!(unix) {
        write(&format!("{base}compat = [\"einhorn\", \"einhorn\"]\n"));
        let why = reloader.reread().unwrap_err();
        let said = format!("{path}:3: compat: --compat einhorn is given twice");
        assert!(why.starts_with(&said), "{why}");
    }
    write(&format!("{base}[env]\nNOTIFY_SOCKET = \"/x\"\n"));
    let why = reloader.reread().unwrap_err();
    assert!(
        why.starts_with(&format!("{path}:4: env: --env NOTIFY_SOCKET")),
        "{why}"
    );
}

/// The workers' notify socket is their user's (`--user`), made as herd starts: a reload to
/// another user gave workers that could not send `READY=1` to it, and the upgrade failed.
#[test]
fn a_reload_refuses_another_user_for_the_workers() {
    let alice = cli(&["run", "-b", ":0", "--user", "alice", "--", "app"]);
    let bob = cli(&["run", "-b", ":0", "--user", "bob", "--", "app"]);
    let own = cli(&["run", "-b", ":0", "--", "app"]);
    let refused = [
        "user changed, whose notify socket was made for the workers' user (theirs, when they \
         run as another): restart herd to change it",
    ];
    assert_eq!(fixed_changes(&alice, &bob), refused);
    assert_eq!(fixed_changes(&own, &bob), refused);
    assert!(fixed_changes(&alice, &alice).is_empty());
}

/// herd runs the command its config file names at every reload, as its user: a file that
/// someone else could have written (here, in a directory anyone may write) is not read again.
#[cfg(unix)]
#[test]
fn a_file_others_could_write_is_not_read_again() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().canonicalize().unwrap();
    let path = dir.join("herd.toml");
    std::fs::write(&path, "bind = [\"127.0.0.1:0\"]\ncommand = [\"app\"]\n").unwrap();
    let mut reloader = Reloader::new(
        os(&["herd", "run", "--config", &path.to_string_lossy()]),
        None,
    )
    .unwrap();
    reloader.reread().unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let refused = reloader.reread().unwrap_err();
    let shown = dir.display();
    assert!(
        refused.starts_with(&format!("{}: cannot reload: {shown} may be written by group or others (mode 777), so someone else could choose what herd runs", path.display()))
            && refused.contains(&format!("chmod go-w {shown}"))
            && refused.ends_with("nothing was changed"),
        "{refused}"
    );
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    reloader.reread().unwrap();
    // Gone from a directory only herd's user may write in: said, with what to do (herd reads
    // the path it started with; --config cannot be given again).
    std::fs::remove_file(&path).unwrap();
    let gone = reloader.reread().unwrap_err();
    assert!(
        gone.contains(": cannot reload: no such file; a running herd reads the file it started")
            && !gone.contains("give --config"),
        "{gone}"
    );
}
