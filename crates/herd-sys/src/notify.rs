//! Sending one `sd_notify(3)` datagram to the socket named by `NOTIFY_SOCKET`.

use std::ffi::OsStr;
use std::io;

/// Sends `message` as one datagram to `socket`: a filesystem path, or on Linux an
/// abstract-namespace name written with a leading `@` (as systemd does).
pub fn send(socket: &OsStr, message: &[u8]) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = socket.as_bytes();
    match bytes.first() {
        None => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "NOTIFY_SOCKET is empty",
        )),
        Some(b'@') => send_abstract(&bytes[1..], message),
        Some(b'/') => {
            let sock = std::os::unix::net::UnixDatagram::unbound()?;
            let sent = sock.send_to(message, socket)?;
            short_write(sent, message.len())
        }
        Some(_) => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "NOTIFY_SOCKET must be an absolute path or an @abstract name",
        )),
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

#[cfg(any(target_os = "linux", target_os = "android"))]
fn send_abstract(name: &[u8], message: &[u8]) -> io::Result<()> {
    use std::mem;
    use std::os::unix::io::{AsRawFd, FromRawFd, OwnedFd};

    // SAFETY: a zeroed sockaddr_un is a valid value; we fill in the family and the name.
    let mut addr: libc::sockaddr_un = unsafe { mem::zeroed() };
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
    let len = mem::size_of::<libc::sa_family_t>() + 1 + name.len();

    // SAFETY: socket() returns a new fd that we own at once.
    let raw = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh fd that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: the buffer and the address are valid for the lengths we pass.
    let sent = unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            message.as_ptr().cast(),
            message.len(),
            libc::MSG_NOSIGNAL,
            (&addr as *const libc::sockaddr_un).cast(),
            len as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    short_write(sent as usize, message.len())
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn send_abstract(_name: &[u8], _message: &[u8]) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract-namespace sockets exist only on Linux",
    ))
}
