//! [`super::Receiver`] where there is no peek offset: fds are received and closed on a
//! closing thread.

use std::io;
use std::os::unix::io::BorrowedFd;
use std::sync::Arc;

use super::{Datagram, Shared};

/// The flags every receive uses.
pub(super) const RECV_FLAGS: libc::c_int = libc::MSG_DONTWAIT;

pub(super) fn enable_credentials(_socket: BorrowedFd<'_>) -> io::Result<()> {
    Ok(())
}

/// Never: there is no peek offset.
pub(super) fn start_peeking(_socket: BorrowedFd<'_>) -> bool {
    false
}

/// Never: the system does not say.
pub(super) fn sender_pid(
    _level: libc::c_int,
    _kind: libc::c_int,
    _data: *const u8,
    _len: usize,
) -> Option<u32> {
    None
}

/// Never called ([`start_peeking`] is `false`): receives as without a peek offset.
pub(super) fn peek_and_take_later(
    shared: &Arc<Shared>,
    buf: &mut [u8],
) -> io::Result<Option<Datagram>> {
    super::recv_closing_fds(std::os::unix::io::AsFd::as_fd(&shared.socket), buf)
}
