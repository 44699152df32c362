//! Linux: the file a Unix socket is bound to, asked of the kernel over `NETLINK_SOCK_DIAG`
//! (`sock_diag(7)`, `net/unix/diag.c`). One request names the socket by inode and cookie; the
//! reply's `UNIX_DIAG_VFS` attribute (`struct unix_diag_vfs`) holds the file's inode number
//! (its low 32 bits) and the device of its file system (the superblock's `s_dev`, in the
//! kernel's own encoding). Messages are built and read as bytes, every length checked: a
//! malformed reply is an error, never a panic.

use std::io;
use std::mem;
use std::os::unix::io::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::imp::Device;

/// The file a Unix socket is bound to, as the kernel reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BoundFile {
    /// The device of its file system, as the superblock names it (`s_dev`).
    pub dev: Device,
    /// The low 32 bits of its inode number: `udiag_vfs_ino` is a `__u32`.
    pub ino_low: u32,
}

/// `SOCK_DIAG_BY_FAMILY` (`linux/sock_diag.h`): the request, and its reply.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `UDIAG_SHOW_VFS` (`linux/unix_diag.h`): ask for the bound file.
const UDIAG_SHOW_VFS: u32 = 0x2;
/// `UNIX_DIAG_VFS`: the attribute holding `struct unix_diag_vfs`.
const UNIX_DIAG_VFS: u16 = 1;
/// An attribute's type without the flags `NLA_F_NESTED` and `NLA_F_NET_BYTEORDER`.
const NLA_TYPE_MASK: u16 = 0x3fff;
/// `sizeof(struct nlmsghdr)`, after which a message's payload starts.
const NLMSG_HDRLEN: usize = 16;
/// `sizeof(struct unix_diag_req)`, the request's payload.
const UNIX_DIAG_REQ: usize = 24;
/// `sizeof(struct unix_diag_msg)`, after which the attributes start.
const DIAG_MSG: usize = 16;
/// `INET_DIAG_NOCOOKIE` (`linux/inet_diag.h`), each half of a request's cookie: any socket
/// with the inode number asked for, where the socket's own cookie is unknown.
const NOCOOKIE: u32 = u32::MAX;
/// The sequence number of the one request.
const SEQ: u32 = 1;
/// How long to wait for the kernel's reply (it answers while handling the request).
const REPLY_WITHIN: libc::timeval = libc::timeval {
    tv_sec: 1,
    tv_usec: 0,
};

/// The file the Unix socket `fd` is bound to: `None` for a socket bound to no file (unbound,
/// abstract, or of another family than `AF_UNIX`); an error for an fd that is not a socket, or
/// where the kernel cannot say (no `CONFIG_UNIX_DIAG`, a sandbox such as gVisor, the socket in
/// another network namespace).
///
/// `SO_DOMAIN`, the socket's inode (`fstat`) and cookie (`SO_COOKIE`), then one
/// `SOCK_DIAG_BY_FAMILY` request over a `NETLINK_SOCK_DIAG` socket (`SOCK_CLOEXEC`) for that
/// socket with `UDIAG_SHOW_VFS`. The cookie makes the kernel answer for this socket and no
/// other one that has come to share its inode number (socket inode numbers are 32 bits, and
/// wrap); a kernel before 4.12 has no `SO_COOKIE`, and is asked by the inode number alone
/// (`INET_DIAG_NOCOOKIE`). A file unlinked since `bind` is still the one reported.
pub fn bound_file(fd: BorrowedFd<'_>) -> io::Result<Option<BoundFile>> {
    if crate::socket::getsockopt_int(fd.as_raw_fd(), libc::SO_DOMAIN)? != libc::AF_UNIX {
        return Ok(None);
    }
    let (ino, cookie) = (socket_inode(fd)?, socket_cookie(fd)?);
    let diag = diag_socket()?;
    let request = request(ino, cookie);
    // SAFETY: send reads `request.len()` bytes of the array we own.
    let sent = unsafe { libc::send(diag.as_raw_fd(), request.as_ptr().cast(), request.len(), 0) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    if sent as usize != request.len() {
        return Err(malformed("the request was sent in part"));
    }
    let mut reply = [0u8; 1024];
    let len = receive(diag.as_fd(), &mut reply)?;
    parse(&reply[..len], ino, cookie)
}

/// The inode number of the socket `fd` itself (`fstat`): 32 bits, as sockets' are.
fn socket_inode(fd: BorrowedFd<'_>) -> io::Result<u32> {
    // SAFETY: stat is plain integers, for which all-zero is a valid value.
    let mut st: libc::stat = unsafe { mem::zeroed() };
    // SAFETY: fstat writes into the stat buffer we own.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } < 0 {
        return Err(io::Error::last_os_error());
    }
    u32::try_from(st.st_ino).map_err(|_| malformed("a socket's inode number beyond 32 bits"))
}

