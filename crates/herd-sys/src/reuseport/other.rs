//! Steering an `SO_REUSEPORT` group's connections: Linux only (`SO_ATTACH_REUSEPORT_CBPF`).

use std::io;
use std::os::unix::io::BorrowedFd;

/// Refused: only Linux lets a program choose a reuseport group's socket.
pub fn steer(_socket: BorrowedFd<'_>, _targets: &[u32]) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "steering a reuseport group's connections needs Linux (SO_ATTACH_REUSEPORT_CBPF)",
    ))
}
