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

/// The help and the version are all these commands do: written to a full stdout
/// (`> /dev/full`), a closed one (`1>&-`) or a pipe whose reader is gone (EPIPE), they fail in
/// one line with status 1, as any output herd could not write. The last two ended with 0 and
/// nothing said: herd's stdout was /dev/null in place of the closed fd, and EPIPE was taken
/// for `| head` (which reads the help, a single write, before it goes).
#[test]
fn help_that_cannot_be_written_fails_in_one_line() {
    use std::process::Command;
    let herd = crate::util::HERD;
    for args in [&["--help"][..], &["--version"], &["run", "--help"]] {
        let fails = |mut cmd: Command, case: &str, why: &str| {
            let out = cmd.args(args).output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{args:?} {case}: {stderr}");
            assert_eq!(stderr.lines().count(), 1, "{args:?} {case}: {stderr}");
            assert!(
                stderr.starts_with("herd: error: cannot write to stdout: ") && stderr.contains(why),
                "{args:?} {case}: {stderr}"
            );
        };
        let mut full = Command::new(herd);
        full.stdout(std::fs::File::create("/dev/full").unwrap());
        fails(full, "to /dev/full", "No space left on device");
        // The reader is gone before herd starts: no race with herd's write.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let mut gone = Command::new(herd);
        gone.stdout(writer);
        fails(gone, "to a pipe without a reader", "Broken pipe");
        let mut closed = Command::new("sh");
        closed.args(["-c", "exec \"$0\" \"$@\" 1>&-", herd]);
        fails(closed, "with stdout closed", "closed when herd started");
    }
    // So does any command's answer on a closed stdout (it went to /dev/null, with 0).
    let config = crate::util::repo().join("examples/herd.toml");
    let config = config.to_str().unwrap();
    let out = std::process::Command::new("sh")
        .args([
            "-c",
            "exec \"$0\" \"$@\" 1>&-",
            herd,
            "check",
            "--config",
            config,
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        "herd: error: cannot write to stdout: it was closed when herd started (1>&-)"
    );
}