/// The socket's cookie (`SO_COOKIE`, Linux 4.12), unique for the system's uptime; `None` on a
/// kernel without it (`ENOPROTOOPT`).
fn socket_cookie(fd: BorrowedFd<'_>) -> io::Result<Option<u64>> {
    let mut value: u64 = 0;
    let mut len = mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into the u64 we own.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_COOKIE,
            (&mut value as *mut u64).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        let error = io::Error::last_os_error();
        if error.raw_os_error() == Some(libc::ENOPROTOOPT) {
            return Ok(None);
        }
        return Err(error);
    }
    if len as usize != mem::size_of::<u64>() {
        return Err(malformed("a socket cookie of another size"));
    }
    Ok(Some(value))
}

/// `udiag_cookie`, the two halves of `cookie` (low first), or [`NOCOOKIE`] twice for none.
fn cookie_halves(cookie: Option<u64>) -> [u32; 2] {
    match cookie {
        Some(cookie) => [cookie as u32, (cookie >> 32) as u32],
        None => [NOCOOKIE; 2],
    }
}

/// A `NETLINK_SOCK_DIAG` socket, close-on-exec, whose receive waits at most [`REPLY_WITHIN`].
fn diag_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket takes no pointers; it returns a fresh fd or -1.
    let raw = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh fd that nothing else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: setsockopt reads one timeval, whose size we pass.
    let rc = unsafe {
        libc::setsockopt(
            raw,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&REPLY_WITHIN as *const libc::timeval).cast(),
            mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(socket)
}

/// Receives one datagram from the kernel into `buf`; its length. One longer than `buf`, or
/// from another sender, is an error.
fn receive(diag: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: sockaddr_nl is plain integers, for which all-zero is a valid value.
        let mut from: libc::sockaddr_nl = unsafe { mem::zeroed() };
        let mut from_len = mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        // SAFETY: recvfrom writes at most `buf.len()` bytes into `buf` and at most `from_len`
        // into the sockaddr_nl we own; MSG_TRUNC makes it return the datagram's whole length.
        let n = unsafe {
            libc::recvfrom(
                diag.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_TRUNC,
                (&mut from as *mut libc::sockaddr_nl).cast(),
                &mut from_len,
            )
        };
        if n < 0 {
            let error = io::Error::last_os_error();
            match error.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "sock_diag: no reply from the kernel",
                    ))
                }
                _ => return Err(error),
            }
        }
        if n as usize > buf.len() {
            return Err(malformed("a reply longer than expected"));
        }
        if from.nl_pid != 0 {
            return Err(malformed("a reply not from the kernel"));
        }
        return Ok(n as usize);
    }
}

