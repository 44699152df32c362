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
