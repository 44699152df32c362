//! `herd --help` and `herd run --help` are the golden files that the Windows tests also compare
//! herd.exe's help with (tests/windows.rs): one command line, one help, on both platforms.

use std::process::Command;

use crate::util::HERD;

/// herd's help for `args`, compared with `tests/golden/NAME`.
fn assert_help_is_golden(args: &[&str], name: &str) {
    let out = Command::new(HERD)
        .args(args)
        .env_remove("COLUMNS")
        .output()
        .unwrap();
    assert!(out.status.success(), "herd {args:?}: {out:?}");
    let golden = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    let expected = std::fs::read_to_string(&golden).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        expected,
        "herd {args:?} differs from {}: if the change is meant, write it there with \
         `target/debug/herd {} > {}`",
        golden.display(),
        args.join(" "),
        golden.display()
    );
}

#[test]
fn the_help_is_the_golden_one_that_windows_shares() {
    assert_help_is_golden(&["--help"], "help.txt");
    assert_help_is_golden(&["run", "--help"], "run-help.txt");
}
