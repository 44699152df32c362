use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::CommandFactory;

use super::*;
use crate::cli::{Command, RunArgs, Workers};

fn parsed(text: &str) -> ConfigFile {
    ConfigFile::parse("herd.toml", text).unwrap()
}

fn error(text: &str) -> String {
    ConfigFile::parse("herd.toml", text).unwrap_err()
}

fn args(entry: &Entry) -> Vec<String> {
    entry
        .args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect()
}

fn os(words: &[&str]) -> Vec<OsString> {
    words.iter().map(OsString::from).collect()
}

/// A file with `text` under a unique name in the temporary directory, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(text: &str) -> TempFile {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("herd-config-test-{}-{n}.toml", std::process::id()));
        std::fs::write(&path, text).unwrap();
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `herd ARGS` with the file `text` as its `--config` (where ARGS has `{}`).
fn run_with(text: &str, argv: &[&str]) -> Result<RunArgs, String> {
    let file = TempFile::new(text);
    let path = file.0.to_string_lossy().into_owned();
    let mut words = vec!["herd"];
    words.extend(argv.iter().map(|w| if *w == "{}" { &path[..] } else { w }));
    let merged = parse(&os(&words))?;
    match merged.cli.command {
        Command::Run(args) => Ok(*args),
        other => panic!("not a run: {other:?}"),
    }
}

#[test]
fn keys_become_the_options_they_name() {
    let file = parsed(
        "workers = 4\nbind = [\"http=:8080\", \"udp://:53\"]\ngrace = \"30s\"\n\
         max-surge = 2\nclear-env = true\nnofile = 1024\ncommand = [\"python3\", \"app.py\"]\n\
         [env]\nA = \"1\"\nB = 2\n",
    );
    let keys: Vec<&str> = file.entries.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "workers",
            "bind",
            "grace",
            "max-surge",
            "clear-env",
            "nofile",
            "command",
            "env"
        ]
    );
    assert_eq!(args(&file.entries[0]), ["--workers=4"]);
    assert_eq!(
        args(&file.entries[1]),
        ["--bind=http=:8080", "--bind=udp://:53"]
    );
    assert_eq!(args(&file.entries[2]), ["--grace=30s"]);
    assert_eq!(args(&file.entries[3]), ["--max-surge=2"]);
    assert_eq!(args(&file.entries[4]), ["--clear-env"]);
    assert_eq!(args(&file.entries[6]), ["python3", "app.py"]);
    assert_eq!(args(&file.entries[7]), ["--env=A=1", "--env=B=2"]);
    assert_eq!(file.entries[7].line, 8);
    assert!(parsed("clear-env = false").entries[0].args.is_empty());
    assert_eq!(args(&parsed("umask = 0o027").entries[0]), ["--umask=027"]);
    assert_eq!(args(&parsed("env = [\"A=1\"]").entries[0]), ["--env=A=1"]);
    // Inline or dotted, a table says what it means: a variable named as a herd key is one.
    assert_eq!(
        args(&parsed("env = { workers = \"4\" }").entries[0]),
        ["--env=workers=4"]
    );
    assert_eq!(
        args(&parsed("env.name = \"x\"").entries[0]),
        ["--env=name=x"]
    );
}

