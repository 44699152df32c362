//! Errors about one value of a key written over several lines (an array's element, an
//! `[env]` variable) are placed at that value's line, not the key's.
use super::*;

/// A bad element of a multi-line array was placed at the array's first line.
#[test]
fn a_bad_element_of_an_array_is_placed_at_its_line() {
    let text = "bind = [\n  \"127.0.0.1:0\",\n  \"127.0.0.1:99999\",\n]\ncommand = [\"app\"]\n";
    let err = ConfigFile::parse("f", text).unwrap_err();
    assert!(err.starts_with("f:3: bind: "), "{err}");
}

/// An error about the merged options that names one value (`--env NAME: ...`, `--bind
/// 'SPEC': ...`, `--rlimit NAME=...: ...`) is placed at that value's line.
#[test]
fn an_error_naming_one_value_is_placed_at_its_line() {
    let text = "bind = [\n  \"a=127.0.0.1:0\",\n  \"b=127.0.0.1:1\",\n]\n\
                rlimit = [\n  \"core=0\",\n  \"nofile=10:20\",\n]\n\
                command = [\"app\"]\n[env]\nA = \"1\"\nLISTEN_FDS = \"3\"\n";
    let file = ConfigFile::parse("f", text).unwrap();
    let at = |why: &str| file.locate(why, &[]).unwrap();
    let env = "--env LISTEN_FDS: herd sets LISTEN_FDS for each worker itself";
    assert_eq!(at(env), format!("f:12: env: {env}"));
    let bind = "--bind 'b=127.0.0.1:1': cannot bind";
    assert_eq!(at(bind), format!("f:3: bind: {bind}"));
    let limit = "--rlimit nofile=10:20: cannot set the workers' limit";
    assert_eq!(at(limit), format!("f:7: rlimit: {limit}"));
    // Naming no value of the key's, or the key alone: the key's line.
    let other = "--bind 'c=127.0.0.1:2': cannot bind";
    assert_eq!(at(other), format!("f:1: bind: {other}"));
    let alone = "--bind: the name 'a' is given to more than one --bind";
    assert_eq!(at(alone), format!("f:1: bind: {alone}"));
}

/// A variable given inline (`env = { ... }`, `env.NAME = ...`) is placed at its own line too.
#[test]
fn an_inline_or_dotted_variable_is_placed_at_its_line() {
    let text = "command = [\"app\"]\nenv.A = \"1\"\nenv.LISTEN_PID = \"3\"\n";
    let file = ConfigFile::parse("f", text).unwrap();
    let why = "--env LISTEN_PID: herd sets LISTEN_PID for each worker itself";
    assert_eq!(file.locate(why, &[]).unwrap(), format!("f:3: env: {why}"));
}
