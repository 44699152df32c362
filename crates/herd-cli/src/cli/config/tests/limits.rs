//! A resource limit given on the command line and in the file.
use super::*;

/// A limit the command line sets replaces the file's setting of it under either key
/// (`nofile`, `rlimit = ["nofile=..."]`), as any option the command line gives does: the two
/// used to clash ("--nofile 1024 and --rlimit nofile=4096 set the same limit").
#[test]
fn a_limit_the_command_line_sets_replaces_the_file_s_under_either_key() {
    let names = |run: &RunArgs| -> Vec<String> {
        run.rlimit.iter().map(|r| r.name().to_string()).collect()
    };
    let file = TempFile::new("nofile = 1024\nbind = [\"127.0.0.1:0\"]\ncommand = [\"app\"]");
    let path = file.0.to_string_lossy().into_owned();
    let merged = parse(&os(&[
        "herd",
        "run",
        "--config",
        &path,
        "--rlimit",
        "nofile=4096",
    ]))
    .unwrap();
    let keys: Vec<&str> = merged
        .overridden
        .iter()
        .map(|(key, _)| key.as_str())
        .collect();
    assert_eq!(keys, ["nofile"]);
    let Command::Run(run) = merged.cli.command else {
        panic!("not a run")
    };
    assert_eq!(
        (run.nofile, names(&run)),
        (None, vec!["nofile".to_string()])
    );

    let text =
        "rlimit = [\"nofile=1024\", \"core=0\"]\nbind = [\"127.0.0.1:0\"]\ncommand = [\"app\"]";
    let file = TempFile::new(text);
    let path = file.0.to_string_lossy().into_owned();
    let merged = parse(&os(&["herd", "run", "--config", &path, "--nofile", "4096"])).unwrap();
    let nofile = ("rlimit.nofile".to_string(), os(&["--rlimit=nofile=1024"]));
    assert_eq!(merged.overridden, [nofile]);
    let Command::Run(run) = merged.cli.command else {
        panic!("not a run")
    };
    assert_eq!(
        (run.nofile, names(&run)),
        (Some(4096), vec!["core".to_string()])
    );
}

/// `--rlimit core=1` on the command line replaced the file's whole `rlimit` list, so a file's
/// `nofile=1024` (or a hardening `core=0`) was silently dropped: it replaces the file's `core`
/// alone.
#[test]
fn a_command_line_rlimit_keeps_the_file_s_other_limits() {
    let text =
        "rlimit = [\"nofile=1024\", \"core=0\"]\nbind = [\"127.0.0.1:0\"]\ncommand = [\"app\"]";
    let file = TempFile::new(text);
    let path = file.0.to_string_lossy().into_owned();
    let merged = parse(&os(&[
        "herd", "run", "--config", &path, "--rlimit", "core=1",
    ]))
    .unwrap();
    let core = ("rlimit.core".to_string(), os(&["--rlimit=core=0"]));
    assert_eq!(merged.overridden, [core]);
    let Command::Run(run) = merged.cli.command else {
        panic!("not a run")
    };
    let texts: Vec<&str> = run.rlimit.iter().map(|r| r.given()).collect();
    assert_eq!(texts, ["nofile=1024", "core=1"]);
}

/// An error about a limit is the file's only where the file sets that limit and the command
/// line does not: `--rlimit memlock=...` given on the command line beside a file's
/// `rlimit = ["core=0"]` was placed at the file's `rlimit` line.
#[test]
fn an_error_about_a_limit_is_placed_in_the_file_only_where_the_file_sets_it() {
    let file = ConfigFile::parse("f", "rlimit = [\"core=0\", \"memlock=1\"]\n").unwrap();
    let memlock = "--rlimit memlock=1: cannot set the workers' limit: Operation not permitted";
    let placed = file.locate(memlock, &[]).unwrap();
    assert!(
        placed.starts_with("f:1: rlimit: --rlimit memlock=1"),
        "{placed}"
    );
    assert_eq!(file.locate(memlock, &["rlimit.memlock".to_string()]), None);
    let nproc = "--rlimit nproc=5: cannot set the workers' limit: Operation not permitted";
    assert_eq!(file.locate(nproc, &[]), None);
}
