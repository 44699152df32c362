//! Sending one `sd_notify(3)` datagram to the socket named by `NOTIFY_SOCKET`, and receiving
//! them without taking the fds senders attach ([`Receiver`]).

use std::ffi::OsStr;
use std::io;
use std::time::Duration;

/// How long a send waits for room in the receiver's queue. A datagram to a Unix socket whose
/// queue is full (`net.unix.max_dgram_qlen` messages no one has read) blocks the sender until
/// the receiver reads one: a service manager that stopped reading would otherwise freeze the
/// sender for good (herd's loop, with its signals and its control socket). Past this, the send
/// fails with [`io::ErrorKind::WouldBlock`] and the message is lost.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// Sends `message` as one datagram to `socket`: a filesystem path, or on Linux an
/// abstract-namespace name written with a leading `@` (as systemd does). Waits at most
/// [`SEND_TIMEOUT`] for a receiver whose queue is full.
pub fn send(socket: &OsStr, message: &[u8]) -> io::Result<()> {
    send_within(socket, message, SEND_TIMEOUT)
}

/// [`send`], waiting at most `wait` for a receiver whose queue is full (zero: not at all).
pub fn send_within(socket: &OsStr, message: &[u8], wait: Duration) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = socket.as_bytes();
    match bytes.first() {
        None => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "NOTIFY_SOCKET is empty",
        )),
        Some(b'@') => send_abstract(&bytes[1..], message, wait),
        Some(b'/') => {
            let sock = std::os::unix::net::UnixDatagram::unbound()?;
            let sent = retry_interrupted(&sock, wait, || sock.send_to(message, socket))?;
            short_write(sent, message.len())
        }
        Some(_) => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "NOTIFY_SOCKET must be an absolute path or an @abstract name",
        )),
    }
}

/// Sends `message` as one datagram to `socket` (as [`send`] names it) with `fds` attached
/// (`SCM_RIGHTS`): what `sd_pid_notify_with_fds(3)` does, e.g. for `FDSTORE=1`. The fds are
/// borrowed; the receiver gets its own copies. Waits at most [`SEND_TIMEOUT`] for a receiver
/// whose queue is full.
pub fn send_with_fds(
    socket: &OsStr,
    message: &[u8],
    fds: &[std::os::unix::io::BorrowedFd<'_>],
) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::io::AsFd;
    let bytes = socket.as_bytes();
    let sock = match bytes.first() {
        Some(b'/') => {
            let sock = std::os::unix::net::UnixDatagram::unbound()?;
            sock.connect(socket)?;
            sock
        }
        Some(b'@') => std::os::unix::net::UnixDatagram::from(connect_abstract(&bytes[1..])?),
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "NOTIFY_SOCKET must be an absolute path or an @abstract name",
            ))
        }
    };
    let sent = retry_interrupted(&sock, SEND_TIMEOUT, || {
        crate::fdpass::send_with_fds(sock.as_fd(), message, fds)
    })?;
    short_write(sent, message.len())
}

/// Runs `send` (one datagram: all or nothing) again when a signal interrupted it, which a
/// send with a timeout is even under `SA_RESTART`, until `wait` has passed; a full queue's
/// timeout says so ([`queue_full`]).
fn retry_interrupted(
    sock: &std::os::unix::net::UnixDatagram,
    wait: Duration,
    mut send: impl FnMut() -> io::Result<usize>,
) -> io::Result<usize> {
    let deadline = std::time::Instant::now() + wait;
    bound_wait(sock, wait)?;
    loop {
        match send() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted && !wait.is_zero() => {
                // Retried for what is left of the wait, not for all of it again.
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    return Err(queue_full(io::ErrorKind::WouldBlock.into()));
                }
                bound_wait(sock, left)?;
            }
            sent => return sent.map_err(queue_full),
        }
    }
}

/// Makes a send on `sock` wait at most `wait` for room in the receiver's queue.
fn bound_wait(sock: &std::os::unix::net::UnixDatagram, wait: Duration) -> io::Result<()> {
    if wait.is_zero() {
        sock.set_nonblocking(true)
    } else {
        sock.set_write_timeout(Some(wait))
    }
}

/// Says what a send that timed out means: the receiver's queue stayed full.
fn queue_full(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::WouldBlock {
        io::Error::new(
            io::ErrorKind::WouldBlock,
            "the receiver's queue is full: it is not reading its notify socket",
        )
    } else {
        e
    }
}

fn short_write(sent: usize, wanted: usize) -> io::Result<()> {
    if sent == wanted {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "notify datagram was truncated",
        ))
    }
}

/// The address of abstract-namespace socket `name` (without its leading NUL), and its length.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn abstract_address(name: &[u8]) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: a zeroed sockaddr_un is a valid value; we fill in the family and the name.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    // Abstract names start with a NUL byte in sun_path and are not NUL-terminated.
    if name.len() + 1 > addr.sun_path.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "NOTIFY_SOCKET name is too long",
        ));
    }
    for (dst, src) in addr.sun_path[1..].iter_mut().zip(name) {
        *dst = *src as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + 1 + name.len();
    Ok((addr, len as libc::socklen_t))
}

