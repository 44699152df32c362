//! A `--user` herd's notify directory removed while it runs (a clean-up of the temporary
//! directory) is made again, with the sockets in it, and the workers' `READY=1` arrives there.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use crate::util::*;

/// Before, herd only said the socket could not be bound again (its directory was gone), and
/// every later upgrade or restart waited in vain for its workers' `READY=1`.
#[test]
fn a_user_herds_notify_directory_removed_is_made_again() {
    if !root_or_skip("needs root to run workers as another user") {
        return;
    }
    let mut herd = Herd::start(&[
        "run",
        "-w",
        "1",
        "--user",
        "nobody",
        "--ready",
        "notify",
        "--ready-timeout",
        "10s",
        "--compat",
        "einhorn",
        "-b",
        "http=127.0.0.1:0",
        "--",
        "/usr/bin/python3",
        &worker("whoami.py"),
    ]);
    wait_status(&herd, "a ready worker", |s| settled(s, 1));
    let notify = env_var(herd.started(1)[0].1, "NOTIFY_SOCKET").unwrap();
    let socket = std::path::PathBuf::from(&notify);
    let dir = socket.parent().unwrap().to_path_buf();
    std::fs::remove_dir_all(&dir).unwrap();
    let removed = herd.wait_for_event("socket_file_removed", &[("socket", "notify".into())]);
    assert!(
        removed["message"]
            .as_str()
            .unwrap()
            .contains("bound it again"),
        "{removed}"
    );
    // einhorn's socket, which lay beside it, is bound there again too.
    herd.wait_for_event("socket_file_removed", &[("socket", "einhorn".into())]);
    let ack = dir.join("einhorn.ack");
    let meta = std::fs::symlink_metadata(&ack).unwrap();
    assert_eq!(
        (meta.uid(), meta.permissions().mode() & 0o777),
        (65534, 0o600)
    );
    let meta = std::fs::symlink_metadata(&socket).unwrap();
    assert_eq!(
        (meta.uid(), meta.permissions().mode() & 0o777),
        (65534, 0o600)
    );
    let meta = std::fs::symlink_metadata(&dir).unwrap();
    assert_eq!((meta.uid(), meta.permissions().mode() & 0o777), (0, 0o711));
    let (code, _, stderr) = herd.ctl(&["upgrade"]);
    assert_eq!(code, 0, "{stderr}");
    // A re-exec takes the directory made again as its own, and removes it as herd stops.
    let (code, _, stderr) = herd.ctl(&["reexec"]);
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = herd.ctl(&["upgrade"]);
    assert_eq!(code, 0, "{stderr}");
    herd.signal(libc::SIGTERM);
    assert!(herd.wait_exit().success());
    assert!(!dir.exists(), "{} left behind", dir.display());
}