#[test]
fn errors_name_the_file_the_line_and_the_key() {
    let cases = [
        (
            "workers = 0",
            "herd.toml:1: workers: a herd needs at least 1 worker",
        ),
        (
            "\n\ngrace = \"-1s\"",
            "herd.toml:3: grace: '-1s' is not a duration",
        ),
        (
            "wrokers = 2",
            "herd.toml:1: wrokers: unknown key; did you mean 'workers'?",
        ),
        (
            "max_surge = 2",
            "herd.toml:1: max_surge: unknown key; did you mean 'max-surge'?",
        ),
        (
            "zzzzzzzzz = 1",
            "herd.toml:1: zzzzzzzzz: unknown key; the keys are",
        ),
        (
            "grace = [\"1s\"]",
            "herd.toml:1: grace: takes one value, not an array",
        ),
        (
            "clear-env = \"yes\"",
            "herd.toml:1: clear-env: a string is not a flag's value",
        ),
        (
            "balance = \"x\"",
            "herd.toml:1: balance: 'x' is not one of: shared, reuseport",
        ),
        ("bind = [\"nonsense:\"]", "herd.toml:1: bind: "),
        (
            "command = \"app\"",
            "herd.toml:1: command: a string is not a command",
        ),
        (
            "[env]\nA = \"1\"\ncommand = [\"app\"]",
            "herd.toml:3: env: command is a key of herd's, not a variable: every key after [env] \
             belongs to it, so move command above [env]",
        ),
        (
            "[env]\nA = \"1\"\nworkers = 4",
            "herd.toml:3: env: workers is a key of herd's, not a variable",
        ),
        (
            "  [ env ]\nname = \"x\"",
            "herd.toml:2: env: name is a key of herd's, not a variable",
        ),
        ("command = []", "herd.toml:1: command: the command is empty"),
        (
            "command = [\"\"]",
            "herd.toml:1: command: the program's name is empty",
        ),
        (
            "workers = 2\nworkers = 3",
            "herd.toml:2: workers is given twice: keep one of the two",
        ),
        (
            "[env]\nA = \"1\"\n\"A\" = \"2\"",
            "herd.toml:3: \"A\" is given twice",
        ),
        (
            "env = [\"A=1\", \"B=2\",\n  \"A=3\"]",
            "herd.toml:2: env: the workers' variable A is given twice: keep one of the two values",
        ),
        (
            "command = [1]",
            "herd.toml:1: command: an integer is not a word",
        ),
        (
            "[env]\n\"A=B\" = \"c\"",
            "herd.toml:2: env: 'A=B' cannot be a variable's name",
        ),
        (
            "env = 3",
            "herd.toml:1: env: an integer is not an environment",
        ),
        ("x = = 1", "herd.toml:1: "),
        (
            "grace = { a = 1 }",
            "herd.toml:1: grace: a table is not a value of --grace",
        ),
    ];
    for (text, expected) in cases {
        let message = error(text);
        assert!(message.starts_with(expected), "{text:?}: {message}");
        assert!(!message.contains('\n'), "{text:?}: {message}");
    }
}

#[test]
fn the_command_line_overrides_the_file() {
    let file = "workers = 4\ngrace = \"30s\"\nbind = [\"a=127.0.0.1:0\", \"b=127.0.0.1:0\"]\n\
                command = [\"from-file\"]\n[env]\nA = \"file\"\nB = \"file\"\n";
    let run = run_with(file, &["run", "--config", "{}"]).unwrap();
    assert_eq!(run.workers, Some(Workers::Fixed(4)));
    assert_eq!(run.grace, Duration::from_secs(30));
    assert_eq!(run.binds.len(), 2);
    assert_eq!(run.command, os(&["from-file"]));
    let argv = [
        "--name",
        "x",
        "run",
        "-w",
        "2",
        "--config",
        "{}",
        "-b",
        "c=127.0.0.1:0",
        "--env",
        "B=line",
        "--",
        "from-line",
        "arg",
    ];
    let run = run_with(file, &argv).unwrap();
    assert_eq!(run.workers, Some(Workers::Fixed(2)));
    assert_eq!(run.grace, Duration::from_secs(30));
    let binds: Vec<&str> = run.binds.iter().map(|b| b.text.as_str()).collect();
    assert_eq!(binds, ["c=127.0.0.1:0"]);
    assert_eq!(run.command, os(&["from-line", "arg"]));
    // --env adds to [env]; the command line's value of a variable both give wins.
    let env: Vec<(String, String)> = run
        .env
        .iter()
        .map(|(k, v)| (k.to_string_lossy().into(), v.to_string_lossy().into()))
        .collect();
    let pairs = [("A", "file"), ("B", "file"), ("B", "line")];
    let expected: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(env, expected);
    assert!(run.config.unwrap().is_absolute());
}

/// A variable the file's `env` list gives twice is refused in one line (it was taken silently,
/// the later value winning); on the command line the last `--env` wins, as with `env` or
/// `docker run -e`, and over the file's.
#[test]
fn a_variable_the_file_gives_twice_is_refused() {
    let file = "bind = [\":0\"]\ncommand = [\"app\"]\nenv = [\"A=1\", \"A=2\"]\n";
    let refused = run_with(file, &["run", "--config", "{}"]).unwrap_err();
    assert!(
        refused.ends_with(
            ":3: env: the workers' variable A is given twice: keep one of the two values"
        ),
        "{refused}"
    );
    let file = "bind = [\":0\"]\ncommand = [\"app\"]\nenv = [\"A=1\"]\n";
    let argv = ["run", "--config", "{}", "--env", "A=2", "--env", "A=3"];
    let run = run_with(file, &argv).unwrap();
    assert_eq!(run.env.last(), Some(&("A".into(), "3".into())));
}

