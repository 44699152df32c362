//! `herd --help` and `herd run --help` are the golden files that the Windows tests also compare
//! herd.exe's help with (tests/windows.rs): one command line, one help, on both platforms.

#[path = "../golden/help.rs"]
mod golden;

use golden::assert_help_is_golden;

#[test]
fn the_help_is_the_golden_one_that_windows_shares() {
    assert_help_is_golden(&["--help"], "help.txt");
    assert_help_is_golden(&["run", "--help"], "run-help.txt");
}

/// The help and the version written to a full stdout (`> /dev/full`) fail in one line with
/// status 1, as any output herd could not write; to a closed pipe (`| head -1`) they end as
/// asked, with 0.
#[test]
fn help_to_a_full_stdout_fails_and_to_a_closed_pipe_does_not() {
    use std::process::{Command, Stdio};
    let herd = crate::util::HERD;
    for args in [&["--help"][..], &["--version"], &["run", "--help"]] {
        let full = std::fs::File::create("/dev/full").unwrap();
        let out = Command::new(herd).args(args).stdout(full).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains("cannot write to stdout"), "{stderr}");
        let mut closed = Command::new(herd)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(closed.stdout.take());
        let out = closed.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {:?}", out.stderr);
        assert!(out.stderr.is_empty(), "{args:?}: {:?}", out.stderr);
    }
}
