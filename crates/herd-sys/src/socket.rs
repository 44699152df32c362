//! What kind of socket an fd is, so that inherited fds are checked before they are used;
//! whether a Unix socket is bound to the file at a path (`bound_file.rs`).

use std::io;
use std::mem;
use std::os::unix::io::{AsRawFd, BorrowedFd};

mod bound_file;
pub use bound_file::{unix_socket_bound_to, KNOWS_BOUND_FILES};

/// The address family of a socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// `AF_INET`.
    Inet,
    /// `AF_INET6`.
    Inet6,
    /// `AF_UNIX`.
    Unix,
    /// Any other family, by number.
    Other(i32),
}

/// The type of a socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SockType {
    /// `SOCK_STREAM`.
    Stream,
    /// `SOCK_DGRAM`.
    Datagram,
    /// `SOCK_SEQPACKET`.
    SeqPacket,
    /// Any other type, by number.
    Other(i32),
}

/// What an fd turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketInfo {
    /// The address family, from `getsockname`.
    pub family: Family,
    /// The socket type, from `SO_TYPE`.
    pub sock_type: SockType,
    /// Whether `listen()` was called on it (`SO_ACCEPTCONN`).
    pub listening: bool,
}

/// Whether the socket `fd` was shut down for reading (`shutdown(SHUT_RD)` or `SHUT_RDWR`, by
/// any process that holds it): `poll` with a zero timeout reporting `POLLRDHUP` (Linux), which
/// a listener never reports otherwise. A Unix stream listener shut down so still says it
/// listens (`SO_ACCEPTCONN`) but refuses every connection. `Ok(false)` where the system does
/// not say.
pub fn shut_for_reading(fd: BorrowedFd<'_>) -> io::Result<bool> {
    rdhup::shut_for_reading(fd)
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod rdhup {
    use std::io;
    use std::os::unix::io::{AsRawFd, BorrowedFd};

    pub fn shut_for_reading(fd: BorrowedFd<'_>) -> io::Result<bool> {
        let mut poll = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLRDHUP,
            revents: 0,
        };
        // SAFETY: one pollfd we own, for a borrowed open fd; a zero timeout never blocks.
        let n = unsafe { libc::poll(&mut poll, 1, 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(poll.revents & libc::POLLRDHUP != 0)
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod rdhup {
    use std::io;
    use std::os::unix::io::BorrowedFd;

    pub fn shut_for_reading(_fd: BorrowedFd<'_>) -> io::Result<bool> {
        Ok(false)
    }
}

/// Inspects `fd`: `Ok(None)` when it is open but not a socket (`fstat`), else its family, type
/// and whether it listens.
pub fn inspect(fd: BorrowedFd<'_>) -> io::Result<Option<SocketInfo>> {
    let raw = fd.as_raw_fd();
    // SAFETY: stat is plain integers, for which all-zero is a valid value.
    let mut st: libc::stat = unsafe { mem::zeroed() };
    // SAFETY: fstat writes into the stat buffer we own.
    if unsafe { libc::fstat(raw, &mut st) } < 0 {
        return Err(io::Error::last_os_error());
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Ok(None);
    }
    let sock_type = match getsockopt_int(raw, libc::SO_TYPE)? {
        libc::SOCK_STREAM => SockType::Stream,
        libc::SOCK_DGRAM => SockType::Datagram,
        libc::SOCK_SEQPACKET => SockType::SeqPacket,
        other => SockType::Other(other),
    };
    // SAFETY: sockaddr_storage is plain integers, for which all-zero is a valid value.
    let mut addr: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: getsockname writes at most `len` bytes into the sockaddr_storage we own.
    if unsafe {
        libc::getsockname(
            raw,
            (&mut addr as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    } < 0
    {
        return Err(io::Error::last_os_error());
    }
    let family = match i32::from(addr.ss_family) {
        libc::AF_INET => Family::Inet,
        libc::AF_INET6 => Family::Inet6,
        libc::AF_UNIX => Family::Unix,
        other => Family::Other(other),
    };
    let listening = match sock_type {
        SockType::Stream | SockType::SeqPacket => getsockopt_int(raw, libc::SO_ACCEPTCONN)? != 0,
        _ => false,
    };
    Ok(Some(SocketInfo {
        family,
        sock_type,
        listening,
    }))
}

/// `SOL_SOCKET` option `opt` of socket `raw`, an int.
pub(crate) fn getsockopt_int(raw: i32, opt: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes one c_int into `value`, whose size we pass.
    let rc = unsafe {
        libc::getsockopt(
            raw,
            libc::SOL_SOCKET,
            opt,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value)
}

/// The accept queue of a listening TCP socket: `(waiting, limit)`, the connections waiting to
/// be accepted and the backlog, read with `getsockopt(TCP_INFO)` (`tcpi_unacked` and
/// `tcpi_sacked` mean exactly that on a listening socket). `Ok(None)` off Linux.
pub fn accept_queue(fd: BorrowedFd<'_>) -> io::Result<Option<(u32, u32)>> {
    queue::accept_queue(fd)
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod queue {
    use std::io;
    use std::mem;
    use std::os::unix::io::{AsRawFd, BorrowedFd};

    pub fn accept_queue(fd: BorrowedFd<'_>) -> io::Result<Option<(u32, u32)>> {
        // SAFETY: tcp_info is plain integers, for which all-zero is a valid value.
        let mut info: libc::tcp_info = unsafe { mem::zeroed() };
        let mut len = mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into the tcp_info we own.
        let rc = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                (&mut info as *mut libc::tcp_info).cast(),
                &mut len,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Some((info.tcpi_unacked, info.tcpi_sacked)))
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod queue {
    use std::io;
    use std::os::unix::io::BorrowedFd;

    pub fn accept_queue(_fd: BorrowedFd<'_>) -> io::Result<Option<(u32, u32)>> {
        Ok(None)
    }
}

/// Accepts one connection on `listener` with a single `accept4(SOCK_CLOEXEC)` call. Unlike
/// std's `accept`, it does not retry after `EINTR`: a signal that interrupts it is reported as
/// `ErrorKind::Interrupted`, so the caller can look at why.
pub fn accept_once(listener: BorrowedFd<'_>) -> io::Result<std::os::unix::io::OwnedFd> {
    use std::os::unix::io::FromRawFd;
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    // SAFETY: accept4 with null address pointers returns a fresh fd or -1.
    let raw = unsafe {
        libc::accept4(
            listener.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_CLOEXEC,
        )
    };
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    // SAFETY: accept with null address pointers returns a fresh fd or -1.
    let raw = unsafe {
        libc::accept(
            listener.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh fd that nothing else owns.
    let fd = unsafe { std::os::unix::io::OwnedFd::from_raw_fd(raw) };
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    crate::fd::set_cloexec(std::os::unix::io::AsFd::as_fd(&fd), true)?;
    Ok(fd)
}

/// The effective uid of the process at the other end of a connected Unix socket, as the kernel
/// recorded it when that process called `connect` or `listen`: `SO_PEERCRED` on Linux and
/// Android, `getpeereid` elsewhere.
pub fn peer_uid(fd: BorrowedFd<'_>) -> io::Result<u32> {
    peer::uid(fd)
}

/// The pid of the process at the other end of a connected Unix socket, as the kernel recorded
/// it at `connect` or `listen` (`SO_PEERCRED`); `Ok(None)` where the system does not say.
pub fn peer_pid(fd: BorrowedFd<'_>) -> io::Result<Option<u32>> {
    peer::pid(fd)
}

/// The peer's credentials: `SO_PEERCRED` (uid and pid).
#[cfg(any(target_os = "linux", target_os = "android"))]
mod peer {
    use std::io;
    use std::mem;
    use std::os::unix::io::{AsRawFd, BorrowedFd};

    pub fn uid(fd: BorrowedFd<'_>) -> io::Result<u32> {
        Ok(peer_cred(fd)?.uid)
    }

    pub fn pid(fd: BorrowedFd<'_>) -> io::Result<Option<u32>> {
        Ok(u32::try_from(peer_cred(fd)?.pid).ok().filter(|p| *p > 0))
    }

    fn peer_cred(fd: BorrowedFd<'_>) -> io::Result<libc::ucred> {
        // SAFETY: ucred is plain integers, for which all-zero is a valid value.
        let mut cred: libc::ucred = unsafe { mem::zeroed() };
        let mut len = mem::size_of::<libc::ucred>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into the ucred we own.
        let rc = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERCRED,
                (&mut cred as *mut libc::ucred).cast(),
                &mut len,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(cred)
    }
}

/// The peer's uid: `getpeereid`; its pid is not known.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod peer {
    use std::io;
    use std::os::unix::io::{AsRawFd, BorrowedFd};

    pub fn uid(fd: BorrowedFd<'_>) -> io::Result<u32> {
        let (mut uid, mut gid): (libc::uid_t, libc::gid_t) = (0, 0);
        // SAFETY: getpeereid writes into the two integers we own.
        if unsafe { libc::getpeereid(fd.as_raw_fd(), &mut uid, &mut gid) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(uid)
    }

    pub fn pid(_fd: BorrowedFd<'_>) -> io::Result<Option<u32>> {
        Ok(None)
    }
}

/// The index of the network interface `name` (`if_nametoindex`), for an IPv6 scope such as
/// `fe80::1%eth0`; `Ok(None)` when there is no such interface.
pub fn interface_index(name: &str) -> io::Result<Option<u32>> {
    let name = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in an interface name"))?;
    // SAFETY: if_nametoindex reads the NUL-terminated string we own.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    Ok((index != 0).then_some(index))
}

#[cfg(test)]
mod peer_tests {
    use super::*;
    use std::os::unix::io::AsFd;

    #[test]
    fn peer_uid_is_our_own_for_a_pair() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        assert_eq!(peer_uid(a.as_fd()).unwrap(), me);
        if cfg!(target_os = "linux") {
            assert_eq!(peer_pid(a.as_fd()).unwrap(), Some(std::process::id()));
        }
    }
}

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod queue_tests {
    use super::accept_queue;
    use std::os::unix::io::{AsFd, AsRawFd};

    fn listen(listener: &std::net::TcpListener, backlog: i32) {
        // SAFETY: listen on a socket we own; no memory is involved.
        assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), backlog) }, 0);
    }

    /// The backlog is what the last `listen` asked for, and the queue counts connections not
    /// yet accepted: what herd shows when a worker calls `listen` again.
    #[test]
    fn the_backlog_follows_listen_and_the_queue_counts_unaccepted_connections() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listen(&listener, 7);
        assert_eq!(accept_queue(listener.as_fd()).unwrap(), Some((0, 7)));
        let address = listener.local_addr().unwrap();
        let _waiting: Vec<_> = (0..3)
            .map(|_| std::net::TcpStream::connect(address).unwrap())
            .collect();
        // On loopback the handshake is complete when connect returns.
        assert_eq!(accept_queue(listener.as_fd()).unwrap(), Some((3, 7)));
        listen(&listener, 100);
        assert_eq!(accept_queue(listener.as_fd()).unwrap(), Some((3, 100)));
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(accept_queue(udp.as_fd()).is_err());
    }
}

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod rdhup_tests {
    use std::os::unix::io::AsRawFd;

    #[test]
    fn a_unix_listener_shut_down_for_reading_is_told_apart() {
        let dir = std::env::temp_dir().join(format!("herd-sys-rdhup-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        for how in [
            None,
            Some(std::net::Shutdown::Write),
            Some(std::net::Shutdown::Read),
        ] {
            let path = dir.join("s.sock");
            let _ = std::fs::remove_file(&path);
            let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
            if let Some(how) = how {
                let how = match how {
                    std::net::Shutdown::Read => libc::SHUT_RD,
                    _ => libc::SHUT_WR,
                };
                // SAFETY: shutdown of a socket this test owns.
                assert_eq!(unsafe { libc::shutdown(listener.as_raw_fd(), how) }, 0);
            }
            let refused = std::os::unix::net::UnixStream::connect(&path).is_err();
            let fd = std::os::unix::io::AsFd::as_fd(&listener);
            assert_eq!(super::shut_for_reading(fd).unwrap(), refused, "{how:?}");
            assert_eq!(refused, how == Some(std::net::Shutdown::Read), "{how:?}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
