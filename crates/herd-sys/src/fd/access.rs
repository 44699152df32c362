//! How a standard fd was opened.

/// Whether herd's stdout (fd 1) is open for reading only (`1</dev/null`): a write to it fails
/// with `EBADF`, which Rust's `Stdout` takes for success, so what herd prints would be lost
/// without a word. `false` when it cannot tell.
pub fn stdout_read_only() -> bool {
    // SAFETY: fcntl(F_GETFL) only reads the flags of fd 1's open file; it touches no memory.
    let flags = unsafe { libc::fcntl(1, libc::F_GETFL) };
    flags >= 0 && flags & libc::O_ACCMODE == libc::O_RDONLY
}

#[cfg(test)]
mod tests {
    /// The rule, on fds of this test: a file opened for reading is read-only, one for writing is
    /// not (fd 1 itself is the test harness's).
    #[test]
    fn an_fd_opened_for_reading_is_read_only() {
        use std::os::unix::io::AsRawFd;
        let read_only = |fd: i32| {
            // SAFETY: as above, on an fd this test owns.
            let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
            flags >= 0 && flags & libc::O_ACCMODE == libc::O_RDONLY
        };
        let read = std::fs::File::open("/dev/null").unwrap();
        let write = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/null")
            .unwrap();
        assert!(read_only(read.as_raw_fd()));
        assert!(!read_only(write.as_raw_fd()));
    }
}