/// The request for the Unix socket `ino` with `cookie` (any with that inode number for
/// `None`): `struct nlmsghdr`, then `struct unix_diag_req`.
fn request(ino: u32, cookie: Option<u64>) -> [u8; NLMSG_HDRLEN + UNIX_DIAG_REQ] {
    let mut m = [0u8; NLMSG_HDRLEN + UNIX_DIAG_REQ];
    let [cookie_low, cookie_high] = cookie_halves(cookie);
    let fields: [&[u8]; 12] = [
        &(m.len() as u32).to_ne_bytes(),             // nlmsg_len
        &SOCK_DIAG_BY_FAMILY.to_ne_bytes(),          // nlmsg_type
        &(libc::NLM_F_REQUEST as u16).to_ne_bytes(), // nlmsg_flags
        &SEQ.to_ne_bytes(),                          // nlmsg_seq
        &0u32.to_ne_bytes(),                         // nlmsg_pid: the kernel's
        &[libc::AF_UNIX as u8, 0],                   // sdiag_family, sdiag_protocol
        &0u16.to_ne_bytes(),                         // pad
        &u32::MAX.to_ne_bytes(),                     // udiag_states: any
        &ino.to_ne_bytes(),                          // udiag_ino
        &UDIAG_SHOW_VFS.to_ne_bytes(),               // udiag_show
        &cookie_low.to_ne_bytes(),                   // udiag_cookie[0]
        &cookie_high.to_ne_bytes(),                  // udiag_cookie[1]
    ];
    let mut at = 0;
    for field in fields {
        m[at..at + field.len()].copy_from_slice(field);
        at += field.len();
    }
    m
}

/// Reads the reply to [`request`]`(ino, cookie)`: the bound file, `None` where it names none;
/// the kernel's error, or one for a malformed reply.
fn parse(reply: &[u8], ino: u32, cookie: Option<u64>) -> io::Result<Option<BoundFile>> {
    let mut rest = reply;
    while rest.len() >= NLMSG_HDRLEN {
        let len = u32_at(rest, 0)? as usize;
        let (kind, seq) = (u16_at(rest, 4)?, u32_at(rest, 8)?);
        if len < NLMSG_HDRLEN || len > rest.len() {
            return Err(malformed("a message's length"));
        }
        let payload = &rest[NLMSG_HDRLEN..len];
        rest = rest.get(align4(len)..).unwrap_or(&[]);
        if seq != SEQ {
            continue;
        }
        if i32::from(kind) == libc::NLMSG_ERROR {
            let code = i32::from_ne_bytes(u32_at(payload, 0)?.to_ne_bytes());
            return Err(match code.checked_neg() {
                Some(errno) if errno > 0 => io::Error::from_raw_os_error(errno),
                _ => malformed("an acknowledgement in place of the answer"),
            });
        }
        if kind != SOCK_DIAG_BY_FAMILY {
            return Err(malformed("a message of another type"));
        }
        return vfs(payload, ino, cookie);
    }
    Err(malformed("no answer for the socket"))
}

/// The `UNIX_DIAG_VFS` attribute of the `struct unix_diag_msg` in `payload`, which must be
/// the one for socket `ino` (with `cookie`, where one was asked for: the kernel fills in the
/// socket's own either way).
fn vfs(payload: &[u8], ino: u32, cookie: Option<u64>) -> io::Result<Option<BoundFile>> {
    let family = *payload
        .first()
        .ok_or_else(|| malformed("an empty answer"))?;
    let answered = (
        u32_at(payload, 4)?,
        [u32_at(payload, 8)?, u32_at(payload, 12)?],
    );
    let same_cookie = cookie.is_none() || answered.1 == cookie_halves(cookie);
    if i32::from(family) != libc::AF_UNIX || answered.0 != ino || !same_cookie {
        return Err(malformed("an answer for another socket"));
    }
    let mut attributes = payload
        .get(DIAG_MSG..)
        .ok_or_else(|| malformed("a short message"))?;
    while attributes.len() >= 4 {
        let len = usize::from(u16_at(attributes, 0)?);
        let kind = u16_at(attributes, 2)? & NLA_TYPE_MASK;
        if len < 4 || len > attributes.len() {
            return Err(malformed("an attribute's length"));
        }
        if kind == UNIX_DIAG_VFS {
            let value = &attributes[4..len];
            return Ok(Some(BoundFile {
                ino_low: u32_at(value, 0)?,
                dev: kernel_device(u32_at(value, 4)?),
            }));
        }
        attributes = attributes.get(align4(len)..).unwrap_or(&[]);
    }
    Ok(None)
}

