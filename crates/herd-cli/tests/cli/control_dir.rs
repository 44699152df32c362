//! Where the control socket lives: a directory others may write, where any local user could
//! remove or replace the socket, is warned of at start.

use std::os::unix::fs::PermissionsExt;

use crate::util::*;

/// A herd of one sleeper whose temporary directory, where its control socket is, has `mode`;
/// `relative`: the control socket given relative to it, its working directory.
fn herd_in_directory_of_mode(mode: u32, relative: bool) -> Herd {
    Herd::start_with(|dir| {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).unwrap();
        let mut cmd = herd_json();
        if relative {
            cmd.current_dir(dir).env("HERD_CONTROL", "control.sock");
        }
        cmd.args(ONE_SLEEPER);
        cmd
    })
}

/// A control socket in a directory others may write (not sticky, unlike /tmp) is warned of
/// at start: any local user could remove or replace it. Was: silence, and a herd nobody
/// could reach once another user had swapped its socket.
#[test]
fn a_control_socket_in_a_directory_others_may_write_is_warned_of() {
    let herd = herd_in_directory_of_mode(0o777, false);
    let note = herd.wait_for_event("setup_note", &[]);
    let message = note["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("which others may write (mode 777, not sticky)")
            && message.contains("pass --control in a directory only herd's user may write"),
        "{note}"
    );
    herd.started(1);
}

/// A sticky directory open to all (/tmp) keeps others from removing the socket: no warning.
#[test]
fn a_control_socket_in_a_sticky_directory_is_not_warned_of() {
    let herd = herd_in_directory_of_mode(0o1777, false);
    herd.started(1);
    herd.wait_for_event("control_ready", &[]);
    let logged = format!("{:?}", herd.lines());
    assert!(!logged.contains("which others may write"), "{logged}");
}

/// A relative `--control` (`$HERD_CONTROL`) is made absolute first: its directory, the working
/// one, is looked at as any other.
#[test]
fn a_relative_control_socket_in_a_directory_others_may_write_is_warned_of() {
    let herd = herd_in_directory_of_mode(0o777, true);
    let note = herd.wait_for_event("setup_note", &[]);
    let message = note["message"].as_str().unwrap_or_default();
    assert!(message.contains(", which others may write"), "{note}");
    herd.started(1);
}
