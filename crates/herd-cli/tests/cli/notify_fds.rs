//! Files sent along notify datagrams never become herd's fds (Linux): a close of a FUSE file
//! asks its daemon to flush it, and a hostile daemon never answers, a wait no signal ends.
//! Before, herd's closing thread waited so for good, and every fd sent after the FUSE file
//! stayed open in herd: 100 datagrams of 253 fds took it to 20,000 open fds, and
//! `herd upgrade` failed for want of fds until the daemon died.

use std::fs::File;
use std::os::unix::io::AsFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::config_hung::{answered, Hung};
use crate::util::*;

/// Serves the mount whose daemon's end is `fuse` as a directory holding one empty file, `f`
/// (see `herd_sys::hung_fuse`). Requests to flush (every close of a file sends one) are
/// answered only for this process's threads; the others are counted in the result, and left to
/// wait.
fn serve_one_file(fuse: File) -> Arc<AtomicUsize> {
    herd_sys::hung_fuse::serve_one_file(fuse, |pid| {
        std::path::Path::new(&format!("/proc/self/task/{pid}")).exists()
    })
}

/// How many fds process `pid` has open.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// A FUSE file a local user sends to herd's notify socket, whose daemon never answers a
/// flush, followed by 20 datagrams of 252 fds: herd's open fds stay as they were, and it
/// upgrades and re-executes as ever.
#[test]
fn a_fuse_file_sent_to_the_notify_socket_holds_nothing_in_herd() {
    // Started first, so that it is dropped last: the mount, dropped before it even as a
    // failed test unwinds, ends whatever waits on it in herd, which could not exit meanwhile.
    let herd = sleepers(&["-w", "1"]);
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let Some(mut hung) = Hung::over(&mnt) else {
        eprintln!("skipped: mounting FUSE needs root and /dev/fuse");
        return;
    };
    let daemon = hung.daemon().unwrap().try_clone().unwrap();
    let unanswered = serve_one_file(daemon);
    herd.started(1);
    herd.wait_for_event("control_ready", &[]);
    let before = open_fds(herd.pid());
    let notify = herd.notify_path();
    let notify = std::ffi::OsStr::new(&notify);
    let file = File::open(mnt.join("f"));
    let sent = match &file {
        Ok(f) => Ok(herd_sys::notify::send_with_fds(notify, b"STATUS=fuse", &[f.as_fd()]).is_ok()),
        Err(e) => Err(e.kind()),
    };
    // Ours is answered: only herd's close would wait.
    drop(file);
    let null = File::open("/dev/null").unwrap();
    let copies = vec![null.as_fd(); 252];
    for _ in 0..20 {
        herd_sys::notify::send_with_fds(notify, b"STATUS=x", &copies).unwrap();
    }
    // Read by now, or nearly: herd reads each as it comes, and the last ones waited for room.
    let most = (0..20)
        .map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(100));
            open_fds(herd.pid())
        })
        .max()
        .unwrap_or(0);
    let flushes = unanswered.load(Ordering::SeqCst);
    assert_eq!(sent, Ok(true), "the FUSE file was not sent");
    assert_eq!(flushes, 0, "herd flushed the FUSE file it was sent");
    assert!(
        most < before + 50,
        "herd held the fds sent after the FUSE file: {before} open before, {most} after"
    );
    let (upgraded, _, upgrade_said) = answered(&herd, &["upgrade"]);
    let (reexecuted, _, reexec_said) = answered(&herd, &["reexec"]);
    hung.release();
    assert_eq!(upgraded, 0, "{upgrade_said}");
    assert_eq!(reexecuted, 0, "{reexec_said}");
}
