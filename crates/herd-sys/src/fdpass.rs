//! Passing file descriptors over Unix sockets (`SCM_RIGHTS`), as rustix does it: sending
//! borrows the fds, receiving yields owned fds (close-on-exec from birth, `MSG_CMSG_CLOEXEC`)
//! and closes whatever the caller does not keep.

use std::io;
use std::mem;
use std::os::unix::io::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// The most fds herd sends in one message: the kernel's `SCM_MAX_FD` is 253, and 252 is the
/// number haproxy uses.
pub const MAX_FDS_PER_MESSAGE: usize = 252;

/// Control-buffer space for [`MAX_FDS_PER_MESSAGE`] fds, as `u64`s for alignment.
const CONTROL_WORDS: usize = (MAX_FDS_PER_MESSAGE * 4 + 64) / 8;

/// Sends `data` (at least one byte) with `fds` attached, in one `sendmsg`. Returns how many
/// bytes went out; the fds travel with the first of them.
pub fn send_with_fds(
    socket: BorrowedFd<'_>,
    data: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<usize> {
    if data.is_empty() || fds.len() > MAX_FDS_PER_MESSAGE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "send_with_fds needs data and at most 252 fds",
        ));
    }
    let mut control = [0u64; CONTROL_WORDS];
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: a zeroed msghdr is valid; every pointer we set refers to a live local buffer.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        let payload = (fds.len() * mem::size_of::<RawFd>()) as libc::c_uint;
        // SAFETY: CMSG_SPACE/CMSG_LEN are pure arithmetic; the buffer holds 252 fds' space.
        let space = unsafe { libc::CMSG_SPACE(payload) } as usize;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: msg_control points at a zeroed buffer at least `space` bytes long, so the
        // first header and its data fit.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(payload) as _;
            let out = libc::CMSG_DATA(cmsg) as *mut RawFd;
            for (i, fd) in fds.iter().enumerate() {
                std::ptr::write_unaligned(out.add(i), fd.as_raw_fd());
            }
        }
    }
    // SAFETY: sendmsg reads the buffers `msg` describes.
    let n = unsafe { libc::sendmsg(socket.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// What one `recvmsg` brought.
#[derive(Debug)]
pub struct Received {
    /// How many bytes were stored in the buffer (0 at end of stream).
    pub len: usize,
    /// The fds that came with them, in order, close-on-exec.
    pub fds: Vec<OwnedFd>,
    /// Whether the kernel had to drop fds that did not fit (`MSG_CTRUNC`): the sender sent
    /// more than one message allows, or this process ran out of files (see `out_of_files`).
    pub fds_truncated: bool,
    /// With `fds_truncated`: whether this process had no file left to open once the kernel had
    /// installed what it could (`EMFILE`, its open-file limit), which is then why the rest were
    /// dropped, not the sender.
    pub out_of_files: bool,
}

/// Receives bytes and any fds attached to them (blocking unless the socket is non-blocking).
pub fn recv_with_fds(socket: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Received> {
    let mut control = [0u64; CONTROL_WORDS];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: a zeroed msghdr is valid; every pointer we set refers to a live local buffer.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = mem::size_of_val(&control) as _;
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    let flags = libc::MSG_CMSG_CLOEXEC;
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    let flags = 0;
    let n = loop {
        // SAFETY: recvmsg writes into the buffers `msg` describes.
        let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, flags) };
        if n >= 0 {
            break n as usize;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    };
    let mut fds = Vec::new();
    // SAFETY: the CMSG_* helpers walk the control buffer the kernel filled, within
    // msg_controllen; SCM_RIGHTS data is an array of fds the kernel just installed for us,
    // which we own from here on.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg);
                let len = (*cmsg).cmsg_len as usize - (data as usize - cmsg as usize);
                for i in 0..len / mem::size_of::<RawFd>() {
                    let raw = std::ptr::read_unaligned((data as *const RawFd).add(i));
                    fds.push(OwnedFd::from_raw_fd(raw));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    for fd in &fds {
        crate::fd::set_cloexec(std::os::unix::io::AsFd::as_fd(fd), true)?;
    }
    let fds_truncated = msg.msg_flags & libc::MSG_CTRUNC != 0;
    // Asked while the fds received are still open: the kernel stops installing them at
    // EMFILE, so a table it filled has no room for one more.
    let out_of_files = fds_truncated
        && matches!(socket.try_clone_to_owned(), Err(e) if e.raw_os_error() == Some(libc::EMFILE));
    Ok(Received {
        len: n,
        fds,
        fds_truncated,
        out_of_files,
    })
}

/// `SO_PASSRIGHTS` (Linux 6.16+), its value on the architectures that take `asm-generic`'s
/// (the libc crate lacks it); `None` where herd does not know it.
const SO_PASSRIGHTS: Option<libc::c_int> = if cfg!(all(
    any(target_os = "linux", target_os = "android"),
    any(
        target_arch = "x86_64",
        target_arch = "x86",
        target_arch = "aarch64",
        target_arch = "arm",
        target_arch = "riscv64",
        target_arch = "loongarch64",
        target_arch = "s390x",
        target_arch = "powerpc64"
    )
)) {
    Some(83)
} else {
    None
};

/// Has the kernel refuse descriptors sent to the Unix socket `socket` and to the connections
/// it accepts (`SO_PASSRIGHTS` off: the sender's `sendmsg` fails with `EPERM`), where it can
/// (Linux 6.16+ on the common architectures; elsewhere nothing changes). For a socket that
/// never takes fds (herd's control socket): one a client sent would be closed by herd, which
/// can wait (see [`crate::fd::close_in_background`]).
pub fn refuse_fds(socket: BorrowedFd<'_>) {
    let option = match SO_PASSRIGHTS {
        Some(option) => option,
        None => return,
    };
    // An older kernel answers ENOPROTOOPT and leaves the socket as it was.
    let _ = set_socket_option(socket, option, 0);
}

/// Sets the `SOL_SOCKET` option `option` of `socket` to `value`.
pub(crate) fn set_socket_option(
    socket: BorrowedFd<'_>,
    option: libc::c_int,
    value: libc::c_int,
) -> std::io::Result<()> {
    // SAFETY: setsockopt reads one c_int from `value`, whose size we pass.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::io::AsFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn fds_travel_with_their_bytes_and_arrive_cloexec() {
        let (a, b) = UnixStream::pair().unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        assert_eq!(
            send_with_fds(a.as_fd(), b"x", &[listener.as_fd(), listener.as_fd()]).unwrap(),
            1
        );
        let mut buf = [0u8; 16];
        let got = recv_with_fds(b.as_fd(), &mut buf).unwrap();
        assert_eq!((got.len, got.fds.len(), got.fds_truncated), (1, 2, false));
        for fd in &got.fds {
            assert!(crate::fd::is_cloexec(fd.as_fd()).unwrap());
        }
        let again = std::net::TcpListener::from(got.fds.into_iter().next().unwrap());
        assert_eq!(again.local_addr().unwrap(), addr);
    }

    #[test]
    fn too_many_fds_are_refused() {
        let (a, _b) = UnixStream::pair().unwrap();
        let fds = vec![a.as_fd(); MAX_FDS_PER_MESSAGE + 1];
        assert!(send_with_fds(a.as_fd(), b"x", &fds).is_err());
    }
}
