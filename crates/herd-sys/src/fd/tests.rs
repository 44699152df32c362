//! fd hygiene on real fds.

use super::*;
use std::io::Write;
use std::os::unix::io::IntoRawFd;
use std::time::Duration;

#[test]
fn wait_readable_says_when_data_or_the_end_came() {
    let (read, write) = std::os::unix::net::UnixStream::pair().unwrap();
    let (other, _other_write) = std::os::unix::net::UnixStream::pair().unwrap();
    let both = [read.as_fd(), other.as_fd()];
    assert!(!wait_readable(&both, Some(Duration::from_millis(10))).unwrap());
    (&write).write_all(b"x").unwrap();
    assert!(wait_readable(&both, None).unwrap());
    let (read, write) = std::os::unix::net::UnixStream::pair().unwrap();
    drop(write);
    assert!(wait_readable(&[read.as_fd()], None).unwrap());
}

#[test]
fn hung_up_says_when_the_other_end_is_gone() {
    let (read, write) = std::os::unix::net::UnixStream::pair().unwrap();
    assert!(!hung_up(read.as_fd()).unwrap());
    (&write).write_all(b"x").unwrap();
    assert!(!hung_up(read.as_fd()).unwrap(), "data is no hang-up");
    drop(write);
    assert!(hung_up(read.as_fd()).unwrap());
}

/// An inherited fd is claimed once: the second claim of its number fails, also after the
/// first owner closed it.
#[test]
fn an_inherited_fd_is_claimed_at_most_once() {
    // An fd nobody owns, as one inherited across exec is: given up by its owner, inheritable.
    let raw = open_dev_null().unwrap().into_raw_fd();
    // SAFETY: `raw` was just made open, and is not owned while borrowed here.
    set_cloexec(unsafe { BorrowedFd::borrow_raw(raw) }, false).unwrap();
    let owned = claim_inherited(raw).unwrap();
    assert_eq!(owned.as_raw_fd(), raw);
    assert!(
        is_cloexec(owned.as_fd()).unwrap(),
        "claimed fds are close-on-exec"
    );
    let again = claim_inherited(raw).unwrap_err();
    assert_eq!(again.raw_os_error(), Some(libc::EBUSY), "{again}");
    drop(owned);
    let after_close = claim_inherited(raw).unwrap_err();
    assert_eq!(
        after_close.raw_os_error(),
        Some(libc::EBUSY),
        "{after_close}"
    );
}

/// A number that is not open, or a standard stream, cannot be claimed.
#[test]
fn closed_fds_and_standard_streams_cannot_be_claimed() {
    // Far above any fd limit: never open.
    let closed = claim_inherited(RawFd::MAX - 1).unwrap_err();
    assert_eq!(closed.raw_os_error(), Some(libc::EBADF), "{closed}");
    for raw in [-1, 0, 1, 2] {
        let error = claim_inherited(raw).unwrap_err();
        assert_eq!(
            error.raw_os_error(),
            Some(libc::EINVAL),
            "fd {raw}: {error}"
        );
    }
    // A refused number is not recorded: it is still not claimed.
    let error = claim_inherited(RawFd::MAX - 1).unwrap_err();
    assert_eq!(error.raw_os_error(), Some(libc::EBADF), "{error}");
}

/// The device and inode behind `fd`, or `None` if it is closed.
fn identity(fd: RawFd) -> Option<(u64, u64)> {
    // SAFETY: stat is plain integers, for which all-zero is a valid value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes into the stat we own; a closed fd is EBADF.
    if unsafe { libc::fstat(fd, &mut st) } < 0 {
        return None;
    }
    Some((st.st_dev as u64, st.st_ino as u64))
}

fn cloexec(fd: RawFd) -> bool {
    // SAFETY: fcntl(F_GETFD) only queries the fd table.
    unsafe { libc::fcntl(fd, libc::F_GETFD) & libc::FD_CLOEXEC != 0 }
}

/// Runs this test alone in a child process (this test binary, re-executed), where
/// rearranging fds 3.. cannot disturb other tests' fds.
fn in_child(name: &str, check: fn()) {
    if std::env::var_os("HERD_SYS_FD_CHILD").is_some() {
        check();
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--test-threads=1", "--nocapture"])
        .env("HERD_SYS_FD_CHILD", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr)
    );
}

/// Sockets placed at 3.. over close-on-exec fds in the way; everything is put back when
/// the exec fails.
#[test]
fn listen_fds_are_placed_over_strays_and_put_back() {
    in_child(
        "fd::tests::listen_fds_are_placed_over_strays_and_put_back",
        || {
            // Three sockets, above the range, and a stray in the middle of it.
            let sockets: Vec<OwnedFd> = (0..3)
                .map(|_| {
                    let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
                    dup_above(a.as_raw_fd(), 100).unwrap()
                })
                .collect();
            let wanted: Vec<_> = sockets.iter().map(|s| identity(s.as_raw_fd())).collect();
            let null = open_dev_null().unwrap();
            // SAFETY: dup2 onto fd 4, whatever held it is replaced (this process is ours).
            assert!(unsafe { libc::dup2(null.as_raw_fd(), 4) } == 4);
            // SAFETY: fd 4 was just made open by dup2 and stays open while borrowed.
            set_cloexec(unsafe { BorrowedFd::borrow_raw(4) }, true).unwrap();
            let before: Vec<_> = (3..6).map(identity).collect();
            let error = exec_with_listen_fds(sockets, NoOtherThreadUsesFds::promise(), || {
                for (i, want) in wanted.iter().enumerate() {
                    let fd = 3 + i as RawFd;
                    assert_eq!(identity(fd), *want, "fd {fd}");
                    assert!(!cloexec(fd), "fd {fd} is inheritable");
                }
                io::Error::from_raw_os_error(libc::ENOENT)
            });
            assert_eq!(error.raw_os_error(), Some(libc::ENOENT));
            let after: Vec<_> = (3..6).map(identity).collect();
            assert_eq!(after, before, "fds 3..6 are as they were");
            assert!(cloexec(4), "the stray is close-on-exec again");
        },
    );
}

