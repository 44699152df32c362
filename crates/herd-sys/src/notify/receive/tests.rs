use std::io::Read;
use std::os::unix::io::AsFd;
use std::time::Duration;

use super::Receiver;
use crate::notify::send_with_fds;

/// A datagram socket bound at a fresh path, with credentials on, and its path.
fn bound(name: &str) -> (std::os::unix::net::UnixDatagram, std::path::PathBuf) {
    let path = std::env::temp_dir().join(format!("herd-sys-{}-{}", name, std::process::id()));
    let _ = std::fs::remove_file(&path);
    let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    super::enable_credentials(socket.as_fd()).unwrap();
    (socket, path)
}

/// A sender's fd whose close would wait (a TCP socket with unsent data, which its peer never
/// reads, and a long `SO_LINGER`) does not keep the receiver waiting: any local user who
/// reached an abstract notify socket stopped herd's event loop so, for as long as the linger
/// time they chose.
#[test]
fn an_fd_whose_close_waits_does_not_keep_the_receiver_waiting() {
    let (socket, path) = bound("notify-linger");
    let (listener, stream) = crate::fd::tests::lingering();
    stream.set_nonblocking(false).unwrap();
    send_with_fds(path.as_os_str(), b"STATUS=x", &[stream.as_fd()]).unwrap();
    // The one in flight is the last reference now: closing it would wait.
    drop(stream);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let receiver = Receiver::new(socket.as_fd()).unwrap();
        let mut buf = [0u8; 64];
        let got = receiver.recv(&mut buf).map(|d| d.map(|d| d.len));
        tx.send(got.map_err(|e| e.to_string())).unwrap();
    });
    let got = rx.recv_timeout(Duration::from_secs(10));
    let _ = std::fs::remove_file(&path);
    // Resets the connection, which ends the close wherever it waits.
    drop(listener);
    assert_eq!(
        got.expect("receiving waited for the close of the fd sent along"),
        Ok(Some(8))
    );
}

