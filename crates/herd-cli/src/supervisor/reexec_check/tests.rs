use super::*;

fn exited(code: i32) -> ExitStatus {
    ExitStatus::from_raw(code << 8)
}

#[test]
fn verdicts() {
    let verdict = |status, out: &[u8], err: &[u8]| verdict(status, out, err, STATE_VERSION);
    let good = format!("{ANSWER} state={STATE_VERSION} version=9.9.9\n");
    assert!(verdict(exited(0), good.as_bytes(), b"").is_ok());

    let crashed = verdict(ExitStatus::from_raw(libc::SIGSEGV), b"", b"").unwrap_err();
    assert!(crashed.contains("killed by SIGSEGV"), "{crashed}");

    let failed = verdict(exited(3), b"", b"warming up\nno such option\n").unwrap_err();
    assert!(
        failed.contains("exit code 3") && failed.contains("(no such option)"),
        "{failed}"
    );

    let hostile = verdict(exited(3), b"", b"\x1b[2J\x1b]0;owned\x07\rgone\n").unwrap_err();
    assert!(
        hostile.contains("(\\x1b[2J\\x1b]0;owned\\x07\\rgone)")
            && !hostile.chars().any(char::is_control),
        "{hostile}"
    );

    let silent = verdict(exited(0), b"hello\n", b"").unwrap_err();
    assert!(silent.contains("did not answer"), "{silent}");

    let other = format!("{ANSWER} state={} version=9.9.9\n", STATE_VERSION + 1);
    let other = verdict(exited(0), other.as_bytes(), b"").unwrap_err();
    assert!(other.contains("state version"), "{other}");
}

#[test]
fn a_binary_that_cannot_read_a_drains_state_is_told_why() {
    let older = verdict(exited(1), b"", b"reads 1..=1, not 2\n", 2).unwrap_err();
    assert!(older.contains("a worker is draining"), "{older}");
    let other = format!("{ANSWER} state=1 version=0.1.0\n");
    let other = verdict(exited(0), other.as_bytes(), b"", 2).unwrap_err();
    assert!(other.contains("version 2; this re-exec"), "{other}");
    let plain = verdict(exited(1), b"", b"", 1).unwrap_err();
    assert!(!plain.contains("draining"), "{plain}");
}

#[test]
fn versions_read_and_needed() {
    use crate::supervisor::reexec::{reads, version_needed, OLDEST_STATE};
    assert!(reads(OLDEST_STATE) && reads(STATE_VERSION) && !reads(0));
    assert!(!reads(STATE_VERSION + 1));
    assert_eq!(
        version_needed(false),
        1,
        "a re-exec onto an older herd stays possible"
    );
    assert_eq!(version_needed(true), 2);
}