/// An fd in the way that is not close-on-exec is meant for the program: refused.
#[test]
fn inheritable_fds_in_the_way_are_refused() {
    in_child("fd::tests::inheritable_fds_in_the_way_are_refused", || {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let socket = dup_above(a.as_raw_fd(), 100).unwrap();
        let null = open_dev_null().unwrap();
        // SAFETY: as above; dup2 leaves fd 3 inheritable.
        assert!(unsafe { libc::dup2(null.as_raw_fd(), 3) } == 3);
        let error = exec_with_listen_fds(
            vec![socket],
            NoOtherThreadUsesFds::promise(),
            || unreachable!(),
        );
        assert!(error.to_string().contains("fd 3 is open for the program"));
        assert_eq!(identity(3), identity(null.as_fd().as_raw_fd()));
    });
}

/// A file passed as `--shm` open write-only was said to be "open read-only".
#[test]
fn how_a_file_was_opened_is_said_as_it_was() {
    let path = std::env::temp_dir().join(format!("herd-sys-open-mode-{}", std::process::id()));
    std::fs::write(&path, [0u8; 64]).unwrap();
    let open = |o: &mut std::fs::OpenOptions| OwnedFd::from(o.open(&path).unwrap());
    let rw = open(std::fs::OpenOptions::new().read(true).write(true));
    let ro = open(std::fs::OpenOptions::new().read(true));
    let wo = open(std::fs::OpenOptions::new().write(true));
    assert_eq!(not_read_write(rw.as_fd()).unwrap(), None);
    assert_eq!(not_read_write(ro.as_fd()).unwrap(), Some("read-only"));
    assert_eq!(not_read_write(wo.as_fd()).unwrap(), Some("write-only"));
    std::fs::remove_file(&path).unwrap();
}

/// A close that waits (a TCP socket with unsent data its peer never reads, and a long
/// `SO_LINGER`) keeps the fds queued after it open no longer than a moment: they stayed open
/// for the whole linger time, and a sender of many (the same fd 253 times a datagram) took
/// herd to its open-file limit so.
#[cfg(target_os = "linux")]
#[test]
fn the_fds_queued_behind_a_close_that_waits_are_closed_all_the_same() {
    use std::io::Read;
    let (listener, stream) = lingering();
    close_in_background(OwnedFd::from(stream));
    let (mut read, write) = std::os::unix::net::UnixStream::pair().unwrap();
    close_in_background(OwnedFd::from(write));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut rest = Vec::new();
        tx.send(read.read_to_end(&mut rest).map(|_| rest.len()).ok())
            .unwrap();
    });
    let closed = rx.recv_timeout(Duration::from_secs(5));
    // Resets the connection, which ends the close wherever it waits.
    drop(listener);
    assert_eq!(
        closed.expect("the fd queued after one that lingers stayed open"),
        Some(0)
    );
}

/// A close that waits for good (a FUSE file's: the close asks the daemon to flush it, and a
/// hostile daemon never answers; no signal ends that wait) is left to its thread, and the fds
/// queued after it are closed by another: they stayed open behind it for as long as the
/// daemon lived.
#[cfg(target_os = "linux")]
#[test]
fn the_fds_queued_behind_a_close_that_never_ends_are_closed_all_the_same() {
    use std::io::Read;
    use std::sync::atomic::{AtomicBool, Ordering};
    let mount = match crate::hung_fuse::Mount::new("closer-fuse") {
        Some(mount) => mount,
        None => return,
    };
    let unanswered = mount.serve_one_file(std::sync::Arc::new(AtomicBool::new(false)));
    let file = std::fs::File::open(mount.dir.join("f"));
    let opened = file.is_ok();
    if let Ok(file) = file {
        close_in_background(OwnedFd::from(file));
    }
    let (mut read, write) = std::os::unix::net::UnixStream::pair().unwrap();
    close_in_background(OwnedFd::from(write));
    read.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let closed = read.read(&mut [0u8; 8]).map_err(|e| e.kind());
    // Another thread may have closed it before the first even began its close, which is left
    // to its thread after a second.
    let until = std::time::Instant::now() + Duration::from_secs(5);
    let (mut flushes, mut left) = (0, 0);
    while (flushes == 0 || left == 0) && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
        flushes = unanswered.load(Ordering::SeqCst);
        left = closes_left_waiting();
    }
    // The close that waits ends here.
    mount.end();
    assert!(opened, "the FUSE file did not open");
    assert_eq!(
        flushes, 1,
        "the close of the FUSE file did not wait for its daemon"
    );
    assert!(
        left >= 1,
        "no closing thread was left to the close that waits"
    );
    assert_eq!(
        closed,
        Ok(0),
        "the fd queued after a close that waits stayed open"
    );
}

/// A TCP socket (non-blocking) whose close would wait: data its peer (the listener, kept by
/// the caller, never accepted) does not read, and an `SO_LINGER` of 60 s.
pub(crate) fn lingering() -> (std::net::TcpListener, std::net::TcpStream) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut stream = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    stream.set_nonblocking(true).unwrap();
    while stream.write(&[0u8; 65536]).is_ok() {}
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 60,
    };
    // SAFETY: setsockopt reads one linger struct, whose size we pass, on a socket we own.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
    (listener, stream)
}