/// Datagrams with files and without, and one longer than the buffer, are each read once, in
/// order, with their senders' pids; the files are released once they are taken off the queue
/// (a pipe's writing end: its reader sees the end), and none is left to read.
#[test]
fn every_datagram_is_read_once_in_order_and_its_files_released() {
    let (socket, path) = bound("notify-order");
    let receiver = Receiver::new(socket.as_fd()).unwrap();
    let mut readers = Vec::new();
    let mut sent = Vec::new();
    for i in 0..8 {
        let message = format!("STATUS={i}");
        if i % 3 == 0 {
            crate::notify::send(path.as_os_str(), message.as_bytes()).unwrap();
        } else {
            let (reader, writer) = std::os::unix::net::UnixStream::pair().unwrap();
            send_with_fds(path.as_os_str(), message.as_bytes(), &[writer.as_fd()]).unwrap();
            readers.push(reader);
        }
        sent.push(message.into_bytes());
        if i == 4 {
            let long = vec![b'x'; 6000];
            crate::notify::send(path.as_os_str(), &long).unwrap();
            sent.push(long);
        }
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while let Some(datagram) = receiver.recv(&mut buf).unwrap() {
        assert_eq!(datagram.sender_pid, Some(std::process::id()));
        let whole = datagram.len == buf.len() && datagram.truncated;
        got.push(match whole {
            true => vec![b'x'; 6000],
            false => buf[..datagram.len].to_vec(),
        });
    }
    assert!(receiver.settle(Duration::from_secs(5)));
    let _ = std::fs::remove_file(&path);
    assert_eq!(got, sent);
    for mut reader in readers {
        reader
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut rest = Vec::new();
        assert_eq!(reader.read_to_end(&mut rest).unwrap(), 0);
    }
}

/// A FUSE file sent along never becomes an fd of the receiver, so it is never flushed: a
/// close of one asks the daemon to flush it, and a hostile daemon never answers, which no
/// signal ends. Before, herd's closing thread waited so for good, and every fd sent after it
/// stayed open: 100 datagrams of 253 fds took herd to 20,000 open fds, and `herd upgrade` ran
/// out of them. The datagram is still read, and what is sent after it is released.
#[cfg(target_os = "linux")]
#[test]
fn a_fuse_file_sent_along_is_never_flushed_and_holds_nothing_after_it() {
    use std::sync::atomic::{AtomicBool, Ordering};
    // Alone: a child another test forks meanwhile (a taking's) closes the copy of the FUSE
    // file it inherits, and that close asks for a flush.
    let name = "a_fuse_file_sent_along_is_never_flushed_and_holds_nothing_after_it";
    if !crate::alone::alone(module_path!(), name) {
        return;
    }
    let mount = match crate::hung_fuse::Mount::new("notify-fuse") {
        Some(mount) => mount,
        None => return,
    };
    let answer_flush = std::sync::Arc::new(AtomicBool::new(true));
    let unanswered = mount.serve_one_file(std::sync::Arc::clone(&answer_flush));
    let (socket, path) = bound("notify-fuse-socket");
    let receiver = Receiver::new(socket.as_fd()).unwrap();
    let file = std::fs::File::open(mount.dir.join("f"));
    let (reader, writer) = std::os::unix::net::UnixStream::pair().unwrap();
    if let Ok(file) = &file {
        send_with_fds(path.as_os_str(), b"READY=1", &[file.as_fd()]).unwrap();
        send_with_fds(path.as_os_str(), b"STATUS=after", &[writer.as_fd()]).unwrap();
    }
    drop(writer);
    // Our own close is answered; the receiver's would not be.
    drop(file);
    answer_flush.store(false, Ordering::SeqCst);
    let mut buf = [0u8; 64];
    let mut got = Vec::new();
    while let Ok(Some(datagram)) = receiver.recv(&mut buf) {
        got.push(String::from_utf8_lossy(&buf[..datagram.len]).into_owned());
    }
    let settled = receiver.settle(Duration::from_secs(5));
    reader
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let after = (&reader).read(&mut [0u8; 8]).map_err(|e| e.kind());
    let flushes = unanswered.load(Ordering::SeqCst);
    // Whatever waits on the filesystem ends here.
    mount.end();
    let _ = std::fs::remove_file(&path);
    assert_eq!(got, ["READY=1", "STATUS=after"]);
    assert_eq!(flushes, 0, "the receiver flushed the file sent along");
    assert!(settled, "a datagram read was never taken off the queue");
    assert_eq!(after, Ok(0), "the fd sent after the FUSE file stayed open");
}

/// A receiver turns the socket's credentials on itself: they fill the room for control data
/// that a peek leaves, and without them that room took 4 fds, installed in the receiver and
/// never closed (a pipe's writing end sent along: its reader never saw the end).
#[cfg(target_os = "linux")]
#[test]
fn fds_sent_to_a_socket_without_credentials_on_are_not_kept() {
    let path = std::env::temp_dir().join(format!("herd-sys-notify-nocred-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    let receiver = Receiver::new(socket.as_fd()).unwrap();
    let (reader, writer) = std::os::unix::net::UnixStream::pair().unwrap();
    let fds = [writer.as_fd(); 4];
    send_with_fds(path.as_os_str(), b"STATUS=x", &fds).unwrap();
    drop(writer);
    let mut buf = [0u8; 64];
    let got = receiver.recv(&mut buf).unwrap().map(|d| d.len);
    let settled = receiver.settle(Duration::from_secs(5));
    let _ = std::fs::remove_file(&path);
    reader
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let end = (&reader).read(&mut [0u8; 8]).map_err(|e| e.kind());
    assert_eq!(got, Some(8));
    assert!(settled);
    assert_eq!(end, Ok(0), "an fd sent along stayed open in the receiver");
}

/// A taking given up on (its thread left waiting) no longer counts as a datagram to settle,
/// but the head of the queue may still be its datagram until it returns: a datagram without
/// fds read then is not taken on the reader's thread, which would take (and release there)
/// another's files.
#[test]
fn a_taking_given_up_on_still_keeps_the_reader_off_the_head() {
    use std::sync::atomic::AtomicBool;
    let (socket, path) = bound("notify-given-up");
    let receiver = Receiver::new(socket.as_fd()).unwrap();
    let _ = std::fs::remove_file(&path);
    let shared = &receiver.shared.settling;
    assert!(shared.reads_the_head());
    shared.queued();
    let counted = AtomicBool::new(false);
    shared.taken(&counted, false);
    assert!(receiver.settle(Duration::from_millis(10)));
    assert!(
        !shared.reads_the_head(),
        "a given-up taking let the reader take the head"
    );
    shared.taken(&counted, true);
    assert!(shared.reads_the_head());
    assert!(receiver.settle(Duration::from_millis(10)));
}

/// Datagrams each carrying a socket whose release lingers (until interrupted, 100 ms) are taken
/// off the queue several at once: one at a time, 10 of them kept the socket's queue
/// (`net.unix.max_dgram_qlen`, 10 by default) full for a second, and a worker's `READY=1` waited
/// behind them.
#[cfg(target_os = "linux")]
#[test]
fn datagrams_whose_files_linger_are_taken_off_the_queue_several_at_once() {
    let (socket, path) = bound("notify-lingering");
    let receiver = Receiver::new(socket.as_fd()).unwrap();
    let mut listeners = Vec::new();
    for _ in 0..10 {
        let (listener, stream) = crate::fd::tests::lingering();
        send_with_fds(path.as_os_str(), b"STATUS=x", &[stream.as_fd()]).unwrap();
        listeners.push(listener);
    }
    let began = std::time::Instant::now();
    let mut buf = [0u8; 64];
    let mut read = 0;
    while receiver.recv(&mut buf).unwrap().is_some() {
        read += 1;
    }
    let settled = receiver.settle(Duration::from_secs(5));
    let took = began.elapsed();
    let _ = std::fs::remove_file(&path);
    drop(listeners);
    assert_eq!(read, 10);
    assert!(settled);
    assert!(
        took < Duration::from_millis(700),
        "10 lingering releases took {took:?}: one at a time"
    );
}

/// A pipe's lock, held by a `splice` from the pipe into a socket whose buffer is full: the
/// release of the pipe's last writing end waits for it, and no signal ends that wait.
#[cfg(target_os = "linux")]
struct HeldPipe {
    /// The pipe's writing end, to send along.
    writer: std::os::unix::io::OwnedFd,
    /// The socket nobody reads; read, it lets the splice go on and the lock go.
    unread: std::os::unix::net::UnixStream,
    splicing: std::thread::JoinHandle<()>,
}

#[cfg(target_os = "linux")]
impl HeldPipe {
    fn new() -> HeldPipe {
        use std::io::Write;
        use std::os::unix::io::{AsRawFd, FromRawFd, OwnedFd};
        let mut fds = [-1; 2];
        // SAFETY: pipe2 writes two fds into the array we pass.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: just opened, ours alone.
        let (reader, writer) =
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let (mut full, unread) = std::os::unix::net::UnixStream::pair().unwrap();
        full.set_nonblocking(true).unwrap();
        while full.write(&[0u8; 4096]).is_ok() {}
        full.set_nonblocking(false).unwrap();
        // SAFETY: write reads 4 bytes of a literal.
        let wrote = unsafe { libc::write(writer.as_raw_fd(), b"data".as_ptr().cast(), 4) };
        assert_eq!(wrote, 4);
        let (tx, rx) = std::sync::mpsc::channel();
        let splicing = std::thread::spawn(move || {
            // SAFETY: gettid takes nothing.
            tx.send(unsafe { libc::gettid() }).unwrap();
            // SAFETY: splice moves bytes between two fds we own; null offsets (pipe, socket).
            unsafe {
                libc::splice(
                    reader.as_raw_fd(),
                    std::ptr::null_mut(),
                    full.as_raw_fd(),
                    std::ptr::null_mut(),
                    4,
                    0,
                )
            };
            drop((reader, full));
        });
        let tid = rx.recv().unwrap();
        // Until the splice waits for room, holding the pipe's lock.
        let wchan = format!("/proc/self/task/{tid}/wchan");
        let waits = (0..500).any(|_| {
            let now = std::fs::read_to_string(&wchan).unwrap_or_default();
            let waiting = !now.is_empty() && now != "0";
            if !waiting {
                std::thread::sleep(Duration::from_millis(10));
            }
            waiting
        });
        assert!(waits, "the splice never waited");
        HeldPipe {
            writer,
            unread,
            splicing,
        }
    }

    /// Reads the socket until the splice has gone through and the lock is let go.
    fn let_go(self) {
        let mut unread = self.unread;
        let mut buf = vec![0u8; 1 << 16];
        unread.set_nonblocking(true).unwrap();
        while !self.splicing.is_finished() {
            if matches!(unread.read(&mut buf), Ok(0) | Err(_)) {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

/// The states of this process's threads, and of its children's.
#[cfg(target_os = "linux")]
fn states() -> (Vec<char>, Vec<(u32, char)>) {
    let state = |stat: String| stat.rsplit(") ").next().and_then(|r| r.chars().next());
    let own = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter_map(|t| state(std::fs::read_to_string(t.path().join("stat")).ok()?))
        .collect();
    let me = std::process::id().to_string();
    let children = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|p| {
            let stat = std::fs::read_to_string(p.path().join("stat")).ok()?;
            let rest = stat.rsplit(") ").next()?.to_string();
            let mut fields = rest.split(' ');
            let state = fields.next()?.chars().next()?;
            (fields.next()? == me).then_some(())?;
            Some((p.file_name().to_str()?.parse().ok()?, state))
        })
        .collect();
    (own, children)
}

/// The release of a pipe's last file whose lock a sender holds waits in a child process, not
/// in a thread of the receiver: a closing thread that waited so (a wait no signal ends) kept
/// a stopped herd from exiting, unkillable, with its listening sockets open, until the sender
/// let go. The datagram is read, the one after it too, and both are taken.
#[cfg(target_os = "linux")]
#[test]
fn a_release_no_signal_ends_waits_in_a_child_not_in_the_receiver() {
    let (socket, path) = bound("notify-pipe-lock");
    let receiver = Receiver::new(socket.as_fd()).unwrap();
    let held = HeldPipe::new();
    send_with_fds(path.as_os_str(), b"STATUS=held", &[held.writer.as_fd()]).unwrap();
    crate::notify::send(path.as_os_str(), b"READY=1").unwrap();
    let _ = std::fs::remove_file(&path);
    let HeldPipe {
        writer,
        unread,
        splicing,
    } = held;
    // The one in flight is the last reference now.
    drop(writer);
    let held = HeldPipe {
        writer: std::fs::File::open("/dev/null").unwrap().into(),
        unread,
        splicing,
    };
    let mut buf = [0u8; 64];
    let mut got = Vec::new();
    while let Some(datagram) = receiver.recv(&mut buf).unwrap() {
        got.push(String::from_utf8_lossy(&buf[..datagram.len]).into_owned());
    }
    let settled = receiver.settle(Duration::from_secs(5));
    let waiting_child = (0..500).find_map(|_| {
        let found = states().1.into_iter().find(|&(_, state)| state == 'D');
        if found.is_none() {
            std::thread::sleep(Duration::from_millis(10));
        }
        found
    });
    let (own, _) = states();
    held.let_go();
    assert_eq!(got, ["STATUS=held", "READY=1"]);
    assert!(settled, "a datagram read was never taken off the queue");
    assert!(
        !own.contains(&'D'),
        "a thread of the receiver waits in the release: {own:?}"
    );
    let (child, _) = waiting_child.expect("no child waits in the release");
    // Let go, the child reports and exits; the head of the queue is the reader's again.
    // SAFETY: waitpid takes plain integers; `child` is ours.
    let reaped = unsafe { libc::waitpid(child as i32, std::ptr::null_mut(), 0) };
    assert_eq!(reaped, child as i32);
    let free = (0..500).any(|_| {
        let free = receiver.shared.settling.reads_the_head();
        if !free {
            std::thread::sleep(Duration::from_millis(10));
        }
        free
    });
    assert!(free, "the taking never returned once the child was done");
}