#[test]
fn a_file_without_what_herd_run_needs_says_so() {
    let no_command = run_with("bind = [\":0\"]", &["run", "--config", "{}"]).unwrap_err();
    assert!(
        no_command.contains(": no worker command: set command = "),
        "{no_command}"
    );
    let no_bind = run_with("command = [\"x\"]", &["run", "--config", "{}"]).unwrap_err();
    assert!(no_bind.contains(": no socket to share"), "{no_bind}");
    let missing = run_with("", &["run", "--config", "/nonexistent/herd.toml"]).unwrap_err();
    assert!(
        missing.starts_with("/nonexistent/herd.toml: cannot read the config file"),
        "{missing}"
    );
}

#[test]
fn a_command_line_without_config_is_left_as_it_is() {
    let argv = os(&["herd", "run", "-b", ":0", "--", "app"]);
    let merged = parse(&argv).unwrap();
    let Command::Run(run) = merged.cli.command else {
        panic!("not a run")
    };
    assert_eq!(run.config, None);
    assert_eq!(run.command, os(&["app"]));
}

#[test]
fn the_file_s_arguments_go_right_after_run() {
    let file = parsed("workers = 3\ncommand = [\"app\"]");
    let argv = os(&["herd", "--name", "run", "run", "--config", "f"]);
    let merged = merge(&argv, &file, |_| false, &[]);
    let expected = [
        "herd",
        "--name",
        "run",
        "run",
        "--workers=3",
        "--config",
        "f",
        "--",
        "app",
    ];
    assert_eq!(merged, os(&expected));
    let argv = os(&["herd", "run", "--config", "f", "--"]);
    let merged = merge(&argv, &file, |id| id == "workers", &[]);
    assert_eq!(merged, os(&["herd", "run", "--config", "f", "--", "app"]));
}

/// Every option of `herd run` is documented in examples/herd.toml, which parses, and each key
/// it shows commented out parses too.
#[test]
fn the_example_documents_every_key_and_parses() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/herd.toml");
    let text = std::fs::read_to_string(path).unwrap();
    let command = Cli::command();
    for key in keys(&run_options(&command)) {
        let shown = text
            .lines()
            .map(|l| l.trim_start_matches("# "))
            .any(|l| l.starts_with(&format!("{key} = ")) || (key == ENV_KEY && l == "[env]"));
        assert!(
            shown,
            "examples/herd.toml does not document `{key}`: add it (commented out if it has \
             no good example value)"
        );
    }
    ConfigFile::parse("examples/herd.toml", &text).unwrap();
    for (i, line) in text.lines().enumerate() {
        let commented = line.strip_prefix("# ").filter(|l| {
            l.split_once(" = ")
                .is_some_and(|(key, _)| !key.is_empty() && !key.contains(' '))
        });
        if let Some(key) = commented {
            ConfigFile::parse("examples/herd.toml", key)
                .unwrap_or_else(|e| panic!("line {}: {e}", i + 1));
        }
    }
    let argv = os(&["herd", "run", "--config", path]);
    parse(&argv).unwrap();
}

/// The command line `herd ARGS...`, parsed.
fn cli(args: &[&str]) -> Cli {
    let mut argv = vec!["herd"];
    argv.extend_from_slice(args);
    parse(&os(&argv)).unwrap().cli
}

#[test]
fn a_huge_unknown_key_is_refused_at_once_and_quoted_short() {
    // A key as long as a file: comparing it with every key for a suggestion took a minute
    // (on the supervisor's loop, for a reload), and the message quoted all of it.
    let key = "k".repeat(8 << 20);
    let started = std::time::Instant::now();
    let message = error(&format!("{key} = 1\n"));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert!(message.len() < 300, "{} bytes", message.len());
    assert!(
        message.starts_with(&format!(
            "herd.toml:1: '{}...' (8388608 characters): unknown key;",
            "k".repeat(64)
        )),
        "{}",
        &message[..message.len().min(300)]
    );
    // A near key is still suggested, a long one quoted whole up to the limit.
    assert_eq!(
        error("gracee = 1"),
        "herd.toml:1: gracee: unknown key; did you mean 'grace'?"
    );
    // Options the file cannot hold are not unknown ones.
    assert_eq!(
        error("config = \"other.toml\""),
        "herd.toml:1: config: --config goes on the command line only, not in a config file; \
         remove it"
    );
}

