//! Files sent along notify datagrams never become herd's fds (Linux): a close of a FUSE file
//! asks its daemon to flush it, and a hostile daemon never answers, a wait no signal ends.
//! Before, herd's closing thread waited so for good, and every fd sent after the FUSE file
//! stayed open in herd: 100 datagrams of 253 fds took it to 20,000 open fds, and
//! `herd upgrade` failed for want of fds until the daemon died.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::io::AsFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::config_hung::{answered, Hung};
use crate::util::*;

/// The requests the daemon below answers (`fuse_kernel.h`).
const LOOKUP: u32 = 1;
const FORGET: u32 = 2;
const GETATTR: u32 = 3;
const OPEN: u32 = 14;
const FLUSH: u32 = 25;
const INIT: u32 = 26;
const INTERRUPT: u32 = 36;
const BATCH_FORGET: u32 = 42;

/// Serves the mount whose daemon's end is `fuse` as a directory holding one empty file, `f`,
/// on a thread of its own, until the connection is aborted. Requests to flush (every close of
/// a file sends one) are answered only for this process's threads; the others are counted in
/// the result, and left to wait.
fn serve_one_file(mut fuse: File) -> Arc<AtomicUsize> {
    let unanswered = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&unanswered);
    std::thread::spawn(move || {
        let mut request = vec![0u8; 1 << 17];
        while let Ok(n) = fuse.read(&mut request) {
            if n < 40 {
                continue;
            }
            let word = |at: usize| u32::from_ne_bytes(request[at..at + 4].try_into().unwrap());
            let long = |at: usize| u64::from_ne_bytes(request[at..at + 8].try_into().unwrap());
            let (opcode, unique, node, pid) = (word(4), long(8), long(16), word(32));
            let body: Option<Vec<u8>> = match opcode {
                FORGET | BATCH_FORGET | INTERRUPT => continue,
                FLUSH if !std::path::Path::new(&format!("/proc/self/task/{pid}")).exists() => {
                    counted.fetch_add(1, Ordering::SeqCst);
                    continue;
                }
                INIT => {
                    let mut out = vec![0u8; 64];
                    out[0..4].copy_from_slice(&7u32.to_ne_bytes());
                    out[4..8].copy_from_slice(&31u32.to_ne_bytes());
                    out[20..24].copy_from_slice(&4096u32.to_ne_bytes());
                    out[24..28].copy_from_slice(&1u32.to_ne_bytes());
                    Some(out)
                }
                LOOKUP => Some([vec![2, 0, 0, 0, 0, 0, 0, 0], vec![0; 32], attr(2)].concat()),
                GETATTR => Some([vec![0; 16], attr(node)].concat()),
                OPEN | FLUSH => Some(vec![0; 16]),
                _ => None,
            };
            // Anything else is not implemented.
            let error = if body.is_some() { 0 } else { -libc::ENOSYS };
            let body = body.unwrap_or_default();
            let len = 16 + body.len() as u32;
            let reply = [
                &len.to_ne_bytes()[..],
                &error.to_ne_bytes(),
                &unique.to_ne_bytes(),
                &body,
            ]
            .concat();
            let _ = fuse.write(&reply);
        }
    });
    unanswered
}

/// A `fuse_attr`: node 1 is the root directory, any other an empty regular file.
fn attr(node: u64) -> Vec<u8> {
    let mut attr = vec![0u8; 88];
    attr[0..8].copy_from_slice(&node.to_ne_bytes());
    let mode = if node == 1 {
        libc::S_IFDIR | 0o755
    } else {
        libc::S_IFREG | 0o644
    };
    attr[60..64].copy_from_slice(&mode.to_ne_bytes());
    attr[64..68].copy_from_slice(&1u32.to_ne_bytes());
    attr
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