/// A new close-on-exec datagram socket of ours.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn datagram_socket() -> io::Result<std::os::unix::io::OwnedFd> {
    use std::os::unix::io::FromRawFd;
    // SAFETY: socket() returns a new fd that we own at once.
    let raw = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh fd that nothing else owns.
    Ok(unsafe { std::os::unix::io::OwnedFd::from_raw_fd(raw) })
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn send_abstract(name: &[u8], message: &[u8], wait: Duration) -> io::Result<()> {
    use std::os::unix::io::AsRawFd;
    let (addr, len) = abstract_address(name)?;
    let sock = std::os::unix::net::UnixDatagram::from(datagram_socket()?);
    let sent = retry_interrupted(&sock, wait, || {
        // SAFETY: the buffer and the address are valid for the lengths we pass.
        let sent = unsafe {
            libc::sendto(
                sock.as_raw_fd(),
                message.as_ptr().cast(),
                message.len(),
                libc::MSG_NOSIGNAL,
                (&addr as *const libc::sockaddr_un).cast(),
                len,
            )
        };
        match sent {
            n if n < 0 => Err(io::Error::last_os_error()),
            n => Ok(n as usize),
        }
    })?;
    short_write(sent, message.len())
}

/// A datagram socket connected to abstract-namespace socket `name`.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn connect_abstract(name: &[u8]) -> io::Result<std::os::unix::io::OwnedFd> {
    use std::os::unix::io::AsRawFd;
    let (addr, len) = abstract_address(name)?;
    let sock = datagram_socket()?;
    // SAFETY: the address is valid for the length we pass.
    let rc = unsafe {
        libc::connect(
            sock.as_raw_fd(),
            (&addr as *const libc::sockaddr_un).cast(),
            len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sock)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn connect_abstract(_name: &[u8]) -> io::Result<std::os::unix::io::OwnedFd> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract-namespace sockets exist only on Linux",
    ))
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn send_abstract(_name: &[u8], _message: &[u8], _wait: Duration) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract-namespace sockets exist only on Linux",
    ))
}

/// Receiving datagrams, without taking the files senders attach.
mod receive;
pub use receive::{enable_credentials, Datagram, Receiver};

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::io::AsFd;

    #[test]
    fn a_datagram_carries_its_fds() {
        let path = std::env::temp_dir().join(format!("herd-sys-notify-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let receiver = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        let file = std::fs::File::open("/proc/self/exe")
            .or_else(|_| std::fs::File::open("/"))
            .unwrap();
        super::send_with_fds(path.as_os_str(), b"FDSTORE=1", &[file.as_fd()]).unwrap();
        let mut buf = [0u8; 64];
        let got = crate::fdpass::recv_with_fds(receiver.as_fd(), &mut buf).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(&buf[..got.len], b"FDSTORE=1");
        assert_eq!(got.fds.len(), 1);
        let copy = std::fs::File::from(got.fds.into_iter().next().unwrap());
        let (a, b) = (file.metadata().unwrap(), copy.metadata().unwrap());
        assert_eq!((a.dev(), a.ino()), (b.dev(), b.ino()));
        let relative = std::ffi::OsStr::new("relative.sock");
        assert!(super::send_with_fds(relative, b"x", &[]).is_err());
    }

    /// A receiver that never reads fills its queue (`net.unix.max_dgram_qlen` datagrams); a
    /// send then fails after [`super::SEND_TIMEOUT`] instead of blocking for good.
    #[test]
    fn a_receiver_that_never_reads_does_not_block_the_sender() {
        let path =
            std::env::temp_dir().join(format!("herd-sys-notify-full-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let _receiver = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        let file = std::fs::File::open("/").unwrap();
        let started = std::time::Instant::now();
        let full = |send: &dyn Fn() -> std::io::Result<()>| {
            (0..100_000)
                .find_map(|_| send().err())
                .expect("every send went")
        };
        let plain = full(&|| super::send(path.as_os_str(), b"STATUS=x"));
        let with_fds =
            full(&|| super::send_with_fds(path.as_os_str(), b"FDSTORE=1", &[file.as_fd()]));
        let _ = std::fs::remove_file(&path);
        for e in [plain, with_fds] {
            assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "{e}");
            assert!(e.to_string().contains("not reading"), "{e}");
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(30));
    }

    /// A send with a timeout is interrupted by a signal even under `SA_RESTART` (`EINTR`):
    /// sent again for what is left of the wait, never at once given up on, nor retried for
    /// good; with no wait (a non-blocking send) `EINTR` cannot come, and is passed on.
    #[test]
    fn a_send_a_signal_interrupted_is_sent_again_within_its_wait() {
        use std::io::{Error, ErrorKind};
        use std::time::Duration;
        let sock = std::os::unix::net::UnixDatagram::unbound().unwrap();
        let interrupted_then_sent = |interruptions: usize, wait: Duration| {
            let mut calls = 0;
            let sent = super::retry_interrupted(&sock, wait, || {
                calls += 1;
                match calls > interruptions {
                    true => Ok(7),
                    false => Err(Error::from(ErrorKind::Interrupted)),
                }
            });
            (sent.map_err(|e| e.kind()), calls)
        };
        assert_eq!(interrupted_then_sent(3, Duration::from_secs(5)), (Ok(7), 4));
        assert_eq!(
            interrupted_then_sent(1, Duration::ZERO),
            (Err(ErrorKind::Interrupted), 1)
        );
        // Interrupted for good: it gives up once the wait has passed, saying the queue is full.
        let started = std::time::Instant::now();
        let (sent, calls) = interrupted_then_sent(usize::MAX, Duration::from_millis(50));
        assert_eq!(sent, Err(ErrorKind::WouldBlock));
        assert!(
            calls > 1 && started.elapsed() < Duration::from_secs(5),
            "{calls}"
        );
    }
}
