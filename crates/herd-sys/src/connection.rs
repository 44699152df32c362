//! What the kernel knows of a connected stream socket's other end that reading and writing do
//! not tell without waiting: whether the peer has hung up, and how much of what was written it
//! has not taken yet.

use std::io;
use std::os::unix::io::{AsRawFd, BorrowedFd};

/// Whether the peer of the connected stream socket `fd` is gone for good: it closed its end
/// (or exited), or shut down both directions, so nothing written to `fd` reaches it. `poll`
/// with a zero timeout reporting `POLLHUP`. A peer that only shut down its writing side
/// (`shutdown(SHUT_WR)`) still reads what it is sent: that is not a hang-up.
pub fn peer_hung_up(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let mut poll = libc::pollfd {
        fd: fd.as_raw_fd(),
        // POLLHUP is reported whatever is asked for; ask for nothing else.
        events: 0,
        revents: 0,
    };
    // SAFETY: one pollfd we own, for a borrowed open fd; a zero timeout never blocks.
    let n = unsafe { libc::poll(&mut poll, 1, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(poll.revents & libc::POLLHUP != 0)
}

/// How many bytes written to the connected stream socket `fd` its peer has not read yet
/// (`ioctl(SIOCOUTQ)`, which Linux names `TIOCOUTQ`); `Ok(None)` where the system does not
/// say.
pub fn unread_by_peer(fd: BorrowedFd<'_>) -> io::Result<Option<usize>> {
    unread::bytes(fd)
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod unread {
    use std::io;
    use std::os::unix::io::{AsRawFd, BorrowedFd};

    pub fn bytes(fd: BorrowedFd<'_>) -> io::Result<Option<usize>> {
        let mut unread: libc::c_int = 0;
        // SAFETY: SIOCOUTQ writes one int into the one we own, for a borrowed open fd.
        if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCOUTQ, &mut unread) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(usize::try_from(unread).ok())
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod unread {
    use std::io;
    use std::os::unix::io::BorrowedFd;

    pub fn bytes(_fd: BorrowedFd<'_>) -> io::Result<Option<usize>> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::Shutdown;
    use std::os::unix::io::AsFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn a_closed_peer_hung_up_a_half_closed_one_did_not() {
        let (herd, client) = UnixStream::pair().unwrap();
        assert!(!peer_hung_up(herd.as_fd()).unwrap(), "connected");
        client.shutdown(Shutdown::Write).unwrap();
        assert!(!peer_hung_up(herd.as_fd()).unwrap(), "still reads");
        drop(client);
        assert!(peer_hung_up(herd.as_fd()).unwrap(), "closed");

        let (herd, client) = UnixStream::pair().unwrap();
        client.shutdown(Shutdown::Both).unwrap();
        assert!(peer_hung_up(herd.as_fd()).unwrap(), "shut down both ways");
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn unread_bytes_are_those_the_peer_has_not_read() {
        let (mut herd, mut client) = UnixStream::pair().unwrap();
        assert_eq!(unread_by_peer(herd.as_fd()).unwrap(), Some(0));
        herd.write_all(&[7; 1000]).unwrap();
        let queued = unread_by_peer(herd.as_fd()).unwrap().unwrap();
        assert!(queued >= 1000, "{queued}");
        client.read_exact(&mut [0; 1000]).unwrap();
        assert_eq!(unread_by_peer(herd.as_fd()).unwrap(), Some(0));
    }
}
