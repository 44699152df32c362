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
