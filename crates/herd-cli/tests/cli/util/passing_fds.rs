//! What this kernel does with fds sent over Unix sockets.

/// Whether this kernel refuses fds sent to a Unix socket that asked it to (`SO_PASSRIGHTS`
/// off, Linux 6.16+): where it does not, what herd gets is closed off its loop instead.
pub fn kernel_refuses_fds() -> bool {
    use std::os::unix::io::AsFd;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("probe.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    herd_sys::fdpass::refuse_fds(listener.as_fd());
    let client = std::os::unix::net::UnixStream::connect(&path).unwrap();
    herd_sys::fdpass::send_with_fds(client.as_fd(), b"x", &[client.as_fd()]).is_err()
}
