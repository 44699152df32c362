//! A `--user` herd's notify directory removed while it runs (a clean-up of the temporary
//! directory) is made again, with the sockets in it, and the workers' `READY=1` arrives there.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use crate::privileges::user_herd;
use crate::rebind::wait_bound_again;
use crate::util::*;

/// Before, herd only said the socket could not be bound again (its directory was gone), and
/// every later upgrade or restart waited in vain for its workers' `READY=1`.
#[test]
fn a_user_herds_notify_directory_removed_is_made_again() {
    if !root_or_skip("needs root to run workers as another user") {
        return;
    }
    let mut herd = user_herd(&["--ready-timeout", "10s", "--compat", "einhorn"]);
    wait_status(&herd, "a ready worker", |s| settled(s, 1));
    let notify = env_var(herd.started(1)[0].1, "NOTIFY_SOCKET").unwrap();
    let socket = std::path::PathBuf::from(&notify);
    let dir = socket.parent().unwrap().to_path_buf();
    std::fs::remove_dir_all(&dir).unwrap();
    wait_bound_again(&herd, "notify");
    // einhorn's socket, which lay beside it, is bound there again too.
    wait_bound_again(&herd, "einhorn");
    let owner_mode = |path: &std::path::Path| {
        let meta = std::fs::symlink_metadata(path).unwrap();
        (meta.uid(), meta.permissions().mode() & 0o777)
    };
    assert_eq!(owner_mode(&dir.join("einhorn.ack")), (65534, 0o600));
    assert_eq!(owner_mode(&socket), (65534, 0o600));
    assert_eq!(owner_mode(&dir), (0, 0o711));
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
