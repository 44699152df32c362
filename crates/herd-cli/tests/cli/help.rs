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
/// (`> /dev/full`), a closed one (`1>&-`), one open for reading only (`1</dev/null`) or a pipe
/// whose reader is gone (EPIPE), they fail in
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
        // Open for reading only, a write fails with EBADF, which Rust's stdout took for
        // success: herd printed nothing and ended with 0.
        let mut read_only = Command::new(herd);
        read_only.stdout(std::fs::File::open("/dev/null").unwrap());
        fails(
            read_only,
            "with stdout read-only",
            "open for reading only (1<FILE)",
        );
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

/// `herd --help | head -1` ends as asked, with 0 and nothing on stderr: the help is one write,
/// so a reader that takes its first line and goes has taken all of it. clap's own print wrote
/// a piece at a time (60 writes for `run --help`), and the reader's going failed the rest with
/// EPIPE: `cannot write to stdout: Broken pipe`, status 1, in most runs. (Repeated: without
/// the one write, a run passes only when herd writes everything before the reader wakes.)
#[test]
fn help_read_by_head_ends_quietly() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    for args in [&["--help"][..], &["run", "--help"]] {
        for _ in 0..20 {
            let mut child = Command::new(crate::util::HERD)
                .args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let mut first = String::new();
            std::io::BufReader::new(child.stdout.take().unwrap())
                .read_line(&mut first)
                .unwrap();
            assert!(
                first.starts_with("herd") || first.starts_with("Bind"),
                "{first}"
            );
            let out = child.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
            assert!(stderr.is_empty(), "{args:?}: {stderr}");
        }
    }
}