/// A device in the kernel's own encoding (`MKDEV`: major in the top 12 bits, minor in the
/// low 20), which `udiag_vfs_dev` holds.
fn kernel_device(dev: u32) -> Device {
    Device {
        major: dev >> 20,
        minor: dev & 0xf_ffff,
    }
}

/// Netlink's 4-byte alignment of messages and attributes.
fn align4(len: usize) -> usize {
    len.saturating_add(3) & !3
}

fn u32_at(bytes: &[u8], at: usize) -> io::Result<u32> {
    let field = bytes
        .get(at..at + 4)
        .ok_or_else(|| malformed("a short message"))?;
    let mut raw = [0u8; 4];
    raw.copy_from_slice(field);
    Ok(u32::from_ne_bytes(raw))
}

fn u16_at(bytes: &[u8], at: usize) -> io::Result<u16> {
    let field = bytes
        .get(at..at + 2)
        .ok_or_else(|| malformed("a short message"))?;
    Ok(u16::from_ne_bytes([field[0], field[1]]))
}

fn malformed(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("sock_diag: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const INO: u32 = 4242;
    const COOKIE: u64 = 0x1122_3344_5566_7788;

    /// A reply as the kernel writes it, with `attributes` after the `unix_diag_msg`.
    fn reply(kind: u16, attributes: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        let len = (NLMSG_HDRLEN + DIAG_MSG + attributes.len()) as u32;
        m.extend_from_slice(&len.to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&SEQ.to_ne_bytes());
        m.extend_from_slice(&77u32.to_ne_bytes());
        m.extend_from_slice(&[libc::AF_UNIX as u8, libc::SOCK_STREAM as u8, 10, 0]);
        m.extend_from_slice(&INO.to_ne_bytes());
        m.extend_from_slice(&(COOKIE as u32).to_ne_bytes());
        m.extend_from_slice(&((COOKIE >> 32) as u32).to_ne_bytes());
        m.extend_from_slice(attributes);
        m
    }

    fn attribute(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
        a.extend_from_slice(&kind.to_ne_bytes());
        a.extend_from_slice(value);
        a.resize(align4(a.len()), 0);
        a
    }

    fn vfs_value(ino: u32, dev: u32) -> Vec<u8> {
        [ino.to_ne_bytes(), dev.to_ne_bytes()].concat()
    }

    fn file(ino_low: u32, major: u32, minor: u32) -> BoundFile {
        BoundFile {
            dev: Device { major, minor },
            ino_low,
        }
    }

    #[test]
    fn the_vfs_attribute_is_found_among_others() {
        let name = attribute(0, b"/run/a.sock\0");
        let vfs = attribute(UNIX_DIAG_VFS, &vfs_value(99, 8 << 20 | 3));
        let good = reply(SOCK_DIAG_BY_FAMILY, &[name.clone(), vfs].concat());
        assert_eq!(
            parse(&good, INO, Some(COOKIE)).unwrap(),
            Some(file(99, 8, 3))
        );
        let unbound = reply(SOCK_DIAG_BY_FAMILY, &name);
        assert_eq!(parse(&unbound, INO, Some(COOKIE)).unwrap(), None);
    }

    #[test]
    fn an_answer_for_another_socket_is_refused() {
        let vfs = attribute(UNIX_DIAG_VFS, &vfs_value(99, 1));
        let good = reply(SOCK_DIAG_BY_FAMILY, &vfs);
        assert!(parse(&good, INO + 1, Some(COOKIE)).is_err());
        assert!(parse(&good, INO, Some(COOKIE + 1)).is_err());
        assert!(parse(&good, INO, Some(COOKIE ^ 1 << 40)).is_err());
        // Asked by inode number alone (no SO_COOKIE), the kernel's cookie is not compared;
        // the inode number still is.
        assert_eq!(parse(&good, INO, None).unwrap(), Some(file(99, 0, 1)));
        assert!(parse(&good, INO + 1, None).is_err());
    }

    /// A kernel without `SO_COOKIE` is asked with `INET_DIAG_NOCOOKIE` in both halves.
    #[test]
    fn a_request_names_the_socket_by_inode_and_cookie_or_inode_alone() {
        let cookie_at = NLMSG_HDRLEN + 16;
        let with = request(INO, Some(COOKIE));
        assert_eq!(with.len(), u32_at(&with, 0).unwrap() as usize);
        assert_eq!(u32_at(&with, NLMSG_HDRLEN + 8).unwrap(), INO);
        assert_eq!(u32_at(&with, cookie_at).unwrap(), 0x5566_7788);
        assert_eq!(u32_at(&with, cookie_at + 4).unwrap(), 0x1122_3344);
        let without = request(INO, None);
        assert_eq!(u32_at(&without, NLMSG_HDRLEN + 8).unwrap(), INO);
        assert_eq!(u32_at(&without, cookie_at).unwrap(), u32::MAX);
        assert_eq!(u32_at(&without, cookie_at + 4).unwrap(), u32::MAX);
    }

    #[test]
    fn the_kernels_error_is_returned() {
        let mut error = reply(libc::NLMSG_ERROR as u16, &[]);
        error[NLMSG_HDRLEN..NLMSG_HDRLEN + 4].copy_from_slice(&(-libc::ENOENT).to_ne_bytes());
        let e = parse(&error, INO, Some(COOKIE)).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
        error[NLMSG_HDRLEN..NLMSG_HDRLEN + 4].copy_from_slice(&i32::MIN.to_ne_bytes());
        assert!(parse(&error, INO, Some(COOKIE)).is_err());
    }

    /// Every truncation, and every byte of a length field changed, gives an error or an
    /// answer, never a panic.
    #[test]
    fn malformed_replies_do_not_panic() {
        let vfs = attribute(UNIX_DIAG_VFS, &vfs_value(99, 1));
        let good = reply(SOCK_DIAG_BY_FAMILY, &vfs);
        for len in 0..good.len() {
            assert!(
                parse(&good[..len], INO, Some(COOKIE)).is_err(),
                "cut at {len}"
            );
        }
        for at in [
            0,
            1,
            2,
            3,
            NLMSG_HDRLEN + DIAG_MSG,
            NLMSG_HDRLEN + DIAG_MSG + 1,
        ] {
            for value in [0u8, 1, 3, 4, 5, 0x7f, 0xff] {
                let mut bad = good.clone();
                bad[at] = value;
                let _ = parse(&bad, INO, Some(COOKIE));
                let _ = parse(&bad, INO, None);
            }
        }
    }

    /// The kernel's encoding (`MKDEV`) and `stat`'s (glibc's and musl's `makedev`) differ
    /// beyond 8-bit minors and 12-bit majors; both decode to the same major and minor.
    #[test]
    fn kernel_devices_decode_to_the_major_and_minor_stat_gives() {
        // 8:3 (sda3): 0x00800003 to the kernel, 0x803 to stat.
        assert_eq!(kernel_device(0x0080_0003), Device { major: 8, minor: 3 });
        assert_eq!(Device::of_stat(0x803), Device { major: 8, minor: 3 });
        // 259:1 (nvme0n1p1): 0x10300001 to the kernel, 0x10301 to stat.
        assert_eq!(kernel_device(0x1030_0001), Device::of_stat(0x1_0301));
        // 0:1234 (an anonymous device, as tmpfs, overlayfs and btrfs have): 0x4d2 to the
        // kernel, 0x4d2 | 0x400 << 12 to stat.
        assert_eq!(
            kernel_device(1234),
            Device {
                major: 0,
                minor: 1234
            }
        );
        assert_eq!(Device::of_stat(0xd2 | 0x400 << 12), kernel_device(1234));
        // The largest of each.
        assert_eq!(
            kernel_device(u32::MAX),
            Device {
                major: 0xfff,
                minor: 0xf_ffff
            }
        );
    }
}
