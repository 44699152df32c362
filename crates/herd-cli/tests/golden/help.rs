//! The comparison of herd's help with the golden files beside this one, shared by the Linux
//! tests (tests/cli/help.rs) and the Windows tests (tests/windows.rs): one command line, one
//! help, on both platforms.

use std::process::Command;

/// herd's help for `args`, compared with `tests/golden/NAME`.
pub fn assert_help_is_golden(args: &[&str], name: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_herd"))
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
         `target/debug/herd {} > {}` (the Linux binary's)",
        golden.display(),
        args.join(" "),
        golden.display()
    );
}