/// An `[env]` over what any system gives a program (Linux's ARG_MAX at its largest, 6 MiB) is
/// refused before its variables are checked one by one and made a command line: a file of a
/// million of them held herd's loop for about 4 s (release) during `herd upgrade
/// --reload-config`, 0.6 s now (reading the TOML). One within it is left to the exact check.
#[test]
fn an_env_larger_than_any_system_allows_is_refused_before_its_variables_are_checked() {
    let env = |n: usize| {
        let value = "x".repeat(1 << 20);
        let lines: Vec<String> = (0..n).map(|i| format!("V{i} = \"{value}\"")).collect();
        format!("command = [\"app\"]\n[env]\n{}\n", lines.join("\n"))
    };
    let message = error(&env(7));
    assert!(
        message.starts_with("herd.toml:2: env: its 7 variables take 7340")
            && message.contains("over the most any system allows")
            && message.contains("the workers' variable V0=... (from env) is 1048579 bytes")
            && message.ends_with("pass large values in a file instead"),
        "{message}"
    );
    assert_eq!(parsed(&env(3)).entries.len(), 2);
    let array = format!(
        "env = [{}]\n",
        vec![format!("\"A={}\"", "x".repeat(1 << 20)); 7].join(",")
    );
    assert!(error(&array).contains("its 7 variables take"));
}

mod limits;
mod placing;
mod reload;

/// An error about the merged options is placed at the key it is about, the first `--KEY` it
/// names, when the file gives that key and the command line does not override it.
#[test]
fn errors_about_merged_options_are_placed_at_their_key() {
    let file = ConfigFile::parse("herd.toml", "command = [\"true\"]\nready-min = 3\n").unwrap();
    let why = "--ready-min 3: the pool has at most 2 workers; give at most 2, or more --workers";
    assert_eq!(
        file.locate(why, &[]).as_deref(),
        Some(format!("herd.toml:2: ready-min: {why}").as_str())
    );
    assert_eq!(file.locate(why, &["ready-min".to_string()]), None);
    assert_eq!(file.locate("--workers 0 is not a pool", &[]), None);
    assert_eq!(file.locate("no option named", &[]), None);
    assert_eq!(file.locate("--", &[]), None);
    // Only what it starts with: an option it quotes further on says nothing of the cause.
    let quoted = "argument 2 of the worker command ('--ready-min') is too long";
    assert_eq!(
        file.locate(quoted, &[]).as_deref(),
        Some(format!("herd.toml:1: command: {quoted}").as_str())
    );
    // Errors about the worker command are placed at `command`, unless the command line gave
    // its own; names given twice and limits at their option.
    let missing = "command '/no/app' does not exist";
    assert_eq!(
        file.locate(missing, &[]).as_deref(),
        Some(format!("herd.toml:1: command: {missing}").as_str())
    );
    assert_eq!(file.locate(missing, &["command".to_string()]), None);
    let file = ConfigFile::parse("f", "nofile = 9\nbind = [\"a=:1\", \"a=:2\"]\n").unwrap();
    let twice = crate::spec::check_names(&["a=:1".parse().unwrap(), "a=:2".parse().unwrap()], &[]);
    let twice = twice.unwrap_err();
    assert!(file
        .locate(&twice, &[])
        .unwrap()
        .starts_with("f:2: bind: --bind: the name 'a'"));
    let limit = "--nofile 9: cannot set the workers' limit: Operation not permitted";
    assert!(file
        .locate(limit, &[])
        .unwrap()
        .starts_with("f:1: nofile: --nofile 9"));
}

/// Lines are told from one index of the text's newlines (a count from the start for each key
/// took quadratic time: 26 s for 20,000 `[env]` variables).
#[test]
fn the_line_of_an_offset_counts_the_newlines_before_it() {
    let index = LineIndex::new("a\nbc\n\nd");
    let lines: Vec<usize> = (0..8).map(|offset| index.line(offset)).collect();
    assert_eq!(lines, [1, 1, 2, 2, 2, 3, 4, 4]);
    assert_eq!(LineIndex::new("").line(5), 1);
}
